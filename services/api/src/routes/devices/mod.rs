//! `/api/v1/devices`: devices and their config history, one file per concern:
//! [`read`] (the device list and detail from the read models, the live state from the
//! event stream), [`configs`] (config versions, the config text of a version, diffs and the
//! config as of a time, from the git config history), [`commands`] (register, update, tag,
//! credentials, remove), [`as_of`] (a device and the fleet as they were at an instant),
//! [`metrics`] (telemetry) and [`settings`] (the tenant's device
//! settings: allowed device networks). The handlers and DTOs are re-exported
//! here.

pub mod as_of;
pub mod commands;
pub mod configs;
pub mod metrics;
pub mod read;
pub mod settings;

pub use as_of::*;
pub use commands::*;
pub use configs::*;
pub use metrics::*;
pub use read::*;
pub use settings::*;

use netledger_domain::{DeviceId, TenantId};
use netledger_projections::query;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::http::{decode_cursor, encode_cursor};
use crate::state::ApiState;

pub(crate) fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(read::list_devices, commands::register_device))
        .routes(routes!(
            read::get_device,
            commands::update_device,
            commands::remove_device
        ))
        .routes(routes!(commands::set_device_tags))
        .routes(routes!(commands::set_device_credentials))
        .routes(routes!(read::get_device_state))
        .routes(routes!(metrics::get_device_metrics))
        .routes(routes!(configs::list_config_versions))
        .routes(routes!(configs::get_config_version))
        .routes(routes!(configs::diff_configs))
        .routes(routes!(configs::config_as_of))
        .routes(routes!(as_of::device_as_of))
        .routes(routes!(as_of::fleet_as_of))
        .routes(routes!(
            settings::get_device_settings,
            settings::set_device_settings
        ))
}

pub(crate) fn wrap_cursor(c: Option<String>) -> Option<String> {
    c.map(|c| encode_cursor(&c))
}

pub(crate) fn unwrap_cursor(c: &Option<String>) -> ApiResult<Option<String>> {
    c.as_deref().map(decode_cursor).transpose()
}

/// The device's read model, or 404 in this tenant.
pub(crate) async fn device_or_404(
    state: &ApiState,
    tenant: TenantId,
    id: Uuid,
) -> ApiResult<query::DeviceDetail> {
    query::device_detail(&state.pools().app, tenant, DeviceId::from_uuid(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("device {id}")))
}

/// The device's folded state from its event stream, or 404.
async fn live_state(
    state: &ApiState,
    tenant: TenantId,
    id: Uuid,
) -> ApiResult<netledger_domain::device::DeviceState> {
    let s = state
        .devices()?
        .load(tenant, DeviceId::from_uuid(id))
        .await?;
    if s.registration.is_none() || s.removed {
        return Err(ApiError::not_found(format!("device {id}")));
    }
    Ok(s)
}

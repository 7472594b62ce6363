//! A device's telemetry over a time range (raw samples or 5-minute rollups).

use axum::extract::State;
use netledger_domain::DeviceId;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Require;
use crate::authz::perm;
use crate::error::{ApiError, ApiResult, BadRequest, NotFound};
use crate::http::{Json, Path, Query};
use crate::state::ApiState;

use super::{device_or_404, enum_text};

/// A time range of telemetry.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MetricsParams {
    /// Start (inclusive, RFC 3339).
    #[param(format = DateTime)]
    pub from: String,
    /// End (exclusive, RFC 3339).
    #[param(format = DateTime)]
    pub to: String,
    /// `auto` (raw up to 6 hours, 5-minute rollups beyond), `raw` or `rollup`.
    pub resolution: Option<String>,
}

/// Device telemetry over a range.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MetricsDto {
    /// Device.
    pub device_id: Uuid,
    /// `raw` or `rollup` (what was used).
    pub resolution: String,
    /// Device gauges, oldest first: `{at, samples, cpu_load: {min, avg, max}, memory_used:
    /// {…}, memory_total, hdd_free: {…}, hdd_total, uptime_secs}`.
    #[schema(value_type = Vec<Object>)]
    pub device: serde_json::Value,
    /// Interface counters, oldest first: `{at, interface, samples, rx_bytes, tx_bytes,
    /// rx_errors, tx_errors, rx_bps: {min, avg, max}, tx_bps: {…}}`.
    #[schema(value_type = Vec<Object>)]
    pub interfaces: serde_json::Value,
}

/// A device's metrics over a time range (raw samples or 5-minute rollups).
#[utoipa::path(
    get,
    path = "/devices/{device_id}/metrics",
    operation_id = "get_device_metrics",
    tag = "devices",
    security(("bearer" = ["devices:read"])),
    params(("device_id" = Uuid, Path, description = "Device id."), MetricsParams),
    responses(
        (status = 200, description = "The samples.", body = MetricsDto),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    )
)]
pub async fn get_device_metrics(
    State(state): State<ApiState>,
    auth: Require<perm::DevicesRead>,
    Path(id): Path<Uuid>,
    Query(q): Query<MetricsParams>,
) -> ApiResult<Json<MetricsDto>> {
    use netledger_store::devices::metrics::{Resolution, samples};
    let tenant = auth.principal().tenant;
    let resolution = match q.resolution.as_deref().unwrap_or("auto") {
        "auto" => Resolution::Auto,
        "raw" => Resolution::Raw,
        "rollup" => Resolution::Rollup,
        other => {
            return Err(ApiError::bad_request(format!(
                "resolution `{other}` is unknown: use auto, raw or rollup"
            )));
        }
    };
    // The device first: another tenant's id is 404 whatever the parameters.
    device_or_404(&state, tenant, id).await?;
    let parse = |name: &str, v: &str| {
        OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
            .map_err(|_| ApiError::bad_request(format!("{name} `{v}` is not an RFC 3339 time")))
    };
    let (from, to) = (parse("from", &q.from)?, parse("to", &q.to)?);
    if to <= from {
        return Err(ApiError::bad_request("`to` must be after `from`"));
    }
    let s = samples(
        &state.pools().app,
        tenant,
        DeviceId::from_uuid(id),
        from,
        to,
        resolution,
    )
    .await?;
    Ok(Json(MetricsDto {
        device_id: id,
        resolution: enum_text(&s.resolution),
        device: to_json(&s.device)?,
        interfaces: to_json(&s.interfaces)?,
    }))
}

fn to_json<T: Serialize>(v: &T) -> ApiResult<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| ApiError::internal(format!("encode metrics: {e}")))
}

//! `/api/v1/tenants/{tenant_id}/device-settings`: the tenant's device settings
//! (`TenantDeviceSettingsSet` on the tenant's stream): the networks its devices may be in
//! although a default rule refuses them (loopback, link-local, unspecified, multicast; see
//! `netledger_domain::device::network`), and whether production allows the plain
//! (unencrypted) API for its devices. Read with `tenants:read`, set by a tenant admin
//! (`tenants:write`).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use netledger_domain::identity::tenant::{
    Tenant, TenantCommand, TenantDeviceSettingsSet, TenantProfile,
};
use netledger_domain::identity::{DisplayName, tenant_stream};
use netledger_domain::{Aggregate, ExpectedVersion, TenantId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Principal, Require};
use crate::authz::{Permission, perm};
use crate::error::{ApiError, ApiResult, NotFound, PreconditionFailed, Validation};
use crate::http::{IfMatch, Json, Path, RequestId, Written, etag};
use crate::state::ApiState;

/// A tenant's device settings.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceSettingsDto {
    /// Networks (CIDRs) the tenant's devices may be in although a default rule refuses them:
    /// loopback, link-local, unspecified and multicast addresses are refused unless listed
    /// here. Private and public addresses need no entry; the platform's own service
    /// endpoints are refused whatever this says.
    pub allowed_networks: Vec<String>,
    /// Whether, in production, devices may be registered with the plain API (the password
    /// and every reply in clear text). Outside production plain is always allowed.
    pub allow_plain_transport: bool,
    /// The tenant's version (its `ETag`).
    pub version: u64,
    /// The events a write appended (absent on reads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<Written>>,
}

/// Device settings to set (the whole set).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceSettingsBody {
    /// CIDRs (`127.0.0.0/8`, `fe80::/10`, a bare address for one host), at most 64.
    #[serde(default)]
    pub allowed_networks: Vec<String>,
    /// Allow the plain API in production (default false).
    #[serde(default)]
    pub allow_plain_transport: bool,
}

fn visible(p: &Principal, id: Uuid) -> ApiResult<TenantId> {
    let tenant = TenantId::from_uuid(id);
    if tenant != p.tenant && !p.can(Permission::TenantsAdmin) {
        return Err(ApiError::not_found(format!("tenant {id}")));
    }
    Ok(tenant)
}

fn dto(s: &TenantDeviceSettingsSet, version: u64, events: Option<Vec<Written>>) -> Response {
    (
        etag(version),
        Json(DeviceSettingsDto {
            allowed_networks: s.allowed_networks.iter().map(|c| c.to_string()).collect(),
            allow_plain_transport: s.allow_plain_transport,
            version,
            events,
        }),
    )
        .into_response()
}

/// Read a tenant's device settings (your own; any for a super admin).
#[utoipa::path(
    get,
    path = "/tenants/{tenant_id}/device-settings",
    operation_id = "get_device_settings",
    tag = "tenants",
    security(("bearer" = ["tenants:read"])),
    params(("tenant_id" = Uuid, Path, description = "Tenant id.")),
    responses(
        (status = 200, description = "The settings; `ETag` is the tenant's version.", body = DeviceSettingsDto),
        (status = 404, response = NotFound),
    )
)]
pub async fn get_device_settings(
    State(state): State<ApiState>,
    auth: Require<perm::TenantsRead>,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    let tenant = visible(auth.principal(), id)?;
    let mut tx = netledger_store::begin_tenant(&state.pools().app, tenant).await?;
    let version: Option<(i64,)> = sqlx::query_as("SELECT version FROM tenants WHERE id = $1")
        .bind(tenant.as_uuid())
        .fetch_optional(&mut *tx)
        .await?;
    let Some((version,)) = version else {
        return Err(ApiError::not_found(format!("tenant {tenant}")));
    };
    let settings = netledger_store::devices::settings::device_settings(&mut tx, tenant).await?;
    tx.commit().await?;
    Ok(dto(&settings, u64::try_from(version).unwrap_or(0), None))
}

/// Set a tenant's device settings (`If-Match` with the tenant's ETag is optional). The new
/// networks apply to registrations and host changes at once, and to connections as the
/// poller and the workers next load the device.
#[utoipa::path(
    put,
    path = "/tenants/{tenant_id}/device-settings",
    operation_id = "set_device_settings",
    tag = "tenants",
    security(("bearer" = ["tenants:write"])),
    params(
        ("tenant_id" = Uuid, Path, description = "Tenant id."),
        ("If-Match" = Option<String>, Header, description = "The tenant's ETag, or `*` (optional)."),
    ),
    request_body = DeviceSettingsBody,
    responses(
        (status = 200, description = "Set (no events when unchanged).", body = DeviceSettingsDto),
        (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed),
        (status = 422, response = Validation),
    )
)]
pub async fn set_device_settings(
    State(state): State<ApiState>,
    auth: Require<perm::TenantsWrite>,
    rid: RequestId,
    Path(id): Path<Uuid>,
    if_match: Option<IfMatch>,
    Json(body): Json<DeviceSettingsBody>,
) -> ApiResult<Response> {
    let p = auth.principal();
    let tenant = visible(p, id)?;
    let allowed_networks = body
        .allowed_networks
        .iter()
        .map(|c| {
            netledger_domain::device::network::Cidr::parse(c)
                .map_err(|e| ApiError::validation(e.to_string()))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let mut tx = netledger_store::begin_tenant(&state.pools().app, tenant).await?;
    let row: Option<(String, i64)> =
        sqlx::query_as("SELECT name, version FROM tenants WHERE id = $1 FOR UPDATE")
            .bind(tenant.as_uuid())
            .fetch_optional(&mut *tx)
            .await?;
    let Some((name, version)) = row else {
        return Err(ApiError::not_found(format!("tenant {tenant}")));
    };
    let version = u64::try_from(version).unwrap_or(0);
    if let Some(m) = if_match {
        m.check(version)?;
    }
    let current = Tenant {
        profile: Some(TenantProfile {
            id: tenant,
            name: DisplayName::parse(&name)
                .map_err(|e| ApiError::internal(format!("stored name of tenant {tenant}: {e}")))?,
        }),
        version,
        device_settings: netledger_store::devices::settings::device_settings(&mut tx, tenant)
            .await?,
        ..Tenant::default()
    };
    let events = current
        .decide(&TenantCommand::SetDeviceSettings(TenantDeviceSettingsSet {
            allowed_networks,
            allow_plain_transport: body.allow_plain_transport,
        }))
        .map_err(|r| crate::accounts::tenant_refused(tenant, r))?;
    let mut after = current;
    for e in &events {
        after.evolve(e);
    }
    if events.is_empty() {
        tx.commit().await?;
        return Ok(dto(&after.device_settings, after.version, Some(Vec::new())));
    }
    let stream = crate::accounts::stream_or_500(tenant_stream(tenant))?;
    let w = crate::accounts::append_tx(
        &mut tx,
        tenant,
        &stream,
        ExpectedVersion::Exact(version),
        &events,
        &rid.metadata(p.actor()),
    )
    .await?;
    crate::accounts::sync_tenant_version(&mut tx, tenant, &w).await?;
    tx.commit().await?;
    tracing::info!(%tenant, networks = ?after.device_settings.allowed_networks, allow_plain_transport = after.device_settings.allow_plain_transport, "tenant device settings set");
    Ok(dto(&after.device_settings, w.stream_version, Some(vec![w])))
}

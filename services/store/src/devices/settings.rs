//! The tenant's device settings as its stream has them (the last `TenantDeviceSettingsSet`
//! of `tenant-<id>`; the default when there is none): read by the API when it checks a
//! device's host, and by the poller and the netops workers before they connect.

use netledger_domain::TenantId;
use netledger_domain::device::network::DeviceNetworkPolicy;
use netledger_domain::identity::tenant::TenantDeviceSettingsSet;
use netledger_domain::identity::tenant_stream;
use sqlx::PgConnection;

use crate::error::StoreError;

/// The tenant's device settings, read over `conn` (a transaction scoped to `tenant`).
pub async fn device_settings(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<TenantDeviceSettingsSet, StoreError> {
    let stream = tenant_stream(tenant).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let row: Option<(i64, serde_json::Value)> = sqlx::query_as(
        "SELECT position, payload FROM events WHERE tenant_id = $1 AND stream = $2 \
         AND event_type = $3 ORDER BY version DESC LIMIT 1",
    )
    .bind(tenant.as_uuid())
    .bind(stream.as_str())
    .bind(<TenantDeviceSettingsSet as netledger_domain::EventType>::TYPE)
    .fetch_optional(conn)
    .await
    .map_err(StoreError::db("read tenant device settings"))?;
    match row {
        None => Ok(TenantDeviceSettingsSet::default()),
        Some((position, payload)) => {
            serde_json::from_value(payload).map_err(|e| StoreError::Corrupt {
                position,
                detail: format!("TenantDeviceSettingsSet: {e}"),
            })
        }
    }
}

/// The network policy for `tenant`'s devices: the tenant's allowed networks plus the
/// operator's (`extra_allowed`), and the platform's service endpoints.
pub async fn network_policy(
    conn: &mut PgConnection,
    tenant: TenantId,
    base: &DeviceNetworkPolicy,
) -> Result<DeviceNetworkPolicy, StoreError> {
    let settings = device_settings(conn, tenant).await?;
    Ok(base.clone().allowing(settings.allowed_networks.to_vec()))
}

/// [`network_policy`] over a connection of `pool` (the poller's system pool).
pub async fn network_policy_in_pool(
    pool: &sqlx::PgPool,
    tenant: TenantId,
    base: &DeviceNetworkPolicy,
) -> Result<DeviceNetworkPolicy, StoreError> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(StoreError::db("acquire a connection"))?;
    network_policy(&mut conn, tenant, base).await
}

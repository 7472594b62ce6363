//! The firmware cache's tenancy: where a tenant's packages live
//! (`<cache>/tenants/<tenant>/<version>/<file>`, written only by that tenant's uploads) and
//! which package a tenant pinned: the last `FirmwarePackageCached` of `(version, file)` on its
//! own `firmware-<version>` stream, whose SHA-256 a workflow checks the cached file against
//! before it lets a device fetch and install it. One tenant can neither see nor replace
//! another's packages.

use std::path::{Path, PathBuf};

use netledger_domain::TenantId;
use netledger_domain::firmware::FirmwarePackageCached;
use sqlx::PgConnection;

use crate::error::StoreError;

/// The tenant's part of the firmware cache under `root`.
pub fn tenant_dir(root: &Path, tenant: TenantId) -> PathBuf {
    root.join("tenants").join(tenant.as_uuid().to_string())
}

/// The package the tenant's own events pinned for `version`/`file_name` (its last upload),
/// read over `conn` (a transaction scoped to `tenant`).
pub async fn pinned(
    conn: &mut PgConnection,
    tenant: TenantId,
    version: &str,
    file_name: &str,
) -> Result<Option<FirmwarePackageCached>, StoreError> {
    let row: Option<(i64, serde_json::Value)> = sqlx::query_as(
        "SELECT position, payload FROM events WHERE tenant_id = $1 AND stream = $2 \
         AND event_type = $3 AND payload->>'file_name' = $4 ORDER BY version DESC LIMIT 1",
    )
    .bind(tenant.as_uuid())
    .bind(format!("firmware-{version}"))
    .bind(<FirmwarePackageCached as netledger_domain::EventType>::TYPE)
    .bind(file_name)
    .fetch_optional(conn)
    .await
    .map_err(StoreError::db("read firmware pin"))?;
    row.map(|(position, payload)| {
        serde_json::from_value(payload).map_err(|e| StoreError::Corrupt {
            position,
            detail: format!("FirmwarePackageCached: {e}"),
        })
    })
    .transpose()
}

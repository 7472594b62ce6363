//! A device's config versions, newest first (`rm_config_versions`).

use netledger_domain::{DeviceId, TenantId, WorkflowId};
use netledger_store::begin_tenant;
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Page, decode_err, limit_of, next_page, numeric_cursor, text_enum};
use crate::error::ProjectionError;

/// Whether a config version is a snapshot or detected drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigVersionKind {
    /// `ConfigSnapshotRecorded`.
    Snapshot,
    /// `ConfigDriftDetected`.
    Drift,
}

/// One stored config version of a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigVersion {
    /// Version of the recording event in the device's stream (the page order, newest first).
    pub stream_version: i64,
    /// Global position of the recording event.
    pub position: i64,
    /// Snapshot or drift.
    pub kind: ConfigVersionKind,
    /// Git commit holding the config.
    pub commit: String,
    /// SHA-256 of the stored file.
    pub sha256: String,
    /// Whether the content differs from the previous snapshot (always true for drift).
    pub changed: bool,
    /// Snapshot reason (`initial`, `scheduled`, `on_demand`, `pre_push`, `post_push`,
    /// `drift`), or `drift` for detected drift.
    pub reason: String,
    /// RouterOS version the export came from (snapshots).
    pub routeros_version: Option<String>,
    /// The workflow that took the snapshot, if any.
    pub workflow_id: Option<WorkflowId>,
    /// Drift: the SHA-256 the device was expected to match.
    pub expected_sha256: Option<String>,
    /// When it was recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
}

/// Filters and page of a device's config versions. Order: newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigVersionQuery {
    /// Only versions whose content changed.
    #[serde(default)]
    pub changed_only: bool,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: Option<i64>,
}

/// A page of one device's config versions, newest first.
pub async fn config_versions(
    app: &PgPool,
    tenant: TenantId,
    device: DeviceId,
    q: &ConfigVersionQuery,
) -> Result<Page<ConfigVersion>, ProjectionError> {
    let limit = limit_of(q.limit);
    let before = numeric_cursor(&q.cursor)?.unwrap_or(i64::MAX);
    let mut tx = begin_tenant(app, tenant).await?;
    let rows = sqlx::query(
        "SELECT stream_version, position, kind, commit, sha256, changed, reason, \
                routeros_version, workflow_id, expected_sha256, recorded_at \
         FROM rm_config_versions \
         WHERE tenant_id = $1 AND device_id = $2 AND stream_version < $3 AND (NOT $4 OR changed) \
         ORDER BY stream_version DESC LIMIT $5",
    )
    .bind(tenant.as_uuid())
    .bind(device.as_uuid())
    .bind(before)
    .bind(q.changed_only)
    .bind(limit + 1)
    .fetch_all(&mut *tx)
    .await
    .map_err(ProjectionError::db("list config versions"))?;
    tx.commit().await.map_err(ProjectionError::db("end read"))?;
    let e = decode_err("decode config version");
    let mut items = Vec::with_capacity(rows.len());
    for r in &rows {
        let workflow: Option<Uuid> = r.try_get("workflow_id").map_err(&e)?;
        items.push(ConfigVersion {
            stream_version: r.try_get("stream_version").map_err(&e)?,
            position: r.try_get("position").map_err(&e)?,
            kind: text_enum(r.try_get("kind").map_err(&e)?)?,
            commit: r.try_get("commit").map_err(&e)?,
            sha256: r.try_get("sha256").map_err(&e)?,
            changed: r.try_get("changed").map_err(&e)?,
            reason: r.try_get("reason").map_err(&e)?,
            routeros_version: r.try_get("routeros_version").map_err(&e)?,
            workflow_id: workflow.map(WorkflowId::from_uuid),
            expected_sha256: r.try_get("expected_sha256").map_err(&e)?,
            recorded_at: r.try_get("recorded_at").map_err(&e)?,
        });
    }
    let next_cursor = next_page(&mut items, limit, |v| v.stream_version.to_string());
    Ok(Page { items, next_cursor })
}

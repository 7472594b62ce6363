//! Rollouts, their progress and their devices (`rm_rollouts`, `rm_rollout_devices`).

use netledger_domain::workflow::{Outcome, RolloutState};
use netledger_domain::{DeviceId, RolloutId, TenantId, WorkflowId};
use netledger_store::begin_tenant;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Page, decode_err, limit_of, next_page, numeric_cursor, text_enum, u32_of};
use crate::error::ProjectionError;

/// What a rollout deploys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutTargetKind {
    /// A RouterOS script pushed with the two-phase push.
    ChangeSet,
    /// A RouterOS version.
    Firmware,
}

/// How far a rollout has got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutProgress {
    /// Devices in the rollout (canaries included).
    pub total: u32,
    /// Canary devices.
    pub canaries: u32,
    /// Devices finished (any outcome).
    pub finished: u32,
    /// Devices not finished yet.
    pub pending: u32,
    /// Finished `succeeded` or `committed`.
    pub succeeded: u32,
    /// Finished `failed`.
    pub failed: u32,
    /// Finished `rolled_back`.
    pub rolled_back: u32,
    /// Finished `cancelled`.
    pub cancelled: u32,
    /// Batch of the device that finished last (0 = canaries).
    pub current_batch: Option<u32>,
}

/// A rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    /// Rollout id.
    pub id: RolloutId,
    /// Operator-facing name.
    pub name: String,
    /// What it deploys.
    pub target_kind: RolloutTargetKind,
    /// Target RouterOS version (firmware rollouts).
    pub target_version: Option<String>,
    /// Its state.
    pub state: RolloutState,
    /// Why it is in that state.
    pub reason: Option<String>,
    /// The workflow driving it.
    pub workflow_id: WorkflowId,
    /// Devices per batch.
    pub batch_size: u32,
    /// Devices worked on at once.
    pub parallelism: u32,
    /// Failures at which it halts.
    pub failure_threshold: u32,
    /// Whether a halt rolls back changed devices.
    pub rollback_on_halt: bool,
    /// Progress.
    pub progress: RolloutProgress,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Time of its latest event.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When it completed, was cancelled or halted.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

/// One device of a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutDevice {
    /// The device.
    pub device_id: DeviceId,
    /// Its place (canaries first).
    pub ord: u32,
    /// Its batch (0 = canaries).
    pub batch: u32,
    /// How its workflow ended; `None` while pending.
    pub outcome: Option<Outcome>,
    /// Its workflow, once finished.
    pub workflow_id: Option<WorkflowId>,
    /// When it finished.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

/// Filters and page of the rollout list. Order: newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RolloutQuery {
    /// Only rollouts in this state.
    pub state: Option<RolloutState>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: Option<i64>,
}

/// Page of a rollout's devices. Order: canaries first, then the devices in rollout order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutDeviceQuery {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: Option<i64>,
}

const ROLLOUT_COLUMNS: &str = "rollout_id, name, target_kind, target_version, state, reason, \
    workflow_id, batch_size, parallelism, failure_threshold, rollback_on_halt, total_devices, \
    canaries, finished, succeeded, failed, rolled_back, cancelled, current_batch, created_at, \
    updated_at, finished_at, created_position";

fn rollout(r: &PgRow) -> Result<(Rollout, i64), ProjectionError> {
    let e = decode_err("decode rollout");
    let total = u32_of(r.try_get("total_devices").map_err(&e)?);
    let finished = u32_of(r.try_get("finished").map_err(&e)?);
    let current_batch: Option<i32> = r.try_get("current_batch").map_err(&e)?;
    Ok((
        Rollout {
            id: RolloutId::from_uuid(r.try_get("rollout_id").map_err(&e)?),
            name: r.try_get("name").map_err(&e)?,
            target_kind: text_enum(r.try_get("target_kind").map_err(&e)?)?,
            target_version: r.try_get("target_version").map_err(&e)?,
            state: text_enum(r.try_get("state").map_err(&e)?)?,
            reason: r.try_get("reason").map_err(&e)?,
            workflow_id: WorkflowId::from_uuid(r.try_get("workflow_id").map_err(&e)?),
            batch_size: u32_of(r.try_get("batch_size").map_err(&e)?),
            parallelism: u32_of(r.try_get("parallelism").map_err(&e)?),
            failure_threshold: u32_of(r.try_get("failure_threshold").map_err(&e)?),
            rollback_on_halt: r.try_get("rollback_on_halt").map_err(&e)?,
            progress: RolloutProgress {
                total,
                canaries: u32_of(r.try_get("canaries").map_err(&e)?),
                finished,
                pending: total.saturating_sub(finished),
                succeeded: u32_of(r.try_get("succeeded").map_err(&e)?),
                failed: u32_of(r.try_get("failed").map_err(&e)?),
                rolled_back: u32_of(r.try_get("rolled_back").map_err(&e)?),
                cancelled: u32_of(r.try_get("cancelled").map_err(&e)?),
                current_batch: current_batch.map(u32_of),
            },
            created_at: r.try_get("created_at").map_err(&e)?,
            updated_at: r.try_get("updated_at").map_err(&e)?,
            finished_at: r.try_get("finished_at").map_err(&e)?,
        },
        r.try_get("created_position").map_err(&e)?,
    ))
}

/// A page of rollouts, newest first.
pub async fn list_rollouts(
    app: &PgPool,
    tenant: TenantId,
    q: &RolloutQuery,
) -> Result<Page<Rollout>, ProjectionError> {
    let limit = limit_of(q.limit);
    let before = numeric_cursor(&q.cursor)?.unwrap_or(i64::MAX);
    let state = q.state.map(|s| crate::projectors::enum_text(&s));
    let sql = if state.is_some() {
        format!(
            "SELECT {ROLLOUT_COLUMNS} FROM rm_rollouts \
             WHERE tenant_id = $1 AND state = $3 AND created_position < $2 \
             ORDER BY state, created_position DESC LIMIT $4"
        )
    } else {
        format!(
            "SELECT {ROLLOUT_COLUMNS} FROM rm_rollouts \
             WHERE tenant_id = $1 AND created_position < $2 AND ($3::text IS NULL) \
             ORDER BY created_position DESC LIMIT $4"
        )
    };
    let mut tx = begin_tenant(app, tenant).await?;
    let rows = sqlx::query(&sql)
        .bind(tenant.as_uuid())
        .bind(before)
        .bind(state)
        .bind(limit + 1)
        .fetch_all(&mut *tx)
        .await
        .map_err(ProjectionError::db("list rollouts"))?;
    tx.commit().await.map_err(ProjectionError::db("end read"))?;
    let mut items = rows.iter().map(rollout).collect::<Result<Vec<_>, _>>()?;
    let next_cursor = next_page(&mut items, limit, |(_, p)| p.to_string());
    Ok(Page {
        items: items.into_iter().map(|(r, _)| r).collect(),
        next_cursor,
    })
}

/// One rollout with its progress, or `None`.
pub async fn rollout_detail(
    app: &PgPool,
    tenant: TenantId,
    id: RolloutId,
) -> Result<Option<Rollout>, ProjectionError> {
    let mut tx = begin_tenant(app, tenant).await?;
    let row = sqlx::query(&format!(
        "SELECT {ROLLOUT_COLUMNS} FROM rm_rollouts WHERE tenant_id = $1 AND rollout_id = $2"
    ))
    .bind(tenant.as_uuid())
    .bind(id.as_uuid())
    .fetch_optional(&mut *tx)
    .await
    .map_err(ProjectionError::db("read rollout"))?;
    tx.commit().await.map_err(ProjectionError::db("end read"))?;
    row.as_ref()
        .map(rollout)
        .transpose()
        .map(|r| r.map(|(r, _)| r))
}

/// A page of a rollout's devices, in rollout order.
pub async fn rollout_devices(
    app: &PgPool,
    tenant: TenantId,
    id: RolloutId,
    q: &RolloutDeviceQuery,
) -> Result<Page<RolloutDevice>, ProjectionError> {
    let limit = limit_of(q.limit);
    let after = numeric_cursor(&q.cursor)?.unwrap_or(-1);
    let after = i32::try_from(after).map_err(|_| ProjectionError::BadCursor {
        cursor: after.to_string(),
    })?;
    let mut tx = begin_tenant(app, tenant).await?;
    let rows = sqlx::query(
        "SELECT device_id, ord, batch, outcome, workflow_id, finished_at \
         FROM rm_rollout_devices WHERE tenant_id = $1 AND rollout_id = $2 AND ord > $3 \
         ORDER BY ord LIMIT $4",
    )
    .bind(tenant.as_uuid())
    .bind(id.as_uuid())
    .bind(after)
    .bind(limit + 1)
    .fetch_all(&mut *tx)
    .await
    .map_err(ProjectionError::db("list rollout devices"))?;
    tx.commit().await.map_err(ProjectionError::db("end read"))?;
    let e = decode_err("decode rollout device");
    let mut items = Vec::with_capacity(rows.len());
    for r in &rows {
        let outcome: Option<String> = r.try_get("outcome").map_err(&e)?;
        let workflow: Option<Uuid> = r.try_get("workflow_id").map_err(&e)?;
        items.push(RolloutDevice {
            device_id: DeviceId::from_uuid(r.try_get("device_id").map_err(&e)?),
            ord: u32_of(r.try_get("ord").map_err(&e)?),
            batch: u32_of(r.try_get("batch").map_err(&e)?),
            outcome: outcome.map(text_enum).transpose()?,
            workflow_id: workflow.map(WorkflowId::from_uuid),
            finished_at: r.try_get("finished_at").map_err(&e)?,
        });
    }
    let next_cursor = next_page(&mut items, limit, |d| d.ord.to_string());
    Ok(Page { items, next_cursor })
}

//! Workflow runs and their steps (`rm_workflow_runs`, `rm_workflow_devices`, `rm_workflow_steps`).

use netledger_domain::workflow::{FailureClass, Outcome};
use netledger_domain::{DeviceId, RolloutId, TenantId, WorkflowId};
use netledger_store::begin_tenant;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Page, decode_err, limit_of, next_page, numeric_cursor, text_enum, u32_of};
use crate::error::ProjectionError;

/// Where a workflow run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowRunState {
    /// Steps are running.
    Running,
    /// Waiting for a timer.
    Waiting,
    /// A step failed and will be retried at `wake_at`.
    Retrying,
    /// Finished: done.
    Succeeded,
    /// Finished: the change took effect and its safety net was disarmed.
    Committed,
    /// Finished: the device was brought back to its snapshot.
    RolledBack,
    /// Finished: cancelled.
    Cancelled,
    /// Finished: failed.
    Failed,
}

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Started, no outcome yet.
    Running,
    /// Completed.
    Completed,
    /// Failed; another attempt is due at `retry_at`.
    Retrying,
    /// Failed for good.
    Failed,
}

/// A workflow run in a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRun {
    /// Workflow id.
    pub id: WorkflowId,
    /// Definition name.
    pub kind: String,
    /// Definition version.
    pub definition_version: u32,
    /// Where it is.
    pub state: WorkflowRunState,
    /// How it ended, once finished.
    pub outcome: Option<Outcome>,
    /// Why, for anything but success.
    pub reason: Option<String>,
    /// Devices it touches.
    pub devices: Vec<DeviceId>,
    /// The rollout that started it.
    pub rollout_id: Option<RolloutId>,
    /// The step running now.
    pub current_step: Option<String>,
    /// Step completions so far.
    pub steps_completed: u32,
    /// Failed step attempts so far.
    pub failed_attempts: u32,
    /// The last step error.
    pub last_error: Option<String>,
    /// When it wakes up (timer or retry).
    #[serde(with = "time::serde::rfc3339::option")]
    pub wake_at: Option<OffsetDateTime>,
    /// The last signal delivered.
    pub last_signal: Option<String>,
    /// Idempotency key it was started with.
    pub idempotency_key: Option<String>,
    /// When it started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When it finished.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// Time of its latest journal event.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowStep {
    /// Step name.
    pub step: String,
    /// Display order (journal version of its first start).
    pub seq: i64,
    /// Where it is.
    pub state: StepState,
    /// Attempts made.
    pub attempts: u32,
    /// First start.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// Completion or final failure.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// The last error.
    pub last_error: Option<String>,
    /// Class of the last failure.
    pub failure_class: Option<FailureClass>,
    /// When the next attempt is due.
    #[serde(with = "time::serde::rfc3339::option")]
    pub retry_at: Option<OffsetDateTime>,
}

/// A run with its input, output and steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRunDetail {
    /// The run.
    pub run: WorkflowRun,
    /// The input it was started with.
    pub input: serde_json::Value,
    /// The definition's result, once finished.
    pub output: Option<serde_json::Value>,
    /// Its steps in order.
    pub steps: Vec<WorkflowStep>,
}

/// Filters and page of the run list. Order: newest first (by start).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRunQuery {
    /// Only runs touching this device.
    pub device: Option<DeviceId>,
    /// Only runs of this definition.
    pub kind: Option<String>,
    /// Only runs in this state.
    pub state: Option<WorkflowRunState>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: Option<i64>,
}

const RUN_COLUMNS: &str = "r.workflow_id, r.kind, r.definition_version, r.state, r.outcome, \
    r.reason, r.devices, r.rollout_id, r.current_step, r.steps_completed, r.failed_attempts, \
    r.last_error, r.wake_at, r.last_signal, r.idempotency_key, r.started_at, r.finished_at, \
    r.updated_at, r.started_position";

fn workflow_run(r: &PgRow) -> Result<(WorkflowRun, i64), ProjectionError> {
    let e = decode_err("decode workflow run");
    let outcome: Option<String> = r.try_get("outcome").map_err(&e)?;
    let devices: Vec<Uuid> = r.try_get("devices").map_err(&e)?;
    let rollout: Option<Uuid> = r.try_get("rollout_id").map_err(&e)?;
    Ok((
        WorkflowRun {
            id: WorkflowId::from_uuid(r.try_get("workflow_id").map_err(&e)?),
            kind: r.try_get("kind").map_err(&e)?,
            definition_version: u32_of(r.try_get("definition_version").map_err(&e)?),
            state: text_enum(r.try_get("state").map_err(&e)?)?,
            outcome: outcome.map(text_enum).transpose()?,
            reason: r.try_get("reason").map_err(&e)?,
            devices: devices.into_iter().map(DeviceId::from_uuid).collect(),
            rollout_id: rollout.map(RolloutId::from_uuid),
            current_step: r.try_get("current_step").map_err(&e)?,
            steps_completed: u32_of(r.try_get("steps_completed").map_err(&e)?),
            failed_attempts: u32_of(r.try_get("failed_attempts").map_err(&e)?),
            last_error: r.try_get("last_error").map_err(&e)?,
            wake_at: r.try_get("wake_at").map_err(&e)?,
            last_signal: r.try_get("last_signal").map_err(&e)?,
            idempotency_key: r.try_get("idempotency_key").map_err(&e)?,
            started_at: r.try_get("started_at").map_err(&e)?,
            finished_at: r.try_get("finished_at").map_err(&e)?,
            updated_at: r.try_get("updated_at").map_err(&e)?,
        },
        r.try_get("started_position").map_err(&e)?,
    ))
}

/// A page of workflow runs, newest first.
pub async fn list_workflow_runs(
    app: &PgPool,
    tenant: TenantId,
    q: &WorkflowRunQuery,
) -> Result<Page<WorkflowRun>, ProjectionError> {
    let limit = limit_of(q.limit);
    let before = numeric_cursor(&q.cursor)?.unwrap_or(i64::MAX);
    let state = q.state.map(|s| crate::projectors::enum_text(&s));
    let residual = "($3::text IS NULL OR r.kind = $3) AND ($4::text IS NULL OR r.state = $4)";
    let sql = if q.device.is_some() {
        format!(
            "SELECT {RUN_COLUMNS} FROM rm_workflow_devices w \
             JOIN rm_workflow_runs r ON r.tenant_id = w.tenant_id AND r.workflow_id = w.workflow_id \
             WHERE w.tenant_id = $1 AND w.device_id = $5 AND w.started_position < $2 \
               AND {residual} \
             ORDER BY w.started_position DESC LIMIT $6"
        )
    } else if q.kind.is_some() {
        format!(
            "SELECT {RUN_COLUMNS} FROM rm_workflow_runs r \
             WHERE r.tenant_id = $1 AND r.kind = $3 AND r.started_position < $2 AND {residual} \
               AND ($5::uuid IS NULL) \
             ORDER BY r.kind, r.started_position DESC LIMIT $6"
        )
    } else if q.state.is_some() {
        format!(
            "SELECT {RUN_COLUMNS} FROM rm_workflow_runs r \
             WHERE r.tenant_id = $1 AND r.state = $4 AND r.started_position < $2 AND {residual} \
               AND ($5::uuid IS NULL) \
             ORDER BY r.state, r.started_position DESC LIMIT $6"
        )
    } else {
        format!(
            "SELECT {RUN_COLUMNS} FROM rm_workflow_runs r \
             WHERE r.tenant_id = $1 AND r.started_position < $2 AND {residual} \
               AND ($5::uuid IS NULL) \
             ORDER BY r.started_position DESC LIMIT $6"
        )
    };
    let mut tx = begin_tenant(app, tenant).await?;
    let rows = sqlx::query(&sql)
        .bind(tenant.as_uuid())
        .bind(before)
        .bind(q.kind.as_deref())
        .bind(state)
        .bind(q.device.map(|d| *d.as_uuid()))
        .bind(limit + 1)
        .fetch_all(&mut *tx)
        .await
        .map_err(ProjectionError::db("list workflow runs"))?;
    tx.commit().await.map_err(ProjectionError::db("end read"))?;
    let mut items = rows
        .iter()
        .map(workflow_run)
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = next_page(&mut items, limit, |(_, p)| p.to_string());
    Ok(Page {
        items: items.into_iter().map(|(r, _)| r).collect(),
        next_cursor,
    })
}

/// The steps of one run, in order (empty if there is no such run).
pub async fn workflow_steps(
    app: &PgPool,
    tenant: TenantId,
    workflow: WorkflowId,
) -> Result<Vec<WorkflowStep>, ProjectionError> {
    let mut tx = begin_tenant(app, tenant).await?;
    let steps = read_steps(&mut tx, tenant, workflow).await?;
    tx.commit().await.map_err(ProjectionError::db("end read"))?;
    Ok(steps)
}

async fn read_steps(
    conn: &mut sqlx::PgConnection,
    tenant: TenantId,
    workflow: WorkflowId,
) -> Result<Vec<WorkflowStep>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT step, seq, state, attempts, started_at, finished_at, last_error, failure_class, \
                retry_at \
         FROM rm_workflow_steps WHERE tenant_id = $1 AND workflow_id = $2 ORDER BY seq, step",
    )
    .bind(tenant.as_uuid())
    .bind(workflow.as_uuid())
    .fetch_all(conn)
    .await
    .map_err(ProjectionError::db("list workflow steps"))?;
    let e = decode_err("decode workflow step");
    let mut steps = Vec::with_capacity(rows.len());
    for r in &rows {
        let class: Option<String> = r.try_get("failure_class").map_err(&e)?;
        steps.push(WorkflowStep {
            step: r.try_get("step").map_err(&e)?,
            seq: r.try_get("seq").map_err(&e)?,
            state: text_enum(r.try_get("state").map_err(&e)?)?,
            attempts: u32_of(r.try_get("attempts").map_err(&e)?),
            started_at: r.try_get("started_at").map_err(&e)?,
            finished_at: r.try_get("finished_at").map_err(&e)?,
            last_error: r.try_get("last_error").map_err(&e)?,
            failure_class: class.map(text_enum).transpose()?,
            retry_at: r.try_get("retry_at").map_err(&e)?,
        });
    }
    Ok(steps)
}

/// One run with its input, output and steps, or `None`.
pub async fn workflow_run_detail(
    app: &PgPool,
    tenant: TenantId,
    workflow: WorkflowId,
) -> Result<Option<WorkflowRunDetail>, ProjectionError> {
    let mut tx = begin_tenant(app, tenant).await?;
    let row = sqlx::query(&format!(
        "SELECT {RUN_COLUMNS}, r.input::text AS input_text, r.output::text AS output_text \
         FROM rm_workflow_runs r WHERE r.tenant_id = $1 AND r.workflow_id = $2"
    ))
    .bind(tenant.as_uuid())
    .bind(workflow.as_uuid())
    .fetch_optional(&mut *tx)
    .await
    .map_err(ProjectionError::db("read workflow run"))?;
    let Some(row) = row else {
        tx.commit().await.map_err(ProjectionError::db("end read"))?;
        return Ok(None);
    };
    let steps = read_steps(&mut tx, tenant, workflow).await?;
    tx.commit().await.map_err(ProjectionError::db("end read"))?;
    let e = decode_err("decode workflow run");
    let json = |text: String| {
        serde_json::from_str::<serde_json::Value>(&text).map_err(|err| ProjectionError::Database {
            operation: "decode workflow run json",
            source: sqlx::Error::Decode(Box::new(err)),
        })
    };
    let input: String = row.try_get("input_text").map_err(&e)?;
    let output: Option<String> = row.try_get("output_text").map_err(&e)?;
    Ok(Some(WorkflowRunDetail {
        run: workflow_run(&row)?.0,
        input: json(input)?,
        output: output.map(json).transpose()?,
        steps,
    }))
}

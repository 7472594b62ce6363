//! `/api/v1/workflows` and `/api/v1/rollouts`: runs, their steps, rollouts and their
//! progress (read models).

use axum::extract::State;
use netledger_domain::{DeviceId, RolloutId, WorkflowId};
use netledger_projections::query;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Require;
use crate::authz::perm;
use crate::error::{ApiError, ApiResult, BadRequest, NotFound};
use crate::http::{Json, Path, Query};
use crate::routes::devices::{enum_text, unwrap_cursor, wrap_cursor};
use crate::state::ApiState;

pub(crate) fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_workflows))
        .routes(routes!(get_workflow))
        .routes(routes!(list_workflow_steps))
        .routes(routes!(list_rollouts))
        .routes(routes!(get_rollout))
        .routes(routes!(list_rollout_devices))
}

fn parse_enum<T: serde::de::DeserializeOwned>(field: &str, s: &str, known: &str) -> ApiResult<T> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| ApiError::bad_request(format!("{field} `{s}` is unknown: use {known}")))
}

/// A workflow run.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkflowRunDto {
    /// Id.
    pub id: Uuid,
    /// Definition (`backup`, `config_push`, `firmware_upgrade`, `rollout`, …).
    pub kind: String,
    /// Definition version.
    pub definition_version: u32,
    /// `running`, `waiting`, `retrying`, `succeeded`, `committed`, `rolled_back`,
    /// `cancelled` or `failed`.
    pub state: String,
    /// How it ended.
    pub outcome: Option<String>,
    /// Why it ended that way.
    pub reason: Option<String>,
    /// Devices it touches.
    pub devices: Vec<Uuid>,
    /// The rollout that started it.
    pub rollout_id: Option<Uuid>,
    /// Step running now.
    pub current_step: Option<String>,
    /// Steps completed.
    pub steps_completed: u32,
    /// Failed attempts so far.
    pub failed_attempts: u32,
    /// Last error.
    pub last_error: Option<String>,
    /// When it wakes (timer or retry).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub wake_at: Option<OffsetDateTime>,
    /// Last signal received.
    pub last_signal: Option<String>,
    /// The idempotency key it was started with.
    pub idempotency_key: Option<String>,
    /// Started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// Finished.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<query::WorkflowRun> for WorkflowRunDto {
    fn from(r: query::WorkflowRun) -> Self {
        Self {
            id: *r.id.as_uuid(),
            kind: r.kind,
            definition_version: r.definition_version,
            state: enum_text(&r.state),
            outcome: r.outcome.as_ref().map(enum_text),
            reason: r.reason,
            devices: r.devices.iter().map(|d| *d.as_uuid()).collect(),
            rollout_id: r.rollout_id.map(|x| *x.as_uuid()),
            current_step: r.current_step,
            steps_completed: r.steps_completed,
            failed_attempts: r.failed_attempts,
            last_error: r.last_error,
            wake_at: r.wake_at,
            last_signal: r.last_signal,
            idempotency_key: r.idempotency_key,
            started_at: r.started_at,
            finished_at: r.finished_at,
            updated_at: r.updated_at,
        }
    }
}

/// One step of a run.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkflowStepDto {
    /// Step name.
    pub step: String,
    /// Order of first start.
    pub seq: i64,
    /// `running`, `completed`, `retrying` or `failed`.
    pub state: String,
    /// Attempts.
    pub attempts: u32,
    /// First started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// Finished.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// Last error.
    pub last_error: Option<String>,
    /// `retryable` or `fatal`.
    pub failure_class: Option<String>,
    /// Next attempt.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub retry_at: Option<OffsetDateTime>,
}

impl From<query::WorkflowStep> for WorkflowStepDto {
    fn from(s: query::WorkflowStep) -> Self {
        Self {
            step: s.step,
            seq: s.seq,
            state: enum_text(&s.state),
            attempts: s.attempts,
            started_at: s.started_at,
            finished_at: s.finished_at,
            last_error: s.last_error,
            failure_class: s.failure_class.as_ref().map(enum_text),
            retry_at: s.retry_at,
        }
    }
}

/// A run with its input, output and steps.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkflowRunDetailDto {
    /// The run.
    pub run: WorkflowRunDto,
    /// Its input.
    #[schema(value_type = Object)]
    pub input: serde_json::Value,
    /// Its output, once finished.
    #[schema(value_type = Option<Object>)]
    pub output: Option<serde_json::Value>,
    /// Steps in order.
    pub steps: Vec<WorkflowStepDto>,
}

/// A page of runs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkflowRunPage {
    /// Runs, newest first.
    pub items: Vec<WorkflowRunDto>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Filters of the run list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WorkflowListQuery {
    /// Only runs touching this device.
    pub device_id: Option<Uuid>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this state.
    pub state: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Runs per page (default 50, at most 500).
    pub limit: Option<u32>,
}

/// List workflow runs, newest first.
#[utoipa::path(
    get,
    path = "/workflows",
    operation_id = "list_workflows",
    tag = "workflows",
    security(("bearer" = ["workflows:read"])),
    params(WorkflowListQuery),
    responses((status = 200, description = "A page of runs.", body = WorkflowRunPage), (status = 400, response = BadRequest))
)]
pub async fn list_workflows(
    State(state): State<ApiState>,
    auth: Require<perm::WorkflowsRead>,
    Query(q): Query<WorkflowListQuery>,
) -> ApiResult<Json<WorkflowRunPage>> {
    let run_state = q
        .state
        .as_deref()
        .map(|s| {
            parse_enum(
                "state",
                s,
                "running, waiting, retrying, succeeded, committed, rolled_back, cancelled or failed",
            )
        })
        .transpose()?;
    let page = query::list_workflow_runs(
        &state.pools().app,
        auth.principal().tenant,
        &query::WorkflowRunQuery {
            device: q.device_id.map(DeviceId::from_uuid),
            kind: q.kind,
            state: run_state,
            cursor: unwrap_cursor(&q.cursor)?,
            limit: q.limit.map(i64::from),
        },
    )
    .await?;
    Ok(Json(WorkflowRunPage {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: wrap_cursor(page.next_cursor),
    }))
}

/// Inspect a workflow run: input, output and steps.
#[utoipa::path(
    get,
    path = "/workflows/{workflow_id}",
    operation_id = "get_workflow",
    tag = "workflows",
    security(("bearer" = ["workflows:read"])),
    params(("workflow_id" = Uuid, Path, description = "Workflow id.")),
    responses(
        (status = 200, description = "The run.", body = WorkflowRunDetailDto),
        (status = 404, response = NotFound),
    )
)]
pub async fn get_workflow(
    State(state): State<ApiState>,
    auth: Require<perm::WorkflowsRead>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<WorkflowRunDetailDto>> {
    let d = query::workflow_run_detail(
        &state.pools().app,
        auth.principal().tenant,
        WorkflowId::from_uuid(id),
    )
    .await?
    .ok_or_else(|| ApiError::not_found(format!("workflow {id}")))?;
    Ok(Json(WorkflowRunDetailDto {
        run: d.run.into(),
        input: d.input,
        output: d.output,
        steps: d.steps.into_iter().map(Into::into).collect(),
    }))
}

/// A run's steps.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkflowStepList {
    /// Steps in order.
    pub items: Vec<WorkflowStepDto>,
}

/// A workflow run's steps, in order.
#[utoipa::path(
    get,
    path = "/workflows/{workflow_id}/steps",
    operation_id = "list_workflow_steps",
    tag = "workflows",
    security(("bearer" = ["workflows:read"])),
    params(("workflow_id" = Uuid, Path, description = "Workflow id.")),
    responses(
        (status = 200, description = "The steps.", body = WorkflowStepList),
        (status = 404, response = NotFound),
    )
)]
pub async fn list_workflow_steps(
    State(state): State<ApiState>,
    auth: Require<perm::WorkflowsRead>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<WorkflowStepList>> {
    let tenant = auth.principal().tenant;
    let wf = WorkflowId::from_uuid(id);
    let d = query::workflow_run_detail(&state.pools().app, tenant, wf)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("workflow {id}")))?;
    Ok(Json(WorkflowStepList {
        items: d.steps.into_iter().map(Into::into).collect(),
    }))
}

// ---- rollouts ------------------------------------------------------------------------------

/// Counts of a rollout's devices.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RolloutProgressDto {
    /// Devices in it.
    pub total: u32,
    /// Canaries among them.
    pub canaries: u32,
    /// Finished, whatever the outcome.
    pub finished: u32,
    /// Not finished.
    pub pending: u32,
    /// Succeeded or committed.
    pub succeeded: u32,
    /// Failed.
    pub failed: u32,
    /// Rolled back.
    pub rolled_back: u32,
    /// Cancelled.
    pub cancelled: u32,
    /// Batch in progress (0 = canaries).
    pub current_batch: Option<u32>,
}

/// A rollout.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RolloutDto {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// `change_set` or `firmware`.
    pub target_kind: String,
    /// Target RouterOS version (firmware rollouts).
    pub target_version: Option<String>,
    /// `running`, `paused`, `halted`, `cancelled` or `completed`.
    pub state: String,
    /// Why it is in that state.
    pub reason: Option<String>,
    /// The workflow driving it.
    pub workflow_id: Uuid,
    /// Devices per batch.
    pub batch_size: u32,
    /// Devices at once within a batch.
    pub parallelism: u32,
    /// Failures at which it halts.
    pub failure_threshold: u32,
    /// Whether a halt rolls back changed devices.
    pub rollback_on_halt: bool,
    /// Progress.
    pub progress: RolloutProgressDto,
    /// Created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Finished.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

impl From<query::Rollout> for RolloutDto {
    fn from(r: query::Rollout) -> Self {
        let p = r.progress;
        Self {
            id: *r.id.as_uuid(),
            name: r.name,
            target_kind: enum_text(&r.target_kind),
            target_version: r.target_version,
            state: enum_text(&r.state),
            reason: r.reason,
            workflow_id: *r.workflow_id.as_uuid(),
            batch_size: r.batch_size,
            parallelism: r.parallelism,
            failure_threshold: r.failure_threshold,
            rollback_on_halt: r.rollback_on_halt,
            progress: RolloutProgressDto {
                total: p.total,
                canaries: p.canaries,
                finished: p.finished,
                pending: p.pending,
                succeeded: p.succeeded,
                failed: p.failed,
                rolled_back: p.rolled_back,
                cancelled: p.cancelled,
                current_batch: p.current_batch,
            },
            created_at: r.created_at,
            updated_at: r.updated_at,
            finished_at: r.finished_at,
        }
    }
}

/// A page of rollouts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RolloutPage {
    /// Rollouts, newest first.
    pub items: Vec<RolloutDto>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Filters of the rollout list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RolloutListQuery {
    /// Only this state.
    pub state: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Rollouts per page (default 50, at most 500).
    pub limit: Option<u32>,
}

/// List rollouts, newest first.
#[utoipa::path(
    get,
    path = "/rollouts",
    operation_id = "list_rollouts",
    tag = "rollouts",
    security(("bearer" = ["rollouts:read"])),
    params(RolloutListQuery),
    responses((status = 200, description = "A page of rollouts.", body = RolloutPage), (status = 400, response = BadRequest))
)]
pub async fn list_rollouts(
    State(state): State<ApiState>,
    auth: Require<perm::RolloutsRead>,
    Query(q): Query<RolloutListQuery>,
) -> ApiResult<Json<RolloutPage>> {
    let rollout_state = q
        .state
        .as_deref()
        .map(|s| {
            parse_enum(
                "state",
                s,
                "running, paused, halted, cancelled or completed",
            )
        })
        .transpose()?;
    let page = query::list_rollouts(
        &state.pools().app,
        auth.principal().tenant,
        &query::RolloutQuery {
            state: rollout_state,
            cursor: unwrap_cursor(&q.cursor)?,
            limit: q.limit.map(i64::from),
        },
    )
    .await?;
    Ok(Json(RolloutPage {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: wrap_cursor(page.next_cursor),
    }))
}

/// A rollout and its progress.
#[utoipa::path(
    get,
    path = "/rollouts/{rollout_id}",
    operation_id = "get_rollout",
    tag = "rollouts",
    security(("bearer" = ["rollouts:read"])),
    params(("rollout_id" = Uuid, Path, description = "Rollout id.")),
    responses(
        (status = 200, description = "The rollout.", body = RolloutDto),
        (status = 404, response = NotFound),
    )
)]
pub async fn get_rollout(
    State(state): State<ApiState>,
    auth: Require<perm::RolloutsRead>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<RolloutDto>> {
    let r = query::rollout_detail(
        &state.pools().app,
        auth.principal().tenant,
        RolloutId::from_uuid(id),
    )
    .await?
    .ok_or_else(|| ApiError::not_found(format!("rollout {id}")))?;
    Ok(Json(r.into()))
}

/// One device of a rollout.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RolloutDeviceDto {
    /// Device.
    pub device_id: Uuid,
    /// Order in the rollout.
    pub ord: u32,
    /// Batch (0 = canaries).
    pub batch: u32,
    /// How its workflow ended.
    pub outcome: Option<String>,
    /// Its workflow.
    pub workflow_id: Option<Uuid>,
    /// Finished.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

/// A page of a rollout's devices.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RolloutDevicePage {
    /// Devices in rollout order.
    pub items: Vec<RolloutDeviceDto>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A rollout's devices and their outcomes.
#[utoipa::path(
    get,
    path = "/rollouts/{rollout_id}/devices",
    operation_id = "list_rollout_devices",
    tag = "rollouts",
    security(("bearer" = ["rollouts:read"])),
    params(("rollout_id" = Uuid, Path, description = "Rollout id."), crate::http::PageParams),
    responses(
        (status = 200, description = "A page of devices.", body = RolloutDevicePage),
        (status = 404, response = NotFound),
    )
)]
pub async fn list_rollout_devices(
    State(state): State<ApiState>,
    auth: Require<perm::RolloutsRead>,
    Path(id): Path<Uuid>,
    Query(q): Query<crate::http::PageParams>,
) -> ApiResult<Json<RolloutDevicePage>> {
    let tenant = auth.principal().tenant;
    let rid = RolloutId::from_uuid(id);
    query::rollout_detail(&state.pools().app, tenant, rid)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("rollout {id}")))?;
    let page = query::rollout_devices(
        &state.pools().app,
        tenant,
        rid,
        &query::RolloutDeviceQuery {
            cursor: unwrap_cursor(&q.cursor)?,
            limit: q.limit.map(i64::from),
        },
    )
    .await?;
    Ok(Json(RolloutDevicePage {
        items: page
            .items
            .into_iter()
            .map(|d| RolloutDeviceDto {
                device_id: *d.device_id.as_uuid(),
                ord: d.ord,
                batch: d.batch,
                outcome: d.outcome.as_ref().map(enum_text),
                workflow_id: d.workflow_id.map(|w| *w.as_uuid()),
                finished_at: d.finished_at,
            })
            .collect(),
        next_cursor: wrap_cursor(page.next_cursor),
    }))
}

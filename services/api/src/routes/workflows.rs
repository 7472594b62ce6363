//! `/api/v1/workflows` and `/api/v1/rollouts`: runs, their steps, rollouts and their
//! progress (read models).

use axum::extract::State;
use netledger_domain::workflow::card::{self, WorkflowCard};
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
use crate::error::{
    ApiError, ApiResult, BadRequest, Conflict, IdempotencyKeyReused, NotFound, Unavailable,
    Validation,
};
use crate::http::{IdempotencyKey, Json, Path, Query, RequestId, Written};
use crate::routes::devices::{unwrap_cursor, wrap_cursor};
use crate::state::ApiState;

pub(crate) fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_workflows))
        .routes(routes!(get_workflow))
        .routes(routes!(list_workflow_steps))
        .routes(routes!(start_backup))
        .routes(routes!(start_config_push))
        .routes(routes!(start_firmware_upgrade))
        .routes(routes!(cancel_workflow))
        .routes(routes!(list_rollouts, create_rollout))
        .routes(routes!(get_rollout))
        .routes(routes!(list_rollout_devices))
        .routes(routes!(pause_rollout))
        .routes(routes!(resume_rollout))
        .routes(routes!(cancel_rollout))
}

fn parse_enum<T: serde::de::DeserializeOwned>(field: &str, s: &str, known: &str) -> ApiResult<T> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| ApiError::bad_request(format!("{field} `{s}` is unknown: use {known}")))
}

/// A workflow's kind: one per workflow card (`netledger_domain::workflow::card`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowKind {
    /// Export of a device's configuration into the config history.
    Backup,
    /// The run of an approved change request (window, rollout, outcome).
    ChangeRequest,
    /// Two-phase config push to one device.
    ConfigPush,
    /// Restore of a device to its configuration before a committed push.
    ConfigRestore,
    /// RouterOS upgrade of one device.
    FirmwareUpgrade,
    /// Fleet rollout of a change set or a firmware version.
    Rollout,
}

impl WorkflowKind {
    /// Every kind.
    pub const ALL: [WorkflowKind; 6] = [
        Self::Backup,
        Self::ChangeRequest,
        Self::ConfigPush,
        Self::ConfigRestore,
        Self::FirmwareUpgrade,
        Self::Rollout,
    ];

    /// The card's kind name (`WorkflowStarted.kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backup => card::Backup::KIND,
            Self::ChangeRequest => card::ChangeRun::KIND,
            Self::ConfigPush => card::ConfigPush::KIND,
            Self::ConfigRestore => card::ConfigRestore::KIND,
            Self::FirmwareUpgrade => card::FirmwareUpgrade::KIND,
            Self::Rollout => card::Rollout::KIND,
        }
    }

    /// The kind named `kind`, if a card has it.
    pub fn parse(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == kind)
    }
}

/// A workflow run.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkflowRunDto {
    /// Id.
    pub id: Uuid,
    /// Definition.
    pub kind: WorkflowKind,
    /// Definition version.
    pub definition_version: u32,
    /// `running`, `waiting`, `retrying`, `succeeded`, `committed`, `rolled_back`,
    /// `cancelled` or `failed`.
    pub state: query::WorkflowRunState,
    /// How it ended.
    pub outcome: Option<netledger_domain::workflow::Outcome>,
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

impl TryFrom<query::WorkflowRun> for WorkflowRunDto {
    type Error = ApiError;

    /// Fails (a server error) for a run of a kind no card names.
    fn try_from(r: query::WorkflowRun) -> ApiResult<Self> {
        let kind = WorkflowKind::parse(&r.kind).ok_or_else(|| {
            ApiError::internal(format!(
                "workflow {} has kind `{}`, which no workflow card names",
                r.id, r.kind
            ))
        })?;
        Ok(Self {
            id: *r.id.as_uuid(),
            kind,
            definition_version: r.definition_version,
            state: r.state,
            outcome: r.outcome,
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
        })
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
    pub state: query::StepState,
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
    pub failure_class: Option<netledger_domain::workflow::FailureClass>,
    /// Next attempt.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub retry_at: Option<OffsetDateTime>,
}

impl From<query::WorkflowStep> for WorkflowStepDto {
    fn from(s: query::WorkflowStep) -> Self {
        Self {
            step: s.step,
            seq: s.seq,
            state: s.state,
            attempts: s.attempts,
            started_at: s.started_at,
            finished_at: s.finished_at,
            last_error: s.last_error,
            failure_class: s.failure_class,
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
    pub kind: Option<WorkflowKind>,
    /// Only this state.
    #[param(value_type = Option<query::WorkflowRunState>)]
    pub state: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = r"^[0-9]{1,18}$")]
    pub cursor: Option<String>,
    /// Runs per page (default 50, at most 500).
    pub limit: Option<u32>,
    /// Read-your-writes: wait (bounded) until the workflow read model has passed this global
    /// position (a write's `last_position`).
    pub min_position: Option<i64>,
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
) -> ApiResult<(axum::http::HeaderMap, Json<WorkflowRunPage>)> {
    let behind = crate::http::read_your_writes(
        &state,
        &[netledger_projections::projector::WORKFLOWS],
        q.min_position,
    )
    .await?;
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
            kind: q.kind.map(|k| k.as_str().to_owned()),
            state: run_state,
            cursor: unwrap_cursor(&q.cursor)?,
            limit: q.limit.map(i64::from),
        },
    )
    .await?;
    Ok((
        behind,
        Json(WorkflowRunPage {
            items: page
                .items
                .into_iter()
                .map(TryInto::try_into)
                .collect::<ApiResult<_>>()?,
            next_cursor: wrap_cursor(page.next_cursor),
        }),
    ))
}

/// Inspect a workflow run: input, output and steps.
#[utoipa::path(
    get,
    path = "/workflows/{workflow_id}",
    operation_id = "get_workflow",
    tag = "workflows",
    security(("bearer" = ["workflows:read"])),
    params(("workflow_id" = Uuid, Path, description = "Workflow id."), crate::http::MinPosition),
    responses(
        (status = 200, description = "The run.", body = WorkflowRunDetailDto),
        (status = 404, response = NotFound),
    )
)]
pub async fn get_workflow(
    State(state): State<ApiState>,
    auth: Require<perm::WorkflowsRead>,
    Path(id): Path<Uuid>,
    Query(mp): Query<crate::http::MinPosition>,
) -> ApiResult<(axum::http::HeaderMap, Json<WorkflowRunDetailDto>)> {
    let behind = crate::http::read_your_writes(
        &state,
        &[netledger_projections::projector::WORKFLOWS],
        mp.min_position,
    )
    .await?;
    let d = query::workflow_run_detail(
        &state.pools().app,
        auth.principal().tenant,
        WorkflowId::from_uuid(id),
    )
    .await?
    .ok_or_else(|| ApiError::not_found(format!("workflow {id}")))?;
    Ok((
        behind,
        Json(WorkflowRunDetailDto {
            run: d.run.try_into()?,
            input: d.input,
            output: d.output,
            steps: d.steps.into_iter().map(Into::into).collect(),
        }),
    ))
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
    params(("workflow_id" = Uuid, Path, description = "Workflow id."), crate::http::MinPosition),
    responses(
        (status = 200, description = "The steps (`Netledger-Projection-Behind: true` when `min_position` was not reached in time).", body = WorkflowStepList),
        (status = 404, response = NotFound),
    )
)]
pub async fn list_workflow_steps(
    State(state): State<ApiState>,
    auth: Require<perm::WorkflowsRead>,
    Path(id): Path<Uuid>,
    Query(mp): Query<crate::http::MinPosition>,
) -> ApiResult<(axum::http::HeaderMap, Json<WorkflowStepList>)> {
    let behind = crate::http::read_your_writes(
        &state,
        &[netledger_projections::projector::WORKFLOWS],
        mp.min_position,
    )
    .await?;
    let tenant = auth.principal().tenant;
    let wf = WorkflowId::from_uuid(id);
    let d = query::workflow_run_detail(&state.pools().app, tenant, wf)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("workflow {id}")))?;
    Ok((
        behind,
        Json(WorkflowStepList {
            items: d.steps.into_iter().map(Into::into).collect(),
        }),
    ))
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
    pub target_kind: query::RolloutTargetKind,
    /// Target RouterOS version (firmware rollouts).
    pub target_version: Option<String>,
    /// `running`, `paused`, `halted`, `cancelled` or `completed`.
    pub state: netledger_domain::workflow::RolloutState,
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
            target_kind: r.target_kind,
            target_version: r.target_version,
            state: r.state,
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
    #[param(value_type = Option<netledger_domain::workflow::RolloutState>)]
    pub state: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = r"^[0-9]{1,18}$")]
    pub cursor: Option<String>,
    /// Rollouts per page (default 50, at most 500).
    pub limit: Option<u32>,
    /// Read-your-writes: wait (bounded) until the rollout read model has passed this global
    /// position (a write's `last_position`).
    pub min_position: Option<i64>,
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
) -> ApiResult<(axum::http::HeaderMap, Json<RolloutPage>)> {
    let behind = crate::http::read_your_writes(
        &state,
        &[netledger_projections::projector::ROLLOUTS],
        q.min_position,
    )
    .await?;
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
    Ok((
        behind,
        Json(RolloutPage {
            items: page.items.into_iter().map(Into::into).collect(),
            next_cursor: wrap_cursor(page.next_cursor),
        }),
    ))
}

/// A rollout and its progress.
#[utoipa::path(
    get,
    path = "/rollouts/{rollout_id}",
    operation_id = "get_rollout",
    tag = "rollouts",
    security(("bearer" = ["rollouts:read"])),
    params(("rollout_id" = Uuid, Path, description = "Rollout id."), crate::http::MinPosition),
    responses(
        (status = 200, description = "The rollout.", body = RolloutDto),
        (status = 404, response = NotFound),
    )
)]
pub async fn get_rollout(
    State(state): State<ApiState>,
    auth: Require<perm::RolloutsRead>,
    Path(id): Path<Uuid>,
    Query(mp): Query<crate::http::MinPosition>,
) -> ApiResult<(axum::http::HeaderMap, Json<RolloutDto>)> {
    let behind = crate::http::read_your_writes(
        &state,
        &[netledger_projections::projector::ROLLOUTS],
        mp.min_position,
    )
    .await?;
    let r = query::rollout_detail(
        &state.pools().app,
        auth.principal().tenant,
        RolloutId::from_uuid(id),
    )
    .await?
    .ok_or_else(|| ApiError::not_found(format!("rollout {id}")))?;
    Ok((behind, Json(r.into())))
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
    pub outcome: Option<netledger_domain::workflow::Outcome>,
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
    params(
        ("rollout_id" = Uuid, Path, description = "Rollout id."),
        crate::http::PositionPageParams,
        crate::http::MinPosition
    ),
    responses(
        (status = 200, description = "A page of devices (`Netledger-Projection-Behind: true` when `min_position` was not reached in time).", body = RolloutDevicePage),
        (status = 404, response = NotFound),
    )
)]
pub async fn list_rollout_devices(
    State(state): State<ApiState>,
    auth: Require<perm::RolloutsRead>,
    Path(id): Path<Uuid>,
    Query(q): Query<crate::http::PositionPageParams>,
    Query(mp): Query<crate::http::MinPosition>,
) -> ApiResult<(axum::http::HeaderMap, Json<RolloutDevicePage>)> {
    let behind = crate::http::read_your_writes(
        &state,
        &[netledger_projections::projector::ROLLOUTS],
        mp.min_position,
    )
    .await?;
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
    Ok((
        behind,
        Json(RolloutDevicePage {
            items: page
                .items
                .into_iter()
                .map(|d| RolloutDeviceDto {
                    device_id: *d.device_id.as_uuid(),
                    ord: d.ord,
                    batch: d.batch,
                    outcome: d.outcome,
                    workflow_id: d.workflow_id.map(|w| *w.as_uuid()),
                    finished_at: d.finished_at,
                })
                .collect(),
            next_cursor: wrap_cursor(page.next_cursor),
        }),
    ))
}

// ---- starting and stopping work ------------------------------------------------------------

/// A started workflow.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkflowStartedDto {
    /// The workflow (the earlier one when the Idempotency-Key was used before).
    pub workflow_id: Uuid,
    /// Whether the Idempotency-Key had already started it (nothing new was written).
    pub existed: bool,
    /// Whether it waits for a device another workflow owns.
    pub queued: bool,
    /// Its `WorkflowStarted` event.
    pub events: Vec<Written>,
}

/// A backup of one device.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupRequest {
    /// The device.
    pub device_id: Uuid,
}

/// A config push to one device (two-phase: snapshot, validate, arm rollback, apply, verify,
/// commit or roll back).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConfigPushRequest {
    /// The device.
    pub device_id: Uuid,
    /// The RouterOS script to apply (not only white space).
    #[schema(pattern = r"[^\s\x00]|[\x1c-\x1f]")]
    pub script: String,
    /// Change id carried onto the device (letters, digits, `-`, `_`; at most 64); generated
    /// when absent. The platform's generated forms are reserved (422): ids starting with
    /// `ro-`, `bk-`, `fw-`, `rs-`, `cr-` or ending with `-post` (case-insensitive).
    pub change_id: Option<String>,
    /// Push even when device-mode disables the scheduler (no device-side rollback timer).
    /// Needs the `workflows:without_timer` permission (403 without).
    #[serde(default)]
    pub allow_without_timer: bool,
}

/// A firmware upgrade of one device.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FirmwareUpgradeRequest {
    /// The device.
    pub device_id: Uuid,
    /// Target RouterOS version (`7.19.4`), present in the firmware cache.
    #[schema(
        max_length = 20,
        pattern = r"^[0-9]{1,4}(\.[0-9]{1,4}){1,3}((beta|rc)[0-9]{1,3})?$"
    )]
    pub version: String,
    /// Also upgrade the RouterBOARD firmware when it lags (a second reboot).
    #[serde(default)]
    pub routerboard: bool,
}

/// Starts card `C` for one device after checking the device exists in the tenant (from its
/// event stream, so a device registered a moment ago counts); the workflow owns the device.
async fn start_for_device<C: WorkflowCard>(
    state: &ApiState,
    p: &crate::auth::Principal,
    rid: RequestId,
    key: Option<String>,
    device: DeviceId,
    input: C::Input,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let s = state.devices()?.load(p.tenant, device).await?;
    if s.registration.is_none() || s.removed {
        return Err(ApiError::not_found(format!("device {device}")));
    }
    let mut options = netledger_engine::StartOptions::new(p.actor());
    options.correlation_id = Some(rid.0);
    if let Some(k) = key {
        options = options.idempotency_key(k);
    }
    let started = state.engine()?.start::<C>(p.tenant, input, options).await?;
    let stream = started.workflow_id.stream();
    let dto = WorkflowStartedDto {
        workflow_id: *started.workflow_id.as_uuid(),
        existed: started.existed,
        queued: started.queued,
        events: vec![Written {
            stream: stream.as_str().to_owned(),
            stream_version: 1,
            first_position: *started.positions.start(),
            last_position: *started.positions.end(),
        }],
    };
    let status = if started.existed {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::CREATED
    };
    Ok((status, Json(dto)).into_response())
}

/// Back up a device's configuration (export into the config history; binary backup kept
/// encrypted). Accepts `Idempotency-Key`: the same key gives the same workflow.
#[utoipa::path(
    post,
    path = "/workflows/backup",
    operation_id = "start_backup",
    tag = "workflows",
    security(("bearer" = ["workflows:run"])),
    params(("Idempotency-Key" = Option<String>, Header, description = "The same key (per tenant) gives the same workflow.")),
    request_body = BackupRequest,
    responses(
        (status = 201, description = "Started.", body = WorkflowStartedDto),
        (status = 200, description = "Already started with this Idempotency-Key.", body = WorkflowStartedDto),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = IdempotencyKeyReused),
        (status = 503, response = Unavailable),
    )
)]
pub async fn start_backup(
    State(state): State<ApiState>,
    auth: Require<perm::WorkflowsRun>,
    rid: RequestId,
    key: IdempotencyKey,
    Json(body): Json<BackupRequest>,
) -> ApiResult<axum::response::Response> {
    let device_id = DeviceId::from_uuid(body.device_id);
    start_for_device::<card::Backup>(
        &state,
        auth.principal(),
        rid,
        key.0,
        device_id,
        card::BackupInput { device_id },
    )
    .await
}

/// Push a config change to a device, two-phase with automatic rollback. Accepts
/// `Idempotency-Key`.
#[utoipa::path(
    post,
    path = "/workflows/config-push",
    operation_id = "start_config_push",
    tag = "workflows",
    security(("bearer" = ["workflows:run"])),
    params(("Idempotency-Key" = Option<String>, Header, description = "The same key (per tenant) gives the same workflow.")),
    request_body = ConfigPushRequest,
    responses(
        (status = 201, description = "Started.", body = WorkflowStartedDto),
        (status = 200, description = "Already started with this Idempotency-Key.", body = WorkflowStartedDto),
        (status = 403, description = "The tenant is change-controlled (`change_control: required`): open a change request instead; or the caller lacks the permission.", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Validation),
        (status = 503, response = Unavailable),
    )
)]
pub async fn start_config_push(
    State(state): State<ApiState>,
    auth: Require<perm::WorkflowsRun>,
    rid: RequestId,
    key: IdempotencyKey,
    Json(body): Json<ConfigPushRequest>,
) -> ApiResult<axum::response::Response> {
    if body.allow_without_timer {
        // Switching off the rollback timer is its own permission (tenant admins).
        auth.principal()
            .require(crate::authz::Permission::WorkflowsWithoutTimer)?;
    }
    crate::routes::changes::refuse_if_change_controlled(&state, auth.principal().tenant).await?;
    if body.script.trim().is_empty() {
        return Err(ApiError::validation("script is empty"));
    }
    let change_id = match body.change_id {
        // a user's id may not take a form the platform generates (rollout children, backups,
        // firmware, restores, change requests, post-change snapshots)
        Some(c) => netledger_changeplan::UserChangeId::parse(c)
            .map_err(|e| ApiError::validation(e.to_string()))?
            .into_string(),
        None => format!("chg-{}", Uuid::now_v7().simple()),
    };
    let device_id = DeviceId::from_uuid(body.device_id);
    // Journaled and shown masked; the real script is sealed for the push's steps.
    let script = crate::scripts::Accepted::of(&body.script)?;
    script.seal(&state, auth.principal().tenant).await?;
    let input = card::PushInput {
        device_id,
        change_id,
        script: script.masked,
        sealed_script: script.sealed,
        policy: None,
        checks: card::HealthChecks::default(),
        allow_without_timer: body.allow_without_timer,
    };
    start_for_device::<card::ConfigPush>(&state, auth.principal(), rid, key.0, device_id, input)
        .await
}

/// Upgrade a device's RouterOS from the firmware cache. Accepts `Idempotency-Key`.
#[utoipa::path(
    post,
    path = "/workflows/firmware-upgrade",
    operation_id = "start_firmware_upgrade",
    tag = "workflows",
    security(("bearer" = ["workflows:run"])),
    params(("Idempotency-Key" = Option<String>, Header, description = "The same key (per tenant) gives the same workflow.")),
    request_body = FirmwareUpgradeRequest,
    responses(
        (status = 201, description = "Started.", body = WorkflowStartedDto),
        (status = 200, description = "Already started with this Idempotency-Key.", body = WorkflowStartedDto),
        (status = 403, description = "The tenant is change-controlled (`change_control: required`): open a change request instead; or the caller lacks the permission.", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Validation),
        (status = 503, response = Unavailable),
    )
)]
pub async fn start_firmware_upgrade(
    State(state): State<ApiState>,
    auth: Require<perm::WorkflowsRun>,
    rid: RequestId,
    key: IdempotencyKey,
    Json(body): Json<FirmwareUpgradeRequest>,
) -> ApiResult<axum::response::Response> {
    crate::routes::changes::refuse_if_change_controlled(&state, auth.principal().tenant).await?;
    if !crate::routes::firmware::version_ok(&body.version) {
        return Err(ApiError::validation(format!(
            "version `{}` is not a RouterOS version like 7.19.4",
            body.version
        )));
    }
    let device_id = DeviceId::from_uuid(body.device_id);
    let input = card::FirmwareInput {
        device_id,
        version: body.version,
        routerboard: body.routerboard,
    };
    start_for_device::<card::FirmwareUpgrade>(
        &state,
        auth.principal(),
        rid,
        key.0,
        device_id,
        input,
    )
    .await
}

/// Why work is stopped.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct StopRequest {
    /// Recorded with the signal.
    pub reason: Option<String>,
}

/// A signal delivered to a workflow.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SignalledDto {
    /// The workflow that received it.
    pub workflow_id: Uuid,
    /// The `WorkflowSignalled` event.
    pub events: Vec<Written>,
}

pub(crate) async fn signalled(
    state: &ApiState,
    p: &crate::auth::Principal,
    wf: WorkflowId,
    position: i64,
) -> ApiResult<SignalledDto> {
    // The engine reports the position; the stream version comes from the event itself.
    let reader = netledger_store::EventReader::tenant(state.pools().app.clone(), p.tenant);
    let e = reader.read_all(position - 1, 1).await?;
    let version = e
        .first()
        .filter(|e| e.position == position)
        .map(|e| u64::try_from(e.version).unwrap_or(0))
        .unwrap_or(0);
    Ok(SignalledDto {
        workflow_id: *wf.as_uuid(),
        events: vec![Written {
            stream: wf.stream().as_str().to_owned(),
            stream_version: version,
            first_position: position,
            last_position: position,
        }],
    })
}

/// Cancel a running workflow (it unwinds: a push rolls back first).
#[utoipa::path(
    post,
    path = "/workflows/{workflow_id}/cancel",
    operation_id = "cancel_workflow",
    tag = "workflows",
    security(("bearer" = ["workflows:cancel"])),
    params(("workflow_id" = Uuid, Path, description = "Workflow id.")),
    request_body = StopRequest,
    responses(
        (status = 200, description = "The cancel signal was journaled.", body = SignalledDto),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
pub async fn cancel_workflow(
    State(state): State<ApiState>,
    auth: Require<perm::WorkflowsCancel>,
    Path(id): Path<Uuid>,
    Json(body): Json<StopRequest>,
) -> ApiResult<Json<SignalledDto>> {
    let p = auth.principal();
    let wf = WorkflowId::from_uuid(id);
    let reason = body
        .reason
        .unwrap_or_else(|| "cancelled through the API".to_owned());
    let position = state
        .engine()?
        .cancel(p.tenant, wf, &reason, p.actor())
        .await?;
    Ok(Json(signalled(&state, p, wf, position).await?))
}

// ---- rollouts: create and control ----------------------------------------------------------

/// What a rollout deploys.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RolloutTargetInput {
    /// `change_set` (a script pushed with the two-phase push) or `firmware`.
    #[schema(value_type = query::RolloutTargetKind)]
    pub kind: String,
    /// For `change_set`: the script.
    pub script: Option<String>,
    /// For `firmware`: the target version.
    pub version: Option<String>,
}

/// A rollout to create.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewRollout {
    /// Name: 1-200 characters, not only white space.
    #[schema(min_length = 1, max_length = 200, pattern = r"[^\s\x00]|[\x1c-\x1f]")]
    pub name: String,
    /// What it deploys.
    pub target: RolloutTargetInput,
    /// Canary devices, done first, one at a time (no device twice in `canaries` and
    /// `devices` together).
    #[serde(default)]
    pub canaries: Vec<Uuid>,
    /// The other devices, in order (with `canaries`, at least one).
    pub devices: Vec<Uuid>,
    /// Devices per batch (default 10).
    #[schema(minimum = 1)]
    pub batch_size: Option<u32>,
    /// Devices at once within a batch (default 1).
    #[schema(minimum = 1)]
    pub parallelism: Option<u32>,
    /// Failures at which it halts (default 1).
    #[schema(minimum = 1)]
    pub failure_threshold: Option<u32>,
    /// Whether a halt rolls back the devices already changed (default false).
    #[serde(default)]
    pub rollback_on_halt: bool,
}

/// A created rollout.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RolloutStartedDto {
    /// The rollout.
    pub rollout_id: Uuid,
    /// The workflow driving it.
    pub workflow_id: Uuid,
    /// Whether the Idempotency-Key had already created it.
    pub existed: bool,
    /// The driving workflow's `WorkflowStarted` (the workflow journals `RolloutCreated`).
    pub events: Vec<Written>,
}

/// Create a rollout: canaries first, then batches, halting at the failure threshold.
/// Accepts `Idempotency-Key`.
///
/// The API starts the `rollout` workflow with the rollout's definition as input
/// (`rollout_id`, `name`, `target`, `canaries`, `devices`, `batch_size`, `parallelism`,
/// `failure_threshold`, `rollback_on_halt`); the workflow journals `RolloutCreated`.
#[utoipa::path(
    post,
    path = "/rollouts",
    operation_id = "create_rollout",
    tag = "rollouts",
    security(("bearer" = ["rollouts:write"])),
    params(("Idempotency-Key" = Option<String>, Header, description = "The same key (per tenant) gives the same rollout.")),
    request_body = NewRollout,
    responses(
        (status = 201, description = "Created.", body = RolloutStartedDto),
        (status = 200, description = "Already created with this Idempotency-Key.", body = RolloutStartedDto),
        (status = 403, description = "The tenant is change-controlled (`change_control: required`): open a change request instead; or the caller lacks the permission.", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, response = NotFound),
        (status = 422, response = Validation),
        (status = 503, response = Unavailable),
    )
)]
pub async fn create_rollout(
    State(state): State<ApiState>,
    auth: Require<perm::RolloutsWrite>,
    rid: RequestId,
    key: IdempotencyKey,
    Json(body): Json<NewRollout>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let p = auth.principal();
    crate::routes::changes::refuse_if_change_controlled(&state, p.tenant).await?;
    let name = body.name.trim();
    if name.is_empty() || body.name.chars().count() > 200 {
        return Err(ApiError::validation("name: 1-200 characters"));
    }
    let target = match (
        body.target.kind.as_str(),
        &body.target.script,
        &body.target.version,
    ) {
        ("change_set", Some(script), None) if !script.trim().is_empty() => {
            // Journaled and shown masked; the real script is sealed for the pushes.
            let script = crate::scripts::Accepted::of(script)?;
            script.seal(&state, p.tenant).await?;
            netledger_domain::workflow::RolloutTarget::ChangeSet {
                script: script.masked,
                sealed_script: script.sealed,
            }
        }
        ("firmware", None, Some(v)) if crate::routes::firmware::version_ok(v) => {
            netledger_domain::workflow::RolloutTarget::Firmware { version: v.clone() }
        }
        _ => {
            return Err(ApiError::validation(
                "target is {kind: change_set, script} or {kind: firmware, version}",
            ));
        }
    };
    let mut all: Vec<Uuid> = body.canaries.clone();
    all.extend(&body.devices);
    if all.is_empty() {
        return Err(ApiError::validation("a rollout needs at least one device"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for d in &all {
        if !seen.insert(*d) {
            return Err(ApiError::validation(format!("device {d} is listed twice")));
        }
    }
    let batch_size = body.batch_size.unwrap_or(10);
    let parallelism = body.parallelism.unwrap_or(1);
    let failure_threshold = body.failure_threshold.unwrap_or(1);
    // The same check the rollout workflow makes at its start, so a refusal is a 422 here
    // rather than a failed workflow.
    netledger_domain::workflow::check_rollout(
        &target,
        batch_size,
        parallelism,
        failure_threshold,
        body.rollback_on_halt,
    )
    .map_err(|e| ApiError::validation(e.to_string()))?;
    let devices = state.devices()?;
    for d in &all {
        let s = devices.load(p.tenant, DeviceId::from_uuid(*d)).await?;
        if s.registration.is_none() || s.removed {
            return Err(ApiError::not_found(format!("device {d}")));
        }
    }
    let rollout = RolloutId::from_uuid(Uuid::now_v7());
    let input = card::RolloutInput {
        rollout_id: rollout,
        name: name.to_owned(),
        target,
        canaries: body
            .canaries
            .iter()
            .copied()
            .map(DeviceId::from_uuid)
            .collect(),
        devices: body
            .devices
            .iter()
            .copied()
            .map(DeviceId::from_uuid)
            .collect(),
        batch_size,
        parallelism,
        failure_threshold,
        rollback_on_halt: body.rollback_on_halt,
        policy: None,
        checks: card::HealthChecks::default(),
        routerboard: false,
        change_id: None,
        window_end: None,
        allow_without_timer: false,
    };
    let mut options = netledger_engine::StartOptions::new(p.actor()).rollout(rollout);
    options.correlation_id = Some(rid.0);
    if let Some(k) = key.0 {
        options = options.idempotency_key(k);
    }
    let started = state
        .engine()?
        .start::<card::Rollout>(p.tenant, input, options)
        .await?;
    // A replayed start belongs to the rollout of the first request.
    let rollout_id = if started.existed {
        rollout_of(&state, p, started.workflow_id)
            .await?
            .unwrap_or(*rollout.as_uuid())
    } else {
        *rollout.as_uuid()
    };
    let dto = RolloutStartedDto {
        rollout_id,
        workflow_id: *started.workflow_id.as_uuid(),
        existed: started.existed,
        events: vec![Written {
            stream: started.workflow_id.stream().as_str().to_owned(),
            stream_version: 1,
            first_position: *started.positions.start(),
            last_position: *started.positions.end(),
        }],
    };
    let status = if started.existed {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::CREATED
    };
    Ok((status, Json(dto)).into_response())
}

/// The rollout a rollout workflow was started for (its `WorkflowStarted.rollout_id`).
async fn rollout_of(
    state: &ApiState,
    p: &crate::auth::Principal,
    wf: WorkflowId,
) -> ApiResult<Option<Uuid>> {
    let reader = netledger_store::EventReader::tenant(state.pools().app.clone(), p.tenant);
    let first = reader
        .read_stream(&wf.stream(), 1, netledger_store::Direction::Forward, 1)
        .await?;
    Ok(first
        .first()
        .and_then(|e| {
            e.decode::<netledger_domain::workflow::WorkflowStarted>()
                .ok()
        })
        .and_then(|s| s.rollout_id)
        .map(|r| *r.as_uuid()))
}

/// The workflow driving a rollout: the `rollout` workflow started with its id (from the
/// workflow read model), or 404.
pub(crate) async fn rollout_workflow(
    state: &ApiState,
    p: &crate::auth::Principal,
    id: Uuid,
) -> ApiResult<WorkflowId> {
    if let Some(r) =
        query::rollout_detail(&state.pools().app, p.tenant, RolloutId::from_uuid(id)).await?
    {
        return Ok(r.workflow_id);
    }
    // Not projected yet: find the driving workflow's start in the event store.
    let mut tx = netledger_store::begin_tenant(&state.pools().app, p.tenant).await?;
    let found: Option<(String,)> = sqlx::query_as(
        "SELECT stream FROM events WHERE tenant_id = $1 AND category = 'workflow' \
         AND event_type = 'WorkflowStarted' AND payload::jsonb ->> 'rollout_id' = $2 \
         AND payload::jsonb ->> 'kind' = $3 ORDER BY position LIMIT 1",
    )
    .bind(p.tenant.as_uuid())
    .bind(id.to_string())
    .bind(card::Rollout::KIND)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    found
        .and_then(|(s,)| s.strip_prefix("workflow-").and_then(|w| w.parse().ok()))
        .ok_or_else(|| ApiError::not_found(format!("rollout {id}")))
}

async fn signal_rollout(
    state: &ApiState,
    p: &crate::auth::Principal,
    id: Uuid,
    signal: &str,
    reason: Option<String>,
) -> ApiResult<Json<SignalledDto>> {
    let wf = rollout_workflow(state, p, id).await?;
    let engine = state.engine()?;
    let position = match signal {
        "pause" => engine.pause(p.tenant, wf, p.actor()).await?,
        "resume" => engine.resume(p.tenant, wf, p.actor()).await?,
        _ => {
            let reason = reason.unwrap_or_else(|| "cancelled through the API".to_owned());
            engine.cancel(p.tenant, wf, &reason, p.actor()).await?
        }
    };
    Ok(Json(signalled(state, p, wf, position).await?))
}

/// Pause a rollout: no new device is started.
#[utoipa::path(
    post,
    path = "/rollouts/{rollout_id}/pause",
    operation_id = "pause_rollout",
    tag = "rollouts",
    security(("bearer" = ["rollouts:stop"])),
    params(("rollout_id" = Uuid, Path, description = "Rollout id.")),
    responses(
        (status = 200, description = "Paused.", body = SignalledDto),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
pub async fn pause_rollout(
    State(state): State<ApiState>,
    auth: Require<perm::RolloutsStop>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<SignalledDto>> {
    signal_rollout(&state, auth.principal(), id, "pause", None).await
}

/// Resume a paused or halted rollout (approval to continue).
#[utoipa::path(
    post,
    path = "/rollouts/{rollout_id}/resume",
    operation_id = "resume_rollout",
    tag = "rollouts",
    security(("bearer" = ["rollouts:approve"])),
    params(("rollout_id" = Uuid, Path, description = "Rollout id.")),
    responses(
        (status = 200, description = "Resumed.", body = SignalledDto),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
pub async fn resume_rollout(
    State(state): State<ApiState>,
    auth: Require<perm::RolloutsApprove>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<SignalledDto>> {
    signal_rollout(&state, auth.principal(), id, "resume", None).await
}

/// Cancel a rollout (devices in progress finish or roll back; no new device starts).
#[utoipa::path(
    post,
    path = "/rollouts/{rollout_id}/cancel",
    operation_id = "cancel_rollout",
    tag = "rollouts",
    security(("bearer" = ["rollouts:stop"])),
    params(("rollout_id" = Uuid, Path, description = "Rollout id.")),
    request_body = StopRequest,
    responses(
        (status = 200, description = "Cancelled.", body = SignalledDto),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
pub async fn cancel_rollout(
    State(state): State<ApiState>,
    auth: Require<perm::RolloutsStop>,
    Path(id): Path<Uuid>,
    Json(body): Json<StopRequest>,
) -> ApiResult<Json<SignalledDto>> {
    signal_rollout(&state, auth.principal(), id, "cancel", body.reason).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn every_card_has_a_workflow_kind_named_as_its_card() {
        let mut names: Vec<&str> = WorkflowKind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, card::KINDS);
        for k in WorkflowKind::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
            assert_eq!(WorkflowKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(WorkflowKind::parse("noop"), None);
    }
}

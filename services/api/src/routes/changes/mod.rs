//! `/api/v1/change-requests` and `/api/v1/tenants/{id}/change-policy`: change control
//! (issue #13), one file per concern: [`read`] (the list from the read model, one request
//! folded fresh from its stream `change-<id>`, its timeline), [`commands`] (create, edit,
//! submit, approve, reject, withdraw, start, cancel, continue), [`preview`] (per-device
//! diffs against the archived configuration) and [`policy`] (the tenant's change policy).
//!
//! Every command loads the stream, asks the aggregate
//! ([`netledger_domain::change::ChangeRequest`]) to decide, and appends what it decided at
//! the exact version it read, with the caller as actor and the request's id as correlation
//! id. A refusal is a problem ([`refused`]): an illegal transition is 409 naming the current
//! and the allowed states, the author's own approval 403, a second approval by the same
//! person 409, a validation 422, a stale `If-Match` 412.
//!
//! The shared parts are here: loading, appending, refusal mapping, the DTO, the gate that
//! refuses direct pushes in change-controlled tenants ([`refuse_if_change_controlled`]) and
//! starting the run ([`start_run`]).

pub mod commands;
pub mod dto;
pub mod policy;
pub mod preview;
pub mod read;

pub use commands::*;
pub use dto::*;
pub use policy::*;
pub use preview::*;
pub use read::*;

use std::collections::{BTreeMap, BTreeSet};

use netledger_domain::change::{
    ChangeAction, ChangeCommand, ChangeControl, ChangeEvent, ChangeRefusal, ChangeRequest,
    DevicePreviewSummary,
};
use netledger_domain::workflow::card::{self, ChangeRunAction, ChangeRunInput};
use netledger_domain::{
    Aggregate, ChangeRequestId, EventEnum, EventId, EventMetadata, ExpectedVersion, TenantId,
    WorkflowId,
};
use netledger_store::{Direction, EventReader};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Principal, Subject};
use crate::error::{ApiError, ApiResult, ViolationDto};
use crate::http::{RequestId, Written};
use crate::state::ApiState;

pub(crate) fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(
            read::list_change_requests,
            commands::create_change_request
        ))
        .routes(routes!(
            read::get_change_request,
            commands::edit_change_request
        ))
        .routes(routes!(
            preview::get_change_preview,
            preview::post_change_preview
        ))
        .routes(routes!(commands::submit_change_request))
        .routes(routes!(commands::approve_change_request))
        .routes(routes!(commands::reject_change_request))
        .routes(routes!(commands::withdraw_change_request))
        .routes(routes!(commands::start_change_request))
        .routes(routes!(commands::cancel_change_request))
        .routes(routes!(commands::continue_change_request))
        .routes(routes!(read::get_change_timeline))
        .routes(routes!(
            policy::get_change_policy,
            policy::set_change_policy
        ))
}

/// The detail of the 403 a change-controlled tenant answers direct pushes with.
pub const CHANGE_CONTROLLED: &str =
    "this tenant is change-controlled: open a change request (POST /api/v1/change-requests)";

/// 403 when the tenant requires change requests (`change_control: required`): direct config
/// pushes, firmware upgrades and rollouts are refused there; backups stay direct.
pub(crate) async fn refuse_if_change_controlled(
    state: &ApiState,
    tenant: TenantId,
) -> ApiResult<()> {
    let (policy, _) = crate::accounts::change_policy(state, tenant).await?;
    if policy.change_control == ChangeControl::Required {
        return Err(ApiError::forbidden_because(CHANGE_CONTROLLED));
    }
    Ok(())
}

/// The caller as the aggregate names people: the user's (or API key's) id as text.
pub(crate) fn who(p: &Principal) -> String {
    match &p.subject {
        Subject::User { id, .. } | Subject::ApiKey { id } => id.to_string(),
    }
}

/// A change request as its stream has it now, with the times the read needs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Loaded {
    /// The folded aggregate (`version` is the stream's version, the `ETag`).
    pub change: ChangeRequest,
    /// When it was created.
    pub created_at: Option<OffsetDateTime>,
    /// When its last event was recorded.
    pub updated_at: Option<OffsetDateTime>,
    /// Per approver and kind (retrospective or not): when they last approved.
    pub approved_at: BTreeMap<(String, bool), OffsetDateTime>,
    /// When the last rejection was recorded.
    pub rejected_at: Option<OffsetDateTime>,
    /// When its rollout started.
    pub started_at: Option<OffsetDateTime>,
}

/// Folds the stream `change-<id>` (404 when there is none in this tenant).
pub(crate) async fn load(state: &ApiState, tenant: TenantId, id: Uuid) -> ApiResult<Loaded> {
    let cid = ChangeRequestId::from_uuid(id);
    let stream = cid.stream();
    let reader = EventReader::tenant(state.pools().app.clone(), tenant);
    let mut out = Loaded::default();
    let mut next = 1u64;
    loop {
        let page = reader
            .read_stream(&stream, next, Direction::Forward, 500)
            .await?;
        let n = page.len();
        for e in &page {
            let event = ChangeEvent::decode(e).map_err(|err| {
                ApiError::internal(format!("decode {} of {stream}: {err}", e.event_type))
            })?;
            let at = e.recorded_at;
            out.created_at.get_or_insert(at);
            out.updated_at = Some(at);
            match &event {
                ChangeEvent::Approved(a) => {
                    out.approved_at.insert((a.by.clone(), a.retrospective), at);
                }
                ChangeEvent::Rejected(_) => out.rejected_at = Some(at),
                ChangeEvent::Started(_) => out.started_at = Some(at),
                _ => {}
            }
            out.change.evolve(&event);
        }
        if n < 500 {
            break;
        }
        next += 500;
    }
    if out.change.id.is_none() {
        return Err(ApiError::not_found(format!("change request {id}")));
    }
    Ok(out)
}

/// Decides `command` on the loaded request (a refusal becomes its problem).
pub(crate) fn decide(loaded: &Loaded, command: &ChangeCommand) -> ApiResult<Vec<ChangeEvent>> {
    loaded
        .change
        .decide(command)
        .map_err(|r| refused(r, &loaded.change.previews))
}

/// Appends `events` to the request's stream at exactly `expected` (`None`: a new stream),
/// as the caller, correlated by the request's id. Nothing to append writes nothing.
pub(crate) async fn append(
    state: &ApiState,
    p: &Principal,
    rid: RequestId,
    id: Uuid,
    expected: Option<u64>,
    events: &[ChangeEvent],
) -> ApiResult<Option<Written>> {
    if events.is_empty() {
        return Ok(None);
    }
    let stream = ChangeRequestId::from_uuid(id).stream();
    let meta = EventMetadata {
        actor: p.actor(),
        causation_id: rid.0,
        correlation_id: id,
    };
    let encoded = events
        .iter()
        .map(|e| {
            e.to_new_event(EventId::new_v7(), meta.clone())
                .map_err(|err| ApiError::internal(format!("build {}: {err}", e.event_type())))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let expected = match expected {
        Some(v) => ExpectedVersion::Exact(v),
        None => ExpectedVersion::NoStream,
    };
    let outcome = state
        .store()
        .append(p.tenant, &stream, expected, encoded)
        .await?;
    Ok(Some(Written::new(&stream, outcome)))
}

/// The problem a refusal answers with. `previews` names the violations of a policy refusal.
pub(crate) fn refused(r: ChangeRefusal, previews: &[DevicePreviewSummary]) -> ApiError {
    let detail = r.to_string();
    match r {
        ChangeRefusal::NotFound => ApiError::new(crate::ProblemKind::NotFound, detail),
        ChangeRefusal::AlreadyExists
        | ChangeRefusal::AlreadyApproved(_)
        | ChangeRefusal::AlreadyReviewed
        | ChangeRefusal::NotApproved { .. }
        | ChangeRefusal::NotPaused(_) => ApiError::conflict(detail),
        ChangeRefusal::IllegalTransition { state, allowed, .. } => ApiError::illegal_transition(
            detail,
            state.as_str(),
            allowed.iter().map(|s| s.as_str().to_owned()).collect(),
        ),
        ChangeRefusal::VersionMismatch { current } => ApiError::precondition_failed(current),
        ChangeRefusal::NotAuthor(_) | ChangeRefusal::OwnRequest(_) => {
            ApiError::forbidden_because(detail)
        }
        ChangeRefusal::Invalid(_) | ChangeRefusal::WindowEnded(_) => ApiError::validation(detail),
        ChangeRefusal::PolicyViolations { .. } => {
            ApiError::validation(detail).with_violations(violations_of(previews))
        }
    }
}

/// The devices with violations in `previews`.
pub(crate) fn violations_of(previews: &[DevicePreviewSummary]) -> Vec<ViolationDto> {
    previews
        .iter()
        .filter(|p| !p.violations.is_empty())
        .map(|p| ViolationDto {
            device_id: *p.device_id.as_uuid(),
            violations: p.violations.clone(),
        })
        .collect()
}

/// Whether an emergency request that ran waits for its review longer than the grace period.
pub(crate) fn review_overdue(state: &ApiState, loaded: &Loaded) -> bool {
    let grace =
        time::Duration::try_from(state.config().change_review_grace).unwrap_or(time::Duration::MAX);
    loaded.change.review_pending()
        && loaded
            .started_at
            .is_some_and(|at| state.now() - at >= grace)
}

/// Display names of users by id (ids that are not users, such as API keys, are left out).
pub(crate) async fn display_names(
    state: &ApiState,
    tenant: TenantId,
    ids: impl IntoIterator<Item = String>,
) -> ApiResult<BTreeMap<String, String>> {
    let ids: BTreeSet<Uuid> = ids.into_iter().filter_map(|s| s.parse().ok()).collect();
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let ids: Vec<Uuid> = ids.into_iter().collect();
    let mut tx = netledger_store::begin_tenant(&state.pools().app, tenant).await?;
    let rows: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT id, display_name FROM users WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(rows
        .into_iter()
        .map(|(id, name)| (id.to_string(), name))
        .collect())
}

/// The idempotency key of a request's run for its `submission`-th submission: a second start
/// (or the start after an approval that already started it) answers with the same workflow,
/// while a request edited and approved again gets a run of its own (a run started for an
/// earlier approval round may have ended, having found the request edited).
pub(crate) fn run_key(id: Uuid, submission: u32) -> String {
    format!("change:{id}:run:{submission}")
}

/// The run's workflow if one was started for the request (by its idempotency key).
pub(crate) async fn started_run(
    state: &ApiState,
    tenant: TenantId,
    id: Uuid,
    submission: u32,
) -> ApiResult<Option<WorkflowId>> {
    let mut tx = netledger_store::begin_tenant(&state.pools().app, tenant).await?;
    let row: Option<(Uuid,)> = sqlx::query_as(
        "SELECT workflow_id FROM workflow_tasks WHERE tenant_id = $1 AND idempotency_key = $2",
    )
    .bind(tenant.as_uuid())
    .bind(run_key(id, submission))
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row.map(|(w,)| WorkflowId::from_uuid(w)))
}

/// Starts (or finds) the request's run, the `change_request` workflow, asked for by `by`.
/// The API does not append `ChangeRequestScheduled`: the run's first step does.
pub(crate) async fn start_run(
    state: &ApiState,
    p: &Principal,
    id: Uuid,
    change: &ChangeRequest,
    by: String,
) -> ApiResult<netledger_engine::Started> {
    let content = change
        .content
        .as_ref()
        .ok_or_else(|| ApiError::internal(format!("change request {id} has no content")))?;
    let action = match &content.action {
        ChangeAction::Script { script } => ChangeRunAction::Script {
            script: script.clone(),
            sealed_script: change.sealed_script,
        },
        ChangeAction::Firmware {
            version,
            routerboard,
        } => ChangeRunAction::Firmware {
            version: version.clone(),
            routerboard: *routerboard,
        },
        ChangeAction::Restore { .. } => ChangeRunAction::Script {
            script: change.restore_script.clone().ok_or_else(|| {
                ApiError::conflict("the restore script was not frozen at submission; submit again")
            })?,
            // derived from the archive, whose exports are masked
            sealed_script: None,
        },
    };
    let input = ChangeRunInput {
        change_id: ChangeRequestId::from_uuid(id),
        name: content.title.clone(),
        devices: change.devices.clone(),
        action,
        plan: content.plan,
        window: content.window.clone(),
        allow_without_timer: content.overrides.allow_without_timer,
        // code on the device (scripts, hooks, files) only for an approved high-risk request
        // that accepted the preview's violations; never for a break-glass one
        elevated: content.risk == netledger_domain::change::RiskLevel::High
            && content.overrides.accept_policy_violations
            && !content.emergency,
        requested_by: by,
    };
    let mut options = netledger_engine::StartOptions::new(p.actor())
        .idempotency_key(run_key(id, change.submissions));
    options.correlation_id = Some(id);
    Ok(state
        .engine()?
        .start::<card::ChangeRun>(p.tenant, input, options)
        .await?)
}

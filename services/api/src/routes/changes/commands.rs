//! The commands of a change request: create, edit (PATCH with If-Match), submit, approve,
//! reject, withdraw, start, cancel and continue. Each loads the stream, decides with the
//! aggregate and appends at the version it read.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use netledger_domain::change::{
    By, ChangeAction, ChangeCommand, ChangeContent, ChangeRefusal, ChangeState,
};
use netledger_domain::workflow::card;
use netledger_domain::{Aggregate, ChangeRequestId, WorkflowId};
use uuid::Uuid;

use crate::auth::{Principal, Require, RequireAny};
use crate::authz::{Permission, perm};
use crate::error::{
    ApiError, ApiResult, Conflict, NotFound, PreconditionFailed, PreconditionRequired, Validation,
};
use crate::http::{IfMatch, Json, Path, RequestId, Written, etag};
use crate::routes::workflows::SignalledDto;
use crate::state::ApiState;

use super::dto::{
    ApproveBody, ApprovedDto, CancelledDto, ChangeRequestDto, ChangeRunStartedDto, ReasonBody,
    RejectBody,
};
use super::{Loaded, append, decide, load, refused, start_run, started_run, who};

/// The request after a write: 200 (or `status`) with its `ETag` and the events written.
async fn answer(
    state: &ApiState,
    p: &Principal,
    id: Uuid,
    written: Option<Written>,
    status: StatusCode,
) -> ApiResult<Response> {
    let loaded = load(state, p.tenant, id).await?;
    let dto = ChangeRequestDto::of(
        state,
        p.tenant,
        &loaded,
        Some(written.into_iter().collect()),
    )
    .await?;
    Ok((status, etag(dto.version), Json(dto)).into_response())
}

/// A request that switches off the rollback timer (`overrides.allow_without_timer`) needs
/// its author to hold `workflows:without_timer` (403 otherwise); approvers then accept it.
fn require_override_permissions(p: &Principal, content: &ChangeContent) -> ApiResult<()> {
    if content.overrides.allow_without_timer {
        p.require(Permission::WorkflowsWithoutTimer)?;
    }
    Ok(())
}

/// Decides `command` on the request and appends what it decided at the version read.
async fn command(
    state: &ApiState,
    p: &Principal,
    rid: RequestId,
    id: Uuid,
    make: impl FnOnce(&Loaded) -> ChangeCommand,
) -> ApiResult<(Loaded, Option<Written>)> {
    let loaded = load(state, p.tenant, id).await?;
    let cmd = make(&loaded);
    let events = decide(&loaded, &cmd)?;
    let written = append(state, p, rid, id, Some(loaded.change.version), &events).await?;
    Ok((loaded, written))
}

/// `content` with its script action's secret values masked, and the script as accepted
/// (`None` for other actions). `previous`: the stored masked script and its sealed id, for
/// an edit.
fn masked_content(
    mut content: ChangeContent,
    previous: Option<(&str, Option<Uuid>)>,
) -> ApiResult<(ChangeContent, Option<crate::scripts::Accepted>)> {
    let ChangeAction::Script { script } = &mut content.action else {
        return Ok((content, None));
    };
    let accepted = crate::scripts::Accepted::edited(script, previous)?;
    script.clone_from(&accepted.masked);
    Ok((content, Some(accepted)))
}

/// Create a change request (a draft).
#[utoipa::path(
    post,
    path = "/change-requests",
    operation_id = "create_change_request",
    tag = "changes",
    security(("bearer" = ["changes:write"])),
    request_body = ChangeContent,
    responses(
        (status = 201, description = "Created; `Location` names it, `ETag` is its version.", body = ChangeRequestDto),
        (status = 422, response = Validation),
    )
)]
pub async fn create_change_request(
    State(state): State<ApiState>,
    auth: Require<perm::ChangesWrite>,
    rid: RequestId,
    Json(content): Json<ChangeContent>,
) -> ApiResult<Response> {
    let p = auth.principal();
    require_override_permissions(p, &content)?;
    let id = Uuid::now_v7();
    let (content, script) = masked_content(content, None)?;
    let cmd = ChangeCommand::Create {
        id: ChangeRequestId::from_uuid(id),
        by: By::user(who(p)),
        content,
        sealed_script: script.as_ref().and_then(|s| s.sealed),
    };
    let events = netledger_domain::change::ChangeRequest::default()
        .decide(&cmd)
        .map_err(|r| refused(r, &[]))?;
    if let Some(s) = &script {
        s.seal(&state, p.tenant).await?;
    }
    let written = append(&state, p, rid, id, None, &events).await?;
    let mut res = answer(&state, p, id, written, StatusCode::CREATED).await?;
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/change-requests/{id}")) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// Edit a change request (its author; `If-Match` required). Allowed in draft, submitted,
/// approved and rejected; the request becomes a draft again and every approval it had is
/// invalidated (`ChangeRequestApprovalsInvalidated`).
#[utoipa::path(
    patch,
    path = "/change-requests/{change_request_id}",
    operation_id = "edit_change_request",
    tag = "changes",
    security(("bearer" = ["changes:write"])),
    params(
        ("change_request_id" = Uuid, Path, description = "Change request id."),
        ("If-Match" = String, Header, description = "The request's ETag, or `*`."),
    ),
    request_body = ChangeContent,
    responses(
        (status = 200, description = "Edited (a draft again).", body = ChangeRequestDto),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 412, response = PreconditionFailed),
        (status = 422, response = Validation),
        (status = 428, response = PreconditionRequired),
    )
)]
pub async fn edit_change_request(
    State(state): State<ApiState>,
    auth: Require<perm::ChangesWrite>,
    rid: RequestId,
    Path(id): Path<Uuid>,
    if_match: IfMatch,
    Json(content): Json<ChangeContent>,
) -> ApiResult<Response> {
    let p = auth.principal();
    require_override_permissions(p, &content)?;
    // The masked script sent back unchanged keeps the sealed script it stands for.
    let before = load(&state, p.tenant, id).await?;
    let previous = before
        .change
        .content
        .as_ref()
        .and_then(|c| match &c.action {
            ChangeAction::Script { script } => Some((script.as_str(), before.change.sealed_script)),
            _ => None,
        });
    let (content, script) = masked_content(content, previous)?;
    if let Some(s) = &script {
        s.seal(&state, p.tenant).await?;
    }
    let sealed_script = script.and_then(|s| s.sealed);
    let (_, written) = command(&state, p, rid, id, |_| ChangeCommand::Edit {
        by: By::user(who(p)),
        content,
        if_version: if_match.version(),
        sealed_script,
    })
    .await?;
    answer(&state, p, id, written, StatusCode::OK).await
}

/// Submit a change request for approval (its author): the target is resolved to devices
/// (frozen), each device previewed, the tenant's policy sets the approvals its risk needs.
/// Policy violations refuse it (422 listing them) unless it is `high` risk and accepts them.
#[utoipa::path(
    post,
    path = "/change-requests/{change_request_id}/submit",
    operation_id = "submit_change_request",
    tag = "changes",
    security(("bearer" = ["changes:write"])),
    params(("change_request_id" = Uuid, Path, description = "Change request id.")),
    responses(
        (status = 200, description = "Submitted.", body = ChangeRequestDto),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 412, response = PreconditionFailed),
        (status = 422, response = Validation),
    )
)]
pub async fn submit_change_request(
    State(state): State<ApiState>,
    auth: Require<perm::ChangesWrite>,
    rid: RequestId,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    let p = auth.principal();
    let loaded = load(&state, p.tenant, id).await?;
    let by = By::user(who(p));
    let now = state.now();
    let (policy, _) = crate::accounts::change_policy(&state, p.tenant).await?;
    // The refusals that need no preview first (state, author), before any work.
    let probe = ChangeCommand::Submit {
        by: by.clone(),
        devices: Vec::new(),
        previews: Vec::new(),
        policy: policy.approvals,
        restore_script: None,
        now,
    };
    if let Err(
        r @ (ChangeRefusal::IllegalTransition { .. }
        | ChangeRefusal::NotAuthor(_)
        | ChangeRefusal::NotFound),
    ) = loaded.change.decide(&probe)
    {
        return Err(refused(r, &[]));
    }
    let content = loaded
        .change
        .content
        .clone()
        .ok_or_else(|| ApiError::internal("a loaded change request has no content"))?;
    // The author may have lost the permission since writing the request.
    require_override_permissions(p, &content)?;
    let devices = super::preview::resolve_target(&state, p.tenant, &content.target).await?;
    let (previews, restore_script) =
        super::preview::compute(&state, p.tenant, &content, &devices).await?;
    let summaries: Vec<_> = previews.iter().map(|d| d.summary()).collect();
    let cmd = ChangeCommand::Submit {
        by,
        devices,
        previews: summaries.clone(),
        policy: policy.approvals,
        restore_script,
        now,
    };
    let events = loaded
        .change
        .decide(&cmd)
        .map_err(|r| refused(r, &summaries))?;
    let written = append(&state, p, rid, id, Some(loaded.change.version), &events).await?;
    answer(&state, p, id, written, StatusCode::OK).await
}

/// Approve a change request (an approver; never its author, nobody twice). The approval
/// that completes a request with a maintenance window starts its run at once (the run waits
/// for the window); an approval of an emergency request that already ran is its
/// retrospective review.
#[utoipa::path(
    post,
    path = "/change-requests/{change_request_id}/approve",
    operation_id = "approve_change_request",
    tag = "changes",
    security(("bearer" = ["changes:approve"])),
    params(("change_request_id" = Uuid, Path, description = "Change request id.")),
    request_body = ApproveBody,
    responses(
        (status = 200, description = "Approved.", body = ApprovedDto),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 412, response = PreconditionFailed),
        (status = 422, response = Validation),
    )
)]
pub async fn approve_change_request(
    State(state): State<ApiState>,
    auth: Require<perm::ChangesApprove>,
    rid: RequestId,
    Path(id): Path<Uuid>,
    Json(body): Json<ApproveBody>,
) -> ApiResult<Response> {
    let p = auth.principal();
    let (_, written) = command(&state, p, rid, id, |_| ChangeCommand::Approve {
        by: By::user(who(p)),
        comment: body.comment,
    })
    .await?;
    let after = load(&state, p.tenant, id).await?;
    let windowed = after
        .change
        .content
        .as_ref()
        .is_some_and(|c| c.window.is_some());
    let run = if written.is_some() && after.change.state == ChangeState::Approved && windowed {
        // The approval is committed whatever happens here; a run that could not be started
        // now is started by `start` (the same idempotency key), so `run` is null then.
        match start_run(&state, p, id, &after.change, who(p)).await {
            Ok(started) => Some(ChangeRunStartedDto::of(id, &started)),
            Err(e) => {
                tracing::warn!(change_request = %id, error = %e, "the approved request's run did not start; `start` starts it");
                None
            }
        }
    } else {
        None
    };
    let dto = ChangeRequestDto::of(
        &state,
        p.tenant,
        &after,
        Some(written.into_iter().collect()),
    )
    .await?;
    Ok((
        etag(dto.version),
        Json(ApprovedDto {
            change_request: dto,
            run,
        }),
    )
        .into_response())
}

/// Reject a change request (an approver, not its author; a comment is required). An edit
/// returns it to draft.
#[utoipa::path(
    post,
    path = "/change-requests/{change_request_id}/reject",
    operation_id = "reject_change_request",
    tag = "changes",
    security(("bearer" = ["changes:approve"])),
    params(("change_request_id" = Uuid, Path, description = "Change request id.")),
    request_body = RejectBody,
    responses(
        (status = 200, description = "Rejected.", body = ChangeRequestDto),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 412, response = PreconditionFailed),
        (status = 422, response = Validation),
    )
)]
pub async fn reject_change_request(
    State(state): State<ApiState>,
    auth: Require<perm::ChangesApprove>,
    rid: RequestId,
    Path(id): Path<Uuid>,
    Json(body): Json<RejectBody>,
) -> ApiResult<Response> {
    let p = auth.principal();
    let (_, written) = command(&state, p, rid, id, |_| ChangeCommand::Reject {
        by: By::user(who(p)),
        comment: body.comment,
    })
    .await?;
    answer(&state, p, id, written, StatusCode::OK).await
}

/// Withdraw a change request (its author, before it is scheduled).
#[utoipa::path(
    post,
    path = "/change-requests/{change_request_id}/withdraw",
    operation_id = "withdraw_change_request",
    tag = "changes",
    security(("bearer" = ["changes:write"])),
    params(("change_request_id" = Uuid, Path, description = "Change request id.")),
    request_body = ReasonBody,
    responses(
        (status = 200, description = "Withdrawn.", body = ChangeRequestDto),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 412, response = PreconditionFailed),
        (status = 422, response = Validation),
    )
)]
pub async fn withdraw_change_request(
    State(state): State<ApiState>,
    auth: Require<perm::ChangesWrite>,
    rid: RequestId,
    Path(id): Path<Uuid>,
    Json(body): Json<ReasonBody>,
) -> ApiResult<Response> {
    let p = auth.principal();
    let (_, written) = command(&state, p, rid, id, |_| ChangeCommand::Withdraw {
        by: By::user(who(p)),
        reason: body.reason,
    })
    .await?;
    answer(&state, p, id, written, StatusCode::OK).await
}

/// Start an approved change request: its run (the `change_request` workflow) is started and
/// schedules itself (waiting for the window, if any). Its author (with `changes:write`) or an
/// approver may start it; an emergency request starts without approval, by someone with
/// `changes:write` only. A second start is a retry: it answers with the same run (200).
#[utoipa::path(
    post,
    path = "/change-requests/{change_request_id}/start",
    operation_id = "start_change_request",
    tag = "changes",
    security(("bearer" = ["changes:write"]), ("bearer" = ["changes:approve"])),
    params(("change_request_id" = Uuid, Path, description = "Change request id.")),
    responses(
        (status = 202, description = "Its run was started.", body = ChangeRunStartedDto),
        (status = 200, description = "Its run had been started already (a retry).", body = ChangeRunStartedDto),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Validation),
    )
)]
pub async fn start_change_request(
    State(state): State<ApiState>,
    auth: RequireAny<perm::ChangesWrite, perm::ChangesApprove>,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    let p = auth.principal();
    let loaded = load(&state, p.tenant, id).await?;
    let c = &loaded.change;
    let me = who(p);
    let may = if c.emergency() && c.state == ChangeState::Submitted {
        p.can(Permission::ChangesWrite)
    } else {
        (me == c.author && p.can(Permission::ChangesWrite)) || p.can(Permission::ChangesApprove)
    };
    if !may {
        return Err(ApiError::forbidden_because(
            "only the author (with changes:write) or an approver (changes:approve) may start a \
             change request; an emergency change starts without approval only by someone with \
             changes:write",
        ));
    }
    let retry = matches!(c.state, ChangeState::Scheduled | ChangeState::Running)
        && started_run(&state, p.tenant, id, c.submissions)
            .await?
            .is_some();
    if !retry {
        // Refusals are immediate: the run's own `ChangeRequestScheduled` would be refused
        // for the same reason.
        decide(
            &loaded,
            &ChangeCommand::Schedule {
                by: netledger_domain::change::By::user(me.clone()),
                workflow_id: WorkflowId::from_uuid(Uuid::nil()),
            },
        )?;
    }
    let started = start_run(&state, p, id, c, me).await?;
    let status = if started.existed {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(ChangeRunStartedDto::of(id, &started))).into_response())
}

/// Cancel a change request that is approved, scheduled or running. Before its rollout
/// started it is `cancelled` at once; while running, the cancel is recorded
/// (`ChangeRequestCancelRequested`) and its run is cancelled (it ends `cancelled`, or as its
/// rollback ends). The author (with `changes:write`) or an approver may cancel.
#[utoipa::path(
    post,
    path = "/change-requests/{change_request_id}/cancel",
    operation_id = "cancel_change_request",
    tag = "changes",
    security(("bearer" = ["changes:write"]), ("bearer" = ["changes:approve"])),
    params(("change_request_id" = Uuid, Path, description = "Change request id.")),
    request_body = ReasonBody,
    responses(
        (status = 200, description = "Cancelled (or the cancel was asked of its run).", body = CancelledDto),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 412, response = PreconditionFailed),
        (status = 422, response = Validation),
    )
)]
pub async fn cancel_change_request(
    State(state): State<ApiState>,
    auth: RequireAny<perm::ChangesWrite, perm::ChangesApprove>,
    rid: RequestId,
    Path(id): Path<Uuid>,
    Json(body): Json<ReasonBody>,
) -> ApiResult<Response> {
    let p = auth.principal();
    let reason = body
        .reason
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| "cancelled through the API".to_owned());
    let r = reason.clone();
    let (before, written) = command(&state, p, rid, id, |_| ChangeCommand::Cancel {
        by: By::user(who(p)),
        reason: r,
    })
    .await?;
    let workflow = match before.change.workflow_id {
        Some(w) => Some(w),
        None => started_run(&state, p.tenant, id, before.change.submissions).await?,
    };
    let mut signal_position = None;
    if let Some(wf) = workflow {
        match state
            .engine()?
            .cancel(p.tenant, wf, &reason, p.actor())
            .await
        {
            Ok(pos) => signal_position = Some(pos),
            Err(netledger_engine::EngineError::Finished(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let after = load(&state, p.tenant, id).await?;
    let dto = ChangeRequestDto::of(
        &state,
        p.tenant,
        &after,
        Some(written.into_iter().collect()),
    )
    .await?;
    Ok((
        etag(dto.version),
        Json(CancelledDto {
            change_request: dto,
            workflow_id: workflow.map(|w| *w.as_uuid()),
            signal_position,
        }),
    )
        .into_response())
}

/// Continue a rollout that paused because its maintenance window ended (an approver): the
/// signal `window_continue` with the open pause's number goes to the rollout; the rollout
/// records `ChangeRequestResumed`.
#[utoipa::path(
    post,
    path = "/change-requests/{change_request_id}/continue",
    operation_id = "continue_change_request",
    tag = "changes",
    security(("bearer" = ["changes:approve"])),
    params(("change_request_id" = Uuid, Path, description = "Change request id.")),
    responses(
        (status = 200, description = "The rollout was told to continue.", body = SignalledDto),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    )
)]
pub async fn continue_change_request(
    State(state): State<ApiState>,
    auth: Require<perm::ChangesApprove>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<SignalledDto>> {
    let p = auth.principal();
    let loaded = load(&state, p.tenant, id).await?;
    let c = &loaded.change;
    let pause = c.paused.unwrap_or(c.pauses + 1);
    // Validates only: the rollout appends `ChangeRequestResumed` when it goes on.
    decide(&loaded, &ChangeCommand::Resume { pause })?;
    let rollout = c
        .rollout_id
        .ok_or_else(|| ApiError::conflict("the change request has no rollout yet"))?;
    let wf = crate::routes::workflows::rollout_workflow(&state, p, *rollout.as_uuid()).await?;
    let position = state
        .engine()?
        .signal(
            p.tenant,
            wf,
            card::WINDOW_CONTINUE,
            serde_json::to_value(card::WindowContinue { pause })
                .map_err(|e| ApiError::internal(format!("encode window_continue: {e}")))?,
            p.actor(),
        )
        .await?;
    Ok(Json(
        crate::routes::workflows::signalled(&state, p, wf, position).await?,
    ))
}

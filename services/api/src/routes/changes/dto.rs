//! The change request's DTOs: the request as read (folded fresh from its stream), the list
//! item (from the read model), bodies of the commands and what they answer.

use netledger_domain::change::{
    ChangeAction, ChangeState, ChangeTarget, DevicePreviewSummary, MaintenanceWindow, Overrides,
    RiskLevel, RolloutPlan,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiResult;
use crate::http::Written;
use crate::state::ApiState;

use super::{Loaded, display_names, review_overdue};

/// One approval that counts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApprovalDto {
    /// The approver (user id).
    pub by: String,
    /// The approver's display name, when the approver is a user.
    pub by_name: Option<String>,
    /// Their comment.
    pub comment: Option<String>,
    /// When they approved.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub at: Option<OffsetDateTime>,
    /// A review after an emergency run.
    pub retrospective: bool,
}

/// The last rejection.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RejectionDto {
    /// The approver (user id).
    pub by: String,
    /// The approver's display name.
    pub by_name: Option<String>,
    /// Why.
    pub comment: String,
    /// When.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub at: Option<OffsetDateTime>,
}

/// A change request, folded from its stream `change-<id>` (the `ETag` is `version`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChangeRequestDto {
    /// Id.
    pub change_request_id: Uuid,
    /// The stream's version (its `ETag`; `If-Match` of PATCH).
    pub version: u64,
    /// State.
    pub state: ChangeState,
    /// Title.
    pub title: String,
    /// Why the change is needed.
    pub reason: String,
    /// External ticket reference.
    pub ticket: Option<String>,
    /// Author (user id).
    pub author: String,
    /// The author's display name.
    pub author_name: Option<String>,
    /// Risk.
    pub risk: RiskLevel,
    /// Break-glass.
    pub emergency: bool,
    /// Why it is an emergency.
    pub emergency_reason: Option<String>,
    /// Target as written.
    pub target: ChangeTarget,
    /// What changes.
    pub action: ChangeAction,
    /// How it rolls out.
    pub plan: RolloutPlan,
    /// When it may run.
    pub window: Option<MaintenanceWindow>,
    /// Overrides approvers accept.
    pub overrides: Overrides,
    /// The devices frozen at submission, in rollout order (empty before).
    pub devices: Vec<Uuid>,
    /// The per-device previews at submission.
    pub previews: Vec<DevicePreviewSummary>,
    /// Approvals that count.
    pub approvals: Vec<ApprovalDto>,
    /// Approvals its risk needs (fixed at submission; 0 before).
    pub required_approvals: u32,
    /// Approvals still missing before it is approved.
    pub missing_approvals: u32,
    /// The last rejection, while rejected.
    pub rejection: Option<RejectionDto>,
    /// Its rollout, once started.
    pub rollout_id: Option<Uuid>,
    /// Its run (the `change_request` workflow), once scheduled.
    pub workflow_id: Option<Uuid>,
    /// Whether its rollout is paused at a window's end.
    pub paused: bool,
    /// The open pause's number (what `continue` continues).
    pub pause: Option<u32>,
    /// A cancel was asked while it ran.
    pub cancel_requested: bool,
    /// Why it ended as it did.
    pub reason_final: Option<String>,
    /// An emergency run waits for its retrospective review.
    pub review_pending: bool,
    /// ... for longer than the review grace period.
    pub review_overdue: bool,
    /// Created.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub created_at: Option<OffsetDateTime>,
    /// Last event.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub updated_at: Option<OffsetDateTime>,
    /// When its rollout started.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    /// The events the write appended (absent on reads; empty when a write changed nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positions: Option<Vec<Written>>,
}

impl ChangeRequestDto {
    /// The DTO of `loaded`, with display names looked up and `positions` as given.
    pub(crate) async fn of(
        state: &ApiState,
        tenant: netledger_domain::TenantId,
        loaded: &Loaded,
        positions: Option<Vec<Written>>,
    ) -> ApiResult<Self> {
        let c = &loaded.change;
        let content = c
            .content
            .clone()
            .ok_or_else(|| crate::ApiError::internal("a loaded change request has no content"))?;
        let mut people: Vec<String> = vec![c.author.clone()];
        people.extend(c.approvals.iter().map(|a| a.by.clone()));
        people.extend(c.rejection.iter().map(|r| r.0.clone()));
        let names = display_names(state, tenant, people).await?;
        Ok(Self {
            change_request_id: c.id.map(|i| *i.as_uuid()).unwrap_or_default(),
            version: c.version,
            state: c.state,
            title: content.title,
            reason: content.reason,
            ticket: content.ticket,
            author: c.author.clone(),
            author_name: names.get(&c.author).cloned(),
            risk: content.risk,
            emergency: content.emergency,
            emergency_reason: content.emergency_reason,
            target: content.target,
            action: content.action,
            plan: content.plan,
            window: content.window,
            overrides: content.overrides,
            devices: c.devices.iter().map(|d| *d.as_uuid()).collect(),
            previews: c.previews.clone(),
            approvals: c
                .approvals
                .iter()
                .map(|a| ApprovalDto {
                    by: a.by.clone(),
                    by_name: names.get(&a.by).cloned(),
                    comment: a.comment.clone(),
                    at: loaded
                        .approved_at
                        .get(&(a.by.clone(), a.retrospective))
                        .copied(),
                    retrospective: a.retrospective,
                })
                .collect(),
            required_approvals: c.required_approvals,
            missing_approvals: if c.state == ChangeState::Submitted {
                c.missing_approvals()
            } else {
                0
            },
            rejection: c.rejection.as_ref().map(|(by, comment)| RejectionDto {
                by: by.clone(),
                by_name: names.get(by).cloned(),
                comment: comment.clone(),
                at: loaded.rejected_at,
            }),
            rollout_id: c.rollout_id.map(|r| *r.as_uuid()),
            workflow_id: c.workflow_id.map(|w| *w.as_uuid()),
            paused: c.paused.is_some(),
            pause: c.paused,
            cancel_requested: c.cancel_requested,
            reason_final: c.final_reason.clone(),
            review_pending: c.review_pending(),
            review_overdue: review_overdue(state, loaded),
            created_at: loaded.created_at,
            updated_at: loaded.updated_at,
            started_at: loaded.started_at,
            positions,
        })
    }
}

/// An approval.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ApproveBody {
    /// Optional comment.
    #[serde(default)]
    pub comment: Option<String>,
}

/// A rejection.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct RejectBody {
    /// Why (required, not blank).
    #[serde(default)]
    pub comment: String,
}

/// A withdrawal or a cancel.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ReasonBody {
    /// Why (optional).
    #[serde(default)]
    pub reason: Option<String>,
}

/// The run a start (or the approval that completed a request with a window) started.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChangeRunStartedDto {
    /// The request.
    pub change_request_id: Uuid,
    /// The run (`change_request` workflow); its first step appends
    /// `ChangeRequestScheduled`.
    pub workflow_id: Uuid,
    /// Whether it had been started before (a retry: nothing new was written).
    pub existed: bool,
    /// The run's `WorkflowStarted`.
    pub events: Vec<Written>,
}

impl ChangeRunStartedDto {
    pub(crate) fn of(id: Uuid, started: &netledger_engine::Started) -> Self {
        Self {
            change_request_id: id,
            workflow_id: *started.workflow_id.as_uuid(),
            existed: started.existed,
            events: vec![Written {
                stream: started.workflow_id.stream().as_str().to_owned(),
                stream_version: 1,
                first_position: *started.positions.start(),
                last_position: *started.positions.end(),
            }],
        }
    }
}

/// An approval, and the run it started when it completed a request with a window.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApprovedDto {
    /// The request after the approval.
    pub change_request: ChangeRequestDto,
    /// The run started because this approval completed a request with a window (null
    /// when it could not be started now: `start` starts it).
    pub run: Option<ChangeRunStartedDto>,
}

/// A cancel: the request after it, and the cancel signal sent to its run, if any.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CancelledDto {
    /// The request after the cancel.
    pub change_request: ChangeRequestDto,
    /// The run that was asked to stop.
    pub workflow_id: Option<Uuid>,
    /// The cancel signal's position in the run's journal.
    pub signal_position: Option<i64>,
}

/// A list item (from the `change_requests` read model).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChangeRequestSummaryDto {
    /// Id.
    pub change_request_id: Uuid,
    /// Stream version.
    pub version: u64,
    /// State.
    pub state: ChangeState,
    /// Title.
    pub title: String,
    /// Author (user id).
    pub author: String,
    /// Risk.
    pub risk: RiskLevel,
    /// Break-glass.
    pub emergency: bool,
    /// An emergency run waits for its review.
    pub review_pending: bool,
    /// ... for longer than the review grace period.
    pub review_overdue: bool,
    /// Devices frozen at submission.
    pub devices: u32,
    /// Approvals that count.
    pub approvals: u32,
    /// Approvals needed.
    pub required_approvals: u32,
    /// Its run.
    pub workflow_id: Option<Uuid>,
    /// Its rollout.
    pub rollout_id: Option<Uuid>,
    /// Paused at a window's end.
    pub paused: bool,
    /// Created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Rollout started.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    /// Ended.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

/// A page of change requests.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChangeRequestPage {
    /// Requests, newest first.
    pub items: Vec<ChangeRequestSummaryDto>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// One event of a request's timeline: its own stream's events and every event correlated
/// with it (its run, rollout, device workflows and device events), in global order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TimelineEntryDto {
    /// Global position.
    pub position: i64,
    /// Stream.
    pub stream: String,
    /// Version in the stream.
    pub version: i64,
    /// Event type.
    pub event_type: String,
    /// Recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    /// Who caused it.
    pub actor: crate::routes::events::ActorDto,
    /// The actor's display name, when the actor is a user.
    pub actor_name: Option<String>,
    /// Causation id.
    pub causation_id: Uuid,
    /// Correlation id (the request's id for everything its run started).
    pub correlation_id: Uuid,
    /// Payload.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

/// A page of a timeline.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TimelinePage {
    /// Events, oldest first.
    pub items: Vec<TimelineEntryDto>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

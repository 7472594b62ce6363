//! The change request aggregate, stream `change-<id>`: how risky work reaches devices in a
//! change-controlled tenant. A request carries what to change (a RouterOS script, a firmware
//! version, or a restore to an archived configuration), where (devices, tags or the whole
//! tenant, frozen to a device list at submission), how (a rollout plan), when (an optional
//! maintenance window) and why (title, reason, ticket, risk).
//!
//! Its rules (pure, in [`ChangeRequest::decide`]): the states
//! `draft -> submitted -> approved | rejected -> scheduled -> running -> completed | failed |
//! rolled_back | cancelled`, plus `withdrawn` by the author; edits only by the author, in
//! `draft`, `submitted`, `approved` or `rejected` (each returns the request to `draft`, and
//! any approval it had is invalidated by an event that says so); four-eyes approval (the
//! author never approves their own request, nobody approves twice, the tenant's
//! [`ApprovalPolicy`] sets how many approvals each [`RiskLevel`] needs); policy violations
//! found by the preview block submission unless the request accepts them explicitly at risk
//! `high`; emergency (break-glass) requests start without approval and are reviewed after the
//! fact (retrospective approvals).
//!
//! Not here: resolving targets and computing previews (the API), the durable run (the
//! `change_request` workflow), the read model (projections).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::aggregate::Aggregate;
use crate::event::{EventType, event_enum};
use crate::ids::{ChangeRequestId, DeviceId, RolloutId, WorkflowId};

#[cfg(test)]
mod tests;

/// Longest title, in characters.
pub const MAX_TITLE: usize = 200;
/// Longest reason, comment or emergency reason, in characters.
pub const MAX_TEXT: usize = 4000;
/// Longest script, in characters (the push's own limit is lower and is checked by the
/// preview).
pub const MAX_SCRIPT: usize = 200_000;
/// Most devices one request may target.
pub const MAX_DEVICES: usize = 10_000;

/// Whether `text` has a visible character (neither white space nor a control character):
/// what the API's schema states as the pattern `[^\s\x00-\x1f\x7f-\x9f]`.
fn has_visible(text: &str) -> bool {
    text.chars().any(|c| !c.is_whitespace() && !c.is_control())
}

/// How risky a change is: sets how many approvals it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RiskLevel {
    /// Routine.
    Low,
    /// Needs care.
    Medium,
    /// Can cut service; required to accept policy violations.
    High,
}

/// Which devices a request targets, as written; resolved to a device list at submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ChangeTarget {
    /// These devices.
    Devices {
        /// The devices, in rollout order (1-10000).
        #[cfg_attr(
            feature = "openapi",
            schema(value_type = Vec<uuid::Uuid>, min_items = 1, max_items = 10000)
        )]
        device_ids: Vec<DeviceId>,
    },
    /// The devices carrying these tags.
    Tags {
        /// Tags (at least one), each 1-100 characters with a visible one.
        #[cfg_attr(feature = "openapi", schema(min_items = 1))]
        tags: Vec<String>,
        /// Whether a device needs all of them or any one.
        #[serde(rename = "match")]
        matching: TagMatch,
    },
    /// Every device of the tenant.
    Tenant {},
}

/// How a tag target matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum TagMatch {
    /// A device has every tag.
    All,
    /// A device has at least one of the tags.
    Any,
}

/// What a request changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ChangeAction {
    /// A RouterOS script (a change set), pushed with the two-phase push.
    Script {
        /// The script: a visible character, at most 200000 characters.
        #[cfg_attr(
            feature = "openapi",
            schema(max_length = 200000, pattern = r"[^\s\x00-\x1f\x7f-\x9f]")
        )]
        script: String,
    },
    /// A RouterOS version from the firmware cache.
    Firmware {
        /// Target version (like `7.16.2`).
        #[cfg_attr(
            feature = "openapi",
            schema(min_length = 1, max_length = 32, pattern = r"^[A-Za-z0-9.-]{1,32}$")
        )]
        version: String,
        /// Also upgrade the RouterBOARD firmware.
        #[serde(default)]
        routerboard: bool,
    },
    /// Restore one device to an archived version of its configuration (the script that
    /// gets there from today's configuration is computed at submission and frozen).
    Restore {
        /// The device (the target must be exactly this device).
        #[cfg_attr(feature = "openapi", schema(value_type = uuid::Uuid))]
        device_id: DeviceId,
        /// The archived version (config history commit: 7-64 hex digits).
        #[cfg_attr(
            feature = "openapi",
            schema(min_length = 7, max_length = 64, pattern = r"^[0-9A-Fa-f]{7,64}$")
        )]
        commit: String,
    },
}

/// How the change is rolled out over the target devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RolloutPlan {
    /// The first N devices of the frozen list go first, one at a time.
    pub canaries: u32,
    /// Devices per batch after the canaries (1-1000).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub batch_size: u32,
    /// Devices at once within a batch (1-100).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100))]
    pub parallelism: u32,
    /// Failed devices that halt the rollout (at least 1).
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub failure_threshold: u32,
    /// Restore every committed device when the threshold halts it (script changes only: a
    /// firmware change must set it to false).
    pub rollback_on_halt: bool,
}

impl Default for RolloutPlan {
    /// One canary, batches of 10, 5 at once, halt at the first failure, roll back on halt.
    fn default() -> Self {
        Self {
            canaries: 1,
            batch_size: 10,
            parallelism: 5,
            failure_threshold: 1,
            rollback_on_halt: true,
        }
    }
}

/// When the change may run: it starts at `start` and never after `end`; a rollout still
/// running at `end` pauses at its next batch boundary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MaintenanceWindow {
    /// Opens (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    /// Closes (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
    /// The time zone the window was planned in (IANA name, shown to people; the instants
    /// above are what counts).
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9/_+-]{1,64}$")
    )]
    pub time_zone: String,
}

/// What the request asks approvers to accept beyond the ordinary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Overrides {
    /// Push even where device-mode disables the scheduler (no device-side rollback timer).
    #[serde(default)]
    pub allow_without_timer: bool,
    /// Submit although the preview found policy violations (needs risk `high`).
    #[serde(default)]
    pub accept_policy_violations: bool,
}

impl Overrides {
    /// Whether any override is asked for.
    pub fn any(&self) -> bool {
        self.allow_without_timer || self.accept_policy_violations
    }
}

/// Everything the author writes (create and edit take the whole of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangeContent {
    /// One line (1-200 characters, a visible one, no control character).
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 200,
            pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
        )
    )]
    pub title: String,
    /// Why the change is needed (a visible character, at most 4000 characters).
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 4000,
            pattern = r"[^\s\x00-\x1f\x7f-\x9f]"
        )
    )]
    pub reason: String,
    /// External ticket reference (at most 200 characters, no control character).
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")
    )]
    pub ticket: Option<String>,
    /// Which devices.
    pub target: ChangeTarget,
    /// What changes.
    pub action: ChangeAction,
    /// How it rolls out.
    #[serde(default)]
    pub plan: RolloutPlan,
    /// How risky it is.
    pub risk: RiskLevel,
    /// When it may run; `None`: when an approver or the author presses start.
    #[serde(default)]
    pub window: Option<MaintenanceWindow>,
    /// Overrides the approvers must accept.
    #[serde(default)]
    pub overrides: Overrides,
    /// Break-glass: runs without approval (an operator's call, with a reason), reviewed after.
    #[serde(default)]
    pub emergency: bool,
    /// Why it is an emergency (required with `emergency`; at most 4000 characters).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 4000))]
    pub emergency_reason: Option<String>,
}

/// The state of a change request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ChangeState {
    /// Being written by its author.
    #[default]
    Draft,
    /// Waiting for approvals.
    Submitted,
    /// Approved by as many approvers as its risk needs.
    Approved,
    /// Rejected by an approver (an edit returns it to draft).
    Rejected,
    /// Its run is scheduled (waiting for its window, or starting now).
    Scheduled,
    /// Its rollout is running.
    Running,
    /// Every device done.
    Completed,
    /// The rollout failed (halted or errored) and was not rolled back.
    Failed,
    /// The rollout halted and every committed device was restored.
    RolledBack,
    /// Cancelled before or during its run, or its window passed before it could start.
    Cancelled,
    /// Withdrawn by its author before it ran.
    Withdrawn,
}

impl ChangeState {
    /// Every state, in lifecycle order.
    pub const ALL: [ChangeState; 11] = [
        ChangeState::Draft,
        ChangeState::Submitted,
        ChangeState::Approved,
        ChangeState::Rejected,
        ChangeState::Scheduled,
        ChangeState::Running,
        ChangeState::Completed,
        ChangeState::Failed,
        ChangeState::RolledBack,
        ChangeState::Cancelled,
        ChangeState::Withdrawn,
    ];

    /// The JSON name (`rolled_back`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeState::Draft => "draft",
            ChangeState::Submitted => "submitted",
            ChangeState::Approved => "approved",
            ChangeState::Rejected => "rejected",
            ChangeState::Scheduled => "scheduled",
            ChangeState::Running => "running",
            ChangeState::Completed => "completed",
            ChangeState::Failed => "failed",
            ChangeState::RolledBack => "rolled_back",
            ChangeState::Cancelled => "cancelled",
            ChangeState::Withdrawn => "withdrawn",
        }
    }

    /// Whether nothing follows (the run ended, or it never ran).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ChangeState::Completed
                | ChangeState::Failed
                | ChangeState::RolledBack
                | ChangeState::Cancelled
                | ChangeState::Withdrawn
        )
    }
}

impl std::fmt::Display for ChangeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a tenant requires change requests for pushes, upgrades and rollouts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ChangeControl {
    /// Direct pushes, upgrades and rollouts are refused: a change request is the only path.
    Required,
    /// Direct calls work as before change control (labs); change requests are optional.
    #[default]
    Optional,
}

/// How many approvals each risk level needs (at least 1 each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApprovalPolicy {
    /// Approvals for `low`.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10))]
    pub low: u32,
    /// Approvals for `medium`.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10))]
    pub medium: u32,
    /// Approvals for `high`.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10))]
    pub high: u32,
}

impl Default for ApprovalPolicy {
    /// low 1, medium 1, high 2.
    fn default() -> Self {
        Self {
            low: 1,
            medium: 1,
            high: 2,
        }
    }
}

impl ApprovalPolicy {
    /// Most approvals a policy may ask for one level.
    pub const MAX: u32 = 10;

    /// Approvals needed at `risk`.
    pub fn required(&self, risk: RiskLevel) -> u32 {
        match risk {
            RiskLevel::Low => self.low,
            RiskLevel::Medium => self.medium,
            RiskLevel::High => self.high,
        }
    }

    /// Checks every level is 1..=[`Self::MAX`] and never falls as risk rises.
    pub fn validate(&self) -> Result<(), String> {
        for (name, n) in [
            ("low", self.low),
            ("medium", self.medium),
            ("high", self.high),
        ] {
            if !(1..=Self::MAX).contains(&n) {
                return Err(format!(
                    "approvals.{name} must be between 1 and {} (got {n})",
                    Self::MAX
                ));
            }
        }
        if self.low > self.medium || self.medium > self.high {
            return Err(format!(
                "approvals must not fall as risk rises (low {}, medium {}, high {})",
                self.low, self.medium, self.high
            ));
        }
        Ok(())
    }
}

/// The preview of one target device at submission (the diff itself is recomputed on demand).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DevicePreviewSummary {
    /// The device.
    #[cfg_attr(feature = "openapi", schema(value_type = uuid::Uuid))]
    pub device_id: DeviceId,
    /// Lines added or removed in the normalised configuration.
    pub changed_lines: u32,
    /// Push-policy violations (forbidden menus, size), one sentence each.
    pub violations: Vec<String>,
    /// Why the expected result could not be computed offline, if it could not (the push's
    /// own validate step checks it on the device).
    #[serde(default)]
    pub note: Option<String>,
}

// ---- events --------------------------------------------------------------------------------

/// A change request was created (state `draft`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRequestCreated {
    /// Its id (also in the stream name).
    pub change_request_id: ChangeRequestId,
    /// Who wrote it (user id, as in the event's actor).
    pub author: String,
    /// What it says (a script action's secret values masked).
    pub content: ChangeContent,
    /// The real script of a script action, sealed (store `sealed_scripts`), when masking
    /// changed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_script: Option<uuid::Uuid>,
}
impl EventType for ChangeRequestCreated {
    const TYPE: &'static str = "ChangeRequestCreated";
    const SCHEMA_VERSION: u32 = 1;
}

/// The author edited the request; it is a draft again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRequestEdited {
    /// The whole new content (a script action's secret values masked).
    pub content: ChangeContent,
    /// The state it was edited in.
    pub previous_state: ChangeState,
    /// The real script of a script action, sealed (store `sealed_scripts`), when masking
    /// changed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_script: Option<uuid::Uuid>,
}
impl EventType for ChangeRequestEdited {
    const TYPE: &'static str = "ChangeRequestEdited";
    const SCHEMA_VERSION: u32 = 1;
}

/// Every approval the request had no longer counts (it was edited after them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRequestApprovalsInvalidated {
    /// Who had approved.
    pub approvers: Vec<String>,
    /// Why.
    pub reason: String,
}
impl EventType for ChangeRequestApprovalsInvalidated {
    const TYPE: &'static str = "ChangeRequestApprovalsInvalidated";
    const SCHEMA_VERSION: u32 = 1;
}

/// The author submitted the request for approval; its target is frozen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRequestSubmitted {
    /// The target resolved to devices, in rollout order.
    pub devices: Vec<DeviceId>,
    /// The preview of each device at submission.
    pub previews: Vec<DevicePreviewSummary>,
    /// Approvals its risk needs under the tenant's policy at submission.
    pub required_approvals: u32,
    /// For a restore: the script that brings the device back to the version, frozen.
    #[serde(default)]
    pub restore_script: Option<String>,
}
impl EventType for ChangeRequestSubmitted {
    const TYPE: &'static str = "ChangeRequestSubmitted";
    const SCHEMA_VERSION: u32 = 1;
}

/// An approver approved (retrospectively for an emergency request that already ran).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRequestApproved {
    /// The approver (user id).
    pub by: String,
    /// Their comment.
    pub comment: Option<String>,
    /// A review after an emergency run.
    #[serde(default)]
    pub retrospective: bool,
}
impl EventType for ChangeRequestApproved {
    const TYPE: &'static str = "ChangeRequestApproved";
    const SCHEMA_VERSION: u32 = 1;
}

/// An approver rejected the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRequestRejected {
    /// The approver (user id).
    pub by: String,
    /// Why (required).
    pub comment: String,
}
impl EventType for ChangeRequestRejected {
    const TYPE: &'static str = "ChangeRequestRejected";
    const SCHEMA_VERSION: u32 = 1;
}

/// The author withdrew the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRequestWithdrawn {
    /// Why, if given.
    pub reason: Option<String>,
}
impl EventType for ChangeRequestWithdrawn {
    const TYPE: &'static str = "ChangeRequestWithdrawn";
    const SCHEMA_VERSION: u32 = 1;
}

/// Its run (the `change_request` workflow) was scheduled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRequestScheduled {
    /// The run's workflow.
    pub workflow_id: WorkflowId,
    /// Who started it (user id), or the approval that completed a windowed request.
    pub by: String,
    /// The window it waits for, if any.
    pub window: Option<MaintenanceWindow>,
}
impl EventType for ChangeRequestScheduled {
    const TYPE: &'static str = "ChangeRequestScheduled";
    const SCHEMA_VERSION: u32 = 1;
}

/// Its rollout started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRequestStarted {
    /// The rollout.
    pub rollout_id: RolloutId,
}
impl EventType for ChangeRequestStarted {
    const TYPE: &'static str = "ChangeRequestStarted";
    const SCHEMA_VERSION: u32 = 1;
}

/// Its rollout paused at a batch boundary (its window closed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRequestPaused {
    /// The pause's number within the run, from 1 (what `continue` names).
    pub pause: u32,
    /// Why.
    pub reason: String,
}
impl EventType for ChangeRequestPaused {
    const TYPE: &'static str = "ChangeRequestPaused";
    const SCHEMA_VERSION: u32 = 1;
}

/// Its rollout went on after a pause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRequestResumed {
    /// The pause that ended.
    pub pause: u32,
}
impl EventType for ChangeRequestResumed {
    const TYPE: &'static str = "ChangeRequestResumed";
    const SCHEMA_VERSION: u32 = 1;
}

/// Someone asked the running request to stop (its rollout was cancelled; it ends `cancelled`
/// or as its rollback ends).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRequestCancelRequested {
    /// Who (user id).
    pub by: String,
    /// Why.
    pub reason: String,
}
impl EventType for ChangeRequestCancelRequested {
    const TYPE: &'static str = "ChangeRequestCancelRequested";
    const SCHEMA_VERSION: u32 = 1;
}

/// Cancelled before its rollout started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRequestCancelled {
    /// Who (user id).
    pub by: String,
    /// Why.
    pub reason: String,
}
impl EventType for ChangeRequestCancelled {
    const TYPE: &'static str = "ChangeRequestCancelled";
    const SCHEMA_VERSION: u32 = 1;
}

/// Its run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRequestFinished {
    /// `completed`, `failed`, `rolled_back` or `cancelled`.
    pub state: ChangeState,
    /// Why, for anything but `completed`.
    pub reason: Option<String>,
}
impl EventType for ChangeRequestFinished {
    const TYPE: &'static str = "ChangeRequestFinished";
    const SCHEMA_VERSION: u32 = 1;
}

event_enum! {
    /// The events of a `change-<id>` stream.
    pub enum ChangeEvent in "change" {
        /// Created.
        Created(ChangeRequestCreated),
        /// Edited (a draft again).
        Edited(ChangeRequestEdited),
        /// Approvals invalidated by an edit.
        ApprovalsInvalidated(ChangeRequestApprovalsInvalidated),
        /// Submitted.
        Submitted(ChangeRequestSubmitted),
        /// Approved by one approver.
        Approved(ChangeRequestApproved),
        /// Rejected.
        Rejected(ChangeRequestRejected),
        /// Withdrawn.
        Withdrawn(ChangeRequestWithdrawn),
        /// Run scheduled.
        Scheduled(ChangeRequestScheduled),
        /// Rollout started.
        Started(ChangeRequestStarted),
        /// Rollout paused (window closed).
        Paused(ChangeRequestPaused),
        /// Rollout resumed.
        Resumed(ChangeRequestResumed),
        /// Stop asked while running.
        CancelRequested(ChangeRequestCancelRequested),
        /// Cancelled before running.
        Cancelled(ChangeRequestCancelled),
        /// Run ended.
        Finished(ChangeRequestFinished),
    }
}

// ---- the aggregate -------------------------------------------------------------------------

/// One approval that counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// The approver (user id).
    pub by: String,
    /// Their comment.
    pub comment: Option<String>,
    /// A review after an emergency run.
    pub retrospective: bool,
}

/// A change request as its stream has it (the default: no stream yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeRequest {
    /// Its id; `None` before `ChangeRequestCreated`.
    pub id: Option<ChangeRequestId>,
    /// The stream's version (its number of events).
    pub version: u64,
    /// State.
    pub state: ChangeState,
    /// Author (user id).
    pub author: String,
    /// Content (meaningless before creation).
    pub content: Option<ChangeContent>,
    /// The sealed real script of the content's script action, if it has secret values.
    pub sealed_script: Option<uuid::Uuid>,
    /// The devices frozen at the last submission.
    pub devices: Vec<DeviceId>,
    /// The previews at the last submission.
    pub previews: Vec<DevicePreviewSummary>,
    /// Approvals needed (at the last submission).
    pub required_approvals: u32,
    /// The frozen restore script, for a restore.
    pub restore_script: Option<String>,
    /// How many times it was submitted (each submission is its own approval round, so its
    /// own run: the run's idempotency key names it).
    pub submissions: u32,
    /// Approvals that count (before the run; retrospective ones after an emergency run).
    pub approvals: Vec<Approval>,
    /// The last rejection: who, why.
    pub rejection: Option<(String, String)>,
    /// The run's workflow.
    pub workflow_id: Option<WorkflowId>,
    /// The run's rollout.
    pub rollout_id: Option<RolloutId>,
    /// The open pause of the running rollout, if paused.
    pub paused: Option<u32>,
    /// Pauses so far.
    pub pauses: u32,
    /// A cancel was asked while running.
    pub cancel_requested: bool,
    /// Why it ended as it did.
    pub final_reason: Option<String>,
}

impl ChangeRequest {
    /// Whether this is a break-glass request.
    pub fn emergency(&self) -> bool {
        self.content.as_ref().is_some_and(|c| c.emergency)
    }

    /// Whether its run began (scheduled or later, but not withdrawn or cancelled before).
    pub fn ran(&self) -> bool {
        self.rollout_id.is_some()
    }

    /// An emergency request that ran and has fewer retrospective approvals than its policy
    /// needs: it waits for review (overdue after a grace period the read model applies).
    pub fn review_pending(&self) -> bool {
        self.emergency() && self.ran() && !self.reviewed()
    }

    /// Whether an emergency run was reviewed (enough retrospective approvals).
    pub fn reviewed(&self) -> bool {
        let n = self.approvals.iter().filter(|a| a.retrospective).count();
        u32::try_from(n).unwrap_or(u32::MAX) >= self.required_approvals.max(1)
    }

    /// Approvals still missing before it is approved (0 when approved or later).
    pub fn missing_approvals(&self) -> u32 {
        let have = u32::try_from(self.approvals.iter().filter(|a| !a.retrospective).count())
            .unwrap_or(u32::MAX);
        self.required_approvals.saturating_sub(have)
    }
}

/// Who asks, as the decision needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct By {
    /// User id (or API key id) as text.
    pub user: String,
}

impl By {
    /// From a user id text.
    pub fn user(user: impl Into<String>) -> Self {
        Self { user: user.into() }
    }
}

/// What may be asked of a change request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeCommand {
    /// Create it (a draft).
    Create {
        /// New id.
        id: ChangeRequestId,
        /// The author.
        by: By,
        /// Content (a script action's secret values masked).
        content: ChangeContent,
        /// The sealed real script, when masking changed it.
        sealed_script: Option<uuid::Uuid>,
    },
    /// Edit it (author only; returns it to draft, invalidating approvals).
    Edit {
        /// Who.
        by: By,
        /// The whole new content.
        content: ChangeContent,
        /// If-Match: the version the edit is based on.
        if_version: Option<u64>,
        /// The sealed real script of the new content, when masking changed it.
        sealed_script: Option<uuid::Uuid>,
    },
    /// Submit it for approval (author only). The adapter resolved the target and previewed.
    Submit {
        /// Who.
        by: By,
        /// The resolved devices, in rollout order.
        devices: Vec<DeviceId>,
        /// Per-device previews.
        previews: Vec<DevicePreviewSummary>,
        /// The tenant's policy now.
        policy: ApprovalPolicy,
        /// For a restore: the computed script (`None` when it could not be computed).
        restore_script: Option<String>,
        /// The current time (a window that already ended is refused).
        now: OffsetDateTime,
    },
    /// Approve it (an approver who is not the author and has not approved yet).
    Approve {
        /// Who.
        by: By,
        /// Comment.
        comment: Option<String>,
    },
    /// Reject it (an approver who is not the author; a comment is required).
    Reject {
        /// Who.
        by: By,
        /// Why.
        comment: String,
    },
    /// Withdraw it (author only, before it is scheduled).
    Withdraw {
        /// Who.
        by: By,
        /// Why.
        reason: Option<String>,
    },
    /// Schedule its run (approved; or submitted for an emergency).
    Schedule {
        /// Who pressed start (or whose approval completed a windowed request).
        by: By,
        /// The run's workflow.
        workflow_id: WorkflowId,
    },
    /// Its rollout started (the run reports it).
    Start {
        /// The rollout.
        rollout_id: RolloutId,
    },
    /// Its rollout paused at a batch boundary (the run reports it).
    Pause {
        /// Why.
        reason: String,
    },
    /// Its rollout went on after pause `pause`.
    Resume {
        /// The pause that ended.
        pause: u32,
    },
    /// Cancel it (before or while it runs).
    Cancel {
        /// Who.
        by: By,
        /// Why.
        reason: String,
    },
    /// Its run ended (the run reports it).
    Finish {
        /// A final run state: completed, failed, rolled_back or cancelled.
        state: ChangeState,
        /// Why.
        reason: Option<String>,
    },
}

impl ChangeCommand {
    /// The command's name, as refusals report it.
    pub fn name(&self) -> &'static str {
        match self {
            ChangeCommand::Create { .. } => "create",
            ChangeCommand::Edit { .. } => "edit",
            ChangeCommand::Submit { .. } => "submit",
            ChangeCommand::Approve { .. } => "approve",
            ChangeCommand::Reject { .. } => "reject",
            ChangeCommand::Withdraw { .. } => "withdraw",
            ChangeCommand::Schedule { .. } => "start",
            ChangeCommand::Start { .. } => "record the rollout start of",
            ChangeCommand::Pause { .. } => "pause",
            ChangeCommand::Resume { .. } => "continue",
            ChangeCommand::Cancel { .. } => "cancel",
            ChangeCommand::Finish { .. } => "finish",
        }
    }
}

/// Why a change command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeRefusal {
    /// The request does not exist.
    #[error("the change request does not exist")]
    NotFound,
    /// Created already.
    #[error("the change request exists already")]
    AlreadyExists,
    /// The command is not allowed in the current state.
    #[error(
        "cannot {command} a change request that is {state}; allowed only when {}",
        allowed_list(.allowed)
    )]
    IllegalTransition {
        /// The command.
        command: &'static str,
        /// The current state.
        state: ChangeState,
        /// The states the command is allowed in.
        allowed: Vec<ChangeState>,
    },
    /// If-Match named another version.
    #[error("the change request is at version {current}")]
    VersionMismatch {
        /// The current version.
        current: u64,
    },
    /// Only the author may do this.
    #[error("only the author of a change request may {0} it")]
    NotAuthor(&'static str),
    /// The author tried to approve or reject their own request.
    #[error("the author of a change request cannot {0} it (four-eyes)")]
    OwnRequest(&'static str),
    /// The approver approved already.
    #[error("{0} has approved this change request already; another approver is needed")]
    AlreadyApproved(String),
    /// An emergency run was reviewed by enough approvers already.
    #[error("this emergency change was reviewed already")]
    AlreadyReviewed,
    /// Content or command is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The preview found policy violations and the request does not accept them at risk high.
    #[error(
        "the preview found policy violations on {devices} device(s) (first: {first}); fix the \
         change, or raise risk to high and set overrides.accept_policy_violations so that \
         approvers accept them explicitly"
    )]
    PolicyViolations {
        /// Devices with violations.
        devices: usize,
        /// The first violation.
        first: String,
    },
    /// The window ended before the request could be submitted or started.
    #[error("the maintenance window ended at {0}; edit the window")]
    WindowEnded(String),
    /// Not approved (and not an emergency).
    #[error("the change request needs {missing} more approval(s) before it can start")]
    NotApproved {
        /// Approvals still missing.
        missing: u32,
    },
    /// A pause number that is not the open pause.
    #[error("the rollout is not paused at pause {0}")]
    NotPaused(u32),
}

fn allowed_list(states: &[ChangeState]) -> String {
    let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
    names.join(", ")
}

impl Aggregate for ChangeRequest {
    type Event = ChangeEvent;
    type Command = ChangeCommand;
    type Refusal = ChangeRefusal;

    fn evolve(&mut self, event: &ChangeEvent) {
        self.version += 1;
        match event {
            ChangeEvent::Created(e) => {
                self.id = Some(e.change_request_id);
                self.author = e.author.clone();
                self.content = Some(e.content.clone());
                self.sealed_script = e.sealed_script;
                self.state = ChangeState::Draft;
            }
            ChangeEvent::Edited(e) => {
                self.content = Some(e.content.clone());
                self.sealed_script = e.sealed_script;
                self.state = ChangeState::Draft;
                self.rejection = None;
            }
            ChangeEvent::ApprovalsInvalidated(_) => self.approvals.clear(),
            ChangeEvent::Submitted(e) => {
                self.devices = e.devices.clone();
                self.previews = e.previews.clone();
                self.required_approvals = e.required_approvals;
                self.restore_script = e.restore_script.clone();
                self.submissions += 1;
                self.approvals.clear();
                self.rejection = None;
                self.state = ChangeState::Submitted;
            }
            ChangeEvent::Approved(e) => {
                self.approvals.push(Approval {
                    by: e.by.clone(),
                    comment: e.comment.clone(),
                    retrospective: e.retrospective,
                });
                if self.state == ChangeState::Submitted && self.missing_approvals() == 0 {
                    self.state = ChangeState::Approved;
                }
            }
            ChangeEvent::Rejected(e) => {
                self.rejection = Some((e.by.clone(), e.comment.clone()));
                self.state = ChangeState::Rejected;
            }
            ChangeEvent::Withdrawn(_) => self.state = ChangeState::Withdrawn,
            ChangeEvent::Scheduled(e) => {
                self.workflow_id = Some(e.workflow_id);
                self.state = ChangeState::Scheduled;
            }
            ChangeEvent::Started(e) => {
                self.rollout_id = Some(e.rollout_id);
                self.state = ChangeState::Running;
            }
            ChangeEvent::Paused(e) => {
                self.paused = Some(e.pause);
                self.pauses = self.pauses.max(e.pause);
            }
            ChangeEvent::Resumed(_) => self.paused = None,
            ChangeEvent::CancelRequested(_) => self.cancel_requested = true,
            ChangeEvent::Cancelled(e) => {
                self.final_reason = Some(e.reason.clone());
                self.state = ChangeState::Cancelled;
            }
            ChangeEvent::Finished(e) => {
                self.final_reason = e.reason.clone();
                self.paused = None;
                self.state = e.state;
            }
        }
    }

    fn decide(&self, command: &ChangeCommand) -> Result<Vec<ChangeEvent>, ChangeRefusal> {
        use ChangeState as S;
        if let ChangeCommand::Create {
            id,
            by,
            content,
            sealed_script,
        } = command
        {
            if self.id.is_some() {
                return Err(ChangeRefusal::AlreadyExists);
            }
            validate_content(content)?;
            return Ok(vec![
                ChangeRequestCreated {
                    change_request_id: *id,
                    author: by.user.clone(),
                    content: content.clone(),
                    sealed_script: *sealed_script,
                }
                .into(),
            ]);
        }
        let Some(content) = self.content.as_ref().filter(|_| self.id.is_some()) else {
            return Err(ChangeRefusal::NotFound);
        };
        let allowed = |states: &[ChangeState]| {
            if states.contains(&self.state) {
                Ok(())
            } else {
                Err(ChangeRefusal::IllegalTransition {
                    command: command.name(),
                    state: self.state,
                    allowed: states.to_vec(),
                })
            }
        };
        let author_only = |by: &By, what: &'static str| {
            if by.user == self.author {
                Ok(())
            } else {
                Err(ChangeRefusal::NotAuthor(what))
            }
        };
        match command {
            ChangeCommand::Create { .. } => Err(ChangeRefusal::AlreadyExists),
            ChangeCommand::Edit {
                by,
                content: new,
                if_version,
                sealed_script,
            } => {
                allowed(&[S::Draft, S::Submitted, S::Approved, S::Rejected])?;
                author_only(by, "edit")?;
                if let Some(v) = if_version
                    && *v != self.version
                {
                    return Err(ChangeRefusal::VersionMismatch {
                        current: self.version,
                    });
                }
                validate_content(new)?;
                // The same masked content with another sealed script is a change (the secret
                // values differ).
                if new == content && *sealed_script == self.sealed_script && self.state == S::Draft
                {
                    return Ok(vec![]);
                }
                let mut out: Vec<ChangeEvent> = vec![
                    ChangeRequestEdited {
                        content: new.clone(),
                        previous_state: self.state,
                        sealed_script: *sealed_script,
                    }
                    .into(),
                ];
                if !self.approvals.is_empty() {
                    out.push(
                        ChangeRequestApprovalsInvalidated {
                            approvers: self.approvals.iter().map(|a| a.by.clone()).collect(),
                            reason: "the request was edited after it was approved".to_owned(),
                        }
                        .into(),
                    );
                }
                Ok(out)
            }
            ChangeCommand::Submit {
                by,
                devices,
                previews,
                policy,
                restore_script,
                now,
            } => {
                allowed(&[S::Draft])?;
                author_only(by, "submit")?;
                validate_content(content)?;
                policy.validate().map_err(ChangeRefusal::Invalid)?;
                if devices.is_empty() {
                    return Err(ChangeRefusal::Invalid(
                        "the target matches no device; pick devices or tags that exist".into(),
                    ));
                }
                if devices.len() > MAX_DEVICES {
                    return Err(ChangeRefusal::Invalid(format!(
                        "the target matches {} devices; at most {MAX_DEVICES} per request",
                        devices.len()
                    )));
                }
                let unique: BTreeSet<&DeviceId> = devices.iter().collect();
                if unique.len() != devices.len() {
                    return Err(ChangeRefusal::Invalid(
                        "the target lists a device more than once".into(),
                    ));
                }
                if let Some(w) = &content.window
                    && w.end <= *now
                {
                    return Err(ChangeRefusal::WindowEnded(rfc3339(w.end)));
                }
                if let ChangeAction::Restore { device_id, .. } = &content.action {
                    if devices.as_slice() != [*device_id] {
                        return Err(ChangeRefusal::Invalid(
                            "a restore targets exactly the device it restores".into(),
                        ));
                    }
                    match restore_script {
                        Some(s) if !s.trim().is_empty() => {}
                        Some(_) => {
                            return Err(ChangeRefusal::Invalid(
                                "the device is at that version already: nothing to restore".into(),
                            ));
                        }
                        None => {
                            let why = previews
                                .iter()
                                .find_map(|p| p.note.clone())
                                .unwrap_or_else(|| "no archived configuration".into());
                            return Err(ChangeRefusal::Invalid(format!(
                                "the restore script could not be computed: {why}"
                            )));
                        }
                    }
                }
                let violating: Vec<&DevicePreviewSummary> = previews
                    .iter()
                    .filter(|p| !p.violations.is_empty())
                    .collect();
                if let Some(first) = violating.first()
                    && !(content.overrides.accept_policy_violations
                        && content.risk == RiskLevel::High)
                {
                    return Err(ChangeRefusal::PolicyViolations {
                        devices: violating.len(),
                        first: format!("{}: {}", first.device_id, first.violations.join("; ")),
                    });
                }
                Ok(vec![
                    ChangeRequestSubmitted {
                        devices: devices.clone(),
                        previews: previews.clone(),
                        required_approvals: policy.required(content.risk),
                        restore_script: restore_script.clone(),
                    }
                    .into(),
                ])
            }
            ChangeCommand::Approve { by, comment } => {
                if by.user == self.author {
                    return Err(ChangeRefusal::OwnRequest("approve"));
                }
                let retrospective = content.emergency && self.ran();
                if retrospective {
                    if self.reviewed() {
                        return Err(ChangeRefusal::AlreadyReviewed);
                    }
                    if self
                        .approvals
                        .iter()
                        .any(|a| a.retrospective && a.by == by.user)
                    {
                        return Err(ChangeRefusal::AlreadyApproved(by.user.clone()));
                    }
                } else {
                    allowed(&[S::Submitted])?;
                    if self.approvals.iter().any(|a| a.by == by.user) {
                        return Err(ChangeRefusal::AlreadyApproved(by.user.clone()));
                    }
                }
                check_text("comment", comment.as_deref())?;
                Ok(vec![
                    ChangeRequestApproved {
                        by: by.user.clone(),
                        comment: comment.clone().filter(|c| !c.trim().is_empty()),
                        retrospective,
                    }
                    .into(),
                ])
            }
            ChangeCommand::Reject { by, comment } => {
                allowed(&[S::Submitted, S::Approved])?;
                if by.user == self.author {
                    return Err(ChangeRefusal::OwnRequest("reject"));
                }
                if comment.trim().is_empty() {
                    return Err(ChangeRefusal::Invalid(
                        "a rejection needs a comment saying why".into(),
                    ));
                }
                check_text("comment", Some(comment))?;
                Ok(vec![
                    ChangeRequestRejected {
                        by: by.user.clone(),
                        comment: comment.clone(),
                    }
                    .into(),
                ])
            }
            ChangeCommand::Withdraw { by, reason } => {
                allowed(&[S::Draft, S::Submitted, S::Approved, S::Rejected])?;
                author_only(by, "withdraw")?;
                check_text("reason", reason.as_deref())?;
                Ok(vec![
                    ChangeRequestWithdrawn {
                        reason: reason.clone(),
                    }
                    .into(),
                ])
            }
            ChangeCommand::Schedule { by, workflow_id } => {
                if content.emergency {
                    allowed(&[S::Submitted, S::Approved])?;
                } else {
                    if self.state == S::Submitted {
                        return Err(ChangeRefusal::NotApproved {
                            missing: self.missing_approvals(),
                        });
                    }
                    allowed(&[S::Approved])?;
                }
                Ok(vec![
                    ChangeRequestScheduled {
                        workflow_id: *workflow_id,
                        by: by.user.clone(),
                        window: content.window.clone(),
                    }
                    .into(),
                ])
            }
            ChangeCommand::Start { rollout_id } => {
                if self.state == S::Running && self.rollout_id == Some(*rollout_id) {
                    return Ok(vec![]);
                }
                allowed(&[S::Scheduled])?;
                Ok(vec![
                    ChangeRequestStarted {
                        rollout_id: *rollout_id,
                    }
                    .into(),
                ])
            }
            ChangeCommand::Pause { reason } => {
                allowed(&[S::Running])?;
                if self.paused.is_some() {
                    return Ok(vec![]);
                }
                Ok(vec![
                    ChangeRequestPaused {
                        pause: self.pauses + 1,
                        reason: reason.clone(),
                    }
                    .into(),
                ])
            }
            ChangeCommand::Resume { pause } => {
                allowed(&[S::Running])?;
                if self.paused != Some(*pause) {
                    return Err(ChangeRefusal::NotPaused(*pause));
                }
                Ok(vec![ChangeRequestResumed { pause: *pause }.into()])
            }
            ChangeCommand::Cancel { by, reason } => {
                allowed(&[S::Approved, S::Scheduled, S::Running])?;
                check_text("reason", Some(reason))?;
                if self.state == S::Running {
                    if self.cancel_requested {
                        return Ok(vec![]);
                    }
                    return Ok(vec![
                        ChangeRequestCancelRequested {
                            by: by.user.clone(),
                            reason: reason.clone(),
                        }
                        .into(),
                    ]);
                }
                Ok(vec![
                    ChangeRequestCancelled {
                        by: by.user.clone(),
                        reason: reason.clone(),
                    }
                    .into(),
                ])
            }
            ChangeCommand::Finish { state, reason } => {
                if !matches!(
                    state,
                    S::Completed | S::Failed | S::RolledBack | S::Cancelled
                ) {
                    return Err(ChangeRefusal::Invalid(format!(
                        "a run ends completed, failed, rolled_back or cancelled, not {state}"
                    )));
                }
                if self.state == *state && self.state.is_final() {
                    return Ok(vec![]);
                }
                if self.state == S::Cancelled {
                    // cancelled before its rollout started: the run's own end adds nothing
                    return Ok(vec![]);
                }
                allowed(&[S::Scheduled, S::Running])?;
                Ok(vec![
                    ChangeRequestFinished {
                        state: *state,
                        reason: reason.clone(),
                    }
                    .into(),
                ])
            }
        }
    }
}

/// An instant as RFC 3339, as the request's refusals and reasons name times (the workflows
/// that record its run use it too).
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn check_text(field: &str, text: Option<&str>) -> Result<(), ChangeRefusal> {
    match text {
        Some(t) if t.chars().count() > MAX_TEXT => Err(ChangeRefusal::Invalid(format!(
            "{field} is longer than {MAX_TEXT} characters"
        ))),
        _ => Ok(()),
    }
}

/// Checks what an author wrote (the rules that need no outside knowledge).
pub fn validate_content(c: &ChangeContent) -> Result<(), ChangeRefusal> {
    let bad = |m: String| Err(ChangeRefusal::Invalid(m));
    if !has_visible(&c.title)
        || c.title.chars().count() > MAX_TITLE
        || c.title.chars().any(char::is_control)
    {
        return bad(format!(
            "title must be one line of 1-{MAX_TITLE} characters (no control characters)"
        ));
    }
    if !has_visible(&c.reason) {
        return bad("reason is required: say why the change is needed".into());
    }
    check_text("reason", Some(&c.reason))?;
    if let Some(t) = &c.ticket
        && (t.chars().count() > 200 || t.chars().any(char::is_control))
    {
        return bad("ticket must be at most 200 printable characters".into());
    }
    match &c.target {
        ChangeTarget::Devices { device_ids } => {
            if device_ids.is_empty() {
                return bad("target.device_ids must list at least one device".into());
            }
            if device_ids.len() > MAX_DEVICES {
                return bad(format!(
                    "target.device_ids lists {}; at most {MAX_DEVICES}",
                    device_ids.len()
                ));
            }
        }
        ChangeTarget::Tags { tags, .. } => {
            if tags.is_empty()
                || tags
                    .iter()
                    .any(|t| !has_visible(t) || t.chars().count() > 100)
            {
                return bad("target.tags must list 1 or more tags of 1-100 characters".into());
            }
        }
        ChangeTarget::Tenant {} => {}
    }
    match &c.action {
        ChangeAction::Script { script } => {
            if !has_visible(script) {
                return bad("action.script is empty".into());
            }
            if script.chars().count() > MAX_SCRIPT {
                return bad(format!(
                    "action.script is longer than {MAX_SCRIPT} characters"
                ));
            }
        }
        ChangeAction::Firmware { version, .. } => {
            let ok = !version.is_empty()
                && version.len() <= 32
                && version
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            if !ok {
                return bad(format!(
                    "action.version `{version}` is not a RouterOS version (like 7.16.2)"
                ));
            }
        }
        ChangeAction::Restore { device_id, commit } => {
            if commit.len() < 7
                || commit.len() > 64
                || !commit.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return bad(format!(
                    "action.commit `{commit}` is not a config history version (a hex commit id)"
                ));
            }
            match &c.target {
                ChangeTarget::Devices { device_ids } if device_ids.as_slice() == [*device_id] => {}
                _ => {
                    return bad("a restore's target must be exactly the device it restores \
                         (target.kind devices with that one id)"
                        .into());
                }
            }
        }
    }
    let p = &c.plan;
    if p.batch_size == 0 || p.parallelism == 0 || p.failure_threshold == 0 {
        return bad(
            "plan.batch_size, plan.parallelism and plan.failure_threshold must be at least 1"
                .into(),
        );
    }
    if p.batch_size > 1000 || p.parallelism > 100 {
        return bad("plan.batch_size is at most 1000 and plan.parallelism at most 100".into());
    }
    if matches!(c.action, ChangeAction::Firmware { .. }) && p.rollback_on_halt {
        return bad(
            "plan.rollback_on_halt applies to script changes; a firmware rollout cannot be \
             rolled back automatically (set it to false)"
                .into(),
        );
    }
    if let Some(w) = &c.window {
        if w.end <= w.start {
            return bad("window.end must be after window.start".into());
        }
        let tz_ok = !w.time_zone.is_empty()
            && w.time_zone.len() <= 64
            && w.time_zone
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_+-".contains(&b));
        if !tz_ok {
            return bad(format!(
                "window.time_zone `{}` is not a time zone name (like Europe/Amsterdam or UTC)",
                w.time_zone
            ));
        }
    }
    if c.overrides.allow_without_timer {
        // Switching off the device-side rollback timer is accepted only by approvers, like
        // accepting policy violations: never in a break-glass run, and only at risk high.
        if c.emergency {
            return bad(
                "overrides.allow_without_timer needs approval before the run: an emergency \
                 change cannot switch off the rollback timer"
                    .into(),
            );
        }
        if c.risk != RiskLevel::High {
            return bad(
                "overrides.allow_without_timer needs risk high (approvers accept running \
                 without a rollback timer explicitly)"
                    .into(),
            );
        }
    }
    if c.emergency {
        if c.emergency_reason
            .as_deref()
            .is_none_or(|r| !has_visible(r))
        {
            return bad("an emergency change needs emergency_reason".into());
        }
        check_text("emergency_reason", c.emergency_reason.as_deref())?;
    }
    Ok(())
}

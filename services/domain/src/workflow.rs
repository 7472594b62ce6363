//! The journal of a durable workflow (stream `workflow-<id>`, [`WorkflowEvent`]) and of a
//! fleet rollout (stream `rollout-<id>`, [`RolloutEvent`]): the event types the engine writes
//! and the projections fold, as typed enums. The engine's scheduling lives in
//! `workflows/engine`; this module fixes the recorded shapes and the pure rollout rules.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::event::{EventType, event_enum};
use crate::ids::{DeviceId, RolloutId, WorkflowId};

/// A workflow instance was started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowStarted {
    /// Definition name (`config_push`, `firmware_upgrade`, `rollout`, `backup`, `noop`...).
    pub kind: String,
    /// Version of the definition it runs under; it finishes under the same version.
    pub definition_version: u32,
    /// The input the definition received.
    pub input: serde_json::Value,
    /// Caller-supplied idempotency key (starting twice with it gives the same workflow).
    pub idempotency_key: Option<String>,
    /// Devices it will touch (each is locked to this workflow while it runs).
    pub devices: Vec<DeviceId>,
    /// The rollout that started it, if any.
    pub rollout_id: Option<RolloutId>,
}
impl EventType for WorkflowStarted {
    const TYPE: &'static str = "WorkflowStarted";
    const SCHEMA_VERSION: u32 = 1;
}

/// A step began (journaled before its side effect).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowStepStarted {
    /// Step name.
    pub step: String,
    /// Attempt number, from 1.
    pub attempt: u32,
}
impl EventType for WorkflowStepStarted {
    const TYPE: &'static str = "WorkflowStepStarted";
    const SCHEMA_VERSION: u32 = 1;
}

/// A step finished with an output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowStepCompleted {
    /// Step name.
    pub step: String,
    /// Attempt that succeeded.
    pub attempt: u32,
    /// The step's output, replayed instead of re-running the step.
    pub output: serde_json::Value,
}
impl EventType for WorkflowStepCompleted {
    const TYPE: &'static str = "WorkflowStepCompleted";
    const SCHEMA_VERSION: u32 = 1;
}

/// How a step failure is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// Tried again after a backoff.
    Retryable,
    /// Ends the step for good (the definition decides what follows: undo or fail).
    Fatal,
}

/// A step attempt failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowStepFailed {
    /// Step name.
    pub step: String,
    /// Attempt that failed.
    pub attempt: u32,
    /// The error, as text.
    pub error: String,
    /// Retryable or fatal.
    pub class: FailureClass,
    /// When the next attempt is due, for retryable failures with attempts left.
    #[serde(with = "time::serde::rfc3339::option")]
    pub retry_at: Option<OffsetDateTime>,
}
impl EventType for WorkflowStepFailed {
    const TYPE: &'static str = "WorkflowStepFailed";
    const SCHEMA_VERSION: u32 = 1;
}

/// A durable timer was set (sleep until, or a wait with a timeout).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowTimerScheduled {
    /// Timer name, unique within the workflow.
    pub name: String,
    /// When it fires.
    #[serde(with = "time::serde::rfc3339")]
    pub fire_at: OffsetDateTime,
}
impl EventType for WorkflowTimerScheduled {
    const TYPE: &'static str = "WorkflowTimerScheduled";
    const SCHEMA_VERSION: u32 = 1;
}

/// A signal was delivered (`cancel`, `pause`, `resume`, or a definition's own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowSignalled {
    /// Signal name.
    pub signal: String,
    /// Its payload.
    pub payload: serde_json::Value,
}
impl EventType for WorkflowSignalled {
    const TYPE: &'static str = "WorkflowSignalled";
    const SCHEMA_VERSION: u32 = 1;
}

/// A durable timer fired: the workflow went past its sleep or its wait timed out. Journaled
/// so that a replay takes the same branch (a signal that arrives later does not change it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowTimerFired {
    /// Timer name, as in its [`WorkflowTimerScheduled`].
    pub name: String,
}
impl EventType for WorkflowTimerFired {
    const TYPE: &'static str = "WorkflowTimerFired";
    const SCHEMA_VERSION: u32 = 1;
}

/// A worker took the workflow over after the previous worker's lease expired. Appended before
/// the new worker does anything else, so the previous worker's next append (which expects the
/// version before this event) conflicts: a stale worker cannot journal after a takeover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowTakenOver {
    /// The new claim's attempt number (the task row's fencing token).
    pub attempt: u64,
    /// The worker that took over.
    pub worker: String,
    /// The worker whose lease expired.
    pub previous_worker: String,
}
impl EventType for WorkflowTakenOver {
    const TYPE: &'static str = "WorkflowTakenOver";
    const SCHEMA_VERSION: u32 = 1;
}

/// How a workflow ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done (workflows without a commit/rollback notion).
    Succeeded,
    /// A push or upgrade took effect and its safety net was disarmed.
    Committed,
    /// The device was brought back to its snapshot.
    RolledBack,
    /// Cancelled by an operator (after any rollback it needed).
    Cancelled,
    /// Ended with an error.
    Failed,
}

/// The workflow ended; nothing follows in its journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowFinished {
    /// How.
    pub outcome: Outcome,
    /// Why, for anything but success.
    pub reason: Option<String>,
    /// The definition's result.
    pub output: serde_json::Value,
}
impl EventType for WorkflowFinished {
    const TYPE: &'static str = "WorkflowFinished";
    const SCHEMA_VERSION: u32 = 1;
}

/// What a rollout deploys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RolloutTarget {
    /// A RouterOS script (change set) pushed with the two-phase push.
    ChangeSet {
        /// The script.
        script: String,
    },
    /// A RouterOS version from the firmware cache.
    Firmware {
        /// Target version.
        version: String,
    },
}

/// A rollout was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutCreated {
    /// Operator-facing name.
    pub name: String,
    /// What it deploys.
    pub target: RolloutTarget,
    /// Canary devices, done first, one at a time.
    pub canaries: Vec<DeviceId>,
    /// The remaining devices, in order.
    pub devices: Vec<DeviceId>,
    /// Devices per batch.
    pub batch_size: u32,
    /// Devices worked on at once within a batch.
    pub parallelism: u32,
    /// Failures at which the rollout halts.
    pub failure_threshold: u32,
    /// Whether a halt rolls back the devices already changed.
    pub rollback_on_halt: bool,
    /// The workflow driving it.
    pub workflow_id: WorkflowId,
}
impl EventType for RolloutCreated {
    const TYPE: &'static str = "RolloutCreated";
    const SCHEMA_VERSION: u32 = 1;
}

/// One device's workflow in a rollout finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutDeviceFinished {
    /// The device.
    pub device_id: DeviceId,
    /// Its workflow.
    pub workflow_id: WorkflowId,
    /// Batch number (0 = canaries).
    pub batch: u32,
    /// How it ended.
    pub outcome: Outcome,
}
impl EventType for RolloutDeviceFinished {
    const TYPE: &'static str = "RolloutDeviceFinished";
    const SCHEMA_VERSION: u32 = 1;
}

/// The rollout changed state (operator action or threshold).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutStateChanged {
    /// The new state.
    pub state: RolloutState,
    /// Why (operator comment, or the threshold that was hit).
    pub reason: Option<String>,
}
impl EventType for RolloutStateChanged {
    const TYPE: &'static str = "RolloutStateChanged";
    const SCHEMA_VERSION: u32 = 1;
}

/// A rollout's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// Working through batches.
    Running,
    /// Paused by an operator: no new device is started.
    Paused,
    /// Stopped because failures reached the threshold.
    Halted,
    /// Cancelled by an operator.
    Cancelled,
    /// Every device done.
    Completed,
}

/// How the restore of one device after a halted rollout ended (`rollback_on_halt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreResult {
    /// The device is back at the configuration it had before the rollout's push (restored
    /// now, or found already there), verified from a fresh connection.
    Restored,
    /// Left alone: its configuration was changed after the push (out of band), so restoring
    /// the pre-push snapshot would clobber someone else's change.
    Refused,
    /// The restore was tried and did not succeed (the change may still be on the device).
    Failed,
}

/// A halted rollout with `rollback_on_halt` finished restoring one device whose push had
/// committed in this rollout (its `config_restore` workflow ended).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutDeviceRestored {
    /// The device.
    pub device_id: DeviceId,
    /// The `config_restore` workflow.
    pub workflow_id: WorkflowId,
    /// The committed `config_push` workflow whose change it undid.
    pub push_workflow_id: WorkflowId,
    /// Restored, refused or failed.
    pub result: RestoreResult,
    /// Why, for anything but `restored`.
    pub reason: Option<String>,
}
impl EventType for RolloutDeviceRestored {
    const TYPE: &'static str = "RolloutDeviceRestored";
    const SCHEMA_VERSION: u32 = 1;
}

event_enum! {
    /// Every event of a workflow journal (`workflow-<id>`), by its stored type name.
    pub enum WorkflowEvent in "workflow" {
        /// `WorkflowStarted`.
        Started(WorkflowStarted),
        /// `WorkflowStepStarted`.
        StepStarted(WorkflowStepStarted),
        /// `WorkflowStepCompleted`.
        StepCompleted(WorkflowStepCompleted),
        /// `WorkflowStepFailed`.
        StepFailed(WorkflowStepFailed),
        /// `WorkflowTimerScheduled`.
        TimerScheduled(WorkflowTimerScheduled),
        /// `WorkflowSignalled`.
        Signalled(WorkflowSignalled),
        /// `WorkflowTimerFired`.
        TimerFired(WorkflowTimerFired),
        /// `WorkflowTakenOver`.
        TakenOver(WorkflowTakenOver),
        /// `WorkflowFinished`.
        Finished(WorkflowFinished),
    }
}

event_enum! {
    /// Every event of a rollout stream (`rollout-<id>`), by its stored type name.
    pub enum RolloutEvent in "rollout" {
        /// `RolloutCreated`.
        Created(RolloutCreated),
        /// `RolloutDeviceFinished`.
        DeviceFinished(RolloutDeviceFinished),
        /// `RolloutStateChanged`.
        StateChanged(RolloutStateChanged),
        /// `RolloutDeviceRestored`.
        DeviceRestored(RolloutDeviceRestored),
    }
}

/// Why a rollout is refused before it starts (checked by [`check_rollout`], which the API
/// calls before starting the `rollout` workflow and the workflow calls again first thing).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolloutRefused {
    /// A limit is zero.
    #[error("batch_size, parallelism and failure_threshold must be at least 1")]
    ZeroLimit,
    /// `rollback_on_halt` on a firmware rollout.
    #[error(
        "rollback_on_halt is not supported for a firmware rollout (target {version}): undoing \
         an upgrade is a RouterOS downgrade, a different and riskier operation than restoring \
         a configuration; start the rollout without rollback_on_halt and plan any downgrade \
         separately"
    )]
    FirmwareRollbackOnHalt {
        /// The rollout's target version.
        version: String,
    },
}

/// Checks a rollout's definition before it starts: every limit at least 1, and no
/// `rollback_on_halt` on a firmware rollout (see [`RolloutRefused`]).
pub fn check_rollout(
    target: &RolloutTarget,
    batch_size: u32,
    parallelism: u32,
    failure_threshold: u32,
    rollback_on_halt: bool,
) -> Result<(), RolloutRefused> {
    if batch_size == 0 || parallelism == 0 || failure_threshold == 0 {
        return Err(RolloutRefused::ZeroLimit);
    }
    match target {
        RolloutTarget::Firmware { version } if rollback_on_halt => {
            Err(RolloutRefused::FirmwareRollbackOnHalt {
                version: version.clone(),
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_firmware_rollout_with_rollback_on_halt_is_refused() {
        let fw = RolloutTarget::Firmware {
            version: "7.19.4".into(),
        };
        let change = RolloutTarget::ChangeSet {
            script: "/system identity set name=x".into(),
        };
        assert_eq!(
            check_rollout(&fw, 1, 1, 1, true),
            Err(RolloutRefused::FirmwareRollbackOnHalt {
                version: "7.19.4".into()
            })
        );
        assert_eq!(check_rollout(&fw, 1, 1, 1, false), Ok(()));
        assert_eq!(check_rollout(&change, 1, 1, 1, true), Ok(()));
        assert_eq!(
            check_rollout(&change, 1, 0, 1, false),
            Err(RolloutRefused::ZeroLimit)
        );
    }

    #[test]
    fn restored_events_round_trip_and_old_rollout_events_still_decode() {
        let e = RolloutDeviceRestored {
            device_id: DeviceId::from_uuid(uuid::Uuid::from_u128(1)),
            workflow_id: WorkflowId::from_uuid(uuid::Uuid::from_u128(2)),
            push_workflow_id: WorkflowId::from_uuid(uuid::Uuid::from_u128(3)),
            result: RestoreResult::Refused,
            reason: Some("changed out of band".into()),
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["result"], "refused");
        assert_eq!(
            serde_json::from_value::<RolloutDeviceRestored>(v).unwrap(),
            e
        );
        // a v1 RolloutStateChanged written before restores existed
        let old: RolloutStateChanged =
            serde_json::from_str(r#"{"state":"halted","reason":"2 device(s) failed"}"#).unwrap();
        assert_eq!(old.state, RolloutState::Halted);
    }
}

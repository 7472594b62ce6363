//! The journal of a durable workflow (stream `workflow-<id>`, [`WorkflowEvent`]) and of a
//! fleet rollout (stream `rollout-<id>`, [`RolloutEvent`]): the event types the engine writes
//! and the projections fold, as typed enums. The engine's scheduling lives in
//! `workflows/engine`; this module fixes the recorded shapes and the pure rollout rules: the
//! [`Rollout`] aggregate (evolve over [`RolloutEvent`], decide over [`RolloutCommand`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::aggregate::Aggregate;
use crate::event::{EventType, event_enum};
use crate::ids::{DeviceId, RolloutId, WorkflowId};

pub mod card;

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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
        /// The script, secret values masked (`rosconfig::mask_script`).
        script: String,
        /// The real script, sealed (store `sealed_scripts`), when masking changed it; each
        /// push of the rollout decrypts it in memory.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sealed_script: Option<uuid::Uuid>,
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// Why a rollout command is refused: before it starts (checked by [`check_rollout`], which
/// the API calls before starting the `rollout` workflow and the workflow calls again first
/// thing), or later by [`Rollout::decide`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolloutRefused {
    /// The rollout's stream already holds its creation.
    #[error("the rollout was already created")]
    AlreadyCreated,
    /// The rollout was not created yet.
    #[error("the rollout was not created yet")]
    NotCreated,
    /// The rollout already ended.
    #[error("the rollout already ended ({state:?})")]
    Ended {
        /// The state it ended in.
        state: RolloutState,
    },
    /// The device is not one of the rollout's.
    #[error("device {0} is not part of the rollout")]
    NotInRollout(DeviceId),
    /// A restore was recorded for a rollout that did not halt.
    #[error("only a halted rollout restores devices")]
    NotHalted,
    /// A restore was recorded for a rollout without `rollback_on_halt`.
    #[error("the rollout was created without rollback_on_halt")]
    NoRollbackOnHalt,
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

// ---- the rollout aggregate -------------------------------------------------------------------

/// A rollout, folded from its stream (`rollout-<id>`) by [`Rollout::evolve`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rollout {
    /// The definition, once created.
    pub created: Option<RolloutCreated>,
    /// The current state (`None` before creation).
    pub state: Option<RolloutState>,
    /// Each device's latest outcome.
    pub outcomes: BTreeMap<DeviceId, Outcome>,
    /// Finished device workflows that neither committed nor succeeded.
    pub failures: u32,
    /// How the restore of each device after a halt ended.
    pub restores: BTreeMap<DeviceId, RestoreResult>,
}

/// What may be asked of a rollout. Decided by [`Rollout::decide`]; the `rollout` workflow
/// (in `workflows/netops`) drives it.
#[derive(Debug, Clone, PartialEq)]
pub enum RolloutCommand {
    /// Create it: [`check_rollout`], then `RolloutCreated` and `RolloutStateChanged` to
    /// `running`.
    Create(RolloutCreated),
    /// One device's workflow finished: `RolloutDeviceFinished`.
    RecordDeviceFinished(RolloutDeviceFinished),
    /// A halted rollout's restore of one device ended: `RolloutDeviceRestored`.
    RecordRestore(RolloutDeviceRestored),
    /// Change its state: `RolloutStateChanged`.
    ChangeState {
        /// The new state.
        state: RolloutState,
        /// Why.
        reason: Option<String>,
    },
}

impl Rollout {
    /// Folds one event (exhaustive).
    pub fn evolve(&mut self, event: &RolloutEvent) {
        match event {
            RolloutEvent::Created(c) => self.created = Some(c.clone()),
            RolloutEvent::StateChanged(s) => self.state = Some(s.state),
            RolloutEvent::DeviceFinished(f) => {
                self.outcomes.insert(f.device_id, f.outcome);
                if !matches!(f.outcome, Outcome::Committed | Outcome::Succeeded) {
                    self.failures = self.failures.saturating_add(1);
                }
            }
            RolloutEvent::DeviceRestored(r) => {
                self.restores.insert(r.device_id, r.result);
            }
        }
    }

    /// Whether the failures reached the threshold (the rollout halts).
    pub fn threshold_reached(&self) -> bool {
        self.created
            .as_ref()
            .is_some_and(|c| self.failures >= c.failure_threshold)
    }

    /// Decides a command: the events to append, or why it is refused.
    pub fn decide(&self, command: &RolloutCommand) -> Result<Vec<RolloutEvent>, RolloutRefused> {
        let created = || self.created.as_ref().ok_or(RolloutRefused::NotCreated);
        let open = || match self.state {
            Some(state @ (RolloutState::Completed | RolloutState::Cancelled)) => {
                Err(RolloutRefused::Ended { state })
            }
            _ => Ok(()),
        };
        Ok(match command {
            RolloutCommand::Create(c) => {
                if self.created.is_some() {
                    return Err(RolloutRefused::AlreadyCreated);
                }
                check_rollout(
                    &c.target,
                    c.batch_size,
                    c.parallelism,
                    c.failure_threshold,
                    c.rollback_on_halt,
                )?;
                vec![
                    RolloutEvent::Created(c.clone()),
                    RolloutEvent::StateChanged(RolloutStateChanged {
                        state: RolloutState::Running,
                        reason: None,
                    }),
                ]
            }
            RolloutCommand::RecordDeviceFinished(f) => {
                let c = created()?;
                open()?;
                if !c.canaries.contains(&f.device_id) && !c.devices.contains(&f.device_id) {
                    return Err(RolloutRefused::NotInRollout(f.device_id));
                }
                vec![RolloutEvent::DeviceFinished(f.clone())]
            }
            RolloutCommand::RecordRestore(r) => {
                let c = created()?;
                if self.state != Some(RolloutState::Halted) && !self.threshold_reached() {
                    return Err(RolloutRefused::NotHalted);
                }
                if !c.rollback_on_halt {
                    return Err(RolloutRefused::NoRollbackOnHalt);
                }
                vec![RolloutEvent::DeviceRestored(r.clone())]
            }
            RolloutCommand::ChangeState { state, reason } => {
                created()?;
                open()?;
                vec![RolloutEvent::StateChanged(RolloutStateChanged {
                    state: *state,
                    reason: reason.clone(),
                })]
            }
        })
    }
}

impl Aggregate for Rollout {
    type Event = RolloutEvent;
    type Command = RolloutCommand;
    type Refusal = RolloutRefused;

    fn evolve(&mut self, event: &RolloutEvent) {
        Rollout::evolve(self, event);
    }

    fn decide(&self, command: &RolloutCommand) -> Result<Vec<RolloutEvent>, RolloutRefused> {
        Rollout::decide(self, command)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::testing::given;

    fn dev(n: u128) -> DeviceId {
        DeviceId::from_uuid(uuid::Uuid::from_u128(n))
    }

    fn created(rollback_on_halt: bool) -> RolloutCreated {
        RolloutCreated {
            name: "r".into(),
            target: RolloutTarget::ChangeSet {
                script: "/system identity set name=x".into(),
                sealed_script: None,
            },
            canaries: vec![dev(1)],
            devices: vec![dev(2), dev(3)],
            batch_size: 2,
            parallelism: 1,
            failure_threshold: 1,
            rollback_on_halt,
            workflow_id: WorkflowId::from_uuid(uuid::Uuid::from_u128(9)),
        }
    }

    fn running() -> RolloutEvent {
        RolloutEvent::StateChanged(RolloutStateChanged {
            state: RolloutState::Running,
            reason: None,
        })
    }

    fn finished(device: DeviceId, outcome: Outcome) -> RolloutDeviceFinished {
        RolloutDeviceFinished {
            device_id: device,
            workflow_id: WorkflowId::from_uuid(uuid::Uuid::from_u128(100)),
            batch: 0,
            outcome,
        }
    }

    #[test]
    fn create_checks_the_definition_and_starts_running() {
        given::<Rollout>([])
            .when(RolloutCommand::Create(created(true)))
            .then([RolloutEvent::Created(created(true)), running()]);
        given::<Rollout>([RolloutEvent::Created(created(true)), running()])
            .when(RolloutCommand::Create(created(true)))
            .then_refused(RolloutRefused::AlreadyCreated);
        let mut zero = created(false);
        zero.parallelism = 0;
        given::<Rollout>([])
            .when(RolloutCommand::Create(zero))
            .then_refused(RolloutRefused::ZeroLimit);
        let mut fw = created(true);
        fw.target = RolloutTarget::Firmware {
            version: "7.19.4".into(),
        };
        given::<Rollout>([])
            .when(RolloutCommand::Create(fw))
            .then_refused(RolloutRefused::FirmwareRollbackOnHalt {
                version: "7.19.4".into(),
            });
    }

    #[test]
    fn device_results_count_failures_up_to_the_threshold() {
        let history = [RolloutEvent::Created(created(true)), running()];
        let state = given::<Rollout>(history.clone())
            .when(RolloutCommand::RecordDeviceFinished(finished(
                dev(1),
                Outcome::Committed,
            )))
            .then([RolloutEvent::DeviceFinished(finished(
                dev(1),
                Outcome::Committed,
            ))]);
        assert!(!state.threshold_reached());
        let state = given::<Rollout>(history.clone())
            .when(RolloutCommand::RecordDeviceFinished(finished(
                dev(2),
                Outcome::Failed,
            )))
            .then([RolloutEvent::DeviceFinished(finished(
                dev(2),
                Outcome::Failed,
            ))]);
        assert!(state.threshold_reached());
        given::<Rollout>(history)
            .when(RolloutCommand::RecordDeviceFinished(finished(
                dev(42),
                Outcome::Failed,
            )))
            .then_refused(RolloutRefused::NotInRollout(dev(42)));
        given::<Rollout>([])
            .when(RolloutCommand::RecordDeviceFinished(finished(
                dev(1),
                Outcome::Failed,
            )))
            .then_refused(RolloutRefused::NotCreated);
    }

    #[test]
    fn restores_only_after_a_halt_with_rollback_on_halt() {
        let restored = RolloutDeviceRestored {
            device_id: dev(2),
            workflow_id: WorkflowId::from_uuid(uuid::Uuid::from_u128(5)),
            push_workflow_id: WorkflowId::from_uuid(uuid::Uuid::from_u128(6)),
            result: RestoreResult::Restored,
            reason: None,
        };
        let failed = RolloutEvent::DeviceFinished(finished(dev(2), Outcome::Failed));
        given::<Rollout>([
            RolloutEvent::Created(created(true)),
            running(),
            failed.clone(),
        ])
        .when(RolloutCommand::RecordRestore(restored.clone()))
        .then([RolloutEvent::DeviceRestored(restored.clone())]);
        given::<Rollout>([RolloutEvent::Created(created(true)), running()])
            .when(RolloutCommand::RecordRestore(restored.clone()))
            .then_refused(RolloutRefused::NotHalted);
        given::<Rollout>([RolloutEvent::Created(created(false)), running(), failed])
            .when(RolloutCommand::RecordRestore(restored))
            .then_refused(RolloutRefused::NoRollbackOnHalt);
    }

    #[test]
    fn an_ended_rollout_takes_no_more_changes() {
        let done = RolloutEvent::StateChanged(RolloutStateChanged {
            state: RolloutState::Completed,
            reason: None,
        });
        given::<Rollout>([RolloutEvent::Created(created(false)), running()])
            .when(RolloutCommand::ChangeState {
                state: RolloutState::Completed,
                reason: None,
            })
            .then([done.clone()]);
        given::<Rollout>([RolloutEvent::Created(created(false)), running(), done])
            .when(RolloutCommand::ChangeState {
                state: RolloutState::Halted,
                reason: Some("late".into()),
            })
            .then_refused(RolloutRefused::Ended {
                state: RolloutState::Completed,
            });
    }

    #[test]
    fn a_firmware_rollout_with_rollback_on_halt_is_refused() {
        let fw = RolloutTarget::Firmware {
            version: "7.19.4".into(),
        };
        let change = RolloutTarget::ChangeSet {
            script: "/system identity set name=x".into(),
            sealed_script: None,
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

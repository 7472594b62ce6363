//! Workflow cards: each workflow kind the system runs, in one place, shared by the API that
//! starts it and the worker that runs it: its kind name, definition version, typed input and
//! output, and the devices it owns while it runs.
//!
//! A card is a type implementing [`WorkflowCard`]. The engine starts a workflow only from a
//! card (`engine.start::<ConfigPush>(tenant, input, options)`) and registers a definition
//! only from one (`Definition::of::<ConfigPush>(..)`), so an unknown kind cannot be written
//! and the input the API builds is the input the worker decodes.
//!
//! The JSON of every input and output is the one stored today: a `WorkflowStarted.input` or
//! `WorkflowFinished.output` journaled before the cards existed deserializes into these
//! types (the tests at the end pin the shapes). Changing a type here in a way that changes
//! its JSON is a new definition version. Pure: no IO.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use time::OffsetDateTime;

use crate::change::{ChangeState, MaintenanceWindow, RolloutPlan};
use crate::ids::{ChangeRequestId, DeviceId, RolloutId, WorkflowId};
use crate::workflow::{Outcome, RolloutDeviceRestored, RolloutTarget};

/// A workflow kind: what the API starts and the worker runs, typed.
pub trait WorkflowCard: Send + Sync + 'static {
    /// The kind (`config_push`, ...): `WorkflowStarted.kind` and the task row's kind.
    const KIND: &'static str;
    /// The definition version new workflows of this kind run under (from 1).
    const VERSION: u32;
    /// What the workflow is started with (`WorkflowStarted.input`).
    type Input: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// What it finishes with (`WorkflowFinished.output`).
    type Output: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The devices it owns while it runs (one workflow per device at a time).
    fn devices(input: &Self::Input) -> Vec<DeviceId>;
}

/// The signal that continues a rollout paused because its maintenance window ended
/// ([`RolloutInput::window_end`]), payload [`WindowContinue`]: sent by the API, waited for by
/// the rollout workflow, which ignores a continue naming another pause.
pub const WINDOW_CONTINUE: &str = "window_continue";

/// Payload of [`WINDOW_CONTINUE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowContinue {
    /// The pause it ends (its number within the run, from 1).
    pub pause: u32,
}

// ---- change_request ------------------------------------------------------------------------

/// `change_request` v1: the run of an approved change request: waits for its window (a
/// durable timer), starts its rollout, records how it ended on the request's stream.
#[derive(Debug, Clone, Copy)]
pub struct ChangeRun;

impl WorkflowCard for ChangeRun {
    const KIND: &'static str = "change_request";
    const VERSION: u32 = 1;
    type Input = ChangeRunInput;
    type Output = ChangeRunOutput;
    /// None itself: the rollout's children own the devices while they run.
    fn devices(_input: &ChangeRunInput) -> Vec<DeviceId> {
        Vec::new()
    }
}

/// What a change run deploys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChangeRunAction {
    /// A script (a change set, or the frozen script of a restore).
    Script {
        /// The script, secret values masked (`rosconfig::mask_script`).
        script: String,
        /// The real script, sealed (store `sealed_scripts`), when masking changed it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sealed_script: Option<uuid::Uuid>,
    },
    /// A firmware version.
    Firmware {
        /// Target version.
        version: String,
        /// Also RouterBOARD firmware.
        #[serde(default)]
        routerboard: bool,
    },
}

/// Input of `change_request` v1: the approved request, frozen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRunInput {
    /// The request (stream `change-<id>`; also the correlation id of everything it starts).
    pub change_id: ChangeRequestId,
    /// Its title (the rollout's name).
    pub name: String,
    /// The frozen devices, in rollout order.
    pub devices: Vec<DeviceId>,
    /// What to deploy.
    pub action: ChangeRunAction,
    /// How.
    pub plan: RolloutPlan,
    /// When.
    pub window: Option<MaintenanceWindow>,
    /// Approved override: push without the device-side rollback timer where needed.
    #[serde(default)]
    pub allow_without_timer: bool,
    /// Approved at risk `high` with the policy violations accepted (not an emergency): the
    /// pushes run under an elevated [`Policy`] (`Policy::elevated`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub elevated: bool,
    /// Who asked for the run (user id): the approver or author who pressed start, or whose
    /// approval completed a request with a window. Recorded on `ChangeRequestScheduled`.
    pub requested_by: String,
}

/// Output of `change_request` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRunOutput {
    /// How the request ended.
    pub state: ChangeState,
    /// Its rollout, if it started one.
    pub rollout_id: Option<RolloutId>,
    /// Why, for anything but `completed`.
    pub reason: Option<String>,
}

/// Every card's kind, sorted: what a process that registers all cards knows.
pub const KINDS: [&str; 6] = [
    Backup::KIND,
    ChangeRun::KIND,
    ConfigPush::KIND,
    ConfigRestore::KIND,
    FirmwareUpgrade::KIND,
    Rollout::KIND,
];

fn is_false(b: &bool) -> bool {
    !*b
}

// ---- config_push -------------------------------------------------------------------------

/// `config_push` v1: the two-phase push of a RouterOS script to one device (snapshot,
/// validate, arm rollback, apply, verify, commit or roll back).
#[derive(Debug, Clone, Copy)]
pub struct ConfigPush;

impl WorkflowCard for ConfigPush {
    const KIND: &'static str = "config_push";
    const VERSION: u32 = 1;
    type Input = PushInput;
    type Output = PushOutput;
    fn devices(input: &PushInput) -> Vec<DeviceId> {
        vec![input.device_id]
    }
}

/// What a change may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Menus (API form, e.g. `/ip/service`) a change may not touch, submenus included.
    pub forbidden_menus: Vec<String>,
    /// Most commands in one change.
    pub max_commands: usize,
    /// Largest change in bytes (`/file add contents=` holds about 60 KB).
    pub max_bytes: usize,
    /// The change may store and run code on the device: `/file`, `/system/script`,
    /// `/tool/netwatch`, `/container`, `/disk`, `/system/clock` and script-hook properties
    /// (`on-event`, `on-up`, `lease-script`, ...). Set only for the pushes of an approved
    /// change request at risk `high` that accepts policy violations; never for a direct
    /// push. Forbidden menus, the push machinery's names and run-time substitutions stay
    /// refused either way.
    #[serde(default, skip_serializing_if = "is_false")]
    pub elevated: bool,
}

impl Default for Policy {
    /// `/user` and `/ip/service` (management access), `/system/scheduler` (the rollback
    /// timer lives there), 500 commands, 60 000 bytes.
    fn default() -> Self {
        Policy {
            forbidden_menus: vec![
                "/user".into(),
                "/ip/service".into(),
                "/system/scheduler".into(),
            ],
            max_commands: 500,
            max_bytes: 60_000,
            elevated: false,
        }
    }
}

/// A `/ping` health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingCheck {
    /// Target address (IPv4).
    pub address: String,
    /// Probes to send.
    pub count: u32,
    /// Answers needed.
    pub min_received: u32,
}

/// Optional health checks after a change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthChecks {
    /// Interfaces (by name) that must be enabled and running.
    pub interfaces_running: Vec<String>,
    /// Targets the device must reach with `/ping`.
    pub ping: Vec<PingCheck>,
}

impl HealthChecks {
    /// No check at all.
    pub fn is_empty(&self) -> bool {
        self.interfaces_running.is_empty() && self.ping.is_empty()
    }
}

/// Input of `config_push` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushInput {
    /// The device.
    pub device_id: DeviceId,
    /// Change id (letters, digits, `-`, `_`; at most 64): carried onto the device.
    pub change_id: String,
    /// The RouterOS script to apply, secret values masked (`rosconfig::mask_script`): this
    /// input is journaled (`WorkflowStarted`), projected and published.
    pub script: String,
    /// The real script, sealed (store `sealed_scripts`), when masking changed it: the steps
    /// that validate and apply the change decrypt it in memory. `None`: `script` is the
    /// real script (it has no secret values, or the input predates sealing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_script: Option<uuid::Uuid>,
    /// What the change may do (default policy when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// Health checks after apply.
    #[serde(default, skip_serializing_if = "HealthChecks::is_empty")]
    pub checks: HealthChecks,
    /// Push even though device-mode disables the scheduler (no device-side rollback timer).
    /// Explicit and journaled (step `scheduler_gate`).
    #[serde(default)]
    pub allow_without_timer: bool,
}

/// Output of `config_push` v1, by how it ended.
///
/// The device reports inside (`verified`, `rollback`) are the netops step records
/// (`Verified`, `RolledBack`), kept as JSON here: the domain does not model device IO.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PushOutput {
    /// Committed: the change took effect and the rollback timer was disarmed.
    Committed {
        /// The change id.
        change_id: String,
        /// Archive commit of the pre-push snapshot.
        pre_commit: String,
        /// Archive commit of the post-push snapshot (`None` when it failed).
        post_commit: Option<String>,
        /// The verification that passed (netops `Verified`).
        verified: Option<serde_json::Value>,
        /// Whether the commit step disarmed the timer now (not a previous attempt).
        disarmed_now: bool,
    },
    /// Rolled back (or cancelled after arm and rolled back).
    RolledBack {
        /// The change id.
        change_id: String,
        /// Archive commit of the pre-push snapshot.
        pre_commit: String,
        /// Archive commit of the snapshot after the rollback (`None` when it failed).
        post_commit: Option<String>,
        /// How the rollback went (netops `RolledBack`).
        rollback: serde_json::Value,
    },
    /// The rollback after a failure failed too.
    RollbackFailed {
        /// The change id.
        change_id: String,
        /// Archive commit of the pre-push snapshot.
        pre_commit: String,
    },
    /// Refused at a gate before the device was changed.
    Refused {
        /// The gate (`scheduler_gate`).
        stage: String,
    },
    /// Cancelled before the device was changed.
    NotStarted {},
}

// ---- firmware_upgrade --------------------------------------------------------------------

/// `firmware_upgrade` v1: RouterOS upgrade of one device from the firmware cache (precheck,
/// snapshot, upload, install, await the version, optionally the RouterBOARD firmware).
#[derive(Debug, Clone, Copy)]
pub struct FirmwareUpgrade;

impl WorkflowCard for FirmwareUpgrade {
    const KIND: &'static str = "firmware_upgrade";
    const VERSION: u32 = 1;
    type Input = FirmwareInput;
    type Output = FirmwareOutput;
    fn devices(input: &FirmwareInput) -> Vec<DeviceId> {
        vec![input.device_id]
    }
}

/// Input of `firmware_upgrade` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwareInput {
    /// The device.
    pub device_id: DeviceId,
    /// Target RouterOS version (`7.19.4`).
    pub version: String,
    /// Also upgrade the RouterBOARD firmware (a second reboot) when it lags.
    #[serde(default)]
    pub routerboard: bool,
}

/// Output of `firmware_upgrade` v1, by how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FirmwareOutput {
    /// The device runs the target version now.
    Upgraded {
        /// The version the device reported after the reboot.
        version: String,
        /// Archive commit of the pre-upgrade snapshot.
        pre_commit: String,
        /// The RouterBOARD firmware step (netops `RouterboardFirmware`), when asked for.
        routerboard: Option<serde_json::Value>,
    },
    /// The device already ran the target version: nothing was done.
    AlreadyCurrent {
        /// The version.
        version: String,
        /// Always `true`.
        already_current: bool,
    },
    /// The device did not come back with the target version.
    Failed {
        /// Archive commit of the pre-upgrade snapshot.
        pre_commit: String,
        /// The target version.
        target: String,
    },
    /// Cancelled before the install.
    NotStarted {},
}

// ---- backup ------------------------------------------------------------------------------

/// `backup` v1: export of one device's configuration into the config history, with the
/// binary backup kept encrypted.
#[derive(Debug, Clone, Copy)]
pub struct Backup;

impl WorkflowCard for Backup {
    const KIND: &'static str = "backup";
    const VERSION: u32 = 1;
    type Input = BackupInput;
    type Output = BackupOutput;
    fn devices(input: &BackupInput) -> Vec<DeviceId> {
        vec![input.device_id]
    }
}

/// Input of `backup` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInput {
    /// The device.
    pub device_id: DeviceId,
}

/// Output of `backup` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupOutput {
    /// Archive commit holding the export.
    pub commit: String,
    /// SHA-256 of the archived export.
    pub sha256: String,
    /// Whether the archive content changed.
    pub changed: bool,
    /// SHA-256 of the encrypted backup blob, when the backup could be read back (7.13+).
    pub backup_blob: Option<String>,
}

// ---- rollout -----------------------------------------------------------------------------

/// `rollout` v1: one child workflow per device ([`ConfigPush`] or [`FirmwareUpgrade`]),
/// canaries first, then batches; halts at the failure threshold, and with
/// `rollback_on_halt` restores the committed devices ([`ConfigRestore`] children). It owns
/// no device itself: its children do.
#[derive(Debug, Clone, Copy)]
pub struct Rollout;

impl WorkflowCard for Rollout {
    const KIND: &'static str = "rollout";
    const VERSION: u32 = 1;
    type Input = RolloutInput;
    type Output = RolloutOutput;
    fn devices(_input: &RolloutInput) -> Vec<DeviceId> {
        Vec::new()
    }
}

/// Input of `rollout` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutInput {
    /// The rollout (its stream is `rollout-<id>`).
    pub rollout_id: RolloutId,
    /// Operator-facing name.
    pub name: String,
    /// What it deploys.
    pub target: RolloutTarget,
    /// Canaries, one at a time, first.
    #[serde(default)]
    pub canaries: Vec<DeviceId>,
    /// The other devices, in order.
    pub devices: Vec<DeviceId>,
    /// Devices per batch (from 1).
    pub batch_size: u32,
    /// Children at once within a batch (from 1).
    pub parallelism: u32,
    /// Failed devices at which the rollout halts (from 1).
    pub failure_threshold: u32,
    /// A change rollout halted by the threshold restores the devices whose push committed
    /// (`config_restore`); refused for a firmware rollout (see docs/push.md).
    #[serde(default)]
    pub rollback_on_halt: bool,
    /// Policy of each config push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// Health checks of each config push.
    #[serde(default, skip_serializing_if = "HealthChecks::is_empty")]
    pub checks: HealthChecks,
    /// Firmware: also upgrade RouterBOARD firmware.
    #[serde(default, skip_serializing_if = "is_false")]
    pub routerboard: bool,
    /// The change request it runs for (its children's pushes use the request's change id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_id: Option<ChangeRequestId>,
    /// The end of the request's maintenance window: at a batch boundary at or after it, the
    /// rollout pauses (and waits for `window_continue` or a cancel).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub window_end: Option<OffsetDateTime>,
    /// Each config push runs without the device-side rollback timer where device-mode
    /// disables the scheduler (an override the change request's approvers accepted).
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_without_timer: bool,
}

/// How one device's child workflow of a rollout ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutDeviceResult {
    /// The child workflow.
    pub workflow_id: WorkflowId,
    /// How it ended.
    pub outcome: Outcome,
    /// Why, for anything but success.
    pub reason: Option<String>,
}

/// Output of `rollout` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutOutput {
    /// Devices whose workflow did not succeed or commit.
    pub failures: u32,
    /// Each device's result, by device id.
    pub devices: BTreeMap<String, RolloutDeviceResult>,
    /// After a halt with `rollback_on_halt`: each committed device's restore, by device id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<BTreeMap<String, RolloutDeviceRestored>>,
}

// ---- config_restore ----------------------------------------------------------------------

/// `config_restore` v1: puts one device back at the configuration it had before a committed
/// [`ConfigPush`], unless it was changed since (then it refuses). Started by a halted
/// rollout with `rollback_on_halt`.
#[derive(Debug, Clone, Copy)]
pub struct ConfigRestore;

impl WorkflowCard for ConfigRestore {
    const KIND: &'static str = "config_restore";
    const VERSION: u32 = 1;
    type Input = RestoreInput;
    type Output = RestoreOutput;
    fn devices(input: &RestoreInput) -> Vec<DeviceId> {
        vec![input.device_id]
    }
}

/// Input of `config_restore` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreInput {
    /// The device.
    pub device_id: DeviceId,
    /// The committed `config_push` whose change is undone; its journal holds the pre-push
    /// snapshot (archive commit, backup file on the device, hashes).
    pub push_workflow_id: WorkflowId,
}

/// Output of `config_restore` v1 (tagged by `result`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum RestoreOutput {
    /// The device is back at the pre-push configuration, verified.
    Restored {
        /// How it got there (netops `RollbackMethod`: `restored_now`,
        /// `already_at_snapshot`, ...).
        method: String,
        /// The device.
        device_id: DeviceId,
        /// The push undone.
        push_workflow_id: WorkflowId,
        /// The push's change id.
        change_id: String,
        /// Archive commit of the pre-push snapshot.
        pre_commit: String,
        /// Archive commit of the snapshot after the restore.
        post_restore_commit: String,
        /// Normalised configuration hash after the restore.
        normalised_sha256: String,
    },
    /// Left alone: changed after the push, or the push cannot be restored.
    Refused {
        /// Why.
        reason: String,
        /// The device.
        device_id: DeviceId,
        /// The push.
        push_workflow_id: WorkflowId,
    },
    /// Tried and did not succeed.
    Failed {
        /// Why.
        reason: String,
        /// The device.
        device_id: DeviceId,
        /// The push.
        push_workflow_id: WorkflowId,
    },
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::{Value, json};

    use super::*;

    /// `json` (a shape journaled before the cards existed) decodes as `T` and encodes back to
    /// the same JSON.
    fn round_trips<T: Serialize + DeserializeOwned>(json: Value) -> T {
        let typed: T = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&typed).unwrap(), json);
        typed
    }

    const D: &str = "0190f7a6-0000-7000-8000-000000000001";
    const W: &str = "0190f7a6-0000-7000-8000-000000000002";

    #[test]
    fn the_inputs_the_api_journaled_round_trip() {
        let p: PushInput = round_trips(json!({
            "device_id": D, "change_id": "chg-1", "script": "/ip pool add name=p",
            "allow_without_timer": false,
        }));
        assert_eq!(ConfigPush::devices(&p), vec![D.parse().unwrap()]);
        round_trips::<FirmwareInput>(json!({
            "device_id": D, "version": "7.19.4", "routerboard": true,
        }));
        round_trips::<BackupInput>(json!({ "device_id": D }));
        let r: RolloutInput = round_trips(json!({
            "rollout_id": W, "name": "r", "target": { "kind": "change_set", "script": "x" },
            "canaries": [D], "devices": [], "batch_size": 10, "parallelism": 1,
            "failure_threshold": 1, "rollback_on_halt": false,
        }));
        assert!(Rollout::devices(&r).is_empty());
        round_trips::<RestoreInput>(json!({ "device_id": D, "push_workflow_id": W }));
    }

    #[test]
    fn the_child_inputs_the_rollout_journaled_decode() {
        // what `rollout` v1 wrote for its children before the cards (policy as null)
        let p: PushInput = serde_json::from_value(json!({
            "device_id": D, "change_id": "ro-1", "script": "x", "policy": null,
            "checks": { "interfaces_running": [], "ping": [] },
        }))
        .unwrap();
        assert_eq!(
            (p.policy, p.checks.is_empty(), p.allow_without_timer),
            (None, true, false)
        );
        let checked: PushInput = round_trips(json!({
            "device_id": D, "change_id": "ro-1", "script": "x",
            "policy": { "forbidden_menus": ["/user"], "max_commands": 5, "max_bytes": 9 },
            "checks": { "interfaces_running": ["ether1"], "ping": [] },
            "allow_without_timer": false,
        }));
        assert_eq!(checked.checks.interfaces_running, vec!["ether1".to_owned()]);
        round_trips::<FirmwareInput>(json!({
            "device_id": D, "version": "7.19.4", "routerboard": false,
        }));
    }

    #[test]
    fn the_outputs_journaled_today_round_trip() {
        let committed: PushOutput = round_trips(json!({
            "change_id": "c", "pre_commit": "a", "post_commit": null,
            "verified": { "checked": 1 }, "disarmed_now": true,
        }));
        assert!(matches!(committed, PushOutput::Committed { .. }));
        let rolled: PushOutput = round_trips(json!({
            "change_id": "c", "pre_commit": "a", "post_commit": "b",
            "rollback": { "method": "restored_now" },
        }));
        assert!(matches!(rolled, PushOutput::RolledBack { .. }));
        let failed: PushOutput = round_trips(json!({ "change_id": "c", "pre_commit": "a" }));
        assert!(matches!(failed, PushOutput::RollbackFailed { .. }));
        let gate: PushOutput = round_trips(json!({ "stage": "scheduler_gate" }));
        assert!(matches!(gate, PushOutput::Refused { .. }));
        let none: PushOutput = round_trips(json!({}));
        assert!(matches!(none, PushOutput::NotStarted {}));

        let up: FirmwareOutput = round_trips(json!({
            "version": "7.19.4", "pre_commit": "a", "routerboard": null,
        }));
        assert!(matches!(up, FirmwareOutput::Upgraded { .. }));
        let cur: FirmwareOutput =
            round_trips(json!({ "version": "7.19.4", "already_current": true }));
        assert!(matches!(cur, FirmwareOutput::AlreadyCurrent { .. }));
        let f: FirmwareOutput = round_trips(json!({ "pre_commit": "a", "target": "7.19.4" }));
        assert!(matches!(f, FirmwareOutput::Failed { .. }));
        assert!(matches!(
            round_trips::<FirmwareOutput>(json!({})),
            FirmwareOutput::NotStarted {}
        ));

        round_trips::<BackupOutput>(json!({
            "commit": "a", "sha256": "b", "changed": true, "backup_blob": null,
        }));
        round_trips::<RolloutOutput>(json!({
            "failures": 1,
            "devices": { D: { "workflow_id": W, "outcome": "failed", "reason": "x" } },
        }));
        round_trips::<RolloutOutput>(json!({
            "failures": 1, "devices": {},
            "rollback": { D: { "device_id": D, "workflow_id": W, "push_workflow_id": W,
                               "result": "refused", "reason": "changed" } },
        }));
        let restored: RestoreOutput = round_trips(json!({
            "result": "restored", "method": "restored_now", "device_id": D,
            "push_workflow_id": W, "change_id": "ro-1", "pre_commit": "a",
            "post_restore_commit": "b", "normalised_sha256": "c",
        }));
        assert!(matches!(restored, RestoreOutput::Restored { .. }));
        round_trips::<RestoreOutput>(json!({
            "result": "refused", "reason": "r", "device_id": D, "push_workflow_id": W,
        }));
    }

    #[test]
    fn kinds_are_sorted_and_distinct() {
        let mut sorted = KINDS;
        sorted.sort_unstable();
        assert_eq!(sorted, KINDS);
        assert!(KINDS.windows(2).all(|w| w[0] != w[1]));
    }
}

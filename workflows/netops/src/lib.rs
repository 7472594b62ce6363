//! Idempotent device operations that the durable workflows run as steps: the two-phase
//! configuration push ([`push`]), its rollback, and the firmware upgrade ([`firmware`]).
//! Each step is a plain async function over a [`routeros::Client`] (or a
//! [`routeros::Config`] where it must reconnect), returns a serde-serialisable record that
//! becomes the journaled step output, and fails with a classified [`NetopsError`]
//! (retryable / fatal / refused).
//!
//! Owns: what is done on the device and how a resumed step tells that it already took
//! effect (the change id carried onto the device). Does not own: the journal, retries,
//! timers or signals (the engine), where snapshots are stored (the config archive: the
//! snapshot step returns the export text and backup bytes for the caller to store), or
//! device credentials. The device steps depend on `domain` (failure classes), `routeros`,
//! `rosconfig` and the engine only for its crash points; [`workflows`] adds the store, the
//! engine, the archive and axum (the firmware cache server). devsim, the benchmark and the
//! chaos worker are not here (tests, `services/netledger/src/bench`, `workflows/chaos`).
//!
//! - [`change`]: change ids and device names, the push [`Policy`], the offline plan
//!   (expectations the running configuration must meet); re-exported from the pure
//!   `netledger-changeplan` crate, which the API shares.
//! - [`device`]: connecting, the device's own clock, device-mode and capability probe.
//! - [`push`]: snapshot, validate, arm, extend, apply, verify, commit, rollback, cleanup.
//! - [`files`]: the file channel of a step: `/file add`, `/file/read` and exports over the
//!   API where the device's version has them, over SSH/SFTP (`routeros-ssh`) where it does
//!   not and SSH access is registered.
//! - [`firmware`]: precheck, upload (device-side fetch), install, await, RouterBOARD
//!   firmware.
//!
//! `docs/push.md` describes each step, why it is idempotent and which failures it designs
//! out.

pub mod change;
pub mod device;
pub mod error;
pub mod files;
pub mod firmware;
pub mod push;
pub mod workflows;

pub use change::{Change, ChangeId, Expectation, Plan, Policy};
pub use device::{DateStyle, DeviceMode, DeviceProbe, DeviceTime, connect, probe};
pub use error::{ErrorClass, NetopsError, Result};
pub use files::{Files, HostKeyRecorder, SshLink};
pub use push::{
    Applied, ArmOptions, Armed, Cleaned, Committed, DeviceDryRun, HealthChecks, PingCheck,
    RollbackMethod, RollbackOptions, RolledBack, SchedulerGate, Snapshot, SnapshotTaken, Validated,
    Verification, Verified, VerifyFailed, VerifyFailure, VerifyOptions, apply, apply_token_file,
    arm, arm_with, cleanup, cleanup_changes, commit, extend, require_scheduler, rollback,
    rollback_with, snapshot, snapshot_with, validate, verify,
};

//! The crate's error type, classified at the step boundary: retryable (the device could not be
//! reached or did not answer in time), fatal (validation, policy, import, a device that
//! refuses or reports something that retrying will not change) or refused (a safety gate the
//! caller may lift only with an explicit, audited override).

use std::path::PathBuf;
use std::time::Duration;

use netledger_domain::workflow::FailureClass;
use serde::{Deserialize, Serialize};

/// How a workflow step should treat an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Try again after a backoff: connection errors, timeouts, a device still rebooting.
    Retryable,
    /// Retrying cannot help: the change, the policy, the device's answer or its state is wrong.
    Fatal,
    /// A safety gate refused the operation (device-mode without a scheduler, device-mode
    /// without fetch); only an explicit override from the caller lifts it.
    Refused,
}

impl ErrorClass {
    /// The engine's failure class (a refusal ends the step like a fatal error).
    pub fn failure_class(self) -> FailureClass {
        match self {
            ErrorClass::Retryable => FailureClass::Retryable,
            ErrorClass::Fatal | ErrorClass::Refused => FailureClass::Fatal,
        }
    }
}

/// Everything a device operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum NetopsError {
    /// A command or the connection failed; the class follows the RouterOS error (connection
    /// loss and timeouts are retryable, a `!trap` or rejected login is not).
    #[error("{op} failed")]
    Device {
        /// What was being done (`connect`, `/system/backup/save`, ...).
        op: String,
        /// The client error.
        #[source]
        source: Box<routeros::Error>,
    },
    /// An SSH or SFTP operation failed (RouterOS before 7.9/7.13, where the API cannot do a
    /// file job). Transient failures (unreachable, timeout, connection lost) are retryable;
    /// a host key that does not match the pinned one, a rejected login and a command error
    /// are fatal. The message includes the SSH error's (it names both keys on a mismatch).
    #[error("{op} failed: {error}")]
    Ssh {
        /// What was being done (`SSH connect`, `SFTP write of flash/x.rsc`).
        op: String,
        /// The SSH error (not a `#[source]`: its text is in this message already).
        error: Box<routeros_ssh::SshError>,
    },
    /// The SSH host key a session trusted on first use could not be recorded
    /// (`DeviceSshHostKeyPinned`); nothing was sent over the session. Retryable when the
    /// store failed, fatal when the device aggregate refused it (another key is pinned).
    #[error("the SSH host key of device {device} could not be recorded: {detail}")]
    HostKeyNotRecorded {
        /// The device.
        device: String,
        /// Why.
        detail: String,
        /// The store failed (retry), rather than refused.
        transient: bool,
    },
    /// The firmware package cannot be put on the device: `/tool/fetch` is not allowed
    /// (device-mode or the network) and the device has no SSH access for an SFTP upload.
    #[error("cannot put {package} on the device: {reason}")]
    NoPackagePath {
        /// Package file name.
        package: String,
        /// Why, and what to change.
        reason: String,
    },
    /// A change id must be usable in device file and scheduler names.
    #[error("invalid change id {id:?}: use 1 to 64 ASCII letters, digits, '-' or '_'")]
    InvalidChangeId {
        /// The rejected id.
        id: String,
    },
    /// The change script does not parse.
    #[error("change {change} does not parse: {message}")]
    Parse {
        /// Change id.
        change: String,
        /// 1-based line.
        line: usize,
        /// RouterOS-like message with line and column.
        message: String,
    },
    /// The change breaks the push policy.
    #[error("change {change} is refused by policy: {rule}")]
    Policy {
        /// Change id.
        change: String,
        /// Which rule, and where.
        rule: String,
    },
    /// Applying the change to the snapshot's configuration fails (offline dry run).
    #[error("change {change} does not apply to the device's current configuration: {message}")]
    DoesNotApply {
        /// Change id.
        change: String,
        /// Failing line and RouterOS-like message.
        message: String,
    },
    /// Applying the change to the snapshot's configuration changes nothing.
    #[error("change {change} is a no-op: the device's configuration already has it")]
    NoOp {
        /// Change id.
        change: String,
    },
    /// The device's own `/import dry-run` rejected the change.
    #[error("the device's import dry run rejected change {change}: {message}")]
    DryRunRejected {
        /// Change id.
        change: String,
        /// The device's trap text (names the failing line).
        message: String,
    },
    /// `/import` of the change failed on the device. Lines before the failing one may be in
    /// effect: roll back.
    #[error(
        "import of change {change} failed on the device: {message} (lines before it may be in effect: roll back)"
    )]
    ImportFailed {
        /// Change id.
        change: String,
        /// The device's trap text (names the failing line).
        message: String,
    },
    /// device-mode forbids the scheduler, so a rollback timer could never fire.
    #[error(
        "device-mode {mode:?} disables the scheduler: a rollback timer could not fire, so the push is refused (the caller may override, and audit it)"
    )]
    SchedulerDisabled {
        /// `mode` from `/system/device-mode`.
        mode: String,
    },
    /// device-mode forbids `/tool/fetch`, so the device cannot download a package.
    #[error(
        "device-mode {mode:?} disables fetch: the device cannot download the firmware package (enable fetch in device-mode on the device)"
    )]
    FetchDisabled {
        /// `mode` from `/system/device-mode`.
        mode: String,
    },
    /// The device's RouterOS lacks something this operation needs over the API, and the
    /// device has no SSH access registered to do it over SSH/SFTP instead.
    #[error(
        "{what} needs RouterOS {needs} or newer; the device runs {version}: register SSH \
         access for the device (`ssh`: its SSH port and host key, pinned or trusted on first \
         use; the same user, with the `ssh` and `ftp` policies) so that it goes over SFTP, or \
         upgrade RouterOS"
    )]
    Unsupported {
        /// The missing capability.
        what: String,
        /// First version that has it.
        needs: String,
        /// The device's version.
        version: String,
    },
    /// The device's export does not parse.
    #[error("the device's export does not parse: {message}")]
    Export {
        /// Parser message with line and column.
        message: String,
    },
    /// A reply had a value this crate cannot interpret (clock, dates, versions).
    #[error("unexpected value from the device: {detail}")]
    Unexpected {
        /// What and where.
        detail: String,
    },
    /// A step found the device in a state where running it would be unsafe.
    #[error("{step} refused for change {change}: {reason}")]
    WrongState {
        /// Step name.
        step: &'static str,
        /// Change id.
        change: String,
        /// Why, and what to do.
        reason: String,
    },
    /// Another change's Netledger rollback timer (`netledger-rollback-*`) is on the device:
    /// it may still fire and revert whatever is pushed now, and a snapshot would capture it.
    /// A device condition an operator resolves (roll that change back, or remove the entry
    /// after checking the device), not something a retry fixes.
    #[error(
        "{step} refused for change {change}: Netledger rollback timer(s) of another change are on the device ({}); they could revert this change. Resolve them first (finish or roll back that push, or remove the entry after checking the device)",
        timers.join(", ")
    )]
    ForeignRollbackTimer {
        /// Step name.
        step: &'static str,
        /// This change.
        change: String,
        /// The scheduler entries found.
        timers: Vec<String>,
    },
    /// The rollback timer is still on the device after it was removed.
    #[error("rollback timer {scheduler} is still on the device after removing it: not committed")]
    DisarmUnconfirmed {
        /// Scheduler entry name.
        scheduler: String,
    },
    /// The change is no longer in effect at commit: the device reverted.
    #[error("change {change} is not in effect any more, so it is not committed: {detail}")]
    Reverted {
        /// Change id.
        change: String,
        /// What was found.
        detail: String,
    },
    /// The device is still unreachable; its own rollback timer has not brought it back yet.
    #[error("rollback of change {change} not confirmed yet: {detail}")]
    RollbackPending {
        /// Change id.
        change: String,
        /// What is being waited for.
        detail: String,
    },
    /// After a restore the configuration is not the snapshot's.
    #[error(
        "after restoring change {change}'s snapshot the configuration differs from it (normalised sha256 {actual}, snapshot {expected}): inspect the device"
    )]
    RestoreMismatch {
        /// Change id.
        change: String,
        /// The snapshot's normalised export sha256.
        expected: String,
        /// What the device has now.
        actual: String,
    },
    /// The device did not come back (after a reboot) within the wait.
    #[error("the device did not come back within {waited:?}: {last_error}")]
    NotBack {
        /// How long was waited.
        waited: Duration,
        /// The last connection error.
        last_error: String,
    },
    /// The firmware package is not in the local cache.
    #[error(
        "firmware package not in the cache: looked for {tried:?} (put routeros-<version>-<arch>.npk under <cache>/<version>/)"
    )]
    PackageMissing {
        /// Paths looked at.
        tried: Vec<PathBuf>,
    },
    /// The local firmware cache could not be read.
    #[error("cannot read the firmware cache at {path}")]
    Cache {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Not enough free storage on the device for the package.
    #[error(
        "not enough free space on the device for {package}: needs {needed} bytes, {free} free (remove files on the device)"
    )]
    InsufficientSpace {
        /// Package file name.
        package: String,
        /// Bytes needed.
        needed: u64,
        /// Bytes free.
        free: u64,
    },
    /// The target version is older than the running one.
    #[error("target {target} is older than the running {current}: downgrades are not done here")]
    Downgrade {
        /// Target version.
        target: String,
        /// Running version.
        current: String,
    },
    /// The downloaded file is not the package that was asked for.
    #[error("the device's copy of {file} is not the expected package: {detail}")]
    PackageMismatch {
        /// File name on the device.
        file: String,
        /// What differs.
        detail: String,
    },
    /// The worker's local lease deadline passed (its heartbeats failed): it may no longer own
    /// the workflow, so it sends the device nothing more. Retryable: the worker that holds
    /// the lease runs the step again.
    #[error(
        "the worker's lease deadline ({deadline}) passed without a successful heartbeat: no device command is sent"
    )]
    LeaseLapsed {
        /// The local deadline that passed.
        deadline: String,
    },
    /// The device came back from the upgrade reboot on another version.
    #[error("the device came back on {actual}, not {expected}: the upgrade failed")]
    UpgradeFailed {
        /// Target version.
        expected: String,
        /// Version after the reboot.
        actual: String,
    },
}

impl NetopsError {
    /// How a workflow step should treat this error.
    pub fn class(&self) -> ErrorClass {
        use NetopsError as E;
        match self {
            E::Device { source, .. } => device_class(source),
            E::Ssh { error, .. } if error.is_transient() => ErrorClass::Retryable,
            E::Ssh { .. } => ErrorClass::Fatal,
            E::HostKeyNotRecorded {
                transient: true, ..
            } => ErrorClass::Retryable,
            E::HostKeyNotRecorded { .. } | E::NoPackagePath { .. } => ErrorClass::Fatal,
            E::DisarmUnconfirmed { .. }
            | E::RollbackPending { .. }
            | E::NotBack { .. }
            | E::LeaseLapsed { .. } => ErrorClass::Retryable,
            E::SchedulerDisabled { .. }
            | E::FetchDisabled { .. }
            | E::ForeignRollbackTimer { .. } => ErrorClass::Refused,
            E::InvalidChangeId { .. }
            | E::Parse { .. }
            | E::Policy { .. }
            | E::DoesNotApply { .. }
            | E::NoOp { .. }
            | E::DryRunRejected { .. }
            | E::ImportFailed { .. }
            | E::Unsupported { .. }
            | E::Export { .. }
            | E::Unexpected { .. }
            | E::WrongState { .. }
            | E::Reverted { .. }
            | E::RestoreMismatch { .. }
            | E::PackageMissing { .. }
            | E::Cache { .. }
            | E::InsufficientSpace { .. }
            | E::Downgrade { .. }
            | E::PackageMismatch { .. }
            | E::UpgradeFailed { .. } => ErrorClass::Fatal,
        }
    }

    /// Shorthand for `class() == Retryable`.
    pub fn is_retryable(&self) -> bool {
        self.class() == ErrorClass::Retryable
    }

    pub(crate) fn device(op: impl Into<String>, source: routeros::Error) -> Self {
        NetopsError::Device {
            op: op.into(),
            source: Box::new(source),
        }
    }
}

/// Connection trouble and timeouts are retryable; a rejected login, a TLS/pinning failure, a
/// `!trap` or a reply the client cannot use (malformed, or larger than the client accepts)
/// are not.
fn device_class(e: &routeros::Error) -> ErrorClass {
    use routeros::Error as R;
    match e {
        R::Connect { .. }
        | R::ConnectTimeout { .. }
        | R::Timeout { .. }
        | R::ConnectionClosed { .. }
        | R::Fatal { .. }
        | R::Codec { .. } => ErrorClass::Retryable,
        R::Tls { .. }
        | R::AddressRefused { .. }
        | R::PinMismatch { .. }
        | R::InvalidServerName { .. }
        | R::LoginRejected { .. }
        | R::Trap { .. }
        | R::Protocol { .. }
        | R::Encode { .. }
        | R::UnexpectedReply { .. }
        | R::ReplyTooLarge { .. }
        | R::Field { .. } => ErrorClass::Fatal,
    }
}

impl From<netledger_changeplan::PlanError> for NetopsError {
    /// The planning errors keep their variant names and messages.
    fn from(e: netledger_changeplan::PlanError) -> Self {
        use netledger_changeplan::PlanError as P;
        match e {
            P::InvalidChangeId { id } => NetopsError::InvalidChangeId { id },
            P::Parse {
                change,
                line,
                message,
            } => NetopsError::Parse {
                change,
                line,
                message,
            },
            P::Policy { change, rule } => NetopsError::Policy { change, rule },
            P::DoesNotApply { change, message } => NetopsError::DoesNotApply { change, message },
            P::NoOp { change } => NetopsError::NoOp { change },
            P::Export { message } => NetopsError::Export { message },
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = NetopsError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let lost = NetopsError::device("x", routeros::Error::ConnectionClosed { source: None });
        assert_eq!(lost.class(), ErrorClass::Retryable);
        let login = NetopsError::device(
            "connect",
            routeros::Error::LoginRejected {
                user: "a".into(),
                message: "invalid user name or password (6)".into(),
            },
        );
        assert_eq!(login.class(), ErrorClass::Fatal);
        let gate = NetopsError::SchedulerDisabled {
            mode: "home".into(),
        };
        assert_eq!(gate.class(), ErrorClass::Refused);
        assert_eq!(gate.class().failure_class(), FailureClass::Fatal);
        assert!(
            NetopsError::NotBack {
                waited: Duration::from_secs(1),
                last_error: "refused".into()
            }
            .is_retryable()
        );
    }
}

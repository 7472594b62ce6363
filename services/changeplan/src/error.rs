//! The planning error: what can be wrong with a change before any device is touched (its
//! id, its text, the push policy, the snapshot's export, whether it applies). netops maps
//! it one to one onto its own `NetopsError` variants of the same names and messages.

/// Everything the offline planning of a change can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
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
    /// The device's export does not parse.
    #[error("the device's export does not parse: {message}")]
    Export {
        /// Parser message with line and column.
        message: String,
    },
}

/// Result alias for this crate.
pub type Result<T, E = PlanError> = std::result::Result<T, E>;

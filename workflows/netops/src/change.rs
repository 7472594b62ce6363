//! Changes and their pure checks, re-exported from [`netledger_changeplan`] (the planning
//! lives there so the API can preview a change without depending on this crate): the change
//! id and the device names derived from it, the push [`Policy`], and the offline plan
//! ([`plan`]) with the [`Expectation`]s that verify and commit check against the running
//! configuration. Planning errors become [`NetopsError`](crate::NetopsError)s of the same
//! names and messages (`From<PlanError>` in [`crate::error`]).

pub use netledger_changeplan::{
    CHANGE_MARKER, Change, ChangeId, DEVICE_SCRIPT_PREAMBLE_LINES, Expectation, Plan, PlanError,
    Policy, PolicyCheck, check_policy, parse_export, plan, policy_violations, to_change_lines,
    unmet,
};

//! The pure planning of configuration changes, shared by the workflows (netops) and the
//! API: nothing here touches a device, a database or the clock.
//!
//! - [`plan`](mod@plan): change ids and the device names derived from them, the push
//!   [`Policy`] check, the offline plan (dry run on a snapshot's export, no-op refusal, the
//!   [`Expectation`]s verify and commit check later).
//! - [`preview`](mod@preview): what a change would do to one device, computed from the
//!   device's latest archived export: the unified diff, the number of changed lines and
//!   every policy violation ([`DevicePreview`]).
//! - [`rules`](mod@rules): the policy's per-command rules (the analysable grammar, the
//!   push machinery's names on decoded text, code on the device, named items in the
//!   machinery's menus).
//! - [`user_id`](mod@user_id): change ids users choose, kept out of the forms the platform
//!   generates.
//! - [`restore`](mod@restore): the RouterOS script that brings one configuration to another
//!   ("restore device X to archived version V" as an ordinary change).
//!
//! Owns: the meaning of a change on a configuration model (`rosconfig`). Does not own:
//! pushing it (netops), storing exports (the archive), the change request (domain).

pub mod error;
pub mod plan;
pub mod preview;
pub mod restore;
pub mod rules;
pub mod user_id;

pub use error::{PlanError, Result};
pub use plan::{
    CHANGE_MARKER, Change, ChangeId, DEVICE_SCRIPT_PREAMBLE_LINES, Expectation, Plan, PolicyCheck,
    check_policy, expected, parse_export, plan, policy_violations, to_change_lines, unmet,
};
pub use preview::{DevicePreview, preview};
pub use restore::{RestoreError, restore_script};
pub use user_id::{UserChangeId, UserChangeIdError, user_change_id_pattern};

/// What a change may do: the `config_push` card's policy (`netledger_domain::workflow::card`).
pub use netledger_domain::workflow::card::Policy;

//! Simulated RouterOS devices speaking the real API protocol (the `routeros` codec), on real
//! loopback sockets, with fault knobs and an HTTP control API. A product, like Oxide's
//! `sp-sim`: tests, the demo and compose all use it. Depends on `routeros` and `rosconfig`,
//! nothing else of ours.
//!
//! * [`Fleet::start`] binds device `i`'s API on `base + 2i` and API-SSL on `base + 2i + 1`
//!   (ephemeral ports with base port 0) and returns the [`ManifestEntry`] list.
//! * Each device keeps its configuration in a [`rosconfig::Config`] (shared factory
//!   template until first write), answers `print`/`add`/`set`/`remove` with RouterOS's
//!   replies and trap texts, exports, imports, saves/loads backups, runs its scheduler.
//! * Faults ([`Faults`]) per device: unreachable, reply delay, dropped connection after N
//!   commands, rejected login, corrupted frames, a change that cuts management access
//!   until the scheduler reverts, failed upgrade.
//!
//! Script interpreter (scheduler `on-event`, `/system/script/run`, `/import`): menu lines,
//! `add`/`set`/`remove`/`enable`/`disable`/`unset` on configuration menus,
//! `/system backup load|save name=...`, `/import file-name=...`, `/system reboot`,
//! `/system script run X`, `/system package update install`, `/file remove X`,
//! `/export file=X`; `:log`, `:put`, `:delay` are accepted and ignored; anything else stops
//! the script with `bad command name`.

mod board;
mod clock;
mod device;
mod fleet;
mod query;
mod server;
mod state;
mod version;

pub use board::{BOARDS, Board, VERSIONS};
pub use clock::{Clock, ManualClock, SystemClock};
pub use device::Device;
pub use fleet::{DevsimError, Fleet, FleetOptions, ManifestEntry};
pub use state::{CHANGE_MARKER, Faults, change_ids};
pub use version::{BadVersion, RosVersion};

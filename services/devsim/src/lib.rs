//! Simulated RouterOS devices speaking the real API protocol (the `routeros` codec), on real
//! loopback sockets, with fault knobs and an HTTP control API. A product, like Oxide's
//! `sp-sim`: tests, the demo and compose all use it. Depends on `routeros` and `rosconfig`,
//! nothing else of ours.
//!
//! * [`Fleet::start`] binds device `i`'s API on `base + 2i`, API-SSL on `base + 2i + 1` and
//!   SSH on `base + 2n + i` for `n` devices (ephemeral ports with base port 0) and returns
//!   the [`ManifestEntry`] list (addresses, TLS and SSH host key fingerprints, login).
//! * SSH (the `ssh` and `sftp` modules): password and `/user ssh-keys` logins, `exec` and
//!   an interactive shell running RouterOS console lines through the same executor
//!   (`/export [terse]`, `/system backup save`, `/import`, `/file print|remove`, ...), and
//!   an SFTP subsystem over the device's `/file` (byte-exact; an uploaded `*.auto.rsc`
//!   runs). What is sourced and what guessed is in `device::console`.
//! * Each device keeps its configuration in a [`rosconfig::Config`] (shared factory
//!   template until first write), answers `print`/`add`/`set`/`remove` with RouterOS's
//!   replies and trap texts, exports, imports, saves/loads backups, runs its scheduler.
//! * Faults ([`Faults`]) per device: unreachable, reply delay, dropped connection after N
//!   commands, rejected login, corrupted frames, a change that cuts management access
//!   until the scheduler reverts, failed upgrade.
//!
//! One command executor (`device::exec`) answers API sentences, SSH console lines and
//! script lines alike (scheduler `on-event`, `/system/script/run`, `/import`,
//! `/import dry-run`, an uploaded `*.auto.rsc`, the control API's out-of-band changes):
//! configuration menus (`add`/`set`/`remove`/`enable`/`disable`/`unset`),
//! `/system backup load|save`, `/import`, `/system reboot`, `/system script run`,
//! `/system package update check-for-updates|download|install`,
//! `/system routerboard upgrade`, `/file add|set|remove|read` (and `print` on a console),
//! `/export [terse]`, `/user ssh-keys import`; in scripts `:log`, `:put`, `:delay` are
//! accepted and ignored, and anything else stops the script with `bad command name`.
//!
//! Who changed the device: `/system/history` lists the last 100 configuration changes,
//! newest first, whatever made them (API sentences, `/import` and scripts an API user
//! starts, `/system backup load`, the control API's out-of-band changes, the scheduler),
//! with `.id`, `action`, `by` (the RouterOS user: the API session's login name, the name
//! the control API is given, `scheduler`), `policy`, `time` (the version's date format) and
//! the `undoable`/`redoable` flags; it survives reboots here (on RouterOS that is
//! unsourced). `/user/active` lists the live API sessions. What of it is sourced and what
//! guessed is in the `device::history` module. Interface rows carry
//! `rx-byte`/`tx-byte`/`rx-error`/`tx-error` counters that grow with uptime.
//!
//! Firmware: `/tool/fetch url=http://...` downloads into `/file` (the `fetch` module);
//! an uploaded `routeros-*.npk` is installed by the next reboot; RouterBOARD
//! `current-firmware` lags the version after an upgrade until `/system routerboard upgrade`
//! and another reboot. `/ping` answers for loopback and connected subnets (the `ping`
//! module).

mod board;
mod clock;
pub mod control;
mod device;
mod fetch;
mod fleet;
mod ping;
mod query;
mod server;
mod sftp;
mod ssh;
mod state;
mod version;

pub use board::{BOARDS, Board, VERSIONS};
pub use clock::{Clock, ManualClock, SystemClock};
pub use device::{CONSOLE_USER, Device};
pub use fleet::{DevsimError, Fleet, FleetOptions, ManifestEntry};
pub use state::{CHANGE_MARKER, FailNext, Faults, change_ids};
pub use version::{BadVersion, RosVersion};

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How [`run`] runs a fleet (`netledger devsim` parses its flags into this).
#[derive(Debug, Clone)]
pub struct DevsimOptions {
    /// Number of devices.
    pub devices: usize,
    /// Base address: device i gets the API on port+2i, API-SSL on port+2i+1 and SSH on
    /// port+2n+i for n devices (port 0: ephemeral ports, see the manifest).
    pub listen: SocketAddr,
    /// Serve SSH and SFTP on every device.
    pub ssh: bool,
    /// Write the manifest (JSON array) here.
    pub manifest: Option<PathBuf>,
    /// Serve the HTTP control API here.
    pub control: Option<SocketAddr>,
    /// Share of RouterOS 6 devices (0.0-1.0).
    pub v6_share: f64,
    /// How long a reboot keeps a device offline.
    pub reboot_time: Duration,
    /// Export files loaded as the configuration of the first devices.
    pub load: Vec<PathBuf>,
    /// Seed for passwords, serials and counters.
    pub seed: u64,
    /// Time source.
    pub clock: Arc<dyn Clock>,
}

impl DevsimOptions {
    /// `devices` devices on `127.0.0.1:18728` onwards, 30 % RouterOS 6, 5 s reboots, seed 1,
    /// SSH on, no manifest, no control API.
    pub fn new(devices: usize, clock: Arc<dyn Clock>) -> DevsimOptions {
        DevsimOptions {
            devices,
            listen: SocketAddr::from(([127, 0, 0, 1], 18728)),
            ssh: true,
            manifest: None,
            control: None,
            v6_share: 0.3,
            reboot_time: Duration::from_secs(5),
            load: Vec::new(),
            seed: 1,
            clock,
        }
    }
}

/// Raises `RLIMIT_NOFILE` so that every device can hold three listening sockets (API,
/// API-SSL, SSH) plus connections: `4 * devices + 1024` descriptors. The hard limit is raised too when the
/// process may (root / CAP_SYS_RESOURCE); otherwise the soft limit goes up to the hard one.
/// Returns the soft limit in force afterwards.
pub fn raise_fd_limit(devices: usize) -> u64 {
    let want = (devices as u64) * 4 + 1024;
    if let Ok((soft, hard)) = rlimit::Resource::NOFILE.get() {
        if hard < want && rlimit::Resource::NOFILE.set(want, want).is_ok() {
            return want;
        }
        if soft >= want {
            return soft;
        }
    }
    rlimit::increase_nofile_limit(want).unwrap_or(0)
}

/// Runs a fleet until `shutdown` completes: raises the descriptor limit, loads the export
/// files, writes the manifest, serves the control API.
pub async fn run(
    opts: DevsimOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DevsimError> {
    let limit = raise_fd_limit(opts.devices);
    tracing::info!(limit, "file descriptor limit");
    let mut fleet_opts = FleetOptions::new(opts.devices, opts.clock.clone());
    fleet_opts.listen = opts.listen;
    fleet_opts.v6_share = opts.v6_share;
    fleet_opts.reboot_time = opts.reboot_time;
    fleet_opts.seed = opts.seed;
    fleet_opts.ssh = opts.ssh;
    for path in &opts.load {
        let text = std::fs::read_to_string(path).map_err(|source| DevsimError::Read {
            path: path.clone(),
            source,
        })?;
        fleet_opts.exports.push(text);
    }
    let fleet = Fleet::start(fleet_opts).await?;
    let manifest = fleet.manifest();
    if let Some(path) = &opts.manifest {
        let write = serde_json::to_vec_pretty(&manifest)
            .map_err(std::io::Error::other)
            .and_then(|json| std::fs::write(path, json));
        write.map_err(|source| DevsimError::Manifest {
            path: path.clone(),
            source,
        })?;
    }
    tracing::info!(devices = manifest.len(), "devsim fleet running");
    let control = opts.control.map(|addr| {
        let app = control::router(fleet.devices().to_vec(), manifest);
        tokio::spawn(control::serve(addr, app))
    });
    shutdown.await;
    if let Some(c) = control {
        c.abort();
    }
    fleet.shutdown();
    Ok(())
}

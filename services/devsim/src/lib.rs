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
//! `/system script run X`, `/system package update install`, `/file add name=X contents=Y`,
//! `/file remove X`, `/export file=X`; `:log`, `:put`, `:delay` are accepted and ignored;
//! anything else stops the script with `bad command name`.
//!
//! Change indicator: `/system/history` lists the last 100 configuration changes, whatever
//! made them (API, console/control API, scheduler, scripts), with `.id`, `action`, `by`,
//! `time`; it survives reboots here (on RouterOS that is unsourced). Interface rows carry
//! `rx-byte`/`tx-byte`/`rx-error`/`tx-error` counters that grow with uptime.
//!
//! Firmware: `/tool/fetch url=http://...` downloads into `/file` (the `fetch` module);
//! an uploaded `routeros-*.npk` is installed by the next reboot; RouterBOARD
//! `current-firmware` lags the version after an upgrade until `/system routerboard upgrade`
//! and another reboot. `/ping` answers for loopback and connected subnets (the `ping`
//! module).

pub mod bench;
mod board;
mod clock;
pub mod control;
mod device;
mod fetch;
mod fleet;
mod ping;
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

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `netledger devsim`.
#[derive(Debug, Clone, clap::Args)]
pub struct DevsimArgs {
    /// Number of devices.
    #[arg(long, default_value_t = 10)]
    pub devices: usize,
    /// Base address: device i gets the API on port+2i and API-SSL on port+2i+1 (port 0:
    /// ephemeral ports, see the manifest).
    #[arg(long, default_value = "127.0.0.1:18728")]
    pub listen: SocketAddr,
    /// Write the manifest (JSON array) here.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Serve the HTTP control API here.
    #[arg(long)]
    pub control: Option<SocketAddr>,
    /// Share of RouterOS 6 devices (0.0-1.0).
    #[arg(long = "v6-share", default_value_t = 0.3)]
    pub v6_share: f64,
    /// Seconds a reboot keeps a device offline.
    #[arg(long, default_value_t = 5)]
    pub reboot_secs: u64,
    /// Export files loaded as the configuration of the first devices.
    #[arg(long = "load")]
    pub load: Vec<PathBuf>,
    /// Seed for passwords, serials and counters.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Raises `RLIMIT_NOFILE` so that every device can hold two listening sockets plus
/// connections: `3 * devices + 1024` descriptors. The hard limit is raised too when the
/// process may (root / CAP_SYS_RESOURCE); otherwise the soft limit goes up to the hard one.
/// Returns the soft limit in force afterwards.
pub fn raise_fd_limit(devices: usize) -> u64 {
    let want = (devices as u64) * 3 + 1024;
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

/// Runs a fleet until Ctrl-C: writes the manifest, serves the control API.
pub async fn run(args: DevsimArgs) -> anyhow::Result<()> {
    let limit = raise_fd_limit(args.devices);
    tracing::info!(limit, "file descriptor limit");
    let mut opts = FleetOptions::new(args.devices, Arc::new(SystemClock::new()));
    opts.listen = args.listen;
    opts.v6_share = args.v6_share;
    opts.reboot_time = Duration::from_secs(args.reboot_secs);
    opts.seed = args.seed;
    for p in &args.load {
        opts.exports.push(std::fs::read_to_string(p)?);
    }
    let fleet = Fleet::start(opts).await?;
    let manifest = fleet.manifest();
    if let Some(path) = &args.manifest {
        std::fs::write(path, serde_json::to_vec_pretty(&manifest)?)?;
    }
    tracing::info!(devices = manifest.len(), "devsim fleet running");
    let control = match args.control {
        Some(addr) => {
            let app = control::router(fleet.devices().to_vec(), manifest);
            Some(tokio::spawn(control::serve(addr, app)))
        }
        None => None,
    };
    tokio::signal::ctrl_c().await?;
    if let Some(c) = control {
        c.abort();
    }
    fleet.shutdown();
    Ok(())
}

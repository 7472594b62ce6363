//! One simulated device: identity, state, and the RouterOS semantics it answers with
//! (ROUTEROS-NOTES §1-§6). Sans-IO: [`Device::handle`] turns an API sentence into replies;
//! the server module does the sockets. Every command goes through one executor
//! ([`exec`]), told where it came from.
//!
//! | module | owns |
//! |---|---|
//! | `session` | an API session: login (plain, and the pre-6.43 challenge), `/quit`, the command log; every other sentence goes to the executor; the password check SSH logins share |
//! | `console` | the RouterOS CLI over SSH: a console line run through the executor as [`exec::Origin::Ssh`], its output text, `/user ssh-keys` |
//! | `exec` | the one command executor: [`exec::Origin`] (API, SSH console, script, scheduler, console, dry run), the request, the dispatch table, `/import`, `/system/script/run` |
//! | `script` | the script runner: parses a source and feeds its lines to the executor |
//! | `menus` | what `print` shows: menu kinds, built-in items, singleton rows, `print` |
//! | `config` | configuration writes (`add`/`set`/`enable`/`disable`/`unset`/`remove`), passwords, the cut-access fault |
//! | `history` | who changed the device: `/system/history` rows and action texts (what is sourced, what guessed), `/user/active` sessions |
//! | `files` | `/file`, `/export`, `/system/backup` |
//! | `system` | reboot, `/system/package/update`, RouterBOARD firmware, the boot sequence ([`Device::tick`]) |
//! | `scheduler` | `/system/scheduler` runs |
//! | `values` | value formats: booleans, durations, dates, the seeded mixer |

mod config;
mod console;
mod exec;
mod files;
mod history;
mod menus;
mod scheduler;
mod script;
mod session;
mod system;
mod values;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rosconfig::{Config, ItemId, MenuPath, Selector};
use routeros::Reply;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::board::Board;
use crate::clock::Clock;
use crate::state::{CHANGE_MARKER, DeviceState, Faults, change_ids};
use crate::version::RosVersion;
use exec::Origin;
pub(crate) use history::ActiveSession;

/// Reachability of a device's listeners (API, API-SSL, SSH); `epoch` changes on every
/// reboot so that sessions of a previous boot end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Link {
    pub api: bool,
    pub ssl: bool,
    pub ssh: bool,
    pub epoch: u32,
}

/// The RouterOS user an out-of-band change is made as unless the caller names one
/// ([`Device::apply_out_of_band_as`]): RouterOS's factory user.
pub const CONSOLE_USER: &str = "admin";

/// Fleet-wide settings every device reads.
#[derive(Debug)]
pub(crate) struct Shared {
    pub clock: Arc<dyn Clock>,
    pub reboot_time: Duration,
    pub username: String,
    pub seed: u64,
}

/// A simulated device.
#[derive(Debug)]
pub struct Device {
    pub(crate) index: u32,
    pub(crate) board: &'static Board,
    pub(crate) fingerprint: [u8; 32],
    pub(crate) cert: Arc<rustls::sign::CertifiedKey>,
    /// The SSH host key (Ed25519, derived from the fleet seed and the index, so a restarted
    /// fleet keeps its keys).
    pub(crate) ssh_key: Arc<russh::keys::PrivateKey>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) state: Mutex<DeviceState>,
    pub(crate) link: watch::Sender<Link>,
    pub(crate) needs_tick: std::sync::atomic::AtomicBool,
}

/// A login session on one connection.
#[derive(Debug, Default)]
pub(crate) struct Session {
    pub user: Option<String>,
    pub challenge: Option<[u8; 16]>,
    pub commands: u32,
    /// The client's address (`/user active` `address`).
    pub peer: Option<std::net::SocketAddr>,
    /// Its `/user active` row once logged in.
    pub active: Option<u32>,
}

/// What the connection must do with a command's result.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub replies: Vec<Reply>,
    /// Close the connection after sending (quit, reboot, backup load).
    pub close: bool,
}

impl Outcome {
    fn replies(replies: Vec<Reply>) -> Outcome {
        Outcome {
            replies,
            close: false,
        }
    }
}

impl Device {
    pub(crate) fn lock(&self) -> MutexGuard<'_, DeviceState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn now(&self) -> Duration {
        self.shared.clock.now()
    }

    /// The device's API user name.
    pub fn username(&self) -> &str {
        &self.shared.username
    }

    /// The device's API password (derived from the fleet seed; not stored).
    pub fn password(&self) -> String {
        let h = Sha256::digest(format!(
            "devsim-password/{}/{}",
            self.shared.seed, self.index
        ));
        hex::encode(&h[..8])
    }

    /// Default identity of the device.
    pub fn default_identity(&self) -> String {
        format!("devsim-{:05}", self.index)
    }

    /// Index in the fleet.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// SHA-256 fingerprint of the API-SSL certificate.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// SHA-256 of the SSH host public key in SSH wire encoding: the bytes behind OpenSSH's
    /// `SHA256:` fingerprint (which is their unpadded base64).
    pub fn ssh_host_key_sha256(&self) -> [u8; 32] {
        let fp = self
            .ssh_key
            .public_key()
            .fingerprint(russh::keys::HashAlg::Sha256);
        let mut out = [0u8; 32];
        let bytes = fp.as_bytes();
        if bytes.len() == out.len() {
            out.copy_from_slice(bytes);
        }
        out
    }

    /// The SSH host public key as an OpenSSH line (`ssh-ed25519 AAAA... devsim-00003`), for
    /// a `known_hosts` entry.
    pub fn ssh_host_public_key(&self) -> String {
        let mut key = self.ssh_key.public_key().clone();
        key.set_comment(self.default_identity());
        key.to_openssh().unwrap_or_default()
    }

    /// Authorizes an SSH public key (an OpenSSH line, `ssh-ed25519 AAAA... comment`) to log
    /// in as RouterOS user `user`, like `/user ssh-keys import` (which the executor also
    /// runs, reading the line from a file). Errors: an unknown user, a line that is not an
    /// OpenSSH public key.
    pub fn authorize_ssh_key(
        &self,
        user: &str,
        openssh_public_key_line: &str,
    ) -> Result<(), String> {
        let mut st = self.lock();
        self.import_ssh_key(&mut st, user, openssh_public_key_line)
    }

    /// Current RouterOS version.
    pub fn version(&self) -> RosVersion {
        self.lock().version
    }

    /// Current fault knobs.
    pub fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }

    /// Replaces the fault knobs.
    pub fn set_faults(&self, f: Faults) {
        self.lock().faults = f;
        self.update_link();
    }

    /// Edits the fault knobs in place.
    pub fn edit_faults(&self, edit: impl FnOnce(&mut Faults)) {
        edit(&mut self.lock().faults);
        self.update_link();
    }

    /// Makes a newer version available to `/system package update`.
    pub fn set_available_version(&self, v: RosVersion) {
        self.lock().available_version = Some(v);
    }

    /// Allows or forbids scheduler actions (device-mode `scheduler`).
    pub fn set_scheduler_allowed(&self, allowed: bool) {
        self.lock().scheduler_allowed = allowed;
    }

    /// Whether the device is up and its SSH listener open (`/ip service ssh` enabled).
    pub fn is_ssh_reachable(&self) -> bool {
        self.link.borrow().ssh
    }

    /// Whether the device is up and its API listener open.
    pub fn is_reachable(&self) -> bool {
        self.link.borrow().api
    }

    /// Recent commands received over the API (oldest first).
    pub fn command_log(&self) -> Vec<String> {
        self.lock().log.iter().cloned().collect()
    }

    /// How many times each change id was applied.
    pub fn change_counts(&self) -> std::collections::BTreeMap<String, u32> {
        self.lock().changes.clone()
    }

    /// Names of the files in `/file` (the control API's view; tests assert what a push
    /// leaves behind).
    pub fn file_names(&self) -> Vec<String> {
        self.lock().files.iter().map(|f| f.name.clone()).collect()
    }

    /// Names of the `/system scheduler` entries.
    pub fn scheduler_names(&self) -> Vec<String> {
        let st = self.lock();
        st.config
            .entries(&MenuPath::parse("/system scheduler"))
            .filter_map(|e| e.get("name").map(str::to_string))
            .collect()
    }

    /// Test knob: the next `n` `/import` commands sent over the API (not dry runs) are held
    /// until all `n` have arrived, then run one after the other (in arrival order at the
    /// device lock). Two workers that both passed their own checks and sent `/import` meet
    /// here deterministically, without timing.
    pub fn hold_imports(&self, n: usize) {
        self.lock().import_gate = if n > 1 {
            Some((Arc::new(tokio::sync::Barrier::new(n)), n))
        } else {
            None
        };
    }

    /// [`crate::Faults::fail_next`]: the `!fatal` message if the command at `path` is one
    /// that must fail (counted down).
    pub(crate) fn take_failure(&self, path: &str) -> Option<String> {
        let mut st = self.lock();
        let f = st.faults.fail_next.as_mut()?;
        if f.count == 0 || !path.starts_with(f.path.as_str()) {
            return None;
        }
        f.count -= 1;
        let message = f.message.clone();
        if f.count == 0 {
            st.faults.fail_next = None;
        }
        Some(message)
    }

    /// Takes a place at the import gate set by [`Device::hold_imports`], if any.
    pub(crate) fn import_gate(&self) -> Option<Arc<tokio::sync::Barrier>> {
        let mut st = self.lock();
        let (barrier, left) = st.import_gate.take()?;
        if left > 1 {
            st.import_gate = Some((barrier.clone(), left - 1));
        }
        Some(barrier)
    }

    /// A copy of the configuration model.
    pub fn config(&self) -> Config {
        (*self.lock().config).clone()
    }

    /// Uptime.
    pub fn uptime(&self) -> Duration {
        let st = self.lock();
        self.now().saturating_sub(st.boot_at)
    }

    /// Applies a change out of band (not through the API, not logged as API commands),
    /// like a technician on the console logged in as [`CONSOLE_USER`]. Returns the error
    /// text of the first failing line.
    pub fn apply_out_of_band(&self, script: &str) -> Result<(), String> {
        self.apply_out_of_band_as(CONSOLE_USER, script)
    }

    /// [`Device::apply_out_of_band`] by RouterOS user `user`: `/system/history` names
    /// `user` as `by` of every change the script makes.
    pub fn apply_out_of_band_as(&self, user: &str, script: &str) -> Result<(), String> {
        let r = {
            let mut st = self.lock();
            self.run_source(&mut st, Origin::Console(user), script)
        };
        self.after_change();
        r
    }

    /// Starts a reboot (offline for the fleet's reboot time).
    pub fn reboot(&self) {
        {
            let mut st = self.lock();
            self.begin_reboot(&mut st);
        }
        self.update_link();
    }

    /// The export text the device would write (`show_sensitive` as on v7).
    pub fn export(&self, show_sensitive: bool) -> String {
        let st = self.lock();
        self.export_text(&st, show_sensitive)
    }

    /// Recomputes listener reachability from state and notifies the server.
    pub(crate) fn update_link(&self) {
        let (api, ssl, ssh, reboot) = {
            let st = self.lock();
            let up = st.offline_until.is_none() && !st.faults.unreachable && !st.access_cut;
            let svc = |name: &str| {
                let path = MenuPath::parse("/ip service");
                let sel = Selector::Name {
                    name: name.to_string(),
                    quoted: false,
                };
                st.config
                    .set_stmt(&path, &sel)
                    .and_then(|s| s.get("disabled"))
                    .is_none_or(|v| v != "yes")
            };
            (
                up && svc("api"),
                up && svc("api-ssl"),
                up && svc("ssh"),
                st.offline_until.is_some(),
            )
        };
        self.link.send_if_modified(|l| {
            let epoch = if reboot && (l.api || l.ssl || l.ssh) {
                l.epoch.wrapping_add(1)
            } else {
                l.epoch
            };
            let new = Link {
                api,
                ssl,
                ssh,
                epoch,
            };
            let changed = *l != new;
            *l = new;
            changed
        });
    }

    pub(crate) fn after_change(&self) {
        let active = {
            let st = self.lock();
            let p = MenuPath::parse("/system scheduler");
            st.config
                .entries(&p)
                .any(|e| e.get("disabled") != Some("yes"))
                || st.offline_until.is_some()
        };
        if active {
            self.needs_tick
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        self.update_link();
    }

    pub(crate) fn identity(&self, st: &DeviceState) -> String {
        st.config
            .setting(&MenuPath::parse("/system identity"), "name")
            .unwrap_or_else(|| self.default_identity())
    }

    /// An entry of a list menu by id (`*3`) or name.
    fn find_named(cfg: &Config, p: &MenuPath, target: &str) -> Option<ItemId> {
        if let Ok(id) = target.parse::<ItemId>()
            && cfg.entry(p, id).is_some()
        {
            return Some(id);
        }
        cfg.find_by(p, &[("name", target)]).first().copied()
    }

    /// The source of a `/system script` entry named by id or name.
    fn script_source(&self, st: &DeviceState, target: &str) -> Option<String> {
        let p = MenuPath::parse("/system script");
        Self::find_named(&st.config, &p, target).and_then(|id| {
            st.config
                .entry(&p, id)
                .and_then(|e| e.get("source"))
                .map(str::to_string)
        })
    }
}

/// Counts the change ids a text carries ([`Device::change_counts`]).
fn count_changes(st: &mut DeviceState, text: &str) {
    if text.contains(CHANGE_MARKER) {
        for id in change_ids(text) {
            *st.changes.entry(id).or_insert(0) += 1;
        }
    }
}

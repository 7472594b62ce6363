//! Per-device mutable state, fault knobs and what the control API reports. Idle devices
//! stay small: the configuration is an `Arc` shared with the factory template until the
//! device changes it (copy-on-write), and every collection starts empty.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rosconfig::{Config, ItemId};
use serde::{Deserialize, Serialize};

use crate::version::RosVersion;

/// Fault knobs of one device (all off by default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Listeners closed (API, API-SSL, SSH): connections are refused, open ones end.
    pub unreachable: bool,
    /// Every reply is delayed by this many milliseconds (API replies, SSH command output
    /// and prompts, SFTP replies).
    pub delay_ms: u64,
    /// The connection is dropped (no reply) when a session sends its (N+1)th command,
    /// counting `/login`.
    pub drop_after_commands: Option<u32>,
    /// `/login` is answered `invalid user name or password (6)`; SSH logins (password and
    /// key) are refused.
    pub reject_login: bool,
    /// Replies are replaced by bytes that are not valid framing (reserved control byte).
    pub corrupt_frames: bool,
    /// The next configuration change cuts management access: the device stays
    /// unreachable until its scheduler reverts (`/system backup load` or `/import` run by a
    /// scheduler or script).
    pub cut_access_on_change: bool,
    /// The next upgrade fails: the device reboots and comes back on its old version.
    pub fail_upgrade: bool,
    /// Every `/system backup load` fails (`failure: backup file is corrupted`) while set,
    /// from the API and from scripts (a rollback timer) alike.
    pub fail_backup_load: bool,
    /// A transient failure on cue: the next commands whose path starts with
    /// [`FailNext::path`] are answered `!fatal` (as RouterOS does when it ends a session) and
    /// the connection is closed, without running them.
    pub fail_next: Option<FailNext>,
}

/// [`Faults::fail_next`]: which commands fail, and how many more times.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailNext {
    /// An API path or a prefix of one (`/system/scheduler/add`, `/system/scheduler`).
    pub path: String,
    /// How many more commands fail (the knob clears itself at 0).
    pub count: u32,
    /// The `!fatal` message.
    pub message: String,
}

/// A file in `/file`: its bytes exactly as written (an SFTP upload, a fetch, `/file add`,
/// an export or a backup), so binary files (`.npk`, `.backup`) round-trip byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SimFile {
    pub id: u32,
    pub name: String,
    pub kind: &'static str,
    pub contents: Bytes,
    pub created: Duration,
}

impl SimFile {
    /// The contents as text (lossy: RouterOS scripts and exports are text).
    pub(crate) fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.contents)
    }
}

/// An SSH public key authorized for a RouterOS user (`/user ssh-keys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SshKey {
    /// The RouterOS user the key logs in as.
    pub user: String,
    /// The key.
    pub key: russh::keys::ssh_key::public::KeyData,
    /// The comment of the OpenSSH line (`/user ssh-keys` `key-owner`).
    pub comment: String,
}

/// Runtime of one scheduler entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SchedRun {
    pub next: Option<Duration>,
    pub run_count: u32,
}

/// Mutable state of a device.
#[derive(Debug)]
pub(crate) struct DeviceState {
    pub config: Arc<Config>,
    pub version: RosVersion,
    pub pending_version: Option<RosVersion>,
    pub available_version: Option<RosVersion>,
    pub update_status: &'static str,
    pub boot_at: Duration,
    pub offline_until: Option<Duration>,
    pub access_cut: bool,
    pub files: Vec<SimFile>,
    pub next_file_id: u32,
    pub passwords: Vec<(String, String)>,
    /// `/user ssh-keys`: public keys that log in over SSH (kept beside the configuration
    /// like passwords; an export omits them, MT-CFG).
    pub ssh_keys: Vec<SshKey>,
    pub sched: BTreeMap<ItemId, SchedRun>,
    pub scheduler_allowed: bool,
    pub changes: BTreeMap<String, u32>,
    pub log: VecDeque<String>,
    pub commands_total: u64,
    pub faults: Faults,
    pub upgrades_failed: u32,
    /// RouterBOARD `current-firmware` when it lags the RouterOS version (after an upgrade,
    /// until `/system routerboard upgrade` and a reboot); `None`: equal to the version.
    pub rb_firmware: Option<RosVersion>,
    /// `/system routerboard upgrade` ran: the next reboot brings the firmware up to date.
    pub rb_upgrade_staged: bool,
    /// `/system history`: the most recent configuration changes (any path: API, console,
    /// scheduler), oldest first (`print` lists them newest first), at most
    /// [`HISTORY_LIMIT`]; the oldest is dropped.
    pub history: VecDeque<HistoryEntry>,
    /// Id of the next history row.
    pub history_next: u32,
    /// `/user active`: the logged-in API sessions, in login order.
    pub sessions: Vec<crate::device::ActiveSession>,
    /// Id of the next `/user active` row.
    pub next_session: u32,
    /// [`crate::Device::hold_imports`]: the barrier and how many imports may still join it.
    pub import_gate: Option<(Arc<tokio::sync::Barrier>, usize)>,
}

/// One `/system history` row (what `print` shows of it: `crate::device::history`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HistoryEntry {
    pub id: u32,
    pub action: String,
    pub by: String,
    pub at: Duration,
}

/// Rows `/system history` keeps (RouterOS keeps about 100 actions, ROUTEROS-NOTES §5.14).
pub(crate) const HISTORY_LIMIT: usize = 100;

impl DeviceState {
    pub(crate) fn new(config: Arc<Config>, version: RosVersion, now: Duration) -> DeviceState {
        DeviceState {
            config,
            version,
            pending_version: None,
            available_version: None,
            update_status: "",
            boot_at: now,
            offline_until: None,
            access_cut: false,
            files: Vec::new(),
            next_file_id: 1,
            passwords: Vec::new(),
            ssh_keys: Vec::new(),
            sched: BTreeMap::new(),
            scheduler_allowed: true,
            changes: BTreeMap::new(),
            log: VecDeque::new(),
            commands_total: 0,
            faults: Faults::default(),
            upgrades_failed: 0,
            rb_firmware: None,
            rb_upgrade_staged: false,
            history: VecDeque::new(),
            history_next: 1,
            sessions: Vec::new(),
            next_session: 1,
            import_gate: None,
        }
    }

    /// The throw-away state an `/import dry-run` runs against: configuration, version,
    /// passwords and files of this one, nothing else (no faults, no history, no log).
    pub(crate) fn dry_run_copy(&self) -> DeviceState {
        let mut copy = DeviceState::new(self.config.clone(), self.version, self.boot_at);
        copy.passwords = self.passwords.clone();
        copy.ssh_keys = self.ssh_keys.clone();
        copy.files = self.files.clone();
        copy.next_file_id = self.next_file_id;
        copy.available_version = self.available_version;
        copy.scheduler_allowed = self.scheduler_allowed;
        copy
    }

    /// Records a configuration change in `/system history`.
    pub(crate) fn note_history(&mut self, action: String, by: &str, at: Duration) {
        if self.history.len() >= HISTORY_LIMIT {
            self.history.pop_front();
        }
        let id = self.history_next;
        self.history_next = self.history_next.wrapping_add(1);
        self.history.push_back(HistoryEntry {
            id,
            action,
            by: by.to_owned(),
            at,
        });
    }

    /// Mutable configuration (clones the shared template on first write).
    pub(crate) fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    pub(crate) fn file(&self, name: &str) -> Option<&SimFile> {
        self.files.iter().find(|f| f.name == name)
    }

    pub(crate) fn put_file(
        &mut self,
        name: &str,
        kind: &'static str,
        contents: impl Into<Bytes>,
        now: Duration,
    ) {
        let contents = contents.into();
        if let Some(f) = self.files.iter_mut().find(|f| f.name == name) {
            f.contents = contents;
            f.kind = kind;
            return;
        }
        let id = self.next_file_id;
        self.next_file_id += 1;
        self.files.push(SimFile {
            id,
            name: name.to_string(),
            kind,
            contents,
            created: now,
        });
    }
}

/// Most recent commands kept per device.
pub(crate) const LOG_LIMIT: usize = 512;

/// Marker of a change id in attribute values or scripts (the one definition is rosconfig's).
pub use rosconfig::CHANGE_MARKER;

/// Change ids mentioned in a text.
pub fn change_ids(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(pos) = rest.find(CHANGE_MARKER) {
        let after = &rest[pos + CHANGE_MARKER.len()..];
        let id: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        if !id.is_empty() && !out.contains(&id) {
            out.push(id.clone());
        }
        rest = &after[id.len()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_change_ids() {
        assert_eq!(
            change_ids("comment=\"netledger-change-42 x\" netledger-change-a_b"),
            vec!["42", "a_b"]
        );
        assert!(change_ids("nothing").is_empty());
    }
}

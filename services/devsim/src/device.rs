//! One simulated device: identity, state, and the RouterOS API semantics it answers with
//! (ROUTEROS-NOTES §1-§6). Sans-IO: [`Device::handle`] turns a command into replies; the
//! server module does the sockets.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rosconfig::{
    Attr, Config, ExportHeader, FindExpr, HeaderMode, ItemId, MenuPath, RenderOptions, Selector,
    Stmt, Wrap,
};
use routeros::{Attrs, Command, Reply, TrapCategory};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::board::{Board, KNOWN_MENUS, SINGLETON_MENUS};
use crate::clock::Clock;
use crate::query::{Row, get, matches};
use crate::state::{CHANGE_MARKER, DeviceState, Faults, LOG_LIMIT, SchedRun, change_ids};
use crate::version::RosVersion;

/// Reachability of a device's two listeners; `epoch` changes on every reboot so that
/// sessions of a previous boot end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Link {
    pub api: bool,
    pub ssl: bool,
    pub epoch: u32,
}

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

fn trap(cat: Option<u32>, msg: impl Into<String>) -> Vec<Reply> {
    vec![
        Reply::trap(cat.map(TrapCategory::from_code), msg),
        Reply::done(),
    ]
}

fn no_such_command(word: &str) -> Vec<Reply> {
    vec![
        Reply::trap(
            Some(TrapCategory::MissingItemOrCommand),
            format!("no such command or directory ({word})"),
        ),
        Reply::trap(None, "no such command prefix"),
        Reply::done(),
    ]
}

/// Value as the API shows it (booleans `true`/`false`).
fn api_value(v: &str) -> String {
    match v {
        "yes" => "true".into(),
        "no" => "false".into(),
        o => o.into(),
    }
}

/// Value as the configuration stores it (`yes`/`no`).
fn cfg_value(v: &str) -> String {
    match v {
        "true" => "yes".into(),
        "false" => "no".into(),
        o => o.into(),
    }
}

/// Duration in RouterOS letter form (`1w2d3h4m5s`).
pub(crate) fn fmt_duration(d: Duration) -> String {
    let mut s = d.as_secs();
    let mut out = String::new();
    for (unit, len) in [("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)] {
        if s >= len {
            out.push_str(&format!("{}{unit}", s / len));
            s %= len;
        }
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// Parses `1d`, `5m30s`, `00:05:00`, `1d 00:00:00`, `0s`.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.contains(':') {
        let (days, hms) = match s.split_once(' ') {
            Some((d, r)) => (parse_duration(d)?.as_secs(), r),
            None => (0, s),
        };
        let parts: Vec<u64> = hms
            .split(':')
            .map(|p| p.parse().ok())
            .collect::<Option<_>>()?;
        let secs = match parts.as_slice() {
            [h, m, sec] => h * 3600 + m * 60 + sec,
            [m, sec] => m * 60 + sec,
            _ => return None,
        };
        return Some(Duration::from_secs(days + secs));
    }
    let mut total = 0u64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        let mult = match c {
            'w' => 604_800,
            'd' => 86_400,
            'h' => 3_600,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                0
            }
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total += n * mult;
    }
    if !num.is_empty() {
        total += num.parse::<u64>().ok()?;
    }
    Some(Duration::from_secs(total))
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

fn civil(t: Duration) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(t.as_secs()).unwrap_or(0))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// `(date, time)` as the version prints them.
pub(crate) fn fmt_date_time(t: Duration, v: RosVersion) -> (String, String) {
    let d = civil(t);
    let month = MONTHS
        .get(usize::from(u8::from(d.month())) - 1)
        .copied()
        .unwrap_or("jan");
    let date = if v.iso_dates() {
        format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
    } else {
        format!("{month}/{:02}/{:04}", d.day(), d.year())
    };
    (
        date,
        format!("{:02}:{:02}:{:02}", d.hour(), d.minute(), d.second()),
    )
}

/// Parses `2024-01-31`, `jan/31/2024` (any case) to days since the epoch.
pub(crate) fn parse_date(s: &str) -> Option<Duration> {
    let (y, m, d) = if let Some((a, rest)) = s.split_once('-') {
        let (b, c) = rest.split_once('-')?;
        (
            a.parse::<i32>().ok()?,
            b.parse::<u8>().ok()?,
            c.parse::<u8>().ok()?,
        )
    } else {
        let mut it = s.split('/');
        let mon = it.next()?.to_ascii_lowercase();
        let m = MONTHS.iter().position(|x| *x == mon)? as u8 + 1;
        let d = it.next()?.parse().ok()?;
        let y = it.next()?.parse().ok()?;
        (y, m, d)
    };
    let month = time::Month::try_from(m).ok()?;
    let date = time::Date::from_calendar_date(y, month, d).ok()?;
    let secs = date.midnight().assume_utc().unix_timestamp();
    Some(Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Deterministic pseudo-random number from a seed and inputs.
pub(crate) fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut x =
        seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    x
}

/// Interface menus whose named entries appear in `/interface`, with their `type`.
const IFACE_TYPES: &[(&str, &str)] = &[
    ("bridge", "bridge"),
    ("vlan", "vlan"),
    ("wireguard", "wg"),
    ("bonding", "bond"),
    ("pppoe-client", "pppoe-out"),
    ("l2tp-client", "l2tp-out"),
    ("sstp-client", "sstp-out"),
    ("ovpn-client", "ovpn-out"),
    ("eoip", "eoip"),
    ("gre", "gre-tunnel"),
    ("veth", "veth"),
    ("vrrp", "vrrp"),
];

/// Built-in `/ip service` rows: name, port.
const SERVICES: &[(&str, &str)] = &[
    ("telnet", "23"),
    ("ftp", "21"),
    ("www", "80"),
    ("ssh", "22"),
    ("www-ssl", "443"),
    ("api", "8728"),
    ("winbox", "8291"),
    ("api-ssl", "8729"),
];

/// A list item of a menu: an `add` entry or a built-in item addressed by a selector.
#[derive(Debug, Clone)]
enum ItemRef {
    Entry(MenuPath, ItemId),
    Builtin(MenuPath, Selector),
}

#[derive(Debug, Clone)]
struct Item {
    id: ItemId,
    r: ItemRef,
    row: Row,
}

/// Id space of built-in items (kept clear of `add` entry ids).
const BUILTIN_BASE: u32 = 0x0100_0000;

impl Device {
    pub(crate) fn lock(&self) -> MutexGuard<'_, DeviceState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> Duration {
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
    /// like a technician on the console. Returns the error text of the first failing line.
    pub fn apply_out_of_band(&self, script: &str) -> Result<(), String> {
        let r = {
            let mut st = self.lock();
            self.run_script(&mut st, script, ScriptCtx::Console)
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

    pub(crate) fn begin_reboot(&self, st: &mut DeviceState) {
        st.offline_until = Some(self.now() + self.shared.reboot_time);
        self.needs_tick
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Recomputes listener reachability from state and notifies the server.
    pub(crate) fn update_link(&self) {
        let (api, ssl, reboot) = {
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
                st.offline_until.is_some(),
            )
        };
        self.link.send_if_modified(|l| {
            let epoch = if reboot && (l.api || l.ssl) {
                l.epoch.wrapping_add(1)
            } else {
                l.epoch
            };
            let new = Link { api, ssl, epoch };
            let changed = *l != new;
            *l = new;
            changed
        });
    }

    fn after_change(&self) {
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

    /// Logs a command handled outside [`Device::handle`] (`/tool/fetch`).
    pub(crate) fn log_command(&self, cmd: &Command) {
        let mut st = self.lock();
        self.log_cmd(&mut st, cmd);
    }

    fn log_cmd(&self, st: &mut DeviceState, cmd: &Command) {
        st.commands_total += 1;
        let mut line = format!("{:.3} {}", self.now().as_secs_f64(), cmd.path());
        for (k, v) in cmd.attrs().iter() {
            if k == "password" {
                line.push_str(" =password=***");
            } else {
                line.push_str(&format!(" ={k}={}", String::from_utf8_lossy(v)));
            }
        }
        for q in cmd.queries() {
            line.push_str(&format!(" {q:?}"));
        }
        if st.log.len() >= LOG_LIMIT {
            st.log.pop_front();
        }
        st.log.push_back(line);
    }

    fn count_changes(st: &mut DeviceState, text: &str) {
        if text.contains(CHANGE_MARKER) {
            for id in change_ids(text) {
                *st.changes.entry(id).or_insert(0) += 1;
            }
        }
    }

    /// Handles one command of a session.
    pub(crate) fn handle(&self, sess: &mut Session, cmd: &Command) -> Outcome {
        let path = cmd.path().to_string();
        {
            let mut st = self.lock();
            self.log_cmd(&mut st, cmd);
        }
        if !path.starts_with('/') {
            return Outcome::replies(trap(None, "no such command prefix"));
        }
        match path.as_str() {
            "/login" => return Outcome::replies(self.login(sess, cmd)),
            "/quit" => {
                return Outcome {
                    replies: vec![Reply::fatal("session terminated on request")],
                    close: true,
                };
            }
            _ => {}
        }
        if sess.user.is_none() {
            // unsourced: what a router says to commands before login
            return Outcome::replies(trap(None, "not logged in"));
        }
        let out = self.dispatch(cmd, &path);
        self.after_change();
        out
    }

    fn login(&self, sess: &mut Session, cmd: &Command) -> Vec<Reply> {
        let st = self.lock();
        if st.faults.reject_login {
            return trap(None, "invalid user name or password (6)");
        }
        let name = cmd.attrs().get_str("name").unwrap_or("").to_string();
        let legacy = st.version.legacy_login();
        let ok_pw = |pw: &str| -> bool {
            (name == self.shared.username && pw == self.password())
                || st.passwords.iter().any(|(n, p)| *n == name && p == pw)
        };
        if legacy {
            // pre-6.43: first /login gets a challenge, second carries the response
            if let Some(resp) = cmd.attrs().get_str("response") {
                let Some(ch) = sess.challenge.take() else {
                    return trap(None, "cannot log in");
                };
                let pw = if name == self.shared.username {
                    Some(self.password())
                } else {
                    st.passwords
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, p)| p.clone())
                };
                let good = pw.is_some_and(|pw| {
                    use md5::Digest as _;
                    let mut h = md5::Md5::new();
                    h.update([0u8]);
                    h.update(pw.as_bytes());
                    h.update(ch);
                    format!("00{}", hex::encode(h.finalize())) == resp
                });
                if good {
                    sess.user = Some(name);
                    return vec![Reply::done()];
                }
                return trap(None, "cannot log in");
            }
            let ch: [u8; 16] = Sha256::digest(format!(
                "{}/{}/{}",
                self.shared.seed, self.index, sess.commands
            ))
            .as_slice()[..16]
                .try_into()
                .unwrap_or([7u8; 16]);
            sess.challenge = Some(ch);
            return vec![Reply::done_ret(hex::encode(ch))];
        }
        let pw = cmd.attrs().get_str("password").unwrap_or("");
        if ok_pw(pw) {
            sess.user = Some(name);
            vec![Reply::done()]
        } else {
            trap(None, "invalid user name or password (6)")
        }
    }

    fn dispatch(&self, cmd: &Command, path: &str) -> Outcome {
        let (menu_s, verb) = match path.rsplit_once('/') {
            Some((m, v)) => (if m.is_empty() { "/" } else { m }, v),
            None => ("/", path),
        };
        let menu = MenuPath::parse(menu_s);
        let attr = |k: &str| cmd.attrs().get_str(k).map(str::to_string);
        let mut st = self.lock();
        match (menu.to_api().as_str(), verb) {
            ("/", "cancel") => Outcome::replies(vec![Reply::done()]),
            ("/", "export") | (_, "export") => {
                Outcome::replies(self.api_export(&mut st, cmd, &menu))
            }
            ("/", "import") => {
                let Some(file) = attr("file-name") else {
                    return Outcome::replies(trap(Some(1), "missing value for file-name"));
                };
                let dry = cmd.attrs().contains("dry-run");
                if dry && !st.version.has_import_dry_run() {
                    return Outcome::replies(trap(None, "unknown parameter dry-run"));
                }
                let Some(f) = st.file(&file).cloned() else {
                    return Outcome::replies(trap(None, format!("failure: no such file {file}")));
                };
                if dry {
                    let mut copy = DeviceState::new(st.config.clone(), st.version, st.boot_at);
                    copy.passwords = st.passwords.clone();
                    return match self.run_script(&mut copy, &f.contents, ScriptCtx::DryRun) {
                        Ok(()) => Outcome::replies(vec![Reply::done()]),
                        Err(e) => Outcome::replies(trap(Some(3), e)),
                    };
                }
                Self::count_changes(&mut st, &f.contents);
                match self.run_script(&mut st, &f.contents, ScriptCtx::Api) {
                    Ok(()) => {
                        let close = st.offline_until.is_some();
                        Outcome {
                            replies: vec![Reply::done()],
                            close,
                        }
                    }
                    Err(e) => Outcome::replies(trap(Some(3), e)),
                }
            }
            ("/system", "reboot") | ("/system", "shutdown") => {
                self.begin_reboot(&mut st);
                Outcome {
                    replies: Vec::new(),
                    close: true,
                }
            }
            ("/system/backup", "save") => {
                let (date, _) = fmt_date_time(self.now(), st.version);
                let name = attr("name")
                    .unwrap_or_else(|| format!("{}-{}", self.identity(&st), date.replace('/', "")));
                let fname = if name.ends_with(".backup") {
                    name
                } else {
                    format!("{name}.backup")
                };
                let body = self.backup_blob(&st);
                let now = self.now();
                st.put_file(&fname, "backup", body, now);
                Outcome::replies(vec![Reply::done()])
            }
            ("/system/backup", "load") => {
                let Some(name) = attr("name") else {
                    return Outcome::replies(trap(Some(1), "missing value for name"));
                };
                match self.restore_backup(&mut st, &name) {
                    Ok(()) => Outcome {
                        replies: Vec::new(),
                        close: true,
                    },
                    Err(e) => Outcome::replies(trap(None, e)),
                }
            }
            ("/system/script", "run") => {
                let target = attr("number").or_else(|| attr(".id")).unwrap_or_default();
                let p = MenuPath::parse("/system script");
                let src = Self::find_named(&st.config, &p, &target).and_then(|id| {
                    st.config
                        .entry(&p, id)
                        .and_then(|e| e.get("source"))
                        .map(str::to_string)
                });
                let Some(src) = src else {
                    return Outcome::replies(trap(None, "no such item"));
                };
                Self::count_changes(&mut st, &src);
                match self.run_script(&mut st, &src, ScriptCtx::Api) {
                    Ok(()) => Outcome {
                        replies: vec![Reply::done()],
                        close: st.offline_until.is_some(),
                    },
                    Err(e) => Outcome::replies(trap(Some(3), e)),
                }
            }
            ("/system/package/update", "check-for-updates") => {
                let newer = st.available_version.filter(|v| *v > st.version);
                st.update_status = if newer.is_some() {
                    "New version is available"
                } else {
                    "System is already up to date"
                };
                let mut a = Attrs::new();
                a.push("channel", "stable");
                a.push("installed-version", st.version.to_string());
                a.push("latest-version", newer.unwrap_or(st.version).to_string());
                a.push("status", st.update_status);
                Outcome::replies(vec![Reply::re(a), Reply::done()])
            }
            ("/system/package/update", "install") | ("/system/package/update", "download") => {
                let Some(newer) = st.available_version.filter(|v| *v > st.version) else {
                    return Outcome::replies(trap(None, "System is already up to date"));
                };
                st.pending_version = Some(newer);
                if verb == "install" {
                    self.begin_reboot(&mut st);
                    Outcome {
                        replies: Vec::new(),
                        close: true,
                    }
                } else {
                    st.update_status = "Downloaded, please reboot router to upgrade it";
                    Outcome::replies(vec![Reply::done()])
                }
            }
            ("/system/device-mode", "update") => Outcome::replies(trap(
                None,
                "failure: device-mode change requires physical confirmation (use the devsim control API)",
            )),
            ("/file", "read") => {
                if !st.version.has_file_read() {
                    return Outcome::replies(no_such_command("read"));
                }
                let name = attr("file").unwrap_or_default();
                let Some(f) = st.file(&name) else {
                    return Outcome::replies(trap(None, "no such item"));
                };
                let off: usize = attr("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
                let chunk: usize = attr("chunk-size")
                    .and_then(|o| o.parse().ok())
                    .unwrap_or(32_768)
                    .clamp(1, 32_768);
                let bytes = f.contents.as_bytes();
                let start = off.min(bytes.len());
                let end = (start + chunk).min(bytes.len());
                let mut a = Attrs::new();
                a.push("data", &bytes[start..end]);
                Outcome::replies(vec![Reply::re(a), Reply::done()])
            }
            ("/", "ping") => Outcome::replies(crate::ping::ping(&st, cmd)),
            ("/system/routerboard", "upgrade") if self.board.model.is_some() => {
                st.rb_upgrade_staged = true;
                Outcome::replies(vec![Reply::done()])
            }
            (_, "print") | (_, "getall") => Outcome::replies(self.print(&st, &menu, cmd)),
            (_, "add") => {
                let r = self.add(&mut st, &menu, cmd);
                Outcome::replies(r)
            }
            (_, "set") | (_, "enable") | (_, "disable") | (_, "unset") | (_, "remove") => {
                let r = self.modify(&mut st, &menu, verb, cmd);
                Outcome::replies(r)
            }
            (_, "listen") => Outcome::replies(trap(None, "listen is not supported by devsim")),
            _ => {
                if self.menu_kind(&st, &MenuPath::parse(path)).is_some() {
                    // a menu path without a verb
                    return Outcome::replies(trap(None, "no such command"));
                }
                let word = if self.menu_kind(&st, &menu).is_some() {
                    verb
                } else {
                    menu.segments().last().map(String::as_str).unwrap_or(verb)
                };
                Outcome::replies(no_such_command(word))
            }
        }
    }

    pub(crate) fn identity(&self, st: &DeviceState) -> String {
        st.config
            .setting(&MenuPath::parse("/system identity"), "name")
            .unwrap_or_else(|| self.default_identity())
    }

    fn find_named(cfg: &Config, p: &MenuPath, target: &str) -> Option<ItemId> {
        if let Ok(id) = target.parse::<ItemId>()
            && cfg.entry(p, id).is_some()
        {
            return Some(id);
        }
        cfg.find_by(p, &[("name", target)]).first().copied()
    }

    // ---- menus ----

    /// `Some(true)` singleton, `Some(false)` list, `None` unknown menu.
    fn menu_kind(&self, st: &DeviceState, menu: &MenuPath) -> Option<bool> {
        let api = menu.to_api();
        if api == "/system/routerboard" && self.board.model.is_none() {
            return None;
        }
        if SINGLETON_MENUS.contains(&api.as_str()) || api == "/system/identity" {
            return Some(true);
        }
        if st
            .config
            .set_stmts(menu)
            .any(|s| s.selector == Selector::None)
            && st.config.entries(menu).next().is_none()
        {
            return Some(true);
        }
        if api == "/system/history" {
            return Some(false);
        }
        if KNOWN_MENUS.contains(&api.as_str()) || st.config.paths().contains(&menu) {
            return Some(false);
        }
        None
    }

    fn resource_row(&self, st: &DeviceState) -> Row {
        let now = self.now();
        let up = now.saturating_sub(st.boot_at);
        let b = self.board;
        let t = now.as_secs() / 5;
        let load = mix(self.shared.seed, u64::from(self.index), t) % 30;
        let used = b.memory / 4
            + (mix(self.shared.seed, u64::from(self.index) + 7, t) % (b.memory / 8).max(1));
        let files: u64 = st.files.iter().map(|f| f.contents.len() as u64).sum();
        vec![
            ("uptime".into(), fmt_duration(up)),
            ("version".into(), format!("{} (stable)", st.version)),
            (
                "build-time".into(),
                if st.version.iso_dates() {
                    "2024-11-20 10:00:00".into()
                } else {
                    "nov/20/2024 10:00:00".into()
                },
            ),
            ("factory-software".into(), "6.44.6".into()),
            ("free-memory".into(), (b.memory - used).to_string()),
            ("total-memory".into(), b.memory.to_string()),
            ("cpu".into(), b.cpu.into()),
            ("cpu-count".into(), b.cpu_count.to_string()),
            ("cpu-frequency".into(), b.cpu_mhz.to_string()),
            ("cpu-load".into(), load.to_string()),
            (
                "free-hdd-space".into(),
                (b.storage / 2).saturating_sub(files).to_string(),
            ),
            ("total-hdd-space".into(), b.storage.to_string()),
            ("architecture-name".into(), b.arch.into()),
            ("board-name".into(), b.board_name.into()),
            ("platform".into(), "MikroTik".into()),
        ]
    }

    fn serial(&self, st: &DeviceState) -> String {
        st.config
            .header
            .serial
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| {
                format!(
                    "HD{:010X}",
                    mix(self.shared.seed, u64::from(self.index), 1) & 0xFF_FFFF_FFFF
                )
            })
    }

    fn software_id(&self, st: &DeviceState) -> String {
        st.config
            .header
            .software_id
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| {
                let x = mix(self.shared.seed, u64::from(self.index), 2);
                format!("{:04X}-{:04X}", x & 0xFFFF, (x >> 16) & 0xFFFF)
            })
    }

    fn mac(&self, port: usize) -> String {
        let x = mix(self.shared.seed, u64::from(self.index), 3);
        format!(
            "48:A9:8A:{:02X}:{:02X}:{:02X}",
            (x >> 8) & 0xFF,
            x & 0xFF,
            port & 0xFF
        )
    }

    /// Items of a list menu (entries and built-ins), with their printable rows.
    fn items(&self, st: &DeviceState, menu: &MenuPath) -> Vec<Item> {
        let cfg = &st.config;
        let api = menu.to_api();
        let mut items = Vec::new();
        let entry_row = |id: ItemId, attrs: &[Attr]| -> Row {
            let mut r: Row = vec![(".id".into(), id.to_string())];
            for a in attrs {
                if let Some(v) = &a.value {
                    r.push((a.key.clone(), api_value(v)));
                }
            }
            r
        };
        let with_defaults = |mut r: Row| -> Row {
            if get(&r, "disabled").is_none() {
                r.push(("disabled".into(), "false".into()));
            }
            r
        };
        match api.as_str() {
            "/interface/ethernet" | "/interface" => {
                let now = self.now();
                let up = now.saturating_sub(st.boot_at).as_secs();
                for (k, port) in self.board.ports.iter().enumerate() {
                    let sel = Selector::Find(FindExpr::eq("default-name", *port));
                    let set = cfg.set_stmt(&MenuPath::parse("/interface ethernet"), &sel);
                    let name = set.and_then(|s| s.get("name")).unwrap_or(port).to_string();
                    let rate =
                        1_000 + mix(self.shared.seed, u64::from(self.index), k as u64) % 1_000_000; // bytes/s
                    let mut r: Row = vec![
                        (".id".into(), ItemId(k as u32 + 1).to_string()),
                        ("name".into(), name),
                        ("default-name".into(), (*port).into()),
                        ("type".into(), "ether".into()),
                        (
                            "mtu".into(),
                            set.and_then(|s| s.get("mtu")).unwrap_or("1500").into(),
                        ),
                        ("mac-address".into(), self.mac(k)),
                        ("running".into(), (k == 0 || k % 3 != 2).to_string()),
                        (
                            "disabled".into(),
                            api_value(set.and_then(|s| s.get("disabled")).unwrap_or("no")),
                        ),
                    ];
                    if api == "/interface" {
                        r.push(("rx-byte".into(), (rate * up).to_string()));
                        r.push(("tx-byte".into(), (rate / 3 * up).to_string()));
                        // errors: a few per hour on every third port, rarer on sends
                        r.push(("rx-error".into(), (up * (k as u64 % 3) / 1200).to_string()));
                        r.push(("tx-error".into(), (up / 3600).to_string()));
                        r.push(("rx-packet".into(), (rate * up / 800).to_string()));
                        r.push(("tx-packet".into(), (rate / 3 * up / 600).to_string()));
                        r.push(("link-downs".into(), "0".into()));
                    }
                    if let Some(c) = set.and_then(|s| s.get("comment")) {
                        r.push(("comment".into(), c.into()));
                    }
                    items.push(Item {
                        id: ItemId(k as u32 + 1),
                        r: ItemRef::Builtin(MenuPath::parse("/interface ethernet"), sel),
                        row: r,
                    });
                }
                if api == "/interface" {
                    for (ti, (sub, kind)) in IFACE_TYPES.iter().enumerate() {
                        let p = MenuPath::parse("/interface").join(*sub);
                        for e in cfg.entries(&p) {
                            let Some(name) = e.get("name") else { continue };
                            let id = ItemId(0x0010_0000 * (ti as u32 + 1) + e.id.0);
                            let r: Row = vec![
                                (".id".into(), id.to_string()),
                                ("name".into(), name.into()),
                                ("type".into(), (*kind).into()),
                                ("mtu".into(), e.get("mtu").unwrap_or("1500").into()),
                                ("running".into(), "true".into()),
                                (
                                    "disabled".into(),
                                    api_value(e.get("disabled").unwrap_or("no")),
                                ),
                                ("rx-byte".into(), "0".into()),
                                ("tx-byte".into(), "0".into()),
                            ];
                            items.push(Item {
                                id,
                                r: ItemRef::Entry(p.clone(), e.id),
                                row: r,
                            });
                        }
                    }
                }
                return items;
            }
            "/ip/service" => {
                for (k, (name, port)) in SERVICES.iter().enumerate() {
                    let sel = Selector::Name {
                        name: (*name).into(),
                        quoted: false,
                    };
                    let set = cfg.set_stmt(menu, &sel);
                    let mut r: Row = vec![
                        (".id".into(), ItemId(k as u32 + 1).to_string()),
                        ("name".into(), (*name).into()),
                        (
                            "port".into(),
                            set.and_then(|s| s.get("port")).unwrap_or(port).into(),
                        ),
                        (
                            "address".into(),
                            set.and_then(|s| s.get("address")).unwrap_or("").into(),
                        ),
                        (
                            "disabled".into(),
                            api_value(set.and_then(|s| s.get("disabled")).unwrap_or("no")),
                        ),
                    ];
                    if name.ends_with("ssl") {
                        r.push(("certificate".into(), "devsim".into()));
                    }
                    items.push(Item {
                        id: ItemId(k as u32 + 1),
                        r: ItemRef::Builtin(menu.clone(), sel),
                        row: r,
                    });
                }
                return items;
            }
            "/system/history" => {
                for h in &st.history {
                    let (d, t) = fmt_date_time(h.at, st.version);
                    items.push(Item {
                        id: ItemId(h.id),
                        r: ItemRef::Builtin(menu.clone(), Selector::Id(ItemId(h.id))),
                        row: vec![
                            (".id".into(), ItemId(h.id).to_string()),
                            ("action".into(), h.action.clone()),
                            ("by".into(), h.by.clone()),
                            ("policy".into(), "write".into()),
                            ("time".into(), format!("{d} {t}")),
                            ("undoable".into(), "true".into()),
                        ],
                    });
                }
                return items;
            }
            "/file" => {
                let limit = st.version.file_contents_limit();
                for f in &st.files {
                    let (d, t) = fmt_date_time(f.created, st.version);
                    let mut r: Row = vec![
                        (".id".into(), ItemId(f.id).to_string()),
                        ("name".into(), f.name.clone()),
                        ("type".into(), f.kind.into()),
                        ("size".into(), f.contents.len().to_string()),
                    ];
                    let key = if st.version >= RosVersion::new(7, 16, 0) {
                        "last-modified"
                    } else {
                        "creation-time"
                    };
                    r.push((key.into(), format!("{d} {t}")));
                    if f.kind != "backup" && f.kind != "package" && f.contents.len() <= limit {
                        r.push(("contents".into(), f.contents.clone()));
                    }
                    if let Some(p) = crate::fetch::parse_package(&f.name) {
                        r.push(("package-name".into(), "routeros".into()));
                        r.push(("package-version".into(), p.version.to_string()));
                        r.push(("package-architecture".into(), p.architecture().into()));
                    }
                    items.push(Item {
                        id: ItemId(f.id),
                        r: ItemRef::Builtin(menu.clone(), Selector::Id(ItemId(f.id))),
                        row: r,
                    });
                }
                return items;
            }
            "/system/package" => {
                let names: &[&str] = if st.version.major >= 7 {
                    &["routeros"]
                } else {
                    &[
                        "routeros-arm",
                        "system",
                        "ppp",
                        "dhcp",
                        "security",
                        "wireless",
                    ]
                };
                for (k, n) in names.iter().enumerate() {
                    let r: Row = vec![
                        (".id".into(), ItemId(k as u32 + 1).to_string()),
                        ("name".into(), (*n).into()),
                        ("version".into(), st.version.to_string()),
                        ("build-time".into(), "2024-11-20 10:00:00".into()),
                        (
                            "scheduled".into(),
                            st.pending_version
                                .map(|v| format!("scheduled for upgrade to {v}"))
                                .unwrap_or_default(),
                        ),
                        ("disabled".into(), "false".into()),
                    ];
                    items.push(Item {
                        id: ItemId(k as u32 + 1),
                        r: ItemRef::Builtin(menu.clone(), Selector::Number(k as u32)),
                        row: r,
                    });
                }
                return items;
            }
            "/user" => {
                let r: Row = vec![
                    (".id".into(), ItemId(BUILTIN_BASE).to_string()),
                    ("name".into(), self.shared.username.clone()),
                    ("group".into(), "full".into()),
                    ("disabled".into(), "false".into()),
                ];
                items.push(Item {
                    id: ItemId(BUILTIN_BASE),
                    r: ItemRef::Builtin(
                        menu.clone(),
                        Selector::Name {
                            name: self.shared.username.clone(),
                            quoted: false,
                        },
                    ),
                    row: r,
                });
            }
            _ => {}
        }
        // generic: built-ins from `set` statements with selectors, then `add` entries
        let mut k = 0u32;
        for s in cfg.set_stmts(menu) {
            if s.selector == Selector::None {
                continue;
            }
            if let Ok(ids) = cfg.resolve(menu, &s.selector)
                && !ids.is_empty()
            {
                continue;
            }
            let id = match &s.selector {
                Selector::Id(id) => *id,
                _ => ItemId(BUILTIN_BASE + 0x10 + k),
            };
            k += 1;
            let mut r: Row = vec![(".id".into(), id.to_string())];
            if let Selector::Find(f) = &s.selector {
                for t in &f.terms {
                    if let rosconfig::FindTerm::Eq { key, value, .. } = t {
                        r.push((key.clone(), api_value(value)));
                    }
                }
            }
            if let Selector::Name { name, .. } = &s.selector {
                r.push(("name".into(), name.clone()));
            }
            for a in &s.attrs {
                if let Some(v) = &a.value {
                    match r.iter_mut().find(|(key, _)| *key == a.key) {
                        Some(slot) => slot.1 = api_value(v),
                        None => r.push((a.key.clone(), api_value(v))),
                    }
                }
            }
            items.push(Item {
                id,
                r: ItemRef::Builtin(menu.clone(), s.selector.clone()),
                row: with_defaults(r),
            });
        }
        for e in cfg.entries(menu) {
            let mut r = with_defaults(entry_row(e.id, &e.attrs));
            if api == "/system/scheduler" {
                let run = st.sched.get(&e.id).copied().unwrap_or(SchedRun {
                    next: None,
                    run_count: 0,
                });
                r.push(("owner".into(), self.shared.username.clone()));
                r.push(("run-count".into(), run.run_count.to_string()));
                if let Some(n) = run.next {
                    let (d, t) = fmt_date_time(n, st.version);
                    r.push(("next-run".into(), format!("{d} {t}")));
                }
            }
            if api == "/user" {
                r.retain(|(k, _)| k != "password");
            }
            items.push(Item {
                id: e.id,
                r: ItemRef::Entry(menu.clone(), e.id),
                row: r,
            });
        }
        items
    }

    fn singleton_row(&self, st: &DeviceState, menu: &MenuPath) -> Row {
        let api = menu.to_api();
        let now = self.now();
        let mut r: Row = match api.as_str() {
            "/system/resource" => return self.resource_row(st),
            "/system/identity" => vec![("name".into(), self.identity(st))],
            "/system/routerboard" => vec![
                ("routerboard".into(), "true".into()),
                ("board-name".into(), self.board.board_name.into()),
                ("model".into(), self.board.model.unwrap_or("CHR").into()),
                ("serial-number".into(), self.serial(st)),
                ("firmware-type".into(), "devsim".into()),
                ("factory-firmware".into(), "6.44.6".into()),
                (
                    "current-firmware".into(),
                    st.rb_firmware.unwrap_or(st.version).to_string(),
                ),
                ("upgrade-firmware".into(), st.version.to_string()),
            ],
            "/system/clock" => {
                let (d, t) = fmt_date_time(now, st.version);
                vec![
                    ("time".into(), t),
                    ("date".into(), d),
                    ("time-zone-autodetect".into(), "true".into()),
                    ("time-zone-name".into(), "UTC".into()),
                    ("gmt-offset".into(), "+00:00".into()),
                ]
            }
            "/system/package/update" => vec![
                ("channel".into(), "stable".into()),
                ("installed-version".into(), st.version.to_string()),
                (
                    "latest-version".into(),
                    st.available_version
                        .filter(|v| *v > st.version)
                        .unwrap_or(st.version)
                        .to_string(),
                ),
                ("status".into(), st.update_status.into()),
            ],
            "/system/device-mode" => vec![
                (
                    "mode".into(),
                    if st.scheduler_allowed {
                        "advanced"
                    } else {
                        "home"
                    }
                    .into(),
                ),
                ("scheduler".into(), st.scheduler_allowed.to_string()),
                ("fetch".into(), st.scheduler_allowed.to_string()),
                ("container".into(), "false".into()),
            ],
            _ => Vec::new(),
        };
        for a in st.config.settings(menu) {
            if let Some(v) = a.value {
                match r.iter_mut().find(|(k, _)| *k == a.key) {
                    Some(slot) => slot.1 = api_value(&v),
                    None => r.push((a.key, api_value(&v))),
                }
            }
        }
        r
    }

    fn print(&self, st: &DeviceState, menu: &MenuPath, cmd: &Command) -> Vec<Reply> {
        let Some(single) = self.menu_kind(st, menu) else {
            let word = menu.segments().last().map(String::as_str).unwrap_or("");
            return no_such_command(word);
        };
        for (k, _) in cmd.attrs().iter() {
            let ok = matches!(
                k,
                ".proplist"
                    | "detail"
                    | "count-only"
                    | "stats"
                    | "without-paging"
                    | "terse"
                    | "brief"
                    | "from"
                    | "where"
                    | "as-value"
            );
            if !ok {
                return trap(None, format!("unknown parameter {k}"));
            }
        }
        let mut rows: Vec<Row> = if single {
            vec![self.singleton_row(st, menu)]
        } else {
            self.items(st, menu).into_iter().map(|i| i.row).collect()
        };
        if let Some(from) = cmd.attrs().get_str("from") {
            let ids: Vec<&str> = from.split(',').collect();
            rows.retain(|r| {
                get(r, ".id").is_some_and(|id| ids.contains(&id))
                    || get(r, "name").is_some_and(|n| ids.contains(&n))
            });
        }
        rows.retain(|r| matches(r, cmd.queries()));
        if cmd.attrs().contains("count-only") {
            return vec![Reply::done_ret(rows.len().to_string())];
        }
        let proplist: Option<Vec<&str>> = cmd
            .attrs()
            .get_str(".proplist")
            .map(|p| p.split(',').collect());
        let mut out = Vec::with_capacity(rows.len() + 1);
        for r in &rows {
            let mut a = Attrs::new();
            for (k, v) in r {
                if proplist.as_ref().is_none_or(|p| p.contains(&k.as_str())) {
                    a.push(k.clone(), v);
                }
            }
            out.push(Reply::re(a));
        }
        if rows.is_empty() && st.version.has_empty_reply() {
            out.push(Reply::empty());
        }
        out.push(Reply::done());
        out
    }

    /// Attributes of a write command (API words without `.id`/`numbers`).
    fn write_attrs(cmd: &Command) -> Vec<Attr> {
        cmd.attrs()
            .iter()
            .filter(|(k, _)| !matches!(*k, ".id" | "numbers" | ".proplist"))
            .map(|(k, v)| Attr::new(k, cfg_value(&String::from_utf8_lossy(v))))
            .collect()
    }

    fn interface_names(&self, st: &DeviceState) -> Vec<String> {
        let mut v: Vec<String> = self
            .items(st, &MenuPath::parse("/interface"))
            .into_iter()
            .filter_map(|i| get(&i.row, "name").map(str::to_string))
            .collect();
        v.extend(
            st.config
                .entries(&MenuPath::parse("/interface list"))
                .filter_map(|e| e.get("name").map(str::to_string)),
        );
        v
    }

    fn mark_change(&self, st: &mut DeviceState, cmd_text: &str) {
        Self::count_changes(st, cmd_text);
        st.note_history(
            "configuration changed over the api".into(),
            &self.shared.username,
            self.now(),
        );
        if st.faults.cut_access_on_change {
            st.faults.cut_access_on_change = false;
            st.access_cut = true;
        }
    }

    fn add(&self, st: &mut DeviceState, menu: &MenuPath, cmd: &Command) -> Vec<Reply> {
        let Some(single) = self.menu_kind(st, menu) else {
            return no_such_command(menu.segments().last().map(String::as_str).unwrap_or(""));
        };
        if single
            || matches!(
                menu.to_api().as_str(),
                "/system/resource" | "/system/package" | "/interface/ethernet" | "/ip/service"
            )
        {
            return no_such_command("add");
        }
        let mut attrs = Self::write_attrs(cmd);
        let api = menu.to_api();
        if api == "/ip/address" {
            let Some(addr) = rosconfig::get_attr(&attrs, "address").map(str::to_owned) else {
                return trap(Some(1), "missing value for address");
            };
            let valid = addr
                .split_once('/')
                .map_or(addr.as_str(), |(a, _)| a)
                .parse::<std::net::Ipv4Addr>()
                .is_ok();
            if !valid {
                return trap(Some(1), "invalid value for argument address");
            }
            let iface = rosconfig::get_attr(&attrs, "interface")
                .map(str::to_owned)
                .unwrap_or_default();
            if !self.interface_names(st).contains(&iface) {
                return trap(Some(1), "input does not match any value of interface");
            }
        }
        if api == "/user" {
            if let Some(pw) = rosconfig::get_attr(&attrs, "password").map(str::to_owned) {
                let name = rosconfig::get_attr(&attrs, "name")
                    .map(str::to_owned)
                    .unwrap_or_default();
                st.passwords.push((name, pw));
            }
            attrs.retain(|a| a.key != "password");
        }
        if api == "/file" {
            let Some(name) = rosconfig::get_attr(&attrs, "name").map(str::to_owned) else {
                return trap(Some(1), "missing value for name");
            };
            let contents = rosconfig::get_attr(&attrs, "contents")
                .map(str::to_owned)
                .unwrap_or_default();
            let now = self.now();
            let kind = if name.ends_with(".rsc") {
                "script"
            } else {
                ".txt file"
            };
            st.put_file(&name, kind, contents, now);
            let id = st
                .files
                .iter()
                .find(|f| f.name == name)
                .map(|f| f.id)
                .unwrap_or(0);
            return vec![Reply::done_ret(ItemId(id).to_string())];
        }
        let text = format!("{cmd:?}");
        match st.config_mut().add_checked(menu, attrs) {
            Ok(id) => {
                if api == "/system/scheduler" {
                    st.sched.remove(&id);
                }
                self.mark_change(st, &text);
                vec![Reply::done_ret(id.to_string())]
            }
            Err(e) => trap(None, e.to_string()),
        }
    }

    fn modify(
        &self,
        st: &mut DeviceState,
        menu: &MenuPath,
        verb: &str,
        cmd: &Command,
    ) -> Vec<Reply> {
        let Some(single) = self.menu_kind(st, menu) else {
            return no_such_command(menu.segments().last().map(String::as_str).unwrap_or(""));
        };
        let api = menu.to_api();
        let attrs = match verb {
            "enable" => vec![Attr::new("disabled", "no")],
            "disable" => vec![Attr::new("disabled", "yes")],
            _ => Self::write_attrs(cmd),
        };
        let text = format!("{cmd:?}");
        let ids_word = cmd
            .attrs()
            .get_str(".id")
            .or_else(|| cmd.attrs().get_str("numbers"))
            .map(str::to_string);
        if single {
            if verb != "set" && verb != "unset" {
                return no_such_command(verb);
            }
            if matches!(
                api.as_str(),
                "/system/resource"
                    | "/system/routerboard"
                    | "/system/package/update"
                    | "/system/device-mode"
            ) {
                return trap(
                    None,
                    format!(
                        "unknown parameter {}",
                        attrs.first().map(|a| a.key.as_str()).unwrap_or("")
                    ),
                );
            }
            if verb == "unset" {
                let keys: Vec<String> = cmd
                    .attrs()
                    .get_str("value-name")
                    .map(|v| v.split(',').map(str::to_string).collect())
                    .unwrap_or_default();
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                st.config_mut().unset_on(menu, &Selector::None, &keys);
            } else {
                st.config_mut().set_settings(menu, attrs);
            }
            self.mark_change(st, &text);
            return vec![Reply::done()];
        }
        let Some(ids_word) = ids_word else {
            return trap(Some(1), "missing value for numbers");
        };
        let items = self.items(st, menu);
        let mut targets = Vec::new();
        for part in ids_word.split(',') {
            let found = items
                .iter()
                .find(|i| i.id.to_string() == part || get(&i.row, "name") == Some(part));
            match found {
                Some(i) => targets.push(i.clone()),
                None => return trap(None, "no such item"),
            }
        }
        if api == "/file" {
            for t in &targets {
                let fid = t.id.0;
                match verb {
                    "remove" => st.files.retain(|f| f.id != fid),
                    "set" => {
                        if let Some(c) = rosconfig::get_attr(&attrs, "contents").map(str::to_owned)
                            && let Some(f) = st.files.iter_mut().find(|f| f.id == fid)
                        {
                            f.contents = c;
                        }
                    }
                    _ => return no_such_command(verb),
                }
            }
            return vec![Reply::done()];
        }
        if api == "/user"
            && verb == "set"
            && let Some(pw) = rosconfig::get_attr(&attrs, "password").map(str::to_owned)
        {
            for t in &targets {
                if let Some(n) = get(&t.row, "name") {
                    st.passwords.retain(|(x, _)| x != n);
                    st.passwords.push((n.to_string(), pw.clone()));
                }
            }
        }
        let attrs: Vec<Attr> = if api == "/user" {
            attrs.into_iter().filter(|a| a.key != "password").collect()
        } else {
            attrs
        };
        for t in targets {
            let r = match (&t.r, verb) {
                (ItemRef::Entry(p, id), "remove") => {
                    if p.to_api() == "/system/scheduler" {
                        st.sched.remove(id);
                    }
                    st.config_mut().remove(p, *id)
                }
                (ItemRef::Entry(p, id), "unset") => {
                    let keys: Vec<String> = cmd
                        .attrs()
                        .get_str("value-name")
                        .map(|v| v.split(',').map(str::to_string).collect())
                        .unwrap_or_default();
                    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                    st.config_mut().unset(p, *id, &keys)
                }
                (ItemRef::Entry(p, id), _) => {
                    if p.to_api() == "/system/scheduler" {
                        st.sched.remove(id);
                    }
                    st.config_mut().set(p, *id, attrs.clone())
                }
                (ItemRef::Builtin(..), "remove") => {
                    return trap(None, "failure: default item can not be removed");
                }
                (ItemRef::Builtin(p, sel), "unset") => {
                    let keys: Vec<String> = cmd
                        .attrs()
                        .get_str("value-name")
                        .map(|v| v.split(',').map(str::to_string).collect())
                        .unwrap_or_default();
                    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                    st.config_mut().unset_on(p, sel, &keys);
                    Ok(())
                }
                (ItemRef::Builtin(p, sel), _) => {
                    st.config_mut().upsert_set(p, sel, attrs.clone());
                    Ok(())
                }
            };
            if let Err(e) = r {
                return trap(None, e.to_string());
            }
        }
        self.mark_change(st, &text);
        vec![Reply::done()]
    }

    // ---- export, backup ----

    pub(crate) fn export_text(&self, st: &DeviceState, show_sensitive: bool) -> String {
        let mut cfg = (*st.config).clone();
        if !show_sensitive {
            for sec in &mut cfg.sections {
                let path = sec.path.clone();
                for s in &mut sec.stmts {
                    let attrs = match s {
                        Stmt::Add(e) => &mut e.attrs,
                        Stmt::Set(x) => &mut x.attrs,
                        _ => continue,
                    };
                    attrs.retain(|a| {
                        !rosconfig::is_secret(&path, &a.key)
                            || a.value.as_deref().is_none_or(|v| v.is_empty())
                    });
                }
            }
        }
        let idp = MenuPath::parse("/system identity");
        if cfg.setting(&idp, "name").is_none() {
            cfg.set_settings(&idp, vec![Attr::new("name", self.default_identity())]);
        }
        let (d, t) = fmt_date_time(self.now(), st.version);
        let header = ExportHeader {
            timestamp: format!("{d} {t}"),
            version: st.version.to_string(),
            software_id: if self.board.model.is_some() || st.config.header.software_id.is_some() {
                Some(self.software_id(st))
            } else {
                Some(String::new())
            },
            model: self
                .board
                .model
                .map(str::to_string)
                .or_else(|| st.config.header.model.clone()),
            serial: self.board.model.map(|_| self.serial(st)),
        };
        let wrap = Wrap::Terminal(80);
        rosconfig::render(
            &cfg,
            &RenderOptions {
                header: HeaderMode::Generated(header),
                wrap,
                line_ending: None,
                remarks: true,
                dotted_shorthand: None,
                trailer: false,
            },
        )
    }

    fn api_export(&self, st: &mut DeviceState, cmd: &Command, menu: &MenuPath) -> Vec<Reply> {
        let v7 = st.version.major >= 7;
        for (k, _) in cmd.attrs().iter() {
            let ok = match k {
                "file" | "compact" | "verbose" | "terse" => true,
                "show-sensitive" => v7,
                "hide-sensitive" => true,
                _ => false,
            };
            if !ok {
                return trap(None, format!("unknown parameter {k}"));
            }
        }
        let show = if v7 {
            cmd.attrs().contains("show-sensitive")
        } else {
            !cmd.attrs().contains("hide-sensitive")
        };
        let mut text = self.export_text(st, show);
        if !menu.is_root() {
            // a menu export keeps only that menu and its submenus
            if let Ok(mut c) = rosconfig::parse_export(&text) {
                let keep = menu.segments().to_vec();
                c.sections.retain(|s| s.path.segments().starts_with(&keep));
                text = rosconfig::render(&c, &RenderOptions::faithful(Wrap::Terminal(80)));
            }
        }
        match cmd.attrs().get_str("file") {
            // over the API `/export` without a file answers only `!done` (ROUTEROS-NOTES §5.11)
            None => vec![Reply::done()],
            Some(f) => {
                let name = if f.ends_with(".rsc") {
                    f.to_string()
                } else {
                    format!("{f}.rsc")
                };
                let now = self.now();
                st.put_file(&name, "script", text, now);
                vec![Reply::done()]
            }
        }
    }

    fn backup_blob(&self, st: &DeviceState) -> String {
        let mut s = format!("DEVSIM-BACKUP 1\nversion={}\n", st.version);
        for (n, p) in &st.passwords {
            s.push_str(&format!("user={n}:{p}\n"));
        }
        s.push_str("--\n");
        s.push_str(&rosconfig::render(
            &st.config,
            &RenderOptions::faithful(Wrap::None),
        ));
        s
    }

    /// Restores a backup file; the device then reboots.
    fn restore_backup(&self, st: &mut DeviceState, name: &str) -> Result<(), String> {
        let fname = if name.ends_with(".backup") {
            name.to_string()
        } else {
            format!("{name}.backup")
        };
        let Some(f) = st.file(&fname).or_else(|| st.file(name)).cloned() else {
            return Err("no such item".into());
        };
        let Some((head, body)) = f.contents.split_once("--\n") else {
            return Err("failure: backup file is corrupted".into());
        };
        if !head.starts_with("DEVSIM-BACKUP 1") {
            return Err("failure: backup file is corrupted".into());
        }
        let cfg = rosconfig::parse_export(body)
            .map_err(|e| format!("failure: backup file is corrupted ({e})"))?;
        st.passwords = head
            .lines()
            .filter_map(|l| l.strip_prefix("user="))
            .filter_map(|l| l.split_once(':'))
            .map(|(n, p)| (n.to_string(), p.to_string()))
            .collect();
        st.config = Arc::new(cfg);
        st.sched.clear();
        st.access_cut = false;
        self.begin_reboot(st);
        Ok(())
    }
}

/// Who runs a script: the API (`/import`, `/system/script/run`), the scheduler, a console
/// (out of band), or a dry run (no side effects beyond the copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScriptCtx {
    Api,
    Scheduler,
    Console,
    DryRun,
}

impl Device {
    /// Runs a RouterOS script (see the crate docs for what is supported). Stops at the first
    /// failing command; returns RouterOS-like error text with its line.
    pub(crate) fn run_script(
        &self,
        st: &mut DeviceState,
        source: &str,
        ctx: ScriptCtx,
    ) -> Result<(), String> {
        let cmds = rosconfig::parse_script(source).map_err(|e| e.message)?;
        let mut changed = false;
        for c in &cmds {
            let at = |m: String| format!("{m} (line {} column {})", c.line, c.column);
            let api = c.path.to_api();
            match (api.as_str(), c.verb.as_str()) {
                (_, ":log") | (_, ":put") | (_, ":delay") => {}
                ("/system/backup", "load") => {
                    if ctx == ScriptCtx::DryRun {
                        continue;
                    }
                    let name = c
                        .arg("name")
                        .map(str::to_string)
                        .ok_or_else(|| at("missing value for name".into()))?;
                    self.restore_backup(st, &name).map_err(at)?;
                    return Ok(()); // the device reboots
                }
                ("/system/backup", "save") => {
                    if ctx == ScriptCtx::DryRun {
                        continue;
                    }
                    let name = c.arg("name").unwrap_or("backup");
                    let fname = if name.ends_with(".backup") {
                        name.to_string()
                    } else {
                        format!("{name}.backup")
                    };
                    let body = self.backup_blob(st);
                    let now = self.now();
                    st.put_file(&fname, "backup", body, now);
                }
                ("/", "import") => {
                    let file = c
                        .arg("file-name")
                        .map(str::to_string)
                        .ok_or_else(|| at("missing value for file-name".into()))?;
                    let f = st
                        .file(&file)
                        .cloned()
                        .ok_or_else(|| at(format!("failure: no such file {file}")))?;
                    self.run_script(st, &f.contents, ctx)?;
                    if ctx == ScriptCtx::Scheduler {
                        st.access_cut = false;
                    }
                }
                ("/system", "reboot") => {
                    if ctx != ScriptCtx::DryRun {
                        self.begin_reboot(st);
                    }
                    return Ok(());
                }
                ("/system/script", "run") => {
                    let target = c
                        .positional
                        .first()
                        .and_then(|a| a.text())
                        .or_else(|| c.arg("number"))
                        .unwrap_or("")
                        .to_string();
                    let p = MenuPath::parse("/system script");
                    let src = Self::find_named(&st.config, &p, &target)
                        .and_then(|id| {
                            st.config
                                .entry(&p, id)
                                .and_then(|e| e.get("source"))
                                .map(str::to_string)
                        })
                        .ok_or_else(|| at("no such item".into()))?;
                    self.run_script(st, &src, ctx)?;
                }
                ("/system/package/update", "install") => {
                    if ctx == ScriptCtx::DryRun {
                        continue;
                    }
                    if let Some(v) = st.available_version.filter(|v| *v > st.version) {
                        st.pending_version = Some(v);
                        self.begin_reboot(st);
                        return Ok(());
                    }
                }
                ("/file", "add") => {
                    // `/file add name=... contents=...` (7.9beta2+): creates a file
                    if ctx == ScriptCtx::DryRun {
                        continue;
                    }
                    let name = c
                        .arg("name")
                        .map(str::to_string)
                        .ok_or_else(|| at("missing value for name".into()))?;
                    let contents = c.arg("contents").unwrap_or("").to_string();
                    let now = self.now();
                    st.put_file(&name, crate::fetch::file_kind(&name), contents, now);
                }
                ("/file", "remove") => {
                    let target = c
                        .positional
                        .first()
                        .and_then(|a| a.text())
                        .unwrap_or("")
                        .to_string();
                    st.files.retain(|f| f.name != target);
                }
                (_, "export") => {
                    if let Some(f) = c.arg("file") {
                        let name = if f.ends_with(".rsc") {
                            f.to_string()
                        } else {
                            format!("{f}.rsc")
                        };
                        let text = self.export_text(st, true);
                        let now = self.now();
                        st.put_file(&name, "script", text, now);
                    }
                }
                (_, "add" | "set" | "remove" | "enable" | "disable" | "unset") => {
                    if api == "/user"
                        && c.verb == "add"
                        && let (Some(n), Some(p)) = (c.arg("name"), c.arg("password"))
                    {
                        st.passwords.push((n.to_string(), p.to_string()));
                    }
                    let mut cmd = c.clone();
                    cmd.attrs
                        .retain(|a| !(api == "/user" && a.key == "password"));
                    // `set`/`remove` of a name on a menu whose items are built-in
                    rosconfig::apply_command(st.config_mut(), &cmd)
                        .map_err(|e| at(e.to_string()))?;
                    if api == "/system/scheduler" {
                        st.sched.clear();
                    }
                    changed = true;
                    let by = match ctx {
                        ScriptCtx::Api => Some(self.shared.username.as_str()),
                        ScriptCtx::Scheduler => Some("scheduler"),
                        ScriptCtx::Console => Some("console"),
                        ScriptCtx::DryRun => None,
                    };
                    if let Some(by) = by {
                        let action = format!("{} {}", c.verb, c.path);
                        let now = self.now();
                        st.note_history(action, by, now);
                    }
                }
                _ => return Err(at(format!("bad command name {}", c.verb))),
            }
        }
        if changed && ctx == ScriptCtx::Api && st.faults.cut_access_on_change {
            st.faults.cut_access_on_change = false;
            st.access_cut = true;
        }
        Ok(())
    }

    /// Advances time-driven state: reboot completion (version change after an install) and
    /// scheduler runs. Returns whether the device still needs ticks.
    pub(crate) fn tick(&self) -> bool {
        let now = self.now();
        let mut link_changed = false;
        let keep = {
            let mut st = self.lock();
            if let Some(until) = st.offline_until {
                if now < until {
                    return true;
                }
                st.offline_until = None;
                st.boot_at = now;
                st.sched.clear();
                let before = st.version;
                if st.pending_version.is_none() {
                    crate::fetch::install_uploaded_packages(&mut st, self.board.arch);
                }
                if st.rb_upgrade_staged {
                    st.rb_upgrade_staged = false;
                    st.rb_firmware = None;
                }
                if let Some(v) = st.pending_version.take() {
                    if st.faults.fail_upgrade {
                        st.faults.fail_upgrade = false;
                        st.upgrades_failed += 1;
                    } else {
                        st.version = v;
                    }
                }
                if st.version != before && self.board.model.is_some() {
                    // RouterBOARD firmware stays behind until `/system routerboard upgrade`
                    st.rb_firmware.get_or_insert(before);
                }
                st.update_status = "";
                // files outside flash vanish on reboot on some boards: devsim keeps them
                link_changed = true;
            }
            self.run_due(&mut st, now)
        };
        if link_changed {
            self.update_link();
        }
        self.update_link();
        keep
    }

    fn run_due(&self, st: &mut DeviceState, now: Duration) -> bool {
        let p = MenuPath::parse("/system scheduler");
        #[allow(clippy::type_complexity)]
        let entries: Vec<(
            ItemId,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            bool,
        )> = st
            .config
            .entries(&p)
            .map(|e| {
                (
                    e.id,
                    e.get("start-date").map(str::to_string),
                    e.get("start-time").map(str::to_string),
                    e.get("interval").map(str::to_string),
                    e.get("on-event").map(str::to_string),
                    e.get("disabled") == Some("yes"),
                )
            })
            .collect();
        let mut any = false;
        for (id, date, time_s, interval, on_event, disabled) in entries {
            if disabled {
                continue;
            }
            any = true;
            if !st.scheduler_allowed {
                continue;
            }
            let interval = interval
                .as_deref()
                .and_then(parse_duration)
                .unwrap_or_default();
            let run = *st.sched.entry(id).or_insert_with(|| SchedRun {
                next: first_run(
                    now,
                    st.boot_at,
                    date.as_deref(),
                    time_s.as_deref(),
                    interval,
                ),
                run_count: 0,
            });
            let Some(next) = run.next else { continue };
            if now < next {
                continue;
            }
            let follow = if interval.is_zero() {
                None
            } else {
                let mut n = next + interval;
                while n <= now {
                    n += interval;
                }
                Some(n)
            };
            st.sched.insert(
                id,
                SchedRun {
                    next: follow,
                    run_count: run.run_count + 1,
                },
            );
            let Some(src) = on_event else { continue };
            // on-event is a script name or inline source
            let sp = MenuPath::parse("/system script");
            let source = Self::find_named(&st.config, &sp, src.trim())
                .and_then(|sid| {
                    st.config
                        .entry(&sp, sid)
                        .and_then(|e| e.get("source"))
                        .map(str::to_string)
                })
                .unwrap_or(src);
            Self::count_changes(st, &source);
            let before_restore = st.offline_until.is_some();
            let r = self.run_script(st, &source, ScriptCtx::Scheduler);
            if let Err(e) = r {
                tracing::debug!(device = self.index, error = %e, "scheduler script failed");
            }
            if !before_restore && st.offline_until.is_some() {
                // a backup load/reboot happened: it also restores management access
                st.access_cut = false;
                return true;
            }
        }
        any
    }
}

/// First run time of a scheduler entry created/booted at `created`.
fn first_run(
    now: Duration,
    boot: Duration,
    date: Option<&str>,
    time_s: Option<&str>,
    interval: Duration,
) -> Option<Duration> {
    if time_s == Some("startup") {
        let t = boot + Duration::from_secs(3);
        return Some(if interval.is_zero() { t } else { t + interval });
    }
    let day = match date {
        Some(d) => parse_date(d)?,
        None => Duration::from_secs(now.as_secs() / 86_400 * 86_400),
    };
    let tod = time_s.and_then(parse_duration).unwrap_or_default();
    let start = day + tod;
    if interval.is_zero() {
        return (start + Duration::from_secs(1) >= now).then_some(start.max(now));
    }
    if start >= now {
        return Some(start);
    }
    let k = (now - start).as_secs().div_ceil(interval.as_secs().max(1));
    Some(start + interval * u32::try_from(k).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("5m30s"), Some(Duration::from_secs(330)));
        assert_eq!(parse_duration("00:05:00"), Some(Duration::from_secs(300)));
        assert_eq!(
            parse_duration("1d 00:00:01"),
            Some(Duration::from_secs(86_401))
        );
        assert_eq!(parse_duration("100ms"), Some(Duration::from_secs(0)));
        assert_eq!(fmt_duration(Duration::from_secs(695_220)), "1w1d1h7m");
        assert_eq!(fmt_duration(Duration::from_secs(0)), "0s");
    }

    #[test]
    fn dates() {
        let t = parse_date("2024-03-02").unwrap();
        assert_eq!(parse_date("mar/02/2024"), Some(t));
        assert_eq!(fmt_date_time(t, RosVersion::new(7, 16, 0)).0, "2024-03-02");
        assert_eq!(fmt_date_time(t, RosVersion::new(6, 49, 0)).0, "mar/02/2024");
    }
}

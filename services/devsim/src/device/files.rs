//! `/file` (add, set, remove, read), `/export` (to the API: only `!done`; with `file=` a
//! `.rsc` file) and `/system/backup` save/load (ROUTEROS-NOTES §5.9-§5.11). A devsim
//! backup is the configuration in faithful export form plus the user passwords, behind a
//! `DEVSIM-BACKUP 1` header. A backup saved with `password=` is encrypted (RouterOS:
//! aes-sha256 by default; without a password it is plain since 6.43, ROUTEROS-NOTES §5.10):
//! devsim writes `DEVSIM-BACKUP 1 ENCRYPTED`, a password check and the blob XORed with a
//! SHA-256 key stream of the password (hex), so neither the configuration nor the user
//! passwords can be read from the file, and `load` needs the same `password=`.

use std::sync::Arc;

use rosconfig::{Attr, ExportHeader, HeaderMode, ItemId, MenuPath, RenderOptions, Stmt, Wrap};
use routeros::{Attrs, Reply};

use super::Device;
use super::exec::{Done, Origin, Refusal, Request};
use super::values::{backup_stamp, fmt_date_time};
use crate::state::DeviceState;

/// `name` with `suffix` appended unless it already ends with it.
fn with_suffix(name: &str, suffix: &str) -> String {
    if name.ends_with(suffix) {
        name.to_string()
    } else {
        format!("{name}{suffix}")
    }
}

impl Device {
    /// `/file add name=X contents=Y` (7.9beta2+): creates or overwrites a file; its type
    /// follows the name (`.rsc` script, `.npk` package, ...). Answers the file's id.
    pub(super) fn file_add(
        &self,
        st: &mut DeviceState,
        origin: Origin<'_>,
        req: &Request<'_>,
    ) -> Result<Done, Refusal> {
        let Some(name) = req.arg("name") else {
            return Err(Refusal::Trap(Some(1), "missing value for name".into()));
        };
        if origin.is_dry() {
            return Ok(Done::ok());
        }
        let contents = req.arg("contents").unwrap_or_default().into_owned();
        let now = self.now();
        st.put_file(&name, crate::fetch::file_kind(&name), contents, now);
        let id = st
            .files
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.id)
            .unwrap_or(0);
        Ok(Done::ret(ItemId(id).to_string()))
    }

    /// `/file set X contents=Y`, `/file remove X`: files named by id or name
    /// (comma-separated over the API).
    pub(super) fn file_modify(
        &self,
        st: &mut DeviceState,
        req: &Request<'_>,
    ) -> Result<Done, Refusal> {
        let Some(words) = req.target() else {
            return Err(Refusal::Trap(Some(1), "missing value for numbers".into()));
        };
        let mut ids = Vec::new();
        for w in words.split(',') {
            let Some(f) = st
                .files
                .iter()
                .find(|f| ItemId(f.id).to_string() == w || f.name == w)
            else {
                return Err(Refusal::trap("no such item"));
            };
            ids.push(f.id);
        }
        let contents = req.arg("contents").map(|c| c.into_owned());
        for id in ids {
            if req.verb == "remove" {
                st.files.retain(|f| f.id != id);
            } else if let Some(c) = &contents
                && let Some(f) = st.files.iter_mut().find(|f| f.id == id)
            {
                f.contents = c.clone();
            }
        }
        Ok(Done::ok())
    }

    /// `/file/read file=X offset=N chunk-size=M` (7.13+): one chunk as `data` in a `!re`
    /// (whether RouterOS answers in `!re` or `=ret=` is unsourced, ROUTEROS-NOTES §5.9).
    pub(super) fn file_read(&self, st: &DeviceState, req: &Request<'_>) -> Result<Done, Refusal> {
        if !st.version.has_file_read() {
            return Err(Refusal::NoSuchCommand("read".into()));
        }
        let name = req.arg("file").unwrap_or_default();
        let Some(f) = st.file(&name) else {
            return Err(Refusal::trap("no such item"));
        };
        let num = |k: &str| req.arg(k).and_then(|o| o.parse::<usize>().ok());
        let off = num("offset").unwrap_or(0);
        let chunk = num("chunk-size").unwrap_or(32_768).clamp(1, 32_768);
        let bytes = f.contents.as_bytes();
        let start = off.min(bytes.len());
        let end = (start + chunk).min(bytes.len());
        let mut a = Attrs::new();
        a.push("data", &bytes[start..end]);
        Ok(Done::replies(vec![Reply::re(a), Reply::done()]))
    }

    /// The export text the device writes (`show_sensitive`: v7's `show-sensitive`, v6's
    /// default).
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

    /// `/export [file=X] [compact|verbose|terse] [show-sensitive|hide-sensitive]`, on the
    /// root or a menu. Over the API an export without `file` answers only `!done`
    /// (ROUTEROS-NOTES §5.11); with `file` it writes `X.rsc`. Sensitive values follow the
    /// version's rule whoever asks (v7 hides them unless `show-sensitive`, v6 shows them
    /// unless `hide-sensitive`).
    pub(super) fn export_cmd(
        &self,
        st: &mut DeviceState,
        origin: Origin<'_>,
        req: &Request<'_>,
    ) -> Result<Done, Refusal> {
        let v7 = st.version.major >= 7;
        for k in req.keys() {
            let ok = match k {
                "file" | "compact" | "verbose" | "terse" => true,
                "show-sensitive" => v7,
                "hide-sensitive" => true,
                _ => false,
            };
            if !ok {
                return Err(Refusal::trap(format!("unknown parameter {k}")));
            }
        }
        let Some(file) = req.arg("file") else {
            return Ok(Done::ok());
        };
        if origin.is_dry() {
            return Ok(Done::ok());
        }
        let show = if v7 {
            req.has("show-sensitive")
        } else {
            !req.has("hide-sensitive")
        };
        let mut text = self.export_text(st, show);
        let menu = &req.menu;
        if !menu.is_root() {
            // a menu export keeps only that menu and its submenus
            if let Ok(mut c) = rosconfig::parse_export(&text) {
                let keep = menu.segments().to_vec();
                c.sections.retain(|s| s.path.segments().starts_with(&keep));
                text = rosconfig::render(&c, &RenderOptions::faithful(Wrap::Terminal(80)));
            }
        }
        let now = self.now();
        st.put_file(&with_suffix(&file, ".rsc"), "script", text, now);
        Ok(Done::ok())
    }

    /// The default backup name: `[identity]-[date]-[time].backup` (MT-BKP,
    /// ROUTEROS-NOTES §5.10), e.g. `devsim-00003-20240131-1205.backup`; see
    /// [`backup_stamp`] for the unsourced digit layout.
    fn default_backup_name(&self, st: &DeviceState) -> String {
        format!("{}-{}", self.identity(st), backup_stamp(self.now()))
    }

    /// `/system/backup/save [name=X]`: writes `X.backup` (default name above).
    pub(super) fn backup_save(
        &self,
        st: &mut DeviceState,
        origin: Origin<'_>,
        req: &Request<'_>,
    ) -> Done {
        if origin.is_dry() {
            return Done::ok();
        }
        let name = match req.arg("name") {
            Some(n) => n.into_owned(),
            None => self.default_backup_name(st),
        };
        let mut body = self.backup_blob(st);
        if let Some(p) = req.arg("password").filter(|p| !p.is_empty())
            && req.arg("dont-encrypt").as_deref() != Some("yes")
        {
            body = encrypt_backup(&body, &p);
        }
        let now = self.now();
        st.put_file(&with_suffix(&name, ".backup"), "backup", body, now);
        Done::ok()
    }

    /// `/system/backup/load name=X`: restores the configuration and passwords, then the
    /// device reboots (that it reboots is unsourced but generally assumed,
    /// ROUTEROS-NOTES §5.10), so an API session gets no `!done`.
    pub(super) fn backup_load(
        &self,
        st: &mut DeviceState,
        origin: Origin<'_>,
        req: &Request<'_>,
    ) -> Result<Done, Refusal> {
        let Some(name) = req.arg("name") else {
            return Err(Refusal::Trap(Some(1), "missing value for name".into()));
        };
        if origin.is_dry() {
            return Ok(Done::ok());
        }
        let password = req.arg("password").map(|p| p.into_owned());
        self.restore_backup(st, &name, password.as_deref())
            .map_err(Refusal::trap)?;
        if let Some(by) = origin.history_by() {
            let now = self.now();
            st.note_history(super::history::restore_action(&name), by, now);
        }
        Ok(Done::down())
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
    fn restore_backup(
        &self,
        st: &mut DeviceState,
        name: &str,
        password: Option<&str>,
    ) -> Result<(), String> {
        let fname = if name.ends_with(".backup") {
            name.to_string()
        } else {
            format!("{name}.backup")
        };
        let Some(f) = st.file(&fname).or_else(|| st.file(name)).cloned() else {
            return Err("no such item".into());
        };
        if st.faults.fail_backup_load {
            return Err("failure: backup file is corrupted".into());
        }
        let contents = if f.contents.starts_with(ENCRYPTED_HEADER) {
            // the wording of RouterOS's refusal is unsourced
            let Some(p) = password.filter(|p| !p.is_empty()) else {
                return Err("failure: password required for an encrypted backup".into());
            };
            decrypt_backup(&f.contents, p).ok_or("failure: wrong password")?
        } else {
            f.contents.clone()
        };
        let Some((head, body)) = contents.split_once("--\n") else {
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

const ENCRYPTED_HEADER: &str = "DEVSIM-BACKUP 1 ENCRYPTED\n";

/// SHA-256 key stream of `password` XORed over `data`.
fn xor_stream(data: &[u8], password: &str) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut out = Vec::with_capacity(data.len());
    for (i, chunk) in data.chunks(32).enumerate() {
        let mut h = Sha256::new();
        h.update(password.as_bytes());
        h.update((i as u64).to_le_bytes());
        let k = h.finalize();
        out.extend(chunk.iter().zip(k.iter()).map(|(a, b)| a ^ b));
    }
    out
}

fn password_check(password: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(format!("devsim-backup-check:{password}")))
}

fn encrypt_backup(body: &str, password: &str) -> String {
    format!(
        "{ENCRYPTED_HEADER}check={}\n{}\n",
        password_check(password),
        hex::encode(xor_stream(body.as_bytes(), password))
    )
}

/// The plain blob, or `None` when `password` is not the one it was saved with.
fn decrypt_backup(contents: &str, password: &str) -> Option<String> {
    let rest = contents.strip_prefix(ENCRYPTED_HEADER)?;
    let (check, data) = rest.split_once('\n')?;
    if check.strip_prefix("check=")? != password_check(password) {
        return None;
    }
    let bytes = hex::decode(data.trim_end()).ok()?;
    String::from_utf8(xor_stream(&bytes, password)).ok()
}

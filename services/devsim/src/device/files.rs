//! `/file` (add, set, remove, read; `print` as a console table), `/export` (to the API:
//! only `!done`; on a console the text; with `file=` a `.rsc` file) and `/system/backup`
//! save/load (ROUTEROS-NOTES §5.9-§5.11). Files hold bytes; what is text (scripts, exports)
//! is read lossily as UTF-8.
//!
//! Export forms: `compact` (the default) is the device's export text, wrapped as on an
//! 80-column terminal; `terse` puts the full menu path in front of every command, one
//! physical line each, no wrapping (MT-CFG, ROUTEROS-NOTES §6); the header is the same.
//! `verbose` (every property with its default value) is refused: devsim has no table of
//! RouterOS default values, so it cannot print one faithfully. A devsim
//! backup is the configuration in faithful export form plus the user passwords, behind a
//! `DEVSIM-BACKUP 1` header. A backup saved with `password=` is encrypted (RouterOS:
//! aes-sha256 by default; without a password it is plain since 6.43, ROUTEROS-NOTES §5.10):
//! devsim writes `DEVSIM-BACKUP 1 ENCRYPTED`, a password check and the blob XORed with a
//! SHA-256 key stream of the password (hex), so neither the configuration nor the user
//! passwords can be read from the file, and `load` needs the same `password=`.

use std::sync::Arc;

use rosconfig::{
    Attr, Config, ExportHeader, HeaderMode, ItemId, MenuPath, RenderOptions, Stmt, Wrap,
};
use routeros::{Attrs, Reply};

use super::Device;
use super::exec::{Done, Line, Origin, Refusal, Request};
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
    /// `/file add name=X contents=Y` (7.9beta2+, ROUTEROS-NOTES §5.9): creates or
    /// overwrites a file; its type follows the name (`.rsc` script, `.npk` package, ...).
    /// Answers the file's id. Before 7.9 the command does not exist: refused as an unknown
    /// command (over the API `no such command or directory (add)`, in a script
    /// `bad command name add (line N column M)`).
    pub(super) fn file_add(
        &self,
        st: &mut DeviceState,
        origin: Origin<'_>,
        req: &Request<'_>,
    ) -> Result<Done, Refusal> {
        if st.version < crate::version::RosVersion::new(7, 9, 0) {
            return Err(Refusal::NoSuchCommand(req.verb.to_string()));
        }
        let Some(name) = req.arg("name") else {
            return Err(Refusal::Trap(Some(1), "missing value for name".into()));
        };
        if origin.is_dry() {
            return Ok(Done::ok());
        }
        let contents = req
            .arg("contents")
            .unwrap_or_default()
            .into_owned()
            .into_bytes();
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
        let mut ids = Vec::new();
        let find = match req.line {
            Line::Script(c) => c.positional.first().and_then(|a| match a {
                rosconfig::Arg::Find(e) => Some(e),
                _ => None,
            }),
            Line::Api(_) => None,
        };
        if let Some(expr) = find {
            // `remove [ find name=x ]` on a console or in a script
            for f in &st.files {
                let size = f.contents.len().to_string();
                let id = ItemId(f.id).to_string();
                let hit = expr.matches(|k| match k {
                    "name" => Some(f.name.as_str()),
                    "type" => Some(f.kind),
                    "size" => Some(size.as_str()),
                    ".id" => Some(id.as_str()),
                    _ => None,
                });
                if hit {
                    ids.push(f.id);
                }
            }
        } else {
            let Some(words) = req.target() else {
                return Err(Refusal::Trap(Some(1), "missing value for numbers".into()));
            };
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
        }
        let contents = req
            .arg("contents")
            .map(|c| bytes::Bytes::from(c.into_owned().into_bytes()));
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
        let bytes = &f.contents[..];
        let start = off.min(bytes.len());
        let end = (start + chunk).min(bytes.len());
        let mut a = Attrs::new();
        a.push("data", &bytes[start..end]);
        Ok(Done::replies(vec![Reply::re(a), Reply::done()]))
    }

    /// The configuration an export shows (`show_sensitive`: v7's `show-sensitive`, v6's
    /// default; sensitive values dropped otherwise) and its generated header.
    fn export_config(&self, st: &DeviceState, show_sensitive: bool) -> (Config, ExportHeader) {
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
        (cfg, header)
    }

    /// The export text the device writes (`show_sensitive`: v7's `show-sensitive`, v6's
    /// default): compact, wrapped as on an 80-column terminal.
    pub(crate) fn export_text(&self, st: &DeviceState, show_sensitive: bool) -> String {
        let (cfg, header) = self.export_config(st, show_sensitive);
        render_compact(&cfg, header)
    }

    /// `/export [file=X] [compact|terse] [show-sensitive (v7)|hide-sensitive (v6)]`, on the
    /// root or a menu. Over the API an export without `file` answers only `!done`
    /// (ROUTEROS-NOTES §5.11); on a console it prints the text; with `file` it writes
    /// `X.rsc` and prints nothing. Sensitive values follow the version's rule whoever asks
    /// (v7 hides them unless `show-sensitive`, v6 shows them unless `hide-sensitive`); the
    /// other version's flag is an unknown argument. `verbose` is refused (module docs).
    pub(super) fn export_cmd(
        &self,
        st: &mut DeviceState,
        origin: Origin<'_>,
        req: &Request<'_>,
    ) -> Result<Done, Refusal> {
        let v7 = st.version.major >= 7;
        for k in req.words() {
            let ok = match k {
                "file" | "compact" | "terse" => true,
                "verbose" => {
                    return Err(Refusal::trap(
                        "devsim: export verbose is not simulated (devsim has no table of default values)",
                    ));
                }
                "show-sensitive" => v7,
                "hide-sensitive" => !v7,
                _ => false,
            };
            if !ok {
                return Err(Refusal::UnknownArgument(k.to_string()));
            }
        }
        let file = req.arg("file");
        if origin.is_dry() || (file.is_none() && origin.is_api()) {
            return Ok(Done::ok());
        }
        let show = if v7 {
            req.has_word("show-sensitive")
        } else {
            !req.has_word("hide-sensitive")
        };
        let (mut cfg, header) = self.export_config(st, show);
        let menu = &req.menu;
        if !menu.is_root() {
            // a menu export keeps only that menu and its submenus
            let keep = menu.segments().to_vec();
            cfg.sections
                .retain(|s| s.path.segments().starts_with(&keep));
        }
        let text = if req.has_word("terse") {
            render_terse(&cfg, header)
        } else {
            render_compact(&cfg, header)
        };
        let Some(file) = file else {
            return Ok(Done::ok().with_output(text));
        };
        let now = self.now();
        st.put_file(&with_suffix(&file, ".rsc"), "script", text, now);
        Ok(Done::ok())
    }

    /// `/file print` on a console: a table of `#`, `NAME`, `TYPE`, `SIZE` and the time column
    /// of the version (`CREATION-TIME` up to 7.15, `LAST-MODIFIED` from 7.16, as the API's
    /// properties). The CLI table layout of RouterOS is unsourced; this is a plain,
    /// conservative form: columns two spaces apart, `SIZE` in bytes (RouterOS may print
    /// KiB/MiB: unsourced), no `Columns:` line, no flags.
    pub(super) fn file_table(&self, st: &DeviceState) -> Done {
        let time = if st.version >= crate::version::RosVersion::new(7, 16, 0) {
            "LAST-MODIFIED"
        } else {
            "CREATION-TIME"
        };
        let mut rows: Vec<[String; 5]> = vec![[
            "#".into(),
            "NAME".into(),
            "TYPE".into(),
            "SIZE".into(),
            time.into(),
        ]];
        for (i, f) in st.files.iter().enumerate() {
            let (d, t) = fmt_date_time(f.created, st.version);
            rows.push([
                i.to_string(),
                f.name.clone(),
                f.kind.to_string(),
                f.contents.len().to_string(),
                format!("{d} {t}"),
            ]);
        }
        let mut width = [0usize; 5];
        for r in &rows {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut line = format!(" {:>w$}", r[0], w = width[0]);
            for (c, w) in r.iter().zip(width).skip(1) {
                line.push(' ');
                line.push_str(&format!("{c:<w$}"));
            }
            out.push(line.trim_end().to_string());
        }
        Done::ok().with_output(out.join("\n"))
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
        // the CLI's answer (old MT-BKP manual page, ROUTEROS-NOTES §5.10)
        Done::ok().with_output("Configuration backup saved")
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
        for k in &st.ssh_keys {
            if let Ok(line) =
                russh::keys::PublicKey::new(k.key.clone(), k.comment.as_str()).to_openssh()
            {
                s.push_str(&format!("sshkey={}:{line}\n", k.user));
            }
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
        let text = f.text();
        let contents = if text.starts_with(ENCRYPTED_HEADER) {
            // the wording of RouterOS's refusal is unsourced
            let Some(p) = password.filter(|p| !p.is_empty()) else {
                return Err("failure: password required for an encrypted backup".into());
            };
            decrypt_backup(&text, p).ok_or("failure: wrong password")?
        } else {
            text.into_owned()
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
        st.ssh_keys = head
            .lines()
            .filter_map(|l| l.strip_prefix("sshkey="))
            .filter_map(|l| l.split_once(':'))
            .filter_map(|(user, line)| super::console::parse_ssh_key(user, line).ok())
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

/// The compact export text: the generated header, the configuration wrapped as on an
/// 80-column terminal, in the configuration's own line endings.
fn render_compact(cfg: &Config, header: ExportHeader) -> String {
    rosconfig::render(
        cfg,
        &RenderOptions {
            header: HeaderMode::Generated(header),
            wrap: Wrap::Terminal(80),
            line_ending: None,
            remarks: true,
            dotted_shorthand: None,
            trailer: false,
        },
    )
}

/// The terse export text (`rosconfig::render_terse`): the same header, then every command
/// on one physical line with its full menu path in front (`/ip address add address=...`),
/// no wrapping (MT-CFG, ROUTEROS-NOTES §6).
fn render_terse(cfg: &Config, header: ExportHeader) -> String {
    rosconfig::render_terse(
        cfg,
        &RenderOptions {
            header: HeaderMode::Generated(header),
            wrap: Wrap::None,
            line_ending: None,
            remarks: true,
            dotted_shorthand: None,
            trailer: false,
        },
    )
}

impl Device {
    /// A file uploaded over SFTP by `user` (RouterOS: SFTP or FTP): stored byte for byte,
    /// typed by its name like a fetched file (an `.npk` is a `package` that the next reboot
    /// installs, `fetch` module). A `*.auto.rsc` is then run as a script of `user`, and
    /// its result written to `*.auto.log` (MT-CFG, ROUTEROS-NOTES §5.11; the log's text is
    /// unsourced: devsim writes the CLI's success line or the error naming the failing
    /// line). Whether RouterOS keeps the `.auto.rsc` afterwards is unsourced; devsim keeps
    /// it.
    pub(crate) fn file_uploaded(&self, user: &str, name: &str, data: bytes::Bytes) {
        let r = {
            let mut st = self.lock();
            let now = self.now();
            st.put_file(name, crate::fetch::file_kind(name), data.clone(), now);
            match name.strip_suffix(".rsc").filter(|s| s.ends_with(".auto")) {
                Some(stem) => {
                    let text = String::from_utf8_lossy(&data).into_owned();
                    let r = self.run_source(&mut st, Origin::Ssh(user), &text);
                    let log = match &r {
                        Ok(()) => format!("{}\n", super::exec::IMPORT_OK),
                        Err(e) => format!("{e}\n"),
                    };
                    let log_name = format!("{stem}.log");
                    let kind = crate::fetch::file_kind(&log_name);
                    st.put_file(&log_name, kind, log.into_bytes(), now);
                    true
                }
                None => false,
            }
        };
        if r {
            self.after_change();
        }
    }
}

//! The one command executor. Every RouterOS command devsim simulates is implemented once,
//! whoever sends it: an API session, a line typed on an SSH console (`ssh dev '/export'`,
//! the interactive shell), a line of a script (`/import`, `/system/script/run`, a
//! scheduler's `on-event`, the control API's console) or a line of an `/import dry-run`.
//! The caller says where the command comes from ([`Origin`]); from that the executor
//! decides what a configuration change records (history `by`, change
//! counts, the cut-access fault) and whether effects beyond the configuration happen.
//! The request ([`Request`]) hides whether the words came from an API sentence or a script
//! line; the answer ([`Done`] or [`Refusal`]) is rendered by the caller: replies on the
//! wire, the text a console prints ([`Done::output`]), or "continue / stop / fail at line
//! N" in a script.

use std::borrow::Cow;

use rosconfig::{MenuPath, ScriptCommand};
use routeros::{Command, Reply, TrapCategory};

use super::Device;
use crate::state::DeviceState;

/// Where a command comes from, and for the ones a RouterOS user sends, which user: the
/// name `/system/history` records as `by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin<'u> {
    /// A sentence of a logged-in API session (the session's login name).
    Api(&'u str),
    /// A line of a script started over the API or an SSH console (`/import`,
    /// `/system/script/run`), run for the session's user.
    Script(&'u str),
    /// A line typed on a logged-in SSH console (an `exec` request or a line of the
    /// interactive shell) by this user. Netledger's own SSH sessions come here, so it
    /// records, counts and cuts like [`Origin::Api`].
    Ssh(&'u str),
    /// A line of a script run by `/system/scheduler` (`on-event`).
    Scheduler,
    /// A line applied out of band, like a technician logged in on the console as this user
    /// (control API).
    Console(&'u str),
    /// A line of `/import dry-run`: runs against a throw-away copy of the state; commands
    /// whose effect reaches beyond the configuration (files, backups, reboots, upgrades)
    /// check their arguments and do nothing.
    DryRun,
}

/// What the CLI prints after a successful `/import` (MT-CFG, ROUTEROS-NOTES §5.11).
pub(crate) const IMPORT_OK: &str = "Script file loaded and executed successfully";

/// `by` of the `/system/history` rows that scheduler scripts make. What RouterOS records
/// there (the entry's owner?) is unsourced; devsim says `scheduler`.
pub(crate) const SCHEDULER_BY: &str = "scheduler";

impl<'u> Origin<'u> {
    /// Origin of the lines of a script that a command of this origin starts.
    pub(crate) fn of_script_lines(self) -> Origin<'u> {
        match self {
            Origin::Api(user) | Origin::Ssh(user) => Origin::Script(user),
            other => other,
        }
    }

    /// Who `/system/history` names for a change (`None`: not recorded).
    pub(crate) fn history_by(self) -> Option<&'u str> {
        match self {
            Origin::Api(user)
            | Origin::Script(user)
            | Origin::Ssh(user)
            | Origin::Console(user) => Some(user),
            Origin::Scheduler => Some(SCHEDULER_BY),
            Origin::DryRun => None,
        }
    }

    /// Whether a configuration change trips the `cut_access_on_change` fault: changes
    /// netledger makes (API sentences, SSH console lines and the scripts they start), not
    /// the scheduler's revert, not a technician's.
    pub(crate) fn trips_cut(self) -> bool {
        matches!(self, Origin::Api(_) | Origin::Script(_) | Origin::Ssh(_))
    }

    /// Whether the change ids in a script source started from here are counted
    /// ([`crate::change_ids`]; out-of-band and dry runs are not applications).
    pub(crate) fn counts_changes(self) -> bool {
        matches!(
            self,
            Origin::Api(_) | Origin::Script(_) | Origin::Ssh(_) | Origin::Scheduler
        )
    }

    /// An API sentence (not a script line).
    pub(crate) fn is_api(self) -> bool {
        matches!(self, Origin::Api(_))
    }

    /// A dry run: effects beyond the (copied) configuration are skipped.
    pub(crate) fn is_dry(self) -> bool {
        self == Origin::DryRun
    }
}

/// The words of a command as they arrived.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Line<'a> {
    /// An API sentence.
    Api(&'a Command),
    /// A parsed script line.
    Script(&'a ScriptCommand),
}

/// One command: menu, verb and its arguments.
#[derive(Debug, Clone)]
pub(crate) struct Request<'a> {
    pub menu: MenuPath,
    pub verb: &'a str,
    pub line: Line<'a>,
}

impl<'a> Request<'a> {
    /// An API sentence: `/ip/address/add` is menu `/ip/address`, verb `add`.
    pub(crate) fn api(cmd: &'a Command) -> Request<'a> {
        let path = cmd.path();
        let (menu, verb) = match path.rsplit_once('/') {
            Some((m, v)) => (if m.is_empty() { "/" } else { m }, v),
            None => ("/", path),
        };
        Request {
            menu: MenuPath::parse(menu),
            verb,
            line: Line::Api(cmd),
        }
    }

    /// A script line.
    pub(crate) fn script(cmd: &'a ScriptCommand) -> Request<'a> {
        Request {
            menu: cmd.path.clone(),
            verb: &cmd.verb,
            line: Line::Script(cmd),
        }
    }

    /// A named argument (`=name=value` word, `name=value` in a script).
    pub(crate) fn arg(&self, key: &str) -> Option<Cow<'a, str>> {
        match self.line {
            Line::Api(c) => c.attrs().get(key).map(|v| String::from_utf8_lossy(v)),
            Line::Script(c) => c.arg(key).map(Cow::Borrowed),
        }
    }

    /// Whether a named argument or flag is present (`=dry-run=`, `dry-run`).
    pub(crate) fn has(&self, key: &str) -> bool {
        match self.line {
            Line::Api(c) => c.attrs().contains(key),
            Line::Script(c) => c.attrs.iter().any(|a| a.key == key),
        }
    }

    /// Names of the named arguments and, on a script or console line, the bare words among
    /// the positional arguments (`/export terse` names `terse`: the script parser keeps
    /// the words of commands other than `add`/`set`/... positional).
    pub(crate) fn words(&self) -> Vec<&'a str> {
        let mut out = self.keys();
        if let Line::Script(c) = self.line {
            out.extend(c.positional.iter().filter_map(|a| match a {
                rosconfig::Arg::Word(w) => Some(w.as_str()),
                _ => None,
            }));
        }
        out
    }

    /// Whether a flag is given as a named argument or as a bare word ([`Request::words`]).
    pub(crate) fn has_word(&self, key: &str) -> bool {
        self.words().contains(&key)
    }

    /// Names of the named arguments, in order.
    pub(crate) fn keys(&self) -> Vec<&'a str> {
        match self.line {
            Line::Api(c) => c.attrs().iter().map(|(k, _)| k).collect(),
            Line::Script(c) => c.attrs.iter().map(|a| a.key.as_str()).collect(),
        }
    }

    /// The item(s) a command names: `.id`, `numbers` or `number` over the API; the first
    /// positional word (or `numbers=`/`number=`) in a script.
    pub(crate) fn target(&self) -> Option<Cow<'a, str>> {
        if let Line::Script(c) = self.line
            && let Some(t) = c.positional.first().and_then(|a| a.text())
        {
            return Some(Cow::Borrowed(t));
        }
        [".id", "numbers", "number"]
            .iter()
            .find_map(|k| self.arg(k))
    }
}

/// A command that succeeded.
#[derive(Debug, Default)]
pub(crate) struct Done {
    /// `!re` rows and the final `!done` (a script ignores them).
    pub replies: Vec<Reply>,
    /// The device went down (reboot, backup load, upgrade): an API session closes the
    /// connection after the replies (ROUTEROS-NOTES §5.13); a script stops.
    pub down: bool,
    /// What the command prints on a console (an SSH session; a line break is added when it
    /// does not end with one): the export text, `Configuration backup saved`, a
    /// `/file print` table. The API and scripts ignore it.
    pub output: Option<String>,
}

impl Done {
    /// Just `!done`.
    pub(crate) fn ok() -> Done {
        Done::replies(vec![Reply::done()])
    }

    /// These replies.
    pub(crate) fn replies(replies: Vec<Reply>) -> Done {
        Done {
            replies,
            down: false,
            output: None,
        }
    }

    /// The same answer, printing `text` on a console.
    pub(crate) fn with_output(mut self, text: impl Into<String>) -> Done {
        self.output = Some(text.into());
        self
    }

    /// `!done` with `=ret=`.
    pub(crate) fn ret(ret: impl Into<String>) -> Done {
        Done::replies(vec![Reply::done_ret(ret.into())])
    }

    /// No answer: the device goes down.
    pub(crate) fn down() -> Done {
        Done {
            replies: Vec::new(),
            down: true,
            output: None,
        }
    }

    /// `!done`, and the connection closes when the device is on its way down (a script
    /// that rebooted or loaded a backup).
    pub(crate) fn ok_then(st: &DeviceState) -> Done {
        Done {
            replies: vec![Reply::done()],
            down: st.offline_until.is_some(),
            output: None,
        }
    }
}

/// A command that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// One `!trap` (with a category when RouterOS sends one).
    Trap(Option<u32>, String),
    /// An unknown command: over the API `no such command or directory (<word>)` and
    /// `no such command prefix`; in a script `bad command name <verb>`.
    NoSuchCommand(String),
    /// A script stopped: the text already names the failing line (category 3 over the
    /// API).
    Script(String),
    /// An argument the command does not take: over the API `unknown parameter <name>`
    /// (ROUTEROS-NOTES §3); on a console or in a script the CLI's parse error
    /// `expected end of command (line N column M)` at the word (TIK findings-cli §10.9
    /// sources the text; that RouterOS answers an unknown argument with it is inferred).
    UnknownArgument(String),
}

impl Refusal {
    /// A trap without a category.
    pub(crate) fn trap(message: impl Into<String>) -> Refusal {
        Refusal::Trap(None, message.into())
    }

    /// The replies an API session sends.
    pub(crate) fn replies(&self) -> Vec<Reply> {
        match self {
            Refusal::Trap(cat, msg) => trap(*cat, msg.clone()),
            Refusal::NoSuchCommand(word) => no_such_command(word),
            Refusal::Script(msg) => trap(Some(3), msg.clone()),
            Refusal::UnknownArgument(name) => trap(None, format!("unknown parameter {name}")),
        }
    }

    /// The text a script stops with, naming the failing line (`source`: the script, to
    /// find the column of an unknown argument).
    pub(crate) fn script_text(self, line: &ScriptCommand, source: &str) -> String {
        let at = |m: String| format!("{m} (line {} column {})", line.line, line.column);
        match self {
            Refusal::Trap(_, msg) => at(msg),
            Refusal::NoSuchCommand(_) => at(format!("bad command name {}", line.verb)),
            Refusal::Script(msg) => msg,
            Refusal::UnknownArgument(name) => format!(
                "expected end of command (line {} column {})",
                line.line,
                word_column(source, line, &name)
            ),
        }
    }
}

/// The 1-based column of argument `word` (`word` or `word=...`) after the verb on the
/// command's line; the verb's column when it cannot be found.
fn word_column(source: &str, line: &ScriptCommand, word: &str) -> usize {
    let Some(text) = source.lines().nth(line.line.saturating_sub(1)) else {
        return line.column;
    };
    let bytes = text.as_bytes();
    let mut from = line.column.saturating_sub(1).min(text.len());
    while let Some(pos) = text.get(from..).and_then(|t| t.find(word)) {
        let at = from + pos;
        let end = at + word.len();
        let before = at == 0 || bytes.get(at - 1).is_some_and(u8::is_ascii_whitespace);
        let after = bytes
            .get(end)
            .is_none_or(|b| b.is_ascii_whitespace() || *b == b'=' || *b == b';');
        if before && after {
            return at + 1;
        }
        from = end;
    }
    line.column
}

pub(crate) fn trap(cat: Option<u32>, msg: impl Into<String>) -> Vec<Reply> {
    vec![
        Reply::trap(cat.map(TrapCategory::from_code), msg),
        Reply::done(),
    ]
}

pub(crate) fn no_such_command(word: &str) -> Vec<Reply> {
    vec![
        Reply::trap(
            Some(TrapCategory::MissingItemOrCommand),
            format!("no such command or directory ({word})"),
        ),
        Reply::trap(None, "no such command prefix"),
        Reply::done(),
    ]
}

impl Device {
    /// Executes one command (the dispatch table of everything devsim simulates).
    pub(crate) fn exec(
        &self,
        st: &mut DeviceState,
        origin: Origin<'_>,
        req: &Request<'_>,
    ) -> Result<Done, Refusal> {
        let menu = req.menu.to_api();
        let api_cmd = match req.line {
            Line::Api(c) => Some(c),
            Line::Script(_) => None,
        };
        match (menu.as_str(), req.verb) {
            // scripting globals: accepted, no effect in devsim
            (_, ":log" | ":put" | ":delay") => Ok(Done::ok()),
            // nothing of this session is running here (the server cancels running fetches)
            ("/", "cancel") => Ok(Done::ok()),
            (_, "export") => self.export_cmd(st, origin, req),
            ("/", "import") => self.import(st, origin, req),
            ("/system", "reboot" | "shutdown") => Ok(self.reboot_cmd(st, origin)),
            ("/system/backup", "save") => Ok(self.backup_save(st, origin, req)),
            ("/system/backup", "load") => self.backup_load(st, origin, req),
            ("/system/script", "run") => self.script_run(st, origin, req),
            ("/system/package/update", "check-for-updates") => Ok(self.check_for_updates(st)),
            ("/system/package/update", "install" | "download") => {
                self.package_update(st, origin, req.verb)
            }
            ("/system/device-mode", "update") => Err(Refusal::trap(
                "failure: device-mode change requires physical confirmation (use the devsim control API)",
            )),
            ("/system/routerboard", "upgrade") if self.board.model.is_some() => {
                Ok(self.routerboard_upgrade(st, origin))
            }
            ("/file", "read") => self.file_read(st, req),
            ("/file", "print") if api_cmd.is_none() => Ok(self.file_table(st)),
            ("/user/ssh-keys", "import") => self.ssh_keys_import(st, origin, req),
            ("/file", "add") => self.file_add(st, origin, req),
            ("/file", "set" | "remove") => self.file_modify(st, req),
            ("/file", "enable" | "disable" | "unset") => {
                Err(Refusal::NoSuchCommand(req.verb.to_string()))
            }
            ("/", "ping") => match api_cmd {
                Some(c) => Ok(Done::replies(crate::ping::ping(st, c))),
                None => Err(Refusal::NoSuchCommand(req.verb.to_string())),
            },
            (_, "print" | "getall") => match api_cmd {
                Some(c) => self.print(st, &req.menu, c),
                None if matches!(origin, Origin::Ssh(_)) => Err(Refusal::trap(
                    "devsim: print on a console is simulated for /file only",
                )),
                None => Err(Refusal::NoSuchCommand(req.verb.to_string())),
            },
            // read-only lists: what the device records, not configuration
            (
                "/system/history" | "/user/active",
                "add" | "set" | "enable" | "disable" | "unset" | "remove",
            ) => Err(Refusal::NoSuchCommand(req.verb.to_string())),
            (_, "add" | "set" | "enable" | "disable" | "unset" | "remove") => {
                self.write(st, origin, req)
            }
            (_, "listen") => Err(Refusal::trap("listen is not supported by devsim")),
            _ => Err(self.unknown(st, req)),
        }
    }

    /// An unknown command: a menu without a verb, an unknown verb or an unknown menu.
    fn unknown(&self, st: &DeviceState, req: &Request<'_>) -> Refusal {
        let Line::Api(cmd) = req.line else {
            return Refusal::NoSuchCommand(req.verb.to_string());
        };
        if self.menu_kind(st, &MenuPath::parse(cmd.path())).is_some() {
            // a menu path without a verb
            return Refusal::trap("no such command");
        }
        let word = if self.menu_kind(st, &req.menu).is_some() {
            req.verb
        } else {
            req.menu
                .segments()
                .last()
                .map(String::as_str)
                .unwrap_or(req.verb)
        };
        Refusal::NoSuchCommand(word.to_string())
    }

    /// `/import file-name=X [dry-run]`: runs a script file; lines before a failing one stay
    /// applied (ROUTEROS-NOTES §5.11). A dry run runs against a copy of the state.
    fn import(
        &self,
        st: &mut DeviceState,
        origin: Origin<'_>,
        req: &Request<'_>,
    ) -> Result<Done, Refusal> {
        let Some(file) = req.arg("file-name") else {
            return Err(Refusal::Trap(Some(1), "missing value for file-name".into()));
        };
        let dry = req.has("dry-run");
        if dry && !st.version.has_import_dry_run() {
            return Err(Refusal::trap("unknown parameter dry-run"));
        }
        let Some(f) = st.file(&file).cloned() else {
            return Err(Refusal::trap(format!("failure: no such file {file}")));
        };
        if dry && !origin.is_dry() {
            let mut copy = st.dry_run_copy();
            self.run_script(&mut copy, &f.text(), Origin::DryRun)
                .map_err(Refusal::Script)?;
            return Ok(Done::ok());
        }
        self.run_source(st, origin, &f.text())
            .map_err(Refusal::Script)?;
        if origin == Origin::Scheduler {
            // a scheduler's import is the revert: management access comes back
            st.access_cut = false;
        }
        // the CLI's answer (MT-CFG); `verbose=yes` runs the same lines here (devsim always
        // stops at the first failing line and names it)
        Ok(Done::ok_then(st).with_output(IMPORT_OK))
    }

    /// `/system/script/run X` (name or id; `=number=`/`=.id=` over the API): the output of
    /// `:put` is not simulated, so `!done` carries no `=ret=`.
    fn script_run(
        &self,
        st: &mut DeviceState,
        origin: Origin<'_>,
        req: &Request<'_>,
    ) -> Result<Done, Refusal> {
        let target = req.target().unwrap_or_default();
        let Some(src) = self.script_source(st, &target) else {
            return Err(Refusal::trap("no such item"));
        };
        self.run_source(st, origin, &src).map_err(Refusal::Script)?;
        Ok(Done::ok_then(st))
    }
}

//! The RouterOS command line as an SSH session sees it: a console line (an `exec` request,
//! or a line typed in the interactive shell) runs through the one executor as
//! [`Origin::Ssh`] with the SSH login user, and what the commands print comes back as text
//! ([`Device::console`]); the prompt; SSH logins (password, `/user ssh-keys`) and their
//! `/user active` rows. The sockets are the `ssh` module's.
//!
//! What is sourced and what is not (ROUTEROS-NOTES §5.9-§5.11, §6-§8):
//! - sourced: `/export` flags `compact`/`terse`/`file=`, `show-sensitive` (v7) and
//!   `hide-sensitive` (v6) (MT-CFG); `Configuration backup saved` after
//!   `/system backup save` (old MT-BKP page); `Script file loaded and executed
//!   successfully` after `/import` (MT-CFG); both path forms on v7 (`/system/backup/save`
//!   and `/system backup save`), only the space form on v6 (MT-V7); the parse errors
//!   `bad command name X (line N column M)`, `syntax error (...)` and
//!   `expected end of command (...)` (TIK findings-cli §10.9).
//! - unsourced, chosen conservatively: that an unknown argument gets
//!   `expected end of command`; the answer of v6 to the slash form (devsim: `bad command
//!   name <word> (line 1 column 2)`); runtime failures printed as the executor's message
//!   followed by `(line 1 column M)` like a script's; the `/file print` table layout
//!   (`files` module); the exit status (always 0, whatever the command printed); line
//!   endings (below); the prompt `[user@identity] > ` on v6 and v7 alike (the notes know
//!   no difference); no login banner, no safe mode, no command completion or history.
//! - line endings: what a command prints ends in `\n` (LF), except that an export keeps
//!   the line endings of the configuration it renders (a CRLF corpus file loaded with
//!   `--load` exports CRLF), so an export over `exec` is byte for byte what
//!   `/export file=` writes. Whether RouterOS sends LF or CRLF over SSH is unsourced
//!   (ROUTEROS-NOTES §6). The interactive shell (a terminal) turns every `\n` into
//!   `\r\n`.
//! - not simulated: user groups and policies (devsim has none: every user may log in over
//!   SSH and use SFTP; RouterOS needs policy `ssh`, resp. `ftp`), `print` on other menus
//!   than `/file`, scripting (`:put` prints nothing), `verbose` exports, the CLI's
//!   confirmation questions (`Reboot, yes? [y/N]`, ROUTEROS-NOTES §5.13: `/system reboot`
//!   on a console reboots at once and the session ends).

use std::net::SocketAddr;

use russh::keys::PublicKey;
use russh::keys::ssh_key::public::KeyData;

use super::Device;
use super::exec::{Done, Origin, Refusal, Request};
use crate::state::{DeviceState, SshKey};

/// What a console line printed, and whether it ends the session (`quit`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ConsoleOutput {
    /// The text, line endings as described in the module docs.
    pub text: String,
    /// `quit` (or `/quit`): the session ends.
    pub quit: bool,
}

/// Parses an OpenSSH public key line for `user`.
pub(crate) fn parse_ssh_key(user: &str, line: &str) -> Result<SshKey, String> {
    // the wording of RouterOS's refusal of a bad key file is unsourced
    let key = PublicKey::from_openssh(line.trim())
        .map_err(|e| format!("failure: not an OpenSSH public key ({e})"))?;
    Ok(SshKey {
        user: user.to_string(),
        comment: key.comment().to_string(),
        key: key.key_data().clone(),
    })
}

impl Device {
    /// The prompt of the interactive shell: `[user@identity] > `.
    pub(crate) fn console_prompt(&self, user: &str) -> String {
        let st = self.lock();
        format!("[{user}@{}] > ", self.identity(&st))
    }

    /// Runs one console line typed by `user` (see the module docs).
    pub(crate) fn console(&self, user: &str, line: &str) -> ConsoleOutput {
        let t = line.trim();
        if t.is_empty() {
            return ConsoleOutput::default();
        }
        if t == "quit" || t == "/quit" {
            return ConsoleOutput {
                text: String::new(),
                quit: true,
            };
        }
        let v6 = self.version().major < 7;
        if v6 && let Some(word) = slash_form(t) {
            // unsourced: what RouterOS 6 says to the v7 slash form
            return ConsoleOutput {
                text: format!("bad command name {word} (line 1 column 2)\n"),
                quit: false,
            };
        }
        let mut text = String::new();
        let r = {
            let mut st = self.lock();
            self.run_console_line(&mut st, user, line, &mut text)
        };
        self.after_change();
        if let Err(e) = r {
            text.push_str(&e);
            text.push('\n');
        }
        ConsoleOutput { text, quit: false }
    }

    /// Whether `user` is a RouterOS user of the device (the fleet's API user or a `/user`
    /// entry).
    pub(crate) fn user_exists(&self, st: &DeviceState, user: &str) -> bool {
        user == self.shared.username
            || st
                .config
                .entries(&rosconfig::MenuPath::parse("/user"))
                .any(|e| e.get("name") == Some(user))
    }

    /// `/user ssh-keys import` of one key line for `user`.
    pub(crate) fn import_ssh_key(
        &self,
        st: &mut DeviceState,
        user: &str,
        line: &str,
    ) -> Result<(), String> {
        if !self.user_exists(st, user) {
            // unsourced wording
            return Err(format!("failure: no such user {user}"));
        }
        let key = parse_ssh_key(user, line)?;
        if !st
            .ssh_keys
            .iter()
            .any(|k| k.user == key.user && k.key == key.key)
        {
            st.ssh_keys.push(key);
        }
        Ok(())
    }

    /// `/user/ssh-keys/import public-key-file=X [user=Y]`: authorizes the first key line of
    /// file `X` for `Y` (default: the user running the command; that default is
    /// unsourced). The file stays (whether RouterOS removes it is unsourced).
    pub(super) fn ssh_keys_import(
        &self,
        st: &mut DeviceState,
        origin: Origin<'_>,
        req: &Request<'_>,
    ) -> Result<Done, Refusal> {
        let Some(file) = req.arg("public-key-file") else {
            return Err(Refusal::Trap(
                Some(1),
                "missing value for public-key-file".into(),
            ));
        };
        let user = match req.arg("user") {
            Some(u) => u.into_owned(),
            None => match origin.history_by() {
                Some(u) if origin != Origin::Scheduler => u.to_string(),
                _ => return Err(Refusal::Trap(Some(1), "missing value for user".into())),
            },
        };
        let Some(f) = st.file(&file) else {
            return Err(Refusal::trap(format!("failure: no such file {file}")));
        };
        let text = f.text().into_owned();
        let line = text
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default();
        if origin.is_dry() {
            parse_ssh_key(&user, line).map_err(Refusal::trap)?;
            return Ok(Done::ok());
        }
        self.import_ssh_key(st, &user, line)
            .map_err(Refusal::trap)?;
        Ok(Done::ok())
    }

    /// An SSH password login: the same check as an API login, refused while the
    /// `reject_login` fault is on, and refused for a user with an imported SSH key unless
    /// `/ip ssh always-allow-password-login=yes` (RouterOS's default is `no`: "whether to
    /// allow password login at the same time when public key authorization is configured
    /// for a user", help.mikrotik.com, SSH; not in ROUTEROS-NOTES). The API login is not
    /// affected.
    pub(crate) fn ssh_password_ok(&self, user: &str, password: &str) -> bool {
        let st = self.lock();
        let has_key = st.ssh_keys.iter().any(|k| k.user == user);
        let always_allowed = st
            .config
            .settings(&rosconfig::MenuPath::parse("/ip ssh"))
            .iter()
            .any(|a| a.key == "always-allow-password-login" && a.value.as_deref() == Some("yes"));
        !st.faults.reject_login
            && (!has_key || always_allowed)
            && self.password_ok(&st, user, password)
    }

    /// Whether `key` is authorized for `user` (`/user ssh-keys`), and logins are allowed.
    pub(crate) fn ssh_key_ok(&self, user: &str, key: &KeyData) -> bool {
        let st = self.lock();
        !st.faults.reject_login
            && self.user_exists(&st, user)
            && st.ssh_keys.iter().any(|k| k.user == user && k.key == *key)
    }

    /// An SSH login succeeded: the session shows in `/user active` with `via=ssh` (the
    /// value is unsourced: the notes list `api, rest-api, winbox, …`). Returns its row id
    /// for [`Device::session_ended`].
    pub(crate) fn ssh_session_started(&self, user: &str, peer: Option<SocketAddr>) -> u32 {
        let mut st = self.lock();
        self.session_started(&mut st, user, peer, "ssh")
    }
}

/// The first word of a line in the v7 slash form (`/system/backup/save ...`), without its
/// leading slash.
fn slash_form(line: &str) -> Option<&str> {
    let first = line.split_whitespace().next()?;
    let rest = first.strip_prefix('/')?;
    rest.contains('/').then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slash_forms() {
        assert_eq!(
            slash_form("/system/backup/save name=x"),
            Some("system/backup/save")
        );
        assert_eq!(slash_form("/system backup save name=a/b"), None);
        assert_eq!(slash_form("/export"), None);
        assert_eq!(slash_form("export terse"), None);
    }
}

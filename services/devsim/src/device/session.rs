//! An API session: the command log, `/login` (plain since 6.43, the MD5 challenge
//! before; ROUTEROS-NOTES §2), `/quit`, and "not logged in" before login. A login adds the
//! session to `/user active` until its connection ends. Every other sentence goes to the
//! executor as [`Origin::Api`] with the session's user.

use routeros::{Command, Reply};
use sha2::{Digest, Sha256};

use super::exec::{Origin, Request, trap};
use super::{Device, Outcome, Session};
use crate::state::{DeviceState, LOG_LIMIT};

impl Device {
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
        let Some(user) = sess.user.as_deref() else {
            // unsourced: what a router says to commands before login
            return Outcome::replies(trap(None, "not logged in"));
        };
        let out = {
            let mut st = self.lock();
            match self.exec(&mut st, Origin::Api(user), &Request::api(cmd)) {
                Ok(done) => Outcome {
                    replies: done.replies,
                    close: done.down,
                },
                Err(refusal) => Outcome::replies(refusal.replies()),
            }
        };
        self.after_change();
        out
    }

    /// The connection of a session ended (its `/user active` row goes).
    pub(crate) fn end_session(&self, sess: &Session) {
        if let Some(id) = sess.active {
            self.session_ended(id);
        }
    }

    /// A login succeeded: the session is `name`'s and shows in `/user active`.
    fn logged_in(&self, st: &mut DeviceState, sess: &mut Session, name: String) -> Vec<Reply> {
        if let Some(id) = sess.active.take() {
            // a second /login on the same connection replaces the first
            st.sessions.retain(|s| s.id != id);
        }
        sess.active = Some(self.session_started(st, &name, sess.peer, "api"));
        sess.user = Some(name);
        vec![Reply::done()]
    }

    /// Whether `password` is `name`'s: the fleet's API user with the derived password, or a
    /// `/user` with the password it was given (API and SSH logins alike).
    pub(crate) fn password_ok(&self, st: &DeviceState, name: &str, password: &str) -> bool {
        (name == self.shared.username && password == self.password())
            || st.passwords.iter().any(|(n, p)| n == name && p == password)
    }

    fn login(&self, sess: &mut Session, cmd: &Command) -> Vec<Reply> {
        let mut st = self.lock();
        if st.faults.reject_login {
            return trap(None, "invalid user name or password (6)");
        }
        let name = cmd.attrs().get_str("name").unwrap_or("").to_string();
        let legacy = st.version.legacy_login();
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
                    return self.logged_in(&mut st, sess, name);
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
        if self.password_ok(&st, &name, pw) {
            self.logged_in(&mut st, sess, name)
        } else {
            trap(None, "invalid user name or password (6)")
        }
    }
}

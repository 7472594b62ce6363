//! SSH on every device (russh server): the listener (closed while the device is
//! unreachable, rebooting or `/ip service ssh` is disabled, rebound when it comes back, as
//! the API listeners in `server`), the derived Ed25519 host key, logins, and the session
//! channels: `exec` (one console line, its output, exit status 0, close), an interactive
//! `shell` (prompt, line, output, loop; `quit` closes) and the `sftp` subsystem (the `sftp`
//! module). What a console line does and prints is the device's business
//! ([`Device::console`], one executor for API, scripts and SSH alike).
//!
//! Logins: `password` with the device's RouterOS users and passwords (the API login's
//! check), `publickey` with the keys authorized by `/user ssh-keys import` or
//! [`Device::authorize_ssh_key`]; a user with a key cannot log in with the password unless
//! `/ip ssh always-allow-password-login=yes` (RouterOS's default is `no`; the API login is
//! not affected). The `reject_login` fault refuses every login; a
//! successful login shows in `/user active` (`via=ssh`) until the connection ends.
//! Faults: `unreachable` closes the listener (connections are refused) and ends open
//! sessions, like a reboot; `delay_ms` delays every answer (command output, shell
//! prompt, SFTP reply). The API-only faults (`drop_after_commands`, `corrupt_frames`,
//! `fail_next`) do not apply to SSH.
//!
//! The server's identification string is `SSH-2.0-ROSSSH` (what RouterOS is commonly seen
//! to send; unsourced in the notes). No login banner is sent.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use russh::keys::PrivateKey;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::server::{Auth, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelMsg, Disconnect, MethodKind, MethodSet, SshId};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::device::{Device, Link};
use crate::server::{accept_opt, bind};

/// The host key of device `index` in a fleet with `seed`: Ed25519 from the 32-byte seed
/// SHA-256(`devsim-ssh-host-key/<seed>/<index>`).
pub(crate) fn host_key(seed: u64, index: u32) -> PrivateKey {
    let digest: [u8; 32] = Sha256::digest(format!("devsim-ssh-host-key/{seed}/{index}")).into();
    PrivateKey::from(Ed25519Keypair::from_seed(&digest))
}

fn server_config(dev: &Device) -> Arc<russh::server::Config> {
    let mut methods = MethodSet::empty();
    methods.push(MethodKind::Password);
    methods.push(MethodKind::PublicKey);
    Arc::new(russh::server::Config {
        server_id: SshId::Standard("SSH-2.0-ROSSSH".into()),
        methods,
        auth_rejection_time: Duration::from_millis(100),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![(*dev.ssh_key).clone()],
        inactivity_timeout: Some(Duration::from_secs(600)),
        nodelay: true,
        ..Default::default()
    })
}

/// Serves one device's SSH for its whole life: the listener follows the device's [`Link`].
pub(crate) async fn listener_task(dev: Arc<Device>, listener: TcpListener, addr: SocketAddr) {
    let config = server_config(&dev);
    let mut link_rx = dev.link.subscribe();
    let mut l = Some(listener);
    loop {
        let link = *link_rx.borrow_and_update();
        if !link.ssh {
            l = None;
        } else if l.is_none() {
            l = bind(addr).await;
        }
        loop {
            tokio::select! {
                s = accept_opt(&l) => {
                    if let Some(s) = s {
                        let peer = s.peer_addr().ok();
                        tokio::spawn(serve_conn(
                            dev.clone(),
                            config.clone(),
                            s,
                            peer,
                            link.epoch,
                            link_rx.clone(),
                        ));
                    }
                }
                r = link_rx.changed() => {
                    if r.is_err() {
                        return;
                    }
                    break;
                }
            }
        }
    }
}

/// One SSH connection, until the client leaves or the device goes down (reboot,
/// unreachable, SSH service disabled): then the connection is closed.
async fn serve_conn(
    dev: Arc<Device>,
    config: Arc<russh::server::Config>,
    stream: TcpStream,
    peer: Option<SocketAddr>,
    epoch: u32,
    mut link_rx: watch::Receiver<Link>,
) {
    let handler = Conn {
        dev,
        peer,
        user: None,
        active: None,
        channels: HashMap::new(),
        pty: HashSet::new(),
    };
    let Ok(running) = russh::server::run_stream(config, stream, handler).await else {
        return;
    };
    let handle = running.handle();
    tokio::pin!(running);
    loop {
        tokio::select! {
            _ = &mut running => return,
            r = link_rx.changed() => {
                let l = *link_rx.borrow();
                if r.is_err() || l.epoch != epoch || !l.ssh {
                    let _ = handle
                        .disconnect(Disconnect::ByApplication, String::new(), String::new())
                        .await;
                    let _ = tokio::time::timeout(Duration::from_secs(2), &mut running).await;
                    return;
                }
            }
        }
    }
}

/// The state of one SSH connection (russh calls it for every client request).
struct Conn {
    dev: Arc<Device>,
    peer: Option<SocketAddr>,
    /// The login user, once a login was accepted.
    user: Option<String>,
    /// Its `/user active` row.
    active: Option<u32>,
    /// Session channels opened and not yet handed to a task.
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// Channels with a pseudo-terminal (the shell echoes and writes CRLF).
    pty: HashSet<ChannelId>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(id) = self.active.take() {
            self.dev.session_ended(id);
        }
    }
}

impl Conn {
    fn login_user(&self) -> String {
        self.user.clone().unwrap_or_default()
    }
}

impl russh::server::Handler for Conn {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        if self.dev.ssh_password_ok(user, password) {
            self.user = Some(user.to_string());
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.dev.ssh_key_ok(user, offer.public_key.key_data()) {
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.dev.ssh_key_ok(user, key.public_key.key_data()) {
            self.user = Some(user.to_string());
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn auth_succeeded(&mut self, _session: &mut Session) -> Result<(), Self::Error> {
        if self.active.is_none() {
            let user = self.login_user();
            self.active = Some(self.dev.ssh_session_started(&user, self.peer));
        }
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // the terminal width is not used: exports wrap at 80 columns (`device::files`)
        self.pty.insert(channel);
        session.channel_success(channel)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(ch) = self.channels.remove(&channel) else {
            return session.channel_failure(channel);
        };
        session.channel_success(channel)?;
        let line = String::from_utf8_lossy(data).into_owned();
        tokio::spawn(exec(self.dev.clone(), self.login_user(), ch, line));
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(ch) = self.channels.remove(&channel) else {
            return session.channel_failure(channel);
        };
        session.channel_success(channel)?;
        let pty = self.pty.contains(&channel);
        tokio::spawn(shell(self.dev.clone(), self.login_user(), ch, pty));
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name != "sftp" {
            return session.channel_failure(channel);
        }
        let Some(ch) = self.channels.remove(&channel) else {
            return session.channel_failure(channel);
        };
        session.channel_success(channel)?;
        let sftp = crate::sftp::Sftp::new(self.dev.clone(), self.login_user());
        russh_sftp::server::run(ch.into_stream(), sftp).await;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        self.pty.remove(&channel);
        Ok(())
    }
}

/// Waits for the `delay_ms` fault before an answer.
async fn pause(dev: &Device) {
    let ms = dev.faults().delay_ms;
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// `ssh user@dev 'LINE'`: runs the line, sends what it printed, exit status 0, EOF, close.
async fn exec(dev: Arc<Device>, user: String, ch: Channel<Msg>, line: String) {
    let out = dev.console(&user, &line);
    pause(&dev).await;
    if !out.text.is_empty() {
        let _ = ch.data_bytes(Bytes::from(out.text)).await;
    }
    let _ = ch.exit_status(0).await;
    let _ = ch.eof().await;
    let _ = ch.close().await;
}

/// `\n` → `\r\n` (a terminal's line ends), leaving existing `\r\n` alone.
fn crlf(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + text.len() / 32);
    let mut prev = '\0';
    for c in text.chars() {
        if c == '\n' && prev != '\r' {
            s.push('\r');
        }
        s.push(c);
        prev = c;
    }
    s
}

/// The interactive shell: prompt, a line, its output, the prompt again. With a pty the
/// typed characters are echoed (backspace erases) and line ends are CRLF; `quit`, Ctrl-D
/// on an empty line or the client's EOF end it.
/// Longest console line the interactive shell keeps.
const MAX_LINE: usize = 64 * 1024;

async fn shell(dev: Arc<Device>, user: String, mut ch: Channel<Msg>, pty: bool) {
    let fix = |t: &str| if pty { crlf(t) } else { t.to_string() };
    pause(&dev).await;
    let _ = ch.data_bytes(Bytes::from(dev.console_prompt(&user))).await;
    let mut line: Vec<u8> = Vec::new();
    let mut after_cr = false;
    'session: while let Some(msg) = ch.wait().await {
        let data = match msg {
            ChannelMsg::Data { data } => data,
            ChannelMsg::Eof | ChannelMsg::Close => break,
            _ => continue,
        };
        let mut echo: Vec<u8> = Vec::new();
        for &b in data.iter() {
            let lf_after_cr = b == b'\n' && after_cr;
            after_cr = b == b'\r';
            match b {
                _ if lf_after_cr => {}
                b'\r' | b'\n' => {
                    if pty {
                        echo.extend_from_slice(b"\r\n");
                    }
                    if !echo.is_empty() {
                        let _ = ch.data_bytes(Bytes::from(std::mem::take(&mut echo))).await;
                    }
                    let text = String::from_utf8_lossy(&std::mem::take(&mut line)).into_owned();
                    let out = dev.console(&user, &text);
                    pause(&dev).await;
                    if !out.text.is_empty() {
                        let _ = ch.data_bytes(Bytes::from(fix(&out.text))).await;
                    }
                    if out.quit {
                        break 'session;
                    }
                    let _ = ch.data_bytes(Bytes::from(dev.console_prompt(&user))).await;
                }
                0x7f | 0x08 => {
                    if line.pop().is_some() && pty {
                        echo.extend_from_slice(b"\x08 \x08");
                    }
                }
                0x04 if line.is_empty() => break 'session,
                0x03 => {
                    // Ctrl-C drops the line being typed
                    line.clear();
                    if pty {
                        echo.extend_from_slice(b"\r\n");
                        echo.extend_from_slice(dev.console_prompt(&user).as_bytes());
                    }
                }
                // A line longer than any console command is cut (bounded memory per
                // session; what RouterOS does with such a line is unsourced).
                _ if line.len() >= MAX_LINE => {}
                _ => {
                    line.push(b);
                    if pty {
                        echo.push(b);
                    }
                }
            }
        }
        if !echo.is_empty() {
            let _ = ch.data_bytes(Bytes::from(echo)).await;
        }
    }
    let _ = ch.exit_status(0).await;
    let _ = ch.eof().await;
    let _ = ch.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_keys_are_derived() {
        let a = host_key(1, 0);
        assert_eq!(a.public_key(), host_key(1, 0).public_key());
        assert_ne!(a.public_key(), host_key(1, 1).public_key());
        assert_ne!(a.public_key(), host_key(2, 0).public_key());
    }

    #[test]
    fn terminal_line_ends() {
        assert_eq!(crlf("a\nb\r\nc"), "a\r\nb\r\nc");
    }
}

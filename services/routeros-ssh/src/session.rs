//! One logged-in SSH connection to a router: connect (resolve, guard, TCP, key exchange,
//! host-key policy, authentication, all under the connect timeout), bounded command
//! execution, and the door to SFTP.
//!
//! Each [`SshSession::exec`] opens its own session channel, so commands may run
//! concurrently on one connection; each is bounded by the command timeout and by
//! [`SshConfig::max_output`]. A command that times out or prints too much has its channel
//! closed; the connection stays usable.

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use russh::client::{AuthResult, Handle, Msg};
use russh::keys::PrivateKeyWithHashAlg;
use russh::{Channel, ChannelMsg, Preferred};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::{SshAuth, SshConfig};
use crate::console::console_error;
use crate::error::{SshError, command_path};
use crate::hostkey::{Handler, HostKey, HostKeyPolicy, Seen, Trust};
use crate::sftp::Sftp;

/// How long [`SshSession::close`] (and closing a failed command's channel) waits for the
/// request to be queued.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What one command printed and how it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Standard output, as sent.
    pub stdout: Vec<u8>,
    /// Standard error (extended data), as sent; RouterOS prints errors on stdout.
    pub stderr: Vec<u8>,
    /// The exit status, when the device sent one.
    pub exit_status: Option<u32>,
}

impl ExecOutput {
    /// Standard output as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Fails with [`SshError::ExitStatus`] for a non-zero exit status, then with
    /// [`SshError::Console`] when stdout or stderr has a console error line
    /// ([`console_error`]).
    pub fn check(&self, command: &str) -> Result<(), SshError> {
        let stdout = String::from_utf8_lossy(&self.stdout);
        let stderr = String::from_utf8_lossy(&self.stderr);
        if let Some(status) = self.exit_status.filter(|&s| s != 0) {
            return Err(SshError::ExitStatus {
                command: command_path(command),
                status,
                output: format!("{stdout}{stderr}"),
            });
        }
        match console_error(&stdout).or_else(|| console_error(&stderr)) {
            Some(line) => Err(SshError::Console {
                command: command_path(command),
                message: line.to_owned(),
            }),
            None => Ok(()),
        }
    }
}

/// The bounds every operation of a session applies (copied from [`SshConfig`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub command_timeout: Duration,
    pub max_output: usize,
    pub max_file: u64,
    pub min_transfer_rate: u64,
}

impl Bounds {
    /// Deadline for a transfer of `bytes`: the command timeout plus the time it takes at the
    /// slowest tolerated rate.
    pub fn transfer_allowance(&self, bytes: u64) -> Duration {
        let rate = self.min_transfer_rate.max(1);
        self.command_timeout
            .saturating_add(Duration::from_millis(bytes.saturating_mul(1000) / rate))
    }
}

pub(crate) struct Inner {
    handle: Handle<Handler>,
    host_key: HostKey,
    addr: String,
    pub(crate) bounds: Bounds,
}

/// A logged-in SSH connection to one router. Cheap to clone; clones (and [`Sftp`] sessions
/// opened from it) share the connection, which ends on [`SshSession::close`] or when the
/// last of them is dropped.
#[derive(Clone)]
pub struct SshSession {
    inner: Arc<Inner>,
}

impl fmt::Debug for SshSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshSession")
            .field("addr", &self.inner.addr)
            .field("host_key", &self.inner.host_key)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl SshSession {
    /// Resolves the host, checks every address with the guard, connects to the accepted
    /// ones, runs the key exchange under the host-key policy and authenticates, all within
    /// [`SshConfig::connect_timeout`].
    #[tracing::instrument(skip_all, fields(host = %config.host, port = config.port))]
    pub async fn connect(config: &SshConfig) -> Result<SshSession, SshError> {
        let addr = config.addr();
        match tokio::time::timeout(config.connect_timeout, connect(config, &addr)).await {
            Ok(result) => result,
            Err(_) => Err(SshError::Timeout {
                what: format!("connecting to {addr}"),
                after: config.connect_timeout,
            }),
        }
    }

    /// The host key the device presented and how it was trusted. With
    /// [`Trust::FirstUse`], record its fingerprint and pin it from then on.
    pub fn host_key(&self) -> &HostKey {
        &self.inner.host_key
    }

    /// True once the connection is gone (closed by either side or lost).
    pub fn is_closed(&self) -> bool {
        self.inner.handle.is_closed()
    }

    /// Runs one console command under the command timeout and returns what it printed,
    /// whatever its exit status and text (see [`SshSession::run`] for a checked variant).
    pub async fn exec(&self, command: &str) -> Result<ExecOutput, SshError> {
        self.exec_with_timeout(command, self.inner.bounds.command_timeout)
            .await
    }

    /// [`SshSession::exec`] with an explicit timeout (a large export on a slow device).
    #[tracing::instrument(skip_all, fields(addr = %self.inner.addr, command = %command_path(command)))]
    pub async fn exec_with_timeout(
        &self,
        command: &str,
        timeout: Duration,
    ) -> Result<ExecOutput, SshError> {
        let what = || format!("exec {:?}", command_path(command));
        let timed_out = || SshError::Timeout {
            what: what(),
            after: timeout,
        };
        let deadline = Instant::now() + timeout;
        let mut channel =
            tokio::time::timeout_at(deadline, self.inner.handle.channel_open_session())
                .await
                .map_err(|_| timed_out())?
                .map_err(|source| SshError::Channel {
                    what: what(),
                    source,
                })?;
        let result = tokio::time::timeout_at(
            deadline,
            collect(&mut channel, command, self.inner.bounds.max_output),
        )
        .await;
        match result {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(e)) => {
                close_quietly(&channel).await;
                Err(e)
            }
            Err(_) => {
                close_quietly(&channel).await;
                Err(timed_out())
            }
        }
    }

    /// Runs one console command and returns its standard output as text, failing with
    /// [`SshError::ExitStatus`] or [`SshError::Console`] as [`ExecOutput::check`] does.
    pub async fn run(&self, command: &str) -> Result<String, SshError> {
        let output = self.exec(command).await?;
        output.check(command)?;
        Ok(output.text())
    }

    /// Opens an SFTP session on a new channel (within the command timeout).
    pub async fn sftp(&self) -> Result<Sftp, SshError> {
        let what = "opening the SFTP subsystem";
        let after = self.inner.bounds.command_timeout;
        let open = async {
            let mut channel = self
                .inner
                .handle
                .channel_open_session()
                .await
                .map_err(|source| SshError::Channel {
                    what: what.to_owned(),
                    source,
                })?;
            channel
                .request_subsystem(true, "sftp")
                .await
                .map_err(|source| SshError::Channel {
                    what: what.to_owned(),
                    source,
                })?;
            loop {
                match channel.wait().await {
                    Some(ChannelMsg::Success) => break,
                    Some(ChannelMsg::Failure) => {
                        return Err(SshError::Protocol(
                            "the device refused the SFTP subsystem".into(),
                        ));
                    }
                    None | Some(ChannelMsg::Close) | Some(ChannelMsg::Eof) => {
                        return Err(SshError::Protocol(
                            "the device closed the channel instead of starting SFTP".into(),
                        ));
                    }
                    Some(_) => {}
                }
            }
            Sftp::start(channel, self.inner.clone()).await
        };
        tokio::time::timeout(after, open)
            .await
            .map_err(|_| SshError::Timeout {
                what: what.to_owned(),
                after,
            })?
    }

    /// Says goodbye and ends the connection; commands and SFTP sessions still using it fail
    /// with [`SshError::Channel`]. Waits at most a second.
    pub async fn close(&self) {
        let bye = self
            .inner
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en");
        let _ = tokio::time::timeout(CLOSE_GRACE, bye).await;
    }
}

/// Sends `exec` and collects the channel's output until it closes.
async fn collect(
    channel: &mut Channel<Msg>,
    command: &str,
    max_output: usize,
) -> Result<ExecOutput, SshError> {
    channel
        .exec(true, command)
        .await
        .map_err(|source| SshError::Channel {
            what: format!("exec {:?}", command_path(command)),
            source,
        })?;
    let mut out = ExecOutput::default();
    let too_large = || SshError::OutputTooLarge {
        command: command_path(command),
        limit: max_output,
    };
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                if out.stdout.len() + out.stderr.len() + data.len() > max_output {
                    return Err(too_large());
                }
                out.stdout.extend_from_slice(&data);
            }
            ChannelMsg::ExtendedData { data, .. } => {
                if out.stdout.len() + out.stderr.len() + data.len() > max_output {
                    return Err(too_large());
                }
                out.stderr.extend_from_slice(&data);
            }
            ChannelMsg::ExitStatus { exit_status } => out.exit_status = Some(exit_status),
            ChannelMsg::Failure => {
                return Err(SshError::Protocol(format!(
                    "the device refused to run {:?}",
                    command_path(command)
                )));
            }
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    Ok(out)
}

async fn close_quietly(channel: &Channel<Msg>) {
    let _ = tokio::time::timeout(CLOSE_GRACE, channel.close()).await;
}

/// Everything [`SshSession::connect`] does, without the overall timeout.
async fn connect(config: &SshConfig, addr: &str) -> Result<SshSession, SshError> {
    let connect_error = |source| SshError::Connect {
        addr: addr.to_owned(),
        source,
    };
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((config.host.as_str(), config.port))
        .await
        .map_err(connect_error)?
        .collect();
    let allowed = match &config.address_guard {
        None => resolved,
        Some(guard) => {
            let mut allowed = Vec::with_capacity(resolved.len());
            let mut refused = None;
            for a in resolved {
                match guard.check(a) {
                    Ok(()) => allowed.push(a),
                    Err(reason) => refused = refused.or(Some(reason)),
                }
            }
            if allowed.is_empty() {
                return Err(SshError::AddressRefused {
                    addr: addr.to_owned(),
                    reason: refused.unwrap_or_else(|| "the host resolved to no address".into()),
                });
            }
            allowed
        }
    };
    if allowed.is_empty() {
        return Err(connect_error(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the host resolved to no address",
        )));
    }
    // Only the resolved (and checked) addresses: no second resolution that could differ.
    let tcp = TcpStream::connect(&allowed[..])
        .await
        .map_err(connect_error)?;
    // Commands are small and interactive; do not let Nagle delay them.
    let _ = tcp.set_nodelay(true);

    let seen = Arc::new(Mutex::new(Seen::default()));
    let handler = Handler {
        policy: config.host_key,
        seen: seen.clone(),
    };
    let ssh_config = Arc::new(russh::client::Config {
        preferred: preferred(),
        nodelay: true,
        ..Default::default()
    });
    let handshake = russh::client::connect_stream(ssh_config, tcp, handler).await;
    let seen = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let mut handle = match handshake {
        Ok(handle) => handle,
        Err(source) => return Err(handshake_error(config, addr, &seen, source)),
    };
    let Some((fingerprint, algorithm)) = seen.key else {
        return Err(SshError::Protocol(
            "the key exchange completed without a host key".into(),
        ));
    };
    let host_key = HostKey {
        fingerprint_sha256: fingerprint.0,
        algorithm,
        trust: match config.host_key {
            HostKeyPolicy::PinnedSha256(_) => Trust::Pinned,
            HostKeyPolicy::TrustOnFirstUse => Trust::FirstUse,
        },
    };
    if host_key.trust == Trust::FirstUse {
        tracing::warn!(
            fingerprint = %fingerprint,
            algorithm = %host_key.algorithm,
            "SSH host key accepted on first use; record and pin it"
        );
    }

    authenticate(&mut handle, config, addr).await?;
    Ok(SshSession {
        inner: Arc::new(Inner {
            handle,
            host_key,
            addr: addr.to_owned(),
            bounds: Bounds {
                command_timeout: config.command_timeout,
                max_output: config.max_output,
                max_file: config.max_file,
                min_transfer_rate: config.min_transfer_rate,
            },
        }),
    })
}

fn handshake_error(config: &SshConfig, addr: &str, seen: &Seen, source: russh::Error) -> SshError {
    if let (HostKeyPolicy::PinnedSha256(pin), Some((presented, _))) = (config.host_key, &seen.key)
        && presented.0 != pin
    {
        return SshError::HostKeyMismatch {
            addr: addr.to_owned(),
            expected: crate::Fingerprint(pin),
            presented: *presented,
        };
    }
    if seen.certificate {
        return SshError::Protocol(format!(
            "{addr} presented an SSH host certificate; only plain host keys are supported"
        ));
    }
    SshError::Handshake {
        addr: addr.to_owned(),
        source,
    }
}

async fn authenticate(
    handle: &mut Handle<Handler>,
    config: &SshConfig,
    addr: &str,
) -> Result<(), SshError> {
    let handshake = |source| SshError::Handshake {
        addr: addr.to_owned(),
        source,
    };
    let user = config.username.clone();
    let result = match &config.auth {
        SshAuth::Password(password) => handle
            .authenticate_password(user, password.expose())
            .await
            .map_err(handshake)?,
        SshAuth::PublicKey(key) => {
            let key = key.inner();
            // Only RSA keys need the hash choice, and asking may wait up to a second for
            // the device's extension info.
            let hash = if key.algorithm().is_rsa() {
                handle
                    .best_supported_rsa_hash()
                    .await
                    .map_err(handshake)?
                    .flatten()
            } else {
                None
            };
            handle
                .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key, hash))
                .await
                .map_err(handshake)?
        }
    };
    match result {
        AuthResult::Success => Ok(()),
        AuthResult::Failure {
            remaining_methods, ..
        } => Err(SshError::AuthRejected {
            user: config.username.clone(),
            with: match &config.auth {
                SshAuth::Password(_) => "password".to_owned(),
                SshAuth::PublicKey(k) => match k.fingerprint() {
                    Some(f) => format!("public key {f}"),
                    None => "a public key".to_owned(),
                },
            },
            methods: remaining_methods.iter().map(String::from).collect(),
        }),
    }
}

/// russh's safe defaults, plus the SHA-1 key exchanges and MAC RouterOS 6 offers without
/// `strong-crypto` (its server lists `diffie-hellman-group-exchange-sha256,
/// diffie-hellman-group-exchange-sha1, diffie-hellman-group14-sha1, …` and only
/// `hmac-sha1, hmac-md5`; see the README), tried last.
fn preferred() -> Preferred {
    let defaults = Preferred::default();
    let mut kex = defaults.kex.to_vec();
    let at = kex
        .iter()
        .position(|k| *k == russh::kex::EXTENSION_SUPPORT_AS_CLIENT)
        .unwrap_or(kex.len());
    kex.splice(at..at, [russh::kex::DH_GEX_SHA1, russh::kex::DH_G14_SHA1]);
    let mut mac = defaults.mac.to_vec();
    mac.push(russh::mac::HMAC_SHA1);
    Preferred {
        kex: Cow::Owned(kex),
        mac: Cow::Owned(mac),
        ..defaults
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn routeros6_algorithms_are_offered_last() {
        let p = preferred();
        let names: Vec<&str> = p.kex.iter().map(|k| k.as_ref()).collect();
        let g14 = names
            .iter()
            .position(|n| *n == "diffie-hellman-group14-sha1");
        let ext = names.iter().position(|n| *n == "ext-info-c");
        assert!(
            matches!((g14, ext), (Some(a), Some(b)) if a < b),
            "{names:?}"
        );
        assert_eq!(names.first(), Some(&"mlkem768x25519-sha256"));
        assert_eq!(p.mac.last().map(|m| m.as_ref()), Some("hmac-sha1"));
    }

    #[test]
    fn transfer_allowance_scales_with_size() {
        let b = Bounds {
            command_timeout: Duration::from_secs(10),
            max_output: 0,
            max_file: 0,
            min_transfer_rate: 1024,
        };
        assert_eq!(b.transfer_allowance(0), Duration::from_secs(10));
        assert_eq!(b.transfer_allowance(10 * 1024), Duration::from_secs(20));
        assert_eq!(b.transfer_allowance(512), Duration::from_millis(10_500));
    }

    #[test]
    fn check_reads_exit_status_then_console_errors() {
        let ok = ExecOutput {
            stdout: b"# export\n/ip address\n".to_vec(),
            stderr: vec![],
            exit_status: Some(0),
        };
        assert!(ok.check("/export").is_ok());
        let failed = ExecOutput {
            stdout: b"bad command name exprot (line 1 column 1)\r\n".to_vec(),
            stderr: vec![],
            exit_status: Some(0),
        };
        let e = failed.check("/exprot").unwrap_err();
        assert!(
            matches!(&e, SshError::Console { message, .. }
                if message == "bad command name exprot (line 1 column 1)"),
            "{e}"
        );
        let exit = ExecOutput {
            stdout: b"out".to_vec(),
            stderr: b"err".to_vec(),
            exit_status: Some(2),
        };
        let e = exit.check("x").unwrap_err();
        assert!(
            matches!(&e, SshError::ExitStatus { status: 2, output, .. } if output == "outerr"),
            "{e}"
        );
    }
}

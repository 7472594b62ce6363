//! The crate's error type: one enum at the boundary, context in fields, `Display` never
//! repeating its source.

use std::io;
use std::time::Duration;

use crate::hostkey::Fingerprint;

/// Everything that can go wrong talking to a router over SSH or SFTP.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The TCP connection could not be made (refused, unreachable, name not resolved).
    #[error("cannot connect to {addr}")]
    Connect {
        /// `host:port` as configured.
        addr: String,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// The configured [`crate::AddressGuard`] refused every address the host resolved to;
    /// no connection was attempted.
    #[error("connecting to {addr} refused: {reason}")]
    AddressRefused {
        /// `host:port` as configured.
        addr: String,
        /// The guard's reason (for the first refused address).
        reason: String,
    },
    /// An operation did not finish within its bound: connecting (TCP, key exchange and
    /// authentication together), one command, or one SFTP request or transfer.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What was being done (`connecting to 10.0.0.1:22`, `exec "/export"`,
        /// `SFTP read of "x.backup"`).
        what: String,
        /// The bound that expired.
        after: Duration,
    },
    /// The device's SSH host key does not have the pinned fingerprint. Nothing was sent
    /// after the key exchange: no password, no signature.
    #[error(
        "{addr}: the device presented SSH host key {presented} but {expected} is pinned; \
         if the device was re-keyed, re-pin it (update the device's SSH host key)"
    )]
    HostKeyMismatch {
        /// `host:port` as configured.
        addr: String,
        /// The pinned fingerprint.
        expected: Fingerprint,
        /// The fingerprint of the key the device presented.
        presented: Fingerprint,
    },
    /// The device refused the credentials.
    #[error(
        "SSH login as {user:?} with {with} rejected{}",
        methods_suffix(methods)
    )]
    AuthRejected {
        /// The user name tried.
        user: String,
        /// What was tried: `password`, or `public key SHA256:…` (its fingerprint), so an
        /// operator can see which key the device does not have for the user.
        with: String,
        /// The methods the device said could still work (`password`, `publickey`); empty
        /// when it closed the connection instead.
        methods: Vec<String>,
    },
    /// The SSH transport failed while connecting: version exchange, no common algorithm,
    /// key exchange, or the device closing the connection before login completed.
    #[error("SSH handshake with {addr} failed")]
    Handshake {
        /// `host:port` as configured.
        addr: String,
        /// What russh reported.
        #[source]
        source: russh::Error,
    },
    /// A request on an established session failed (channel refused, session closed, also
    /// after [`crate::SshSession::close`]).
    #[error("{what} failed")]
    Channel {
        /// The request (`exec "/export"`, `opening the SFTP subsystem`).
        what: String,
        /// What russh reported.
        #[source]
        source: russh::Error,
    },
    /// The device broke the protocol or refused a request it should accept (exec or the
    /// SFTP subsystem refused, a size missing from a stat reply).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The private key text could not be parsed or decrypted.
    #[error("invalid SSH private key")]
    InvalidKey {
        /// What the parser reported.
        #[source]
        source: russh::keys::Error,
    },
    /// An SFTP request failed with a status other than "no such file".
    #[error("SFTP {path:?}: {message}")]
    Sftp {
        /// The remote path.
        path: String,
        /// The device's status and message, or the transport error.
        message: String,
    },
    /// The SSH connection went away during an SFTP request (the device rebooted, the
    /// network dropped): trying again on a new session may succeed.
    #[error("SFTP {path:?}: the connection was lost during {what} ({detail})")]
    SftpConnectionLost {
        /// The remote path.
        path: String,
        /// The request (`read`, `write`, `stat`...).
        what: String,
        /// What the transport said.
        detail: String,
    },
    /// The remote file does not exist.
    #[error("no such file {path:?} on the device")]
    NotFound {
        /// The remote path.
        path: String,
    },
    /// A command printed more than [`crate::SshConfig::max_output`] bytes; the channel was
    /// closed, nothing was returned.
    #[error("{command:?} printed more than {limit} bytes; output discarded")]
    OutputTooLarge {
        /// The command's path ([`command_path`]).
        command: String,
        /// The bound.
        limit: usize,
    },
    /// A remote file is larger than [`crate::SshConfig::max_file`]; nothing was returned.
    #[error("{path:?} is larger than {limit} bytes ({size} or more)")]
    FileTooLarge {
        /// The remote path.
        path: String,
        /// Its size as reported by stat, or the bytes read when it grew past the bound.
        size: u64,
        /// The bound.
        limit: u64,
    },
    /// The command ended with a non-zero exit status ([`crate::SshSession::run`] only).
    #[error("{command:?} exited with status {status}")]
    ExitStatus {
        /// The command's path ([`command_path`]).
        command: String,
        /// The exit status.
        status: u32,
        /// What it printed (stdout then stderr, lossily decoded).
        output: String,
    },
    /// The command printed a RouterOS console error line ([`crate::console_error`]).
    #[error("{command:?} failed on the device: {message}")]
    Console {
        /// The command's path ([`command_path`]).
        command: String,
        /// The first error line.
        message: String,
    },
}

fn methods_suffix(methods: &[String]) -> String {
    if methods.is_empty() {
        String::new()
    } else {
        format!(" (the device offers: {})", methods.join(", "))
    }
}

impl SshError {
    /// True when trying again later may succeed without changing anything: the device was
    /// unreachable, slow, or the connection dropped. Trust, credential, bound and
    /// command errors are not transient.
    pub fn is_transient(&self) -> bool {
        match self {
            SshError::Connect { .. }
            | SshError::Timeout { .. }
            | SshError::SftpConnectionLost { .. } => true,
            SshError::Handshake { source, .. } | SshError::Channel { source, .. } => {
                is_connection_loss(source)
            }
            SshError::AddressRefused { .. }
            | SshError::HostKeyMismatch { .. }
            | SshError::AuthRejected { .. }
            | SshError::Protocol(_)
            | SshError::InvalidKey { .. }
            | SshError::Sftp { .. }
            | SshError::NotFound { .. }
            | SshError::OutputTooLarge { .. }
            | SshError::FileTooLarge { .. }
            | SshError::ExitStatus { .. }
            | SshError::Console { .. } => false,
        }
    }
}

/// russh errors that mean the connection went away rather than that the peers disagree.
fn is_connection_loss(e: &russh::Error) -> bool {
    matches!(
        e,
        russh::Error::Disconnect
            | russh::Error::HUP
            | russh::Error::IO(_)
            | russh::Error::ConnectionTimeout
            | russh::Error::KeepaliveTimeout
            | russh::Error::InactivityTimeout
            | russh::Error::SendError
            | russh::Error::RecvError
    )
}

/// What errors and logs name a command by: its words up to the first `name=value`
/// argument (`/system backup save` for `/system backup save name=b password=secret`), so
/// argument values such as passwords never land in an error message or a log line.
pub fn command_path(command: &str) -> String {
    command
        .split_whitespace()
        .take_while(|w| !w.contains('='))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Result alias for this crate.
pub type Result<T, E = SshError> = std::result::Result<T, E>;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn host_key_mismatch_says_what_to_do() {
        let e = SshError::HostKeyMismatch {
            addr: "10.0.0.1:22".into(),
            expected: Fingerprint([0; 32]),
            presented: Fingerprint([0xff; 32]),
        };
        assert_eq!(
            e.to_string(),
            "10.0.0.1:22: the device presented SSH host key \
             SHA256://////////////////////////////////////////8 but \
             SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA is pinned; if the device was \
             re-keyed, re-pin it (update the device's SSH host key)"
        );
        assert!(!e.is_transient());
    }

    #[test]
    fn auth_rejected_lists_the_offered_methods() {
        let e = SshError::AuthRejected {
            user: "admin".into(),
            with: "password".into(),
            methods: vec!["password".into(), "publickey".into()],
        };
        assert_eq!(
            e.to_string(),
            "SSH login as \"admin\" with password rejected (the device offers: password, publickey)"
        );
        let e = SshError::AuthRejected {
            user: "admin".into(),
            with: "public key SHA256:abc".into(),
            methods: vec![],
        };
        assert_eq!(
            e.to_string(),
            "SSH login as \"admin\" with public key SHA256:abc rejected"
        );
    }

    #[test]
    fn transient_classification() {
        let t = SshError::Timeout {
            what: "exec \"/export\"".into(),
            after: Duration::from_secs(1),
        };
        assert!(t.is_transient());
        assert_eq!(t.to_string(), "exec \"/export\" timed out after 1s");
        let c = SshError::Connect {
            addr: "h:22".into(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        assert!(c.is_transient());
        let lost = SshError::Channel {
            what: "exec".into(),
            source: russh::Error::Disconnect,
        };
        assert!(lost.is_transient());
        let algo = SshError::Handshake {
            addr: "h:22".into(),
            source: russh::Error::UnknownKey,
        };
        assert!(!algo.is_transient());
        let big = SshError::OutputTooLarge {
            command: "/export".into(),
            limit: 10,
        };
        assert!(!big.is_transient());
        assert_eq!(
            big.to_string(),
            "\"/export\" printed more than 10 bytes; output discarded"
        );
    }

    #[test]
    fn command_paths_leave_argument_values_out() {
        assert_eq!(
            command_path("/system backup save name=b password=secret"),
            "/system backup save"
        );
        assert_eq!(command_path("  /export   terse "), "/export terse");
        assert_eq!(command_path("/import file-name=x.rsc"), "/import");
        assert_eq!(command_path(""), "");
    }

    #[test]
    fn errors_are_send_and_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<SshError>();
    }
}

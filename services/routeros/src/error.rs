//! The crate's error type: one enum at the boundary, context in fields, `Display` never
//! repeating its source.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::codec::CodecError;
use crate::menus::FieldError;
use crate::proto::{ProtoError, Trap};
use crate::tls::Fingerprint;

/// Everything that can go wrong talking to a router.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The TCP connection could not be made (refused, unreachable, bad address).
    #[error("cannot connect to {addr}")]
    Connect {
        /// `host:port` as configured.
        addr: String,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// The configured [`crate::client::AddressGuard`] refused every address the host resolved
    /// to; nothing was sent.
    #[error("connecting to {addr} refused: {reason}")]
    AddressRefused {
        /// `host:port` as configured.
        addr: String,
        /// The guard's reason (for the first refused address).
        reason: String,
    },
    /// TCP connect plus TLS handshake took longer than the connect timeout.
    #[error("connecting to {addr} timed out after {after:?}")]
    ConnectTimeout {
        /// `host:port` as configured.
        addr: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// The TLS handshake failed (protocol, CA verification, no common cipher suite; RouterOS
    /// without a certificate on api-ssl offers only anonymous DH, which rustls refuses).
    #[error("TLS handshake with {server} failed")]
    Tls {
        /// The server name used for the handshake.
        server: String,
        /// The handshake error (wraps a `rustls::Error`).
        #[source]
        source: io::Error,
    },
    /// The router's certificate does not have the pinned SHA-256 fingerprint.
    #[error("certificate fingerprint {actual} does not match the pinned {expected}")]
    PinMismatch {
        /// The pinned fingerprint.
        expected: Fingerprint,
        /// The fingerprint the router presented.
        actual: Fingerprint,
    },
    /// The configured TLS server name is not a valid DNS name or IP address.
    #[error("invalid TLS server name {name:?}")]
    InvalidServerName {
        /// The name.
        name: String,
    },
    /// The router refused the credentials; `message` is its trap text, e.g.
    /// `invalid user name or password (6)` or `cannot log in`.
    #[error("login as {user:?} rejected: {message}")]
    LoginRejected {
        /// The user name tried.
        user: String,
        /// The router's message.
        message: String,
    },
    /// The command ended in one or more `!trap`s.
    #[error("{command} failed: {}{}", trap.message, category_suffix(trap))]
    Trap {
        /// The command path.
        command: String,
        /// The first trap.
        trap: Trap,
        /// Any further traps of the same command (an unknown menu gives two).
        more: Vec<Trap>,
    },
    /// The router sent `!fatal` and closed the connection.
    #[error("router closed the session: {reason}")]
    Fatal {
        /// The reason word after `!fatal`.
        reason: String,
    },
    /// The byte stream from the router is not valid API framing; the connection is dropped.
    #[error("invalid framing from the router")]
    Codec {
        /// What the decoder found.
        #[source]
        source: CodecError,
    },
    /// A reply sentence the client cannot understand.
    #[error("malformed reply from the router")]
    Protocol {
        /// What was wrong with it.
        #[source]
        source: ProtoError,
    },
    /// A command could not be encoded (for example an attribute name containing `=`).
    #[error("cannot encode {command}")]
    Encode {
        /// The command path.
        command: String,
        /// Why.
        #[source]
        source: ProtoError,
    },
    /// A reply was well formed but not what the command should return (no row where one is
    /// needed, no item id after `add`, a truncated file, a non-hex login challenge).
    #[error("unexpected reply to {command}: {detail}")]
    UnexpectedReply {
        /// The command path.
        command: String,
        /// What was wrong.
        detail: String,
    },
    /// A row lacked an attribute a typed helper needs, or had it in an unexpected format.
    #[error("unexpected row from {command}")]
    Field {
        /// The command path.
        command: String,
        /// Which attribute, and what was wrong.
        #[source]
        source: FieldError,
    },
    /// The command's reply passed a [`crate::ReplyLimits`] bound (rows or bytes in one reply,
    /// bytes of one file); it was cancelled on the router.
    #[error("{command}: the router sent more than {limit}; the command was cancelled")]
    ReplyTooLarge {
        /// The command path.
        command: String,
        /// The bound passed (`50000 rows`, `33554432 bytes`).
        limit: String,
    },
    /// The command did not complete within its timeout; it was cancelled on the router.
    #[error("{command} timed out after {after:?}")]
    Timeout {
        /// The command path.
        command: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// The connection is gone: closed by the router, by a socket error, or by
    /// [`crate::Client::close`].
    #[error("connection closed")]
    ConnectionClosed {
        /// The socket error, when there was one.
        #[source]
        source: Option<Arc<io::Error>>,
    },
}

fn category_suffix(trap: &Trap) -> String {
    trap.category
        .map(|c| format!(" (category {c})"))
        .unwrap_or_default()
}

impl Error {
    /// True for a trap of category 2 (`interrupted`), how a cancelled command ends.
    pub fn is_interrupted(&self) -> bool {
        matches!(self, Error::Trap { trap, .. } if trap.is_interrupted())
    }

    /// True for errors that always mean the connection is gone. A [`Error::Protocol`] error
    /// ends the connection only when the bad sentence could not be tied to a command; ask
    /// [`crate::Client::is_closed`] to know.
    pub fn is_connection_lost(&self) -> bool {
        matches!(
            self,
            Error::Fatal { .. } | Error::Codec { .. } | Error::ConnectionClosed { .. }
        )
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

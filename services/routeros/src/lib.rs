//! RouterOS API client: a sans-IO wire codec, typed sentences shared with the device simulator,
//! and a tokio/rustls client with typed helpers. Depends on nothing of ours.
//!
//! - [`codec`]: word length prefixes, words and sentences; a bounded incremental [`codec::Decoder`].
//! - [`proto`]: typed [`proto::Command`]s and [`proto::Reply`]s, usable by client and server.
//! - [`client`]: [`Client`], one logged-in connection multiplexing tagged commands.
//! - [`tls`]: API-SSL trust: CA roots, SHA-256 pinning, explicit trust-on-first-use.
//! - [`error`]: the crate's [`Error`].

pub mod client;
pub mod codec;
pub mod error;
pub mod proto;
pub mod tls;

pub use client::{Client, Config, Password, ReplyStream, Response};
pub use codec::{CodecError, Decoder, Limits, Sentence};
pub use error::{Error, Result};
pub use proto::{Attrs, Command, ProtoError, Query, Reply, ReplyKind, Tag, Trap, TrapCategory};
pub use tls::{Fingerprint, PeerCertificate, TlsPolicy, Trust};

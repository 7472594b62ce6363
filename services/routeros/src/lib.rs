//! RouterOS API client: a sans-IO wire codec, typed sentences shared with the device simulator,
//! and a tokio/rustls client with typed helpers. Depends on nothing of ours.
//!
//! - [`codec`]: word length prefixes, words and sentences; a bounded incremental [`codec::Decoder`].
//! - [`proto`]: typed [`proto::Command`]s and [`proto::Reply`]s, usable by client and server.
//! - [`client`]: [`Client`], one logged-in connection multiplexing tagged commands.
//! - [`tls`]: API-SSL trust: CA roots, SHA-256 pinning, explicit trust-on-first-use.
//! - [`menus`]: typed helpers (identity, resources, interfaces, scheduler, export, backup,
//!   reboot, package updates) as methods on [`Client`].
//! - [`types`]: RouterOS value formats: item ids, durations, booleans, versions.
//! - [`error`]: the crate's [`Error`].

pub mod client;
pub mod codec;
pub mod error;
pub mod menus;
pub mod proto;
pub mod tls;
pub mod types;

pub use client::{AddressGuard, Client, Config, Password, ReplyLimits, ReplyStream, Response};
pub use codec::{CodecError, Decoder, Limits, Sentence};
pub use error::{Error, Result};
pub use proto::{Attrs, Command, ProtoError, Query, Reply, ReplyKind, Tag, Trap, TrapCategory};
pub use tls::{Fingerprint, PeerCertificate, TlsPolicy, Trust};
pub use types::{ItemId, Version, format_duration, parse_duration};

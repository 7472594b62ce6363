//! RouterOS API client: a sans-IO wire codec, typed sentences shared with the device simulator,
//! and (later modules) a tokio/rustls client. Depends on nothing of ours.
//!
//! - [`codec`]: word length prefixes, words and sentences; a bounded incremental [`codec::Decoder`].
//! - [`proto`]: typed [`proto::Command`]s and [`proto::Reply`]s, usable by client and server.

pub mod codec;
pub mod proto;

pub use codec::{CodecError, Decoder, Limits, Sentence};
pub use proto::{Attrs, Command, ProtoError, Query, Reply, ReplyKind, Tag, Trap, TrapCategory};

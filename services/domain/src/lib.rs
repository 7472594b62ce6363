//! Pure domain of Netledger: typed ids, stream names, event envelopes, the canonical byte
//! encoding of events, the per-stream hash chain, signed checkpoints and the offline verifier.
//!
//! This crate does no IO: no tokio, no sqlx, no clock reads (time comes in through
//! [`clock::Clock`]). Storage, device access and HTTP depend on it, never the other way round.

pub mod audit;
pub mod canonical;
pub mod clock;
pub mod event;
pub mod ids;

pub use event::{
    Actor, DecodeError, EventMetadata, EventType, ExpectedVersion, NewEvent, RecordedEvent,
};
pub use ids::{Category, EventId, IdError, StreamName, TenantId};

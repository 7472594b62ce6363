//! Pure domain of Netledger: typed ids, stream names, event envelopes, the canonical byte
//! encoding of events, the per-stream hash chain, signed checkpoints and the offline verifier.
//!
//! This crate does no IO: no tokio, no sqlx, no clock reads (time comes in through
//! [`clock::Clock`]). Storage, device access and HTTP depend on it, never the other way round.

pub mod audit;
pub mod canonical;
pub mod clock;
pub mod device;
pub mod errors;
pub mod event;
pub mod firmware;
pub mod identity;
pub mod ids;
pub mod workflow;

pub use event::{
    Actor, DecodeError, EventMetadata, EventType, ExpectedVersion, NewEvent, RecordedEvent,
};
pub use ids::{Category, DeviceId, EventId, IdError, RolloutId, StreamName, TenantId, WorkflowId};

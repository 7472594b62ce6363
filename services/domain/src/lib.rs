//! Pure domain of Netledger: typed ids, stream names, event envelopes, the canonical byte
//! encoding of events, the per-stream hash chain, signed checkpoints and the offline verifier,
//! and the aggregates ([`Aggregate`]): each with a typed event enum, one pure `evolve` and one
//! pure `decide`. The `testing` feature adds the given/when/then harness (`testing`).
//!
//! This crate does no IO: no tokio, no sqlx, no clock reads (time comes in through
//! [`clock::Clock`]). Storage, device access and HTTP depend on it, never the other way round.

pub mod aggregate;
pub mod audit;
pub mod canonical;
pub mod change;
pub mod clock;
pub mod device;
pub mod errors;
pub mod event;
pub mod firmware;
pub mod identity;
pub mod ids;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod workflow;

pub use aggregate::Aggregate;
pub use event::{
    Actor, DecodeError, EventEnum, EventMetadata, EventType, ExpectedVersion, NewEvent,
    RecordedEvent, StoredEvent,
};
pub use ids::{
    Category, ChangeRequestId, DeviceId, EventId, IdError, RolloutId, StreamName, TenantId,
    WorkflowId, is_key_id,
};

//! The fleet poller: leases devices from PostgreSQL, keeps a session per device, turns
//! observations into change-only events, runs a circuit breaker per device and writes metric
//! samples to the time-series tables. See `docs/poller.md`.
//!
//! - [`fleet`]: the process ([`Poller::start`] / [`run`]): work-table sync, shard leases,
//!   one task per device of the held shards.
//! - [`worktable`]: `poller_devices`, derived from the device events by a checkpointed
//!   subscription.
//! - [`shards`]: shard leases with heartbeat, expiry, fencing attempts and fair rebalancing.
//! - [`device`] (private): one device's poll cycle, session, exports and fenced appends.
//! - [`decide`]: the pure decisions of one poll (status, breaker, snapshot, drift).
//! - [`account`]: who changed a drifted device, as its `/system/history` and `/user/active`
//!   say.
//! - [`breaker`]: the pure per-device circuit breaker.
//! - [`metrics`]: batched telemetry writes, partitions, rollups.
//!
//! Depends on the domain, the store (events, credentials), the archive (config history)
//! and the RouterOS client; devsim only in its tests. Reads no environment and no
//! system clock (a [`netledger_domain::clock::Clock`] is injected); the binary maps its
//! `[poller]` configuration onto [`PollerOptions`].

pub mod account;
pub mod breaker;
pub mod decide;
mod device;
pub mod error;
pub mod fleet;
pub mod metrics;
pub mod options;
pub mod shards;
pub mod stats;
pub mod worktable;

pub use error::PollerError;
pub use fleet::{Poller, PollerDeps, run};
pub use options::{BreakerOptions, PollerOptions};

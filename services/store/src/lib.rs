//! PostgreSQL storage for Netledger: the append-only event store (optimistic concurrency,
//! gapless global order, per-stream hash chain, row-level security per tenant), catch-up
//! subscriptions, signed audit checkpoints, subscription checkpoints and the migrations.
//!
//! Depends on `netledger-domain` for the envelope and hashing; knows nothing of HTTP, devices
//! or NATS. Reads no environment and no clock: pools and keys come from the binary.

pub mod append;
pub mod audit;
pub mod backups;
pub mod credentials;
pub mod db;
pub mod devices;
pub mod error;
pub mod firmware;
pub mod notify;
pub mod read;
pub mod sealed;
pub mod subscription;

pub use append::{AppendOutcome, AppendRequest, EventStore, StoreOptions};
pub use db::{Pools, Role, begin_tenant, connect_options_for};
pub use error::StoreError;
pub use notify::Notifier;
pub use read::{Direction, EventReader, ReadScope};
pub use subscription::Subscription;

/// The embedded migrations in `migrations/` (append-only files).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

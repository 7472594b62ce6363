//! Read models folded from the event store, for the REST API and the UI: the device list and
//! detail, config versions per device, workflow runs and their steps, rollouts and their
//! progress, change requests and their timeline, and the audit feed (`docs/projections.md`).
//!
//! Each projector writes its tables and its checkpoint (`subscription_checkpoints`,
//! `projection.<name>`) in one transaction and skips re-delivered events; [`run`] keeps them
//! up to date, [`replay`] rebuilds them from position 0 with the same fold, [`lag`] says how
//! far behind they are, and [`query`] reads them tenant by tenant under row-level security.
//!
//! Projectors run as the system component (`netledger_system`, every tenant); queries run as
//! `netledger_app` with the tenant set per transaction. Depends on `netledger-domain` for the
//! event types and `netledger-store` for reading events; knows nothing of HTTP. Reads no
//! environment and no clock (lag uses the database clock).

pub mod error;
pub mod lag;
pub mod live;
pub mod projector;
pub mod projectors;
pub mod query;
pub mod replay;
pub mod wait;

pub use error::ProjectionError;
pub use lag::{Lag, lag};
pub use live::{RunOptions, catch_up, run};
pub use projector::{
    AUDIT, BatchOutcome, CHANGE_REQUESTS, CONFIG_VERSIONS, DEVICES, PROJECTORS, Projector,
    ROLLOUTS, WORKFLOWS, apply_batch, apply_events, checkpoint, checkpoint_name, projector,
};
pub use replay::{ProjectorReplay, ReplayOptions, ReplayReport, dump, replay, replay_with};
pub use wait::wait_for_position;

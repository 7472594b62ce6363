//! The projector contract, the registry of projectors, and the transaction that applies one
//! batch of events together with the projector's checkpoint.
//!
//! A projector folds events into its read-model tables. It keeps the rows it touches in a
//! cache for the length of a batch (live) or of a whole rebuild (replay): rows are loaded
//! once per batch with one set-based query, folded in memory, and the changed ones written
//! back with one multi-row statement per table. Each row remembers the global position of
//! the last event folded into it (`last_position`), so a re-delivered event is skipped even
//! if the checkpoint were behind; append-only tables insert with `ON CONFLICT DO NOTHING`.

use async_trait::async_trait;
use netledger_domain::{DecodeError, EventEnum, RecordedEvent};
use sqlx::{PgConnection, PgPool};

use crate::error::ProjectionError;
use crate::projectors::{
    audit::AuditProjector, change_requests::ChangeRequestsProjector,
    config::ConfigVersionsProjector, devices::DevicesProjector, rollouts::RolloutsProjector,
    workflows::WorkflowsProjector,
};

/// Projector `devices` (`rm_devices`, `rm_device_tags`).
pub const DEVICES: &str = "devices";
/// Projector `config_versions` (`rm_config_versions`).
pub const CONFIG_VERSIONS: &str = "config_versions";
/// Projector `workflows` (`rm_workflow_runs`, `rm_workflow_devices`, `rm_workflow_steps`).
pub const WORKFLOWS: &str = "workflows";
/// Projector `rollouts` (`rm_rollouts`, `rm_rollout_devices`).
pub const ROLLOUTS: &str = "rollouts";
/// Projector `change_requests` (`rm_change_requests`).
pub const CHANGE_REQUESTS: &str = "change_requests";
/// Projector `audit` (`rm_audit_feed`).
pub const AUDIT: &str = "audit";

/// The names of every projector, in the order they are run and reported.
pub const PROJECTORS: &[&str] = &[
    DEVICES,
    CONFIG_VERSIONS,
    WORKFLOWS,
    ROLLOUTS,
    CHANGE_REQUESTS,
    AUDIT,
];

/// A read model kept up to date from the event store.
///
/// To add one: implement this trait in `src/projectors/`, add its tables in a new migration
/// (RLS and grants as in `20261122200001_read_models.sql`), and register it in
/// [`PROJECTORS`] and [`projector`]. See `docs/projections.md`.
#[async_trait]
pub trait Projector: Send {
    /// Its name; its checkpoint row is `projection.<name>`.
    fn name(&self) -> &'static str;
    /// The only stream category it folds, or `None` for every event. Live, it reads only
    /// that category; in a replay it is handed only that category's events.
    fn category(&self) -> Option<&'static str>;
    /// Its tables (a replay empties them before folding from position 0).
    fn tables(&self) -> &'static [&'static str];
    /// Folds `events` (in position order, all after the checkpoint, all of its category)
    /// into its tables through `conn`, which is inside the batch's transaction.
    async fn apply(
        &mut self,
        conn: &mut PgConnection,
        events: &[&RecordedEvent],
    ) -> Result<(), ProjectionError>;
    /// Writes whatever [`Projector::apply`] left unwritten. Live batches write everything in
    /// `apply`; in replay mode a projector may keep changed rows in memory across batches
    /// (a row changed in many batches is then written once) and writes them here, before
    /// the checkpoint.
    async fn flush(&mut self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        let _ = conn;
        Ok(())
    }
    /// Drops every cached row. Called after each live batch and after any failure, so the
    /// next batch loads what the database holds.
    fn forget(&mut self);
    /// Replay mode (`Some(flush_rows)`): the tables were emptied in this transaction, so a
    /// row absent from the cache does not exist and is not looked up; the cache is kept
    /// across batches and changed rows may be held back until `flush_rows` of them have
    /// piled up or [`Projector::flush`] is called. `None`: live mode.
    fn set_replay(&mut self, flush_rows: Option<usize>);
}

/// A new projector by name.
pub fn projector(name: &str) -> Result<Box<dyn Projector>, ProjectionError> {
    Ok(match name {
        DEVICES => Box::new(DevicesProjector::default()),
        CONFIG_VERSIONS => Box::new(ConfigVersionsProjector::default()),
        WORKFLOWS => Box::new(WorkflowsProjector::default()),
        ROLLOUTS => Box::new(RolloutsProjector::default()),
        CHANGE_REQUESTS => Box::new(ChangeRequestsProjector::default()),
        AUDIT => Box::new(AuditProjector::default()),
        _ => {
            return Err(ProjectionError::UnknownProjector {
                name: name.to_owned(),
                known: PROJECTORS.join(", "),
            });
        }
    })
}

/// The projectors named by `only` (one), or all of them.
pub(crate) fn selected(only: Option<&str>) -> Result<Vec<Box<dyn Projector>>, ProjectionError> {
    match only {
        Some(name) => Ok(vec![projector(name)?]),
        None => PROJECTORS.iter().map(|n| projector(n)).collect(),
    }
}

/// The checkpoint row name of a projector.
pub fn checkpoint_name(projector: &str) -> String {
    format!("projection.{projector}")
}

/// What one batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Committed: `applied` events were new, the checkpoint is now `checkpoint`.
    Applied {
        /// Events folded (those after the checkpoint).
        applied: usize,
        /// The checkpoint after the batch.
        checkpoint: i64,
    },
    /// Another transaction (a replay, or the same projector in another process) holds the
    /// checkpoint; nothing was done. Try again later.
    Busy,
}

/// Locks the checkpoint row (creating it at 0) and returns its position. With `wait`
/// false, returns `None` when another transaction holds it.
pub(crate) async fn lock_checkpoint(
    conn: &mut PgConnection,
    name: &str,
    wait: bool,
) -> Result<Option<i64>, ProjectionError> {
    let select = if wait {
        "SELECT position FROM subscription_checkpoints WHERE name = $1 FOR UPDATE"
    } else {
        "SELECT position FROM subscription_checkpoints WHERE name = $1 FOR UPDATE SKIP LOCKED"
    };
    for _ in 0..2 {
        let found: Option<i64> = sqlx::query_scalar(select)
            .bind(name)
            .fetch_optional(&mut *conn)
            .await
            .map_err(ProjectionError::db("lock checkpoint"))?;
        if found.is_some() {
            return Ok(found);
        }
        let inserted = sqlx::query(
            "INSERT INTO subscription_checkpoints (name, position, updated_at) \
             VALUES ($1, 0, now()) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .execute(&mut *conn)
        .await
        .map_err(ProjectionError::db("create checkpoint"))?
        .rows_affected();
        if inserted == 0 && !wait {
            // It exists, so SKIP LOCKED skipped it: someone else holds it.
            return Ok(None);
        }
    }
    Err(ProjectionError::Database {
        operation: "lock checkpoint",
        source: sqlx::Error::RowNotFound,
    })
}

/// Sets the checkpoint (inside the caller's transaction, which holds its lock).
pub(crate) async fn save_checkpoint(
    conn: &mut PgConnection,
    name: &str,
    position: i64,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "UPDATE subscription_checkpoints SET position = $2, updated_at = now() WHERE name = $1",
    )
    .bind(name)
    .bind(position)
    .execute(conn)
    .await
    .map_err(ProjectionError::db("save checkpoint"))?;
    Ok(())
}

/// Applies `events` (position order) to `projector` in one transaction with its checkpoint:
/// events at or before the checkpoint are skipped, the read-model writes and the new
/// checkpoint commit together or not at all. `caught_up_to` is a committed head position the
/// caller has read every event of the projector's category up to (set when the read came
/// back short), so a projector of one category advances past other categories' events.
///
/// Does not wait for a checkpoint another transaction holds: returns [`BatchOutcome::Busy`].
pub async fn apply_batch(
    system: &PgPool,
    projector: &mut dyn Projector,
    events: &[RecordedEvent],
    caught_up_to: Option<i64>,
) -> Result<BatchOutcome, ProjectionError> {
    let result = apply_batch_inner(system, projector, events, caught_up_to).await;
    // Live batches never reuse rows across transactions; a failed one must not either.
    projector.forget();
    result
}

async fn apply_batch_inner(
    system: &PgPool,
    projector: &mut dyn Projector,
    events: &[RecordedEvent],
    caught_up_to: Option<i64>,
) -> Result<BatchOutcome, ProjectionError> {
    let name = checkpoint_name(projector.name());
    let mut tx = system
        .begin()
        .await
        .map_err(ProjectionError::db("begin batch"))?;
    let Some(checkpoint) = lock_checkpoint(&mut tx, &name, false).await? else {
        return Ok(BatchOutcome::Busy);
    };
    let category = projector.category();
    let fresh: Vec<&RecordedEvent> = events
        .iter()
        .filter(|e| e.position > checkpoint && category.is_none_or(|c| e.category() == c))
        .collect();
    projector.set_replay(None);
    projector.apply(&mut tx, &fresh).await?;
    projector.flush(&mut tx).await?;
    let last = events.last().map_or(0, |e| e.position);
    let next = checkpoint.max(last).max(caught_up_to.unwrap_or(0));
    if next != checkpoint {
        save_checkpoint(&mut tx, &name, next).await?;
    }
    tx.commit()
        .await
        .map_err(ProjectionError::db("commit batch"))?;
    Ok(BatchOutcome::Applied {
        applied: fresh.len(),
        checkpoint: next,
    })
}

/// Applies `events` to the projector named `name`: [`apply_batch`] with a fresh projector.
pub async fn apply_events(
    system: &PgPool,
    name: &str,
    events: &[RecordedEvent],
) -> Result<BatchOutcome, ProjectionError> {
    let mut p = projector(name)?;
    apply_batch(system, p.as_mut(), events, None).await
}

/// The checkpoint of a projector (0 when it has none yet).
pub async fn checkpoint(system: &PgPool, name: &str) -> Result<i64, ProjectionError> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT position FROM subscription_checkpoints WHERE name = $1")
            .bind(checkpoint_name(name))
            .fetch_optional(system)
            .await
            .map_err(ProjectionError::db("read checkpoint"))?;
    Ok(found.unwrap_or(0))
}

/// Decodes an event of a projector's category as its typed enum `E` (a current-version
/// payload without copying it). `Ok(None)`, logged, for a type the enum does not have (newer
/// code or another feature: the projectors advance past it) and for a payload that does not
/// match its schema (skipped the same way by live projectors and replays); an error for a
/// schema version newer than this build, so nothing is lost.
pub(crate) fn decode_event<E: EventEnum>(e: &RecordedEvent) -> Result<Option<E>, ProjectionError> {
    match E::decode(e) {
        Ok(event) => Ok(Some(event)),
        Err(DecodeError::UnknownVersion {
            found, supported, ..
        }) if found > supported => Err(ProjectionError::NewerSchema {
            position: e.position,
            event_type: e.event_type.clone(),
            found,
            supported,
        }),
        Err(DecodeError::UnknownType { .. }) => {
            tracing::debug!(
                position = e.position,
                event_type = %e.event_type,
                category = E::CATEGORY,
                "event type unknown to this build; only its position is projected"
            );
            Ok(None)
        }
        Err(error) => {
            tracing::warn!(
                position = e.position,
                event_type = %e.event_type,
                error = ?error,
                "event payload does not match its schema; skipped by the projection"
            );
            Ok(None)
        }
    }
}

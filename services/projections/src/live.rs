//! Live projection: one task per projector, each reading the events after its checkpoint
//! (its category only, when it has one) and applying them batch by batch
//! ([`crate::apply_batch`]). `LISTEN netledger_events` only wakes the tasks early; they poll
//! anyway, so a lost notification or listener costs at most one poll interval. All tasks
//! share one listener connection ([`netledger_store::Notifier`]).

use std::time::Duration;

use netledger_store::{EventReader, Notifier};
use sqlx::PgPool;
use tokio::sync::watch;

use crate::error::ProjectionError;
use crate::projector::{BatchOutcome, PROJECTORS, Projector, apply_batch, checkpoint, projector};

/// Live projection settings.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Events read per batch (one transaction each).
    pub batch: i64,
    /// How long a caught-up projector waits for a notification before reading anyway.
    pub poll_interval: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            batch: 5_000,
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// What one round of a projector found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    /// A full batch was applied: there is probably more.
    More(usize),
    /// Everything up to the head is applied.
    CaughtUp(usize),
    /// Another transaction holds the checkpoint.
    Busy,
}

/// The committed head of the event log.
pub(crate) async fn head(system: &PgPool) -> Result<i64, ProjectionError> {
    Ok(EventReader::system(system.clone(), None)
        .head_position()
        .await?)
}

/// Reads and applies the next batch after `after`, moving `after` to the new checkpoint.
async fn round(
    system: &PgPool,
    p: &mut dyn Projector,
    after: &mut i64,
    batch: i64,
) -> Result<Round, ProjectionError> {
    // The head is read before the events: every event up to it is committed, so a short
    // read proves the projector has seen its whole category up to the head.
    let head = head(system).await?;
    let reader = EventReader::system(system.clone(), None);
    let events = match p.category() {
        Some(c) => reader.read_category(c, *after, batch).await?,
        None => reader.read_all(*after, batch).await?,
    };
    let full = i64::try_from(events.len()).unwrap_or(i64::MAX) >= batch;
    if events.is_empty() && head <= *after {
        return Ok(Round::CaughtUp(0));
    }
    let caught_up_to = (!full).then_some(head);
    match apply_batch(system, p, &events, caught_up_to).await? {
        BatchOutcome::Applied {
            applied,
            checkpoint,
        } => {
            *after = checkpoint;
            Ok(if full {
                Round::More(applied)
            } else {
                Round::CaughtUp(applied)
            })
        }
        BatchOutcome::Busy => Ok(Round::Busy),
    }
}

/// Runs every projector until `shutdown` turns true (or its sender is dropped). Failures of
/// one projector are logged and retried with backoff (100 ms doubling to 10 s); the others
/// go on. Returns once every task has stopped.
#[tracing::instrument(skip_all)]
pub async fn run(
    system: PgPool,
    options: RunOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ProjectionError> {
    let notifier = Notifier::start(system.clone());
    let mut tasks = tokio::task::JoinSet::new();
    for name in PROJECTORS {
        let p = projector(name)?;
        tasks.spawn(run_projector(
            system.clone(),
            p,
            options.clone(),
            notifier.subscribe(),
            shutdown.clone(),
        ));
    }
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            tracing::error!(error = %e, "a projector task panicked");
        }
    }
    drop(notifier);
    Ok(())
}

async fn run_projector(
    system: PgPool,
    mut p: Box<dyn Projector>,
    options: RunOptions,
    mut wake: watch::Receiver<i64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = p.name();
    let mut after: Option<i64> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        if *shutdown.borrow() {
            return;
        }
        wake.borrow_and_update();
        let result = match after {
            Some(ref mut a) => round(&system, p.as_mut(), a, options.batch).await,
            None => match checkpoint(&system, name).await {
                Ok(cp) => {
                    after = Some(cp);
                    continue;
                }
                Err(e) => Err(e),
            },
        };
        let wait = match result {
            Ok(Round::More(n)) => {
                tracing::trace!(projector = name, events = n, "applied a batch");
                backoff = Duration::from_millis(100);
                continue;
            }
            Ok(Round::CaughtUp(n)) => {
                if n > 0 {
                    tracing::trace!(projector = name, events = n, "caught up");
                }
                backoff = Duration::from_millis(100);
                options.poll_interval
            }
            Ok(Round::Busy) => options.poll_interval,
            Err(err) => {
                tracing::warn!(projector = name, error = %err, retry_in = ?backoff, "projection batch failed; retrying");
                // Read the checkpoint again: another process may have moved it.
                after = None;
                let wait = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            }
        };
        tokio::select! {
            _ = wake.changed() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Applies everything up to the current head to the named projector (or all), batch by
/// batch, and returns how many events were applied. Waits (polling) while another
/// transaction holds a checkpoint. For start-up, tools and tests.
pub async fn catch_up(
    system: &PgPool,
    only: Option<&str>,
    batch: i64,
) -> Result<u64, ProjectionError> {
    let mut total = 0u64;
    for mut p in crate::projector::selected(only)? {
        let mut after = checkpoint(system, p.name()).await?;
        loop {
            match round(system, p.as_mut(), &mut after, batch.max(1)).await? {
                Round::More(n) => total += n as u64,
                Round::CaughtUp(n) => {
                    total += n as u64;
                    break;
                }
                Round::Busy => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    Ok(total)
}

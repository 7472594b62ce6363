//! `replay`: rebuilds read models from position 0 with the same fold code as the live
//! projectors.
//!
//! Each projector rebuilds in one transaction of its own (migration
//! `20261122200002_read_model_rebuild.sql`):
//! 1. lock its checkpoint row (a live projector of the same name, in this or another
//!    process, then skips its batches until the rebuild commits);
//! 2. create an empty copy of each of its tables (columns, checks, primary key) in schema
//!    `netledger_rebuild` and put that schema first on the transaction's search path, so the
//!    projector's usual SQL writes there;
//! 3. fold every event from position 0 with its whole working set in memory (no row is read
//!    back), writing changed rows with set-based statements;
//! 4. build the other indexes on the filled copies, one sorted pass each;
//! 5. when every projector got this far: drop the old tables, move the copies into `public`
//!    with the standard row-level security and grants, set the checkpoint, commit.
//!
//! Readers see the old tables until the commit and the new ones after it: there is no moment
//! where the API sees a half-built table, and it waits only for the swap at the very end.
//!
//! One reader feeds every projector: events are read once, in large batches, with the next
//! batch read while the current one is folded, and each projector folds and writes on its
//! own connection (opened for the rebuild, outside the pool) at the same time as the others.
//! A failure before the swap leaves every read model as it was.

use std::sync::Arc;
use std::time::{Duration, Instant};

use netledger_domain::RecordedEvent;
use netledger_store::{EventReader, Subscription};
use serde::Serialize;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot};

use crate::error::ProjectionError;
use crate::live::head;
use crate::projector::{Projector, checkpoint_name, lock_checkpoint, save_checkpoint, selected};

/// Replay tuning.
#[derive(Debug, Clone, Copy)]
pub struct ReplayOptions {
    /// Events read per batch.
    pub batch: i64,
    /// Changed rows a projector may hold back before writing them (a row that changes in
    /// many batches is then written a few times instead of once per batch).
    pub flush_rows: usize,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            batch: 20_000,
            flush_rows: 20_000,
        }
    }
}

/// What a replay did.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    /// Events read from the store.
    pub events: u64,
    /// Wall-clock seconds from start to the last commit.
    pub seconds: f64,
    /// `events / seconds`.
    pub events_per_second: f64,
    /// The checkpoint every rebuilt projector was left at.
    pub checkpoint: i64,
    /// Each projector's share.
    pub per_projector: Vec<ProjectorReplay>,
}

/// One projector's part of a replay.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectorReplay {
    /// Projector name.
    pub projector: String,
    /// Events of its category that it folded.
    pub events: u64,
    /// Seconds it spent creating the empty copies of its tables.
    pub clear_seconds: f64,
    /// Seconds it spent folding and writing (it runs alongside the reader and the others).
    pub busy_seconds: f64,
    /// Seconds it spent building the secondary indexes on the filled copies.
    pub index_seconds: f64,
    /// Seconds from the go-ahead to its commit (swap included).
    pub commit_seconds: f64,
}

enum Msg {
    Batch(Arc<Vec<RecordedEvent>>),
    /// Every event is sent: save this checkpoint, report readiness, then commit or roll back
    /// as told.
    Finish {
        checkpoint: i64,
        ready: oneshot::Sender<Result<(), ProjectionError>>,
        commit: oneshot::Receiver<bool>,
    },
}

/// Rebuilds every read model, or only the projector named `only`, from position 0; see the
/// module docs. `system` must be the `netledger_system` pool (or an owner pool that bypasses
/// row-level security).
#[tracing::instrument(skip_all, fields(only = only.unwrap_or("all")))]
pub async fn replay(system: &PgPool, only: Option<&str>) -> Result<ReplayReport, ProjectionError> {
    replay_with(system, only, ReplayOptions::default()).await
}

/// [`replay`] with explicit tuning.
pub async fn replay_with(
    system: &PgPool,
    only: Option<&str>,
    options: ReplayOptions,
) -> Result<ReplayReport, ProjectionError> {
    let started = Instant::now();
    let projectors = selected(only)?;
    // One category for all of them lets the reader use the category index.
    let categories: Vec<Option<&'static str>> = projectors.iter().map(|p| p.category()).collect();
    let category = match categories.first() {
        Some(Some(c)) if categories.iter().all(|x| *x == Some(*c)) => Some(*c),
        _ => None,
    };
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    for p in projectors {
        let (tx, rx) = mpsc::channel::<Msg>(2);
        senders.push(tx);
        tasks.push(tokio::spawn(replay_one(
            system.clone(),
            p,
            rx,
            options.flush_rows,
        )));
    }

    let target = head(system).await?;
    let reader = EventReader::system(system.clone(), None);
    let mut sub = Subscription::new(reader, 0, options.batch.max(1));
    if let Some(c) = category {
        sub = sub.category(c);
    }
    let mut events = 0u64;
    let read_result: Result<(), ProjectionError> = async {
        while let Some(batch) = sub.try_next_batch().await? {
            events += batch.len() as u64;
            let batch = Arc::new(batch);
            for s in &senders {
                // A closed channel means that projector failed; its error is collected below.
                let _ = s.send(Msg::Batch(batch.clone())).await;
            }
            if sub.position() >= target {
                break;
            }
        }
        Ok(())
    }
    .await;
    let final_checkpoint = sub.position().max(target);
    drop(sub);

    let mut commits = Vec::new();
    let mut ready = Vec::new();
    if read_result.is_ok() {
        for s in &senders {
            let (ready_tx, ready_rx) = oneshot::channel();
            let (commit_tx, commit_rx) = oneshot::channel();
            let _ = s
                .send(Msg::Finish {
                    checkpoint: final_checkpoint,
                    ready: ready_tx,
                    commit: commit_rx,
                })
                .await;
            commits.push(commit_tx);
            ready.push(ready_rx);
        }
    }
    drop(senders);
    let mut all_ready = read_result.is_ok();
    let mut first_error = read_result.err();
    for r in ready {
        match r.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                all_ready = false;
                first_error.get_or_insert(e);
            }
            // The task ended early: its own error is collected below.
            Err(_) => all_ready = false,
        }
    }
    for c in commits {
        let _ = c.send(all_ready);
    }
    let mut per_projector = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(Some(report))) => per_projector.push(report),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(join) => {
                first_error.get_or_insert(ProjectionError::ReplayAborted(format!(
                    "a replay task panicked: {join}"
                )));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if !all_ready {
        return Err(ProjectionError::ReplayAborted(
            "a projector stopped before it was ready; nothing was changed".to_owned(),
        ));
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(ReplayReport {
        events,
        seconds,
        events_per_second: if seconds > 0.0 {
            events as f64 / seconds
        } else {
            0.0
        },
        checkpoint: final_checkpoint,
        per_projector,
    })
}

/// One projector's rebuild transaction. `Ok(None)` when told to roll back because another
/// projector failed.
async fn replay_one(
    system: PgPool,
    mut p: Box<dyn Projector>,
    mut rx: mpsc::Receiver<Msg>,
    flush_rows: usize,
) -> Result<Option<ProjectorReplay>, ProjectionError> {
    let name = checkpoint_name(p.name());
    // A connection of its own rather than one from the pool: a rebuild holds it from start
    // to end, and the reader and the live projectors still need theirs. It is closed after
    // the rebuild, with the statements it prepared against the new tables.
    let mut conn = PgConnection::connect_with(&system.connect_options())
        .await
        .map_err(ProjectionError::db("connect for replay"))?;
    let result = rebuild(&mut conn, &name, p.as_mut(), &mut rx, flush_rows).await;
    p.forget();
    p.set_replay(None);
    conn.close().await.ok();
    result
}

async fn call(
    conn: &mut PgConnection,
    function: &'static str,
    table: &str,
) -> Result<(), ProjectionError> {
    // The function names are constants of this module; the table name is bound.
    sqlx::query(&format!("SELECT {function}($1)"))
        .bind(table)
        .execute(conn)
        .await
        .map_err(ProjectionError::db(function))?;
    Ok(())
}

async fn rebuild(
    conn: &mut PgConnection,
    name: &str,
    p: &mut dyn Projector,
    rx: &mut mpsc::Receiver<Msg>,
    flush_rows: usize,
) -> Result<Option<ProjectorReplay>, ProjectionError> {
    let mut tx = conn
        .begin()
        .await
        .map_err(ProjectionError::db("begin replay"))?;
    lock_checkpoint(&mut tx, name, true).await?;
    let clear_started = Instant::now();
    for table in p.tables() {
        call(&mut tx, "public.netledger_rm_rebuild_begin", table).await?;
    }
    // The projector's usual SQL now reads and writes the fresh copies.
    sqlx::query("SET LOCAL search_path = netledger_rebuild, public")
        .execute(&mut *tx)
        .await
        .map_err(ProjectionError::db("set rebuild search path"))?;
    let clear_seconds = clear_started.elapsed().as_secs_f64();
    p.forget();
    p.set_replay(Some(flush_rows.max(1)));
    let category = p.category();
    let mut busy = Duration::ZERO;
    let mut events = 0u64;
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Batch(batch) => {
                let t = Instant::now();
                let mine: Vec<&RecordedEvent> = batch
                    .iter()
                    .filter(|e| category.is_none_or(|c| e.category() == c))
                    .collect();
                events += mine.len() as u64;
                p.apply(&mut tx, &mine).await?;
                busy += t.elapsed();
            }
            Msg::Finish {
                checkpoint,
                ready,
                commit,
            } => {
                let flush_started = Instant::now();
                let mut index_seconds = 0.0;
                let prepared: Result<(), ProjectionError> = async {
                    p.flush(&mut tx).await?;
                    busy += flush_started.elapsed();
                    let t = Instant::now();
                    for table in p.tables() {
                        call(&mut tx, "public.netledger_rm_rebuild_index", table).await?;
                    }
                    index_seconds = t.elapsed().as_secs_f64();
                    save_checkpoint(&mut tx, name, checkpoint).await
                }
                .await;
                let ok = prepared.is_ok();
                let _ = ready.send(prepared);
                if !ok || !matches!(commit.await, Ok(true)) {
                    return Ok(None);
                }
                // Every projector is ready: swap the new tables in and commit. The old
                // tables are locked only from here to the commit.
                let t = Instant::now();
                for table in p.tables() {
                    call(&mut tx, "public.netledger_rm_rebuild_swap", table).await?;
                }
                tx.commit()
                    .await
                    .map_err(ProjectionError::db("commit replay"))?;
                return Ok(Some(ProjectorReplay {
                    projector: p.name().to_owned(),
                    events,
                    clear_seconds,
                    busy_seconds: busy.as_secs_f64(),
                    index_seconds,
                    commit_seconds: t.elapsed().as_secs_f64(),
                }));
            }
        }
    }
    Err(ProjectionError::ReplayAborted(
        "the reader stopped before every event was read".to_owned(),
    ))
}

/// Every row of the named projector's tables (or all), as text, sorted: for comparing a
/// rebuilt read model with a live one. Reads through `pool` as given (use the system pool to
/// see every tenant).
pub async fn dump(
    pool: &PgPool,
    only: Option<&str>,
) -> Result<std::collections::BTreeMap<String, Vec<String>>, ProjectionError> {
    let mut out = std::collections::BTreeMap::new();
    for p in selected(only)? {
        for table in p.tables() {
            let rows: Vec<String> = sqlx::query_scalar(&format!(
                "SELECT t::text FROM {table} t ORDER BY t::text COLLATE \"C\""
            ))
            .fetch_all(pool)
            .await
            .map_err(ProjectionError::db("dump read model"))?;
            out.insert((*table).to_owned(), rows);
        }
    }
    Ok(out)
}

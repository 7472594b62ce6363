//! [`Worker`]: claims runnable workflows across tenants under a fenced lease, heartbeats the
//! leases of the workflows it runs, and drives each one (replay, steps, suspension, finish).
//!
//! Database roles: claims, heartbeats and releases go through the system pool
//! (`netledger_system`, which may change only the lease columns of task rows); journal
//! appends, finishing a task and releasing its devices go through the app pool
//! (`netledger_app`) with the workflow's tenant set, under row-level security.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, TryStreamExt};
use netledger_domain::workflow::{FailureClass, WorkflowFinished, WorkflowStepFailed};
use netledger_domain::{DeviceId, EventId, RecordedEvent, TenantId, WorkflowId};
use netledger_store::read::decode_row;
use serde_json::Value;
use sqlx::postgres::PgListener;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::{AbortHandle, JoinSet};
use uuid::Uuid;

use crate::ctx::Ctx;
use crate::definition::Finish;
use crate::engine::{Engine, NOTIFY_CHANNEL};
use crate::error::EngineError;
use crate::journal::{Decision, Journal, Replay, signals};
use crate::journaler::{Halt, Journaler, RunIo, RunState, TakeOverError, event_columns, take_over};
use crate::lease::LeaseWatch;
pub use crate::shared::WorkerOptions;
use crate::shared::{FinishRequest, Shared};

/// What a worker did, returned when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Claims made.
    pub claimed: u64,
    /// Workflows it finished.
    pub finished: u64,
    /// Runs that suspended (timer, signal wait, pause, long backoff, shutdown).
    pub suspended: u64,
    /// Runs stopped because another worker took the workflow over, or because their local
    /// lease deadline passed without a successful heartbeat (see [`crate::lease`]).
    pub fenced: u64,
    /// Runs stopped by a database error (retried later).
    pub failed_runs: u64,
    /// Step attempts that completed live (not replayed).
    pub steps: u64,
}

/// Longest a busy worker leaves a few free slots unclaimed, waiting for more to free up so
/// that one claim fills several (see `Worker::run`).
const CLAIM_LINGER: Duration = Duration::from_millis(20);

/// Runs workflows: see the module docs.
pub struct Worker {
    shared: Arc<Shared>,
    finishes: mpsc::Receiver<FinishRequest>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("options", &self.shared.options)
            .finish()
    }
}

/// A claimed task.
#[derive(Debug, Clone)]
struct Claimed {
    workflow: WorkflowId,
    tenant: TenantId,
    kind: String,
    version: u32,
    attempt: u64,
    wake_seq: i64,
    parent: Option<WorkflowId>,
    previous_owner: Option<String>,
    /// The lease expiry this claim wrote (computed before the claim was sent).
    lease_expires: OffsetDateTime,
}

/// How a drive ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Finished,
    Suspended,
    Fenced,
    Failed,
}

struct InFlight {
    attempt: u64,
    poke: Arc<Notify>,
    abort: AbortHandle,
    /// The run's local lease deadline: moved on by every successful heartbeat.
    deadline: watch::Sender<OffsetDateTime>,
}

type InFlightMap = Arc<Mutex<HashMap<WorkflowId, InFlight>>>;

fn lock_map(map: &InFlightMap) -> std::sync::MutexGuard<'_, HashMap<WorkflowId, InFlight>> {
    map.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// The journals of several workflows in one query (system pool), by stream name.
async fn read_journals(
    system: &PgPool,
    tasks: &[Claimed],
) -> Result<HashMap<String, Vec<RecordedEvent>>, EngineError> {
    let tenants: Vec<Uuid> = tasks.iter().map(|t| *t.tenant.as_uuid()).collect();
    let streams: Vec<String> = tasks
        .iter()
        .map(|t| t.workflow.stream().as_str().to_owned())
        .collect();
    let sql = format!(
        "SELECT {} FROM unnest($1::uuid[], $2::text[]) AS k(tenant_id, stream) \
         JOIN events e ON e.tenant_id = k.tenant_id AND e.stream = k.stream \
         ORDER BY e.tenant_id, e.stream, e.version",
        event_columns()
    );
    let mut rows = sqlx::query(&sql)
        .bind(&tenants)
        .bind(&streams)
        .fetch(system);
    let mut out: HashMap<String, Vec<RecordedEvent>> = HashMap::with_capacity(tasks.len());
    while let Some(row) = rows
        .try_next()
        .await
        .map_err(EngineError::db("read journals"))?
    {
        let event = decode_row(&row).map_err(EngineError::store("decode journal"))?;
        out.entry(event.stream.as_str().to_owned())
            .or_default()
            .push(event);
    }
    Ok(out)
}

impl Worker {
    /// A worker running the definitions of `engine`'s registry, claiming through
    /// `system_pool` (role `netledger_system`).
    pub fn new(
        engine: Engine,
        system_pool: PgPool,
        options: WorkerOptions,
    ) -> Result<Self, EngineError> {
        if options.concurrency == 0 {
            return Err(EngineError::Invalid(
                "worker concurrency must be at least 1".to_owned(),
            ));
        }
        if options.heartbeat >= options.lease {
            return Err(EngineError::Invalid(format!(
                "the heartbeat interval ({:?}) must be shorter than the lease ({:?})",
                options.heartbeat, options.lease
            )));
        }
        if options.name.is_empty() {
            return Err(EngineError::Invalid("a worker needs a name".to_owned()));
        }
        let (stop, _) = watch::channel(false);
        let (finisher, finishes) = mpsc::channel(options.concurrency.max(16));
        Ok(Self {
            shared: Arc::new(Shared {
                engine,
                system: system_pool,
                options,
                stop,
                steps: AtomicU64::new(0),
                finisher,
            }),
            finishes,
        })
    }

    /// Runs until `shutdown` resolves, then lets in-flight workflows reach their next step
    /// boundary (up to `shutdown_grace`) and returns what it did. Errors only if it cannot
    /// listen for notifications at start.
    #[tracing::instrument(skip_all, fields(worker = %self.shared.options.name))]
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<WorkerReport, EngineError> {
        let shared = self.shared;
        let options = shared.options.clone();
        let mut listener = PgListener::connect_with(&shared.system)
            .await
            .map_err(EngineError::db("connect the notification listener"))?;
        listener
            .listen(NOTIFY_CHANNEL)
            .await
            .map_err(EngineError::db("listen for workflow notifications"))?;
        let in_flight: InFlightMap = Arc::new(Mutex::new(HashMap::new()));
        let wake = Arc::new(Notify::new());
        // Dropping `run` (an aborted worker) stops these too, like a crash would.
        let _listen_task = AbortOnDrop(tokio::spawn(listen(
            listener,
            in_flight.clone(),
            wake.clone(),
            options.poll,
        )));
        let _heartbeat_task =
            AbortOnDrop(tokio::spawn(heartbeat(shared.clone(), in_flight.clone())));
        let _finisher_task = AbortOnDrop(tokio::spawn(finisher(shared.clone(), self.finishes)));

        let mut report = WorkerReport::default();
        let mut drivers: JoinSet<(WorkflowId, Ended)> = JoinSet::new();
        let mut last_claim = tokio::time::Instant::now();
        tokio::pin!(shutdown);
        loop {
            while let Some(done) = drivers.try_join_next_with_id() {
                reap(done, &in_flight, &mut report);
            }
            let free = options.concurrency.saturating_sub(drivers.len());
            let mut more = false;
            // While busy, claim in batches: a claim and the journal read after it, per
            // finished workflow, cost PostgreSQL (and the WAL) more than one for several; a
            // few free slots wait up to CLAIM_LINGER for more to free up.
            let claim_now = free >= (options.concurrency / 8).max(1)
                || drivers.is_empty()
                || last_claim.elapsed() >= CLAIM_LINGER;
            if free > 0 && claim_now {
                last_claim = tokio::time::Instant::now();
                match claim(&shared, free).await {
                    Ok(tasks) => {
                        more = tasks.len() == free;
                        report.claimed += tasks.len() as u64;
                        spawn_drivers(&shared, tasks, &mut drivers, &in_flight).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming workflows failed; retrying");
                    }
                }
            }
            if more {
                continue;
            }
            let nap = if free > 0 && !claim_now {
                CLAIM_LINGER.saturating_sub(last_claim.elapsed())
            } else if drivers.len() < options.concurrency {
                next_due(&shared).await.unwrap_or(options.poll)
            } else {
                options.poll
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = wake.notified() => {}
                Some(done) = drivers.join_next_with_id(), if !drivers.is_empty() => {
                    reap(done, &in_flight, &mut report);
                }
                _ = tokio::time::sleep(nap) => {}
            }
        }

        // Shutdown: stop claiming; runs suspend at their next step boundary.
        shared.stop.send_replace(true);
        let grace = tokio::time::sleep(options.shutdown_grace);
        tokio::pin!(grace);
        while !drivers.is_empty() {
            tokio::select! {
                Some(done) = drivers.join_next_with_id() => reap(done, &in_flight, &mut report),
                _ = &mut grace => break,
            }
        }
        if !drivers.is_empty() {
            tracing::warn!(
                abandoned = drivers.len(),
                "shutdown grace over; abandoning in-flight workflows to lease expiry"
            );
            drivers.abort_all();
            while let Some(done) = drivers.join_next_with_id().await {
                reap(done, &in_flight, &mut report);
            }
        }
        report.steps = shared.steps.load(Ordering::Relaxed);
        Ok(report)
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Records how a run ended and forgets it, unless the same workflow was claimed again by
/// this worker in the meantime (then the entry belongs to the new run).
fn reap(
    done: Result<(tokio::task::Id, (WorkflowId, Ended)), tokio::task::JoinError>,
    in_flight: &InFlightMap,
    report: &mut WorkerReport,
) {
    match done {
        Ok((task_id, (workflow, ended))) => {
            let mut map = lock_map(in_flight);
            if map.get(&workflow).is_some_and(|f| f.abort.id() == task_id) {
                map.remove(&workflow);
            }
            drop(map);
            match ended {
                Ended::Finished => report.finished += 1,
                Ended::Suspended => report.suspended += 1,
                Ended::Fenced => report.fenced += 1,
                Ended::Failed => report.failed_runs += 1,
            }
        }
        Err(e) => {
            // Aborted (lease lost, shutdown) or panicked: find it by its task id.
            let id = e.id();
            let mut map = lock_map(in_flight);
            let key = map
                .iter()
                .find(|(_, f)| f.abort.id() == id)
                .map(|(k, _)| *k);
            if let Some(key) = key {
                map.remove(&key);
            }
            if e.is_panic() {
                tracing::error!(error = %e, "a workflow run panicked");
                report.failed_runs += 1;
            } else {
                report.fenced += 1;
            }
        }
    }
}

async fn spawn_drivers(
    shared: &Arc<Shared>,
    tasks: Vec<Claimed>,
    drivers: &mut JoinSet<(WorkflowId, Ended)>,
    in_flight: &InFlightMap,
) {
    if tasks.is_empty() {
        return;
    }
    let mut journals = match read_journals(&shared.system, &tasks).await {
        Ok(j) => j,
        Err(e) => {
            tracing::warn!(error = %e, "reading claimed journals failed; releasing the claims");
            for task in &tasks {
                release(
                    shared,
                    task,
                    Some(shared.later(shared.options.failure_backoff)),
                )
                .await;
            }
            return;
        }
    };
    for task in tasks {
        let events = journals
            .remove(task.workflow.stream().as_str())
            .unwrap_or_default();
        let poke = Arc::new(Notify::new());
        let workflow = task.workflow;
        let attempt = task.attempt;
        let (deadline, watch) = watch::channel(shared.lease_deadline(task.lease_expires));
        let lease = LeaseWatch {
            clock: shared.engine.clock().clone(),
            deadline: watch,
            recheck: shared
                .options
                .poll
                .min(shared.options.heartbeat)
                .max(Duration::from_millis(10)),
        };
        let abort = drivers.spawn(drive(shared.clone(), task, events, poke.clone(), lease));
        lock_map(in_flight).insert(
            workflow,
            InFlight {
                attempt,
                poke,
                abort,
                deadline,
            },
        );
    }
}

/// Claims up to `n` runnable tasks: `FOR UPDATE SKIP LOCKED`, a new lease and the next
/// attempt number. A task whose previous lease expired comes back with `previous_owner`.
async fn claim(shared: &Shared, n: usize) -> Result<Vec<Claimed>, EngineError> {
    let now = shared.now();
    let expires = shared.later(shared.options.lease);
    let keys: Vec<String> = shared
        .engine
        .registry()
        .keys()
        .map(|(k, v)| format!("{k}@{v}"))
        .collect();
    let rows = sqlx::query(
        "WITH c AS ( \
             SELECT workflow_id, lease_owner FROM workflow_tasks \
              WHERE state = 'runnable' AND runnable_at <= $1 \
                AND ($3 OR (kind || '@' || definition_version) = ANY ($4)) \
              ORDER BY runnable_at \
              LIMIT $2 \
              FOR UPDATE SKIP LOCKED) \
         UPDATE workflow_tasks t \
            SET lease_owner = $5, lease_expires_at = $6, runnable_at = $6, \
                attempt = t.attempt + 1 \
           FROM c WHERE t.workflow_id = c.workflow_id \
         RETURNING t.workflow_id, t.tenant_id, t.kind, t.definition_version, t.attempt, \
                   t.wake_seq, t.parent_id, c.lease_owner AS previous_owner",
    )
    .bind(now)
    .bind(i64::try_from(n).unwrap_or(i64::MAX))
    .bind(shared.options.fail_unknown_definitions)
    .bind(&keys)
    .bind(&shared.options.name)
    .bind(expires)
    .fetch_all(&shared.system)
    .await
    .map_err(EngineError::db("claim workflows"))?;
    let get = |e| EngineError::Database {
        operation: "decode claimed task",
        source: e,
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let version: i32 = row.try_get("definition_version").map_err(get)?;
        let attempt: i64 = row.try_get("attempt").map_err(get)?;
        let parent: Option<Uuid> = row.try_get("parent_id").map_err(get)?;
        out.push(Claimed {
            workflow: WorkflowId::from_uuid(row.try_get("workflow_id").map_err(get)?),
            tenant: TenantId::from_uuid(row.try_get("tenant_id").map_err(get)?),
            kind: row.try_get("kind").map_err(get)?,
            version: u32::try_from(version).unwrap_or(0),
            attempt: u64::try_from(attempt).unwrap_or(0),
            wake_seq: row.try_get("wake_seq").map_err(get)?,
            parent: parent.map(WorkflowId::from_uuid),
            previous_owner: row.try_get("previous_owner").map_err(get)?,
            lease_expires: expires,
        });
    }
    Ok(out)
}

/// How long until the next task becomes runnable (a timer, a backoff, a lease expiry).
async fn next_due(shared: &Shared) -> Option<Duration> {
    let now = shared.now();
    let row = sqlx::query(
        "SELECT min(runnable_at) AS next FROM workflow_tasks \
         WHERE state = 'runnable' AND runnable_at > $1",
    )
    .bind(now)
    .fetch_one(&shared.system)
    .await
    .ok()?;
    let next: Option<OffsetDateTime> = row.try_get("next").ok()?;
    let wait = Duration::try_from(next? - now).ok()?;
    Some(wait.min(shared.options.poll))
}

/// Releases a lease (conditional on the attempt): runnable at `until` (`None`: on a signal),
/// or at once if a signal arrived since the claim.
async fn release(shared: &Shared, task: &Claimed, until: Option<OffsetDateTime>) {
    let now = shared.now();
    let result = sqlx::query(
        "UPDATE workflow_tasks \
            SET lease_owner = NULL, lease_expires_at = NULL, \
                runnable_at = CASE WHEN wake_seq <> $3 THEN $4 ELSE $5 END \
          WHERE workflow_id = $1 AND attempt = $2 AND state = 'runnable'",
    )
    .bind(task.workflow.as_uuid())
    .bind(i64::try_from(task.attempt).unwrap_or(i64::MAX))
    .bind(task.wake_seq)
    .bind(now)
    .bind(until)
    .execute(&shared.system)
    .await;
    if let Err(e) = result {
        tracing::warn!(workflow = %task.workflow, error = %e, "releasing a lease failed; it will expire");
    } else if until.is_some_and(|u| u <= now) {
        let _ = sqlx::query("SELECT pg_notify($1, '')")
            .bind(NOTIFY_CHANNEL)
            .execute(&shared.system)
            .await;
    }
}

/// Finishes task rows in batches: whatever requests are waiting go in one call (one
/// commit), sorted by tenant so concurrent batches take the device advisory locks in order.
async fn finisher(shared: Arc<Shared>, mut requests: mpsc::Receiver<FinishRequest>) {
    while let Some(first) = requests.recv().await {
        let mut batch = vec![first];
        while batch.len() < 1000 {
            match requests.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        batch.sort_by_key(|r| (*r.tenant.as_uuid(), *r.workflow.as_uuid()));
        let tenants: Vec<Uuid> = batch.iter().map(|r| *r.tenant.as_uuid()).collect();
        let workflows: Vec<Uuid> = batch.iter().map(|r| *r.workflow.as_uuid()).collect();
        let attempts: Vec<i64> = batch
            .iter()
            .map(|r| i64::try_from(r.attempt).unwrap_or(i64::MAX))
            .collect();
        let outcomes: Vec<&str> = batch.iter().map(|r| r.outcome.as_str()).collect();
        let result = sqlx::query(
            "SELECT workflow_id, done FROM netledger_workflow_finish_many($1, $2, $3, $4, $5)",
        )
        .bind(&tenants)
        .bind(&workflows)
        .bind(&attempts)
        .bind(&outcomes)
        .bind(shared.now())
        .fetch_all(shared.engine.app_pool())
        .await;
        match result {
            Ok(rows) => {
                let done: HashMap<Uuid, bool> = rows
                    .iter()
                    .filter_map(|r| Some((r.try_get("workflow_id").ok()?, r.try_get("done").ok()?)))
                    .collect();
                for r in batch {
                    let d = done.get(r.workflow.as_uuid()).copied().unwrap_or(false);
                    let _ = r.reply.send(Ok(d));
                }
            }
            Err(e) => {
                let e = e.to_string();
                for r in batch {
                    let _ = r.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Forwards notifications: new work wakes the claim loop; a signal for an in-flight
/// workflow pokes its run.
async fn listen(
    mut listener: PgListener,
    in_flight: InFlightMap,
    wake: Arc<Notify>,
    poll: Duration,
) {
    loop {
        match listener.recv().await {
            Ok(n) => {
                let poke = n.payload().parse::<Uuid>().ok().and_then(|id| {
                    lock_map(&in_flight)
                        .get(&WorkflowId::from_uuid(id))
                        .map(|f| f.poke.clone())
                });
                match poke {
                    Some(p) => p.notify_one(),
                    None => wake.notify_one(),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "workflow notification listener failed; polling until it reconnects");
                tokio::time::sleep(poll).await;
            }
        }
    }
}

/// Renews the leases of in-flight workflows; a run whose lease is gone (another worker took
/// it over) is aborted.
async fn heartbeat(shared: Arc<Shared>, in_flight: InFlightMap) {
    let mut tick = tokio::time::interval(shared.options.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let (ids, attempts): (Vec<Uuid>, Vec<i64>) = lock_map(&in_flight)
            .iter()
            .map(|(id, f)| (*id.as_uuid(), i64::try_from(f.attempt).unwrap_or(i64::MAX)))
            .unzip();
        if ids.is_empty() {
            continue;
        }
        let expires = shared.later(shared.options.lease);
        let renewed = sqlx::query(
            "UPDATE workflow_tasks t SET lease_expires_at = $1, runnable_at = $1 \
               FROM unnest($2::uuid[], $3::bigint[]) AS h(id, attempt) \
              WHERE t.workflow_id = h.id AND t.attempt = h.attempt AND t.lease_owner = $4 \
                AND t.state = 'runnable' \
             RETURNING t.workflow_id",
        )
        .bind(expires)
        .bind(&ids)
        .bind(&attempts)
        .bind(&shared.options.name)
        .fetch_all(&shared.system)
        .await;
        let renewed: Vec<Uuid> = match renewed {
            Ok(rows) => rows
                .iter()
                .filter_map(|r| r.try_get::<Uuid, _>("workflow_id").ok())
                .collect(),
            Err(e) => {
                // The runs stop on their own once their local lease deadline passes.
                tracing::warn!(error = %e, "heartbeat failed; runs stop at their local lease deadline unless a later heartbeat succeeds");
                continue;
            }
        };
        let deadline = shared.lease_deadline(expires);
        let map = lock_map(&in_flight);
        for (id, attempt) in ids.into_iter().zip(attempts) {
            if renewed.contains(&id)
                && let Some(f) = map.get(&WorkflowId::from_uuid(id))
                && i64::try_from(f.attempt).ok() == Some(attempt)
            {
                // Renewed: the run may act until the new lease's local deadline.
                f.deadline.send_if_modified(|d| {
                    let later = deadline > *d;
                    if later {
                        *d = deadline;
                    }
                    later
                });
            } else if !renewed.contains(&id)
                && let Some(f) = map.get(&WorkflowId::from_uuid(id))
                && i64::try_from(f.attempt).ok() == Some(attempt)
            {
                // Finished or released between the snapshot and the update, or taken over.
                // Aborting a run that already ended is harmless.
                tracing::info!(workflow = %id, "lease lost; stopping the run");
                f.abort.abort();
            }
        }
    }
}

/// Drives one claimed workflow until it finishes, suspends or is fenced, or until its local
/// lease deadline passes (see [`crate::lease`]): then the run is dropped where it is, its
/// step body included (no further device command is sent), as if the worker had crashed, and
/// the workflow is left to whoever claims it once the lease has expired.
async fn drive(
    shared: Arc<Shared>,
    task: Claimed,
    events: Vec<RecordedEvent>,
    poke: Arc<Notify>,
    lease: LeaseWatch,
) -> (WorkflowId, Ended) {
    let workflow = task.workflow;
    let ended = tokio::select! {
        biased;
        () = lease.clone().lapse() => {
            tracing::warn!(
                workflow = %workflow,
                deadline = %lease.deadline(),
                "local lease deadline passed without a successful heartbeat; stopping the run \
                 (and its device side effects) and leaving the workflow to the next claim"
            );
            Ended::Fenced
        }
        ended = drive_inner(&shared, &task, events, poke, lease.clone()) => ended,
    };
    (workflow, ended)
}

async fn drive_inner(
    shared: &Arc<Shared>,
    task: &Claimed,
    events: Vec<RecordedEvent>,
    poke: Arc<Notify>,
    lease: LeaseWatch,
) -> Ended {
    let mut journal = match Journal::from_events(&events) {
        Ok(j) => j,
        Err(detail) => {
            tracing::error!(workflow = %task.workflow, %detail, "unreadable workflow journal; retrying later");
            release(
                shared,
                task,
                Some(shared.later(shared.options.failure_backoff)),
            )
            .await;
            return Ended::Failed;
        }
    };
    let io = Arc::new(RunIo {
        store: shared.engine.store().clone(),
        system: shared.system.clone(),
        actor: shared.actor(),
        workflow: task.workflow,
        tenant: task.tenant,
        stream: task.workflow.stream(),
        attempt: task.attempt,
    });
    // A takeover is fenced before anything else is written; a finished journal takes no
    // more events (what is left, the task row and the parent's signal, is conditional on
    // the attempt or idempotent).
    if let Some(previous) = &task.previous_owner {
        match take_over(&io, &mut journal, &shared.options.name, previous).await {
            Ok(()) => {}
            Err(TakeOverError::Fenced) => return Ended::Fenced,
            Err(TakeOverError::Failed(detail)) => {
                tracing::warn!(workflow = %task.workflow, %detail, "taking the workflow over failed; retrying later");
                release(
                    shared,
                    task,
                    Some(shared.later(shared.options.failure_backoff)),
                )
                .await;
                return Ended::Failed;
            }
            Err(TakeOverError::Broken(detail)) => {
                tracing::error!(workflow = %task.workflow, %detail, "taking the workflow over failed");
                return Ended::Failed;
            }
        }
    }
    let devices = journal.started.devices.clone();
    if let Some(finished) = journal.finished().cloned() {
        return complete(shared, task, &devices, &finished).await;
    }
    let Some(definition) = shared
        .engine
        .registry()
        .get(&task.kind, task.version)
        .cloned()
    else {
        if shared.options.fail_unknown_definitions {
            let reason = format!(
                "definition {} v{} not available; this worker has {}",
                task.kind,
                task.version,
                shared.engine.registry().describe()
            );
            tracing::error!(workflow = %task.workflow, %reason, "failing workflow");
            return finish_with(
                shared,
                task,
                &io,
                journal,
                Finish::failed(&reason, Value::Null),
            )
            .await;
        }
        release(shared, task, Some(shared.now())).await;
        return Ended::Suspended;
    };

    let mut retained = HashMap::new();
    loop {
        let state = Arc::new(Mutex::new(RunState {
            replay: Replay::new(journal.clone()),
            buffer: Vec::new(),
            retained: std::mem::take(&mut retained),
            halt: None,
        }));
        let j = Journaler {
            io: io.clone(),
            state,
        };
        let halted = Arc::new(Notify::new());
        // A panic in the definition or a step fails the workflow (a run that panicked would
        // panic again on every takeover).
        let run = AssertUnwindSafe(definition.call(Ctx::new(
            j.clone(),
            shared.clone(),
            poke.clone(),
            halted.clone(),
            lease.clone(),
        )))
        .catch_unwind();
        let returned = tokio::select! {
            biased;
            _ = halted.notified() => None,
            r = run => Some(r),
        };
        let halt = match returned {
            Some(Err(panic)) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".to_owned());
                Halt::Diverged(format!(
                    "{} v{} panicked: {message}",
                    task.kind, task.version
                ))
            }
            Some(Ok(result)) => {
                let finish = match result {
                    Ok(f) => f,
                    Err(e) => Finish::from_error(&e),
                };
                let remaining = j.lock().replay.remaining();
                if remaining > 0 {
                    Halt::Diverged(format!(
                        "replay of {} v{} diverged: the definition returned while the journal \
                         has {remaining} more decisions; a change to the order of steps must \
                         be a new version (see docs/workflows.md)",
                        task.kind, task.version
                    ))
                } else {
                    shared.crash(task.workflow, &task.kind, &devices, "workflow", "finishing");
                    match write_finish(&j, &finish).await {
                        Ok(()) => {
                            shared.crash(
                                task.workflow,
                                &task.kind,
                                &devices,
                                "workflow",
                                "finished",
                            );
                            return complete(shared, task, &devices, &finished_event(&finish))
                                .await;
                        }
                        Err(halt) => halt,
                    }
                }
            }
            None => j.lock().halt.take().unwrap_or(Halt::Rerun),
        };
        match halt {
            Halt::Rerun => {
                let st = j.lock();
                journal = st.replay.journal.clone();
                retained = st.retained.clone();
            }
            Halt::Suspend(until) => {
                release(shared, task, until).await;
                return Ended::Suspended;
            }
            Halt::Fenced(why) => {
                tracing::info!(workflow = %task.workflow, %why, "fenced; stopping the run");
                return Ended::Fenced;
            }
            Halt::Failed(e) => {
                tracing::warn!(workflow = %task.workflow, error = %e, "run failed; retrying later");
                release(
                    shared,
                    task,
                    Some(shared.later(shared.options.failure_backoff)),
                )
                .await;
                return Ended::Failed;
            }
            Halt::Diverged(reason) => {
                tracing::error!(workflow = %task.workflow, %reason, "failing workflow");
                let journal = j.lock().replay.journal.clone();
                return finish_with(
                    shared,
                    task,
                    &io,
                    journal,
                    Finish::failed(&reason, Value::Null),
                )
                .await;
            }
        }
    }
}

fn finished_event(finish: &Finish) -> WorkflowFinished {
    WorkflowFinished {
        outcome: finish.outcome,
        reason: finish.reason.clone(),
        output: finish.output.clone(),
    }
}

async fn write_finish(j: &Journaler, finish: &Finish) -> Result<(), Halt> {
    j.flush(Some(Decision::Finished(finished_event(finish))))
        .await
}

/// Journals `finish` outside a run of the definition (unknown definition, divergence) and
/// completes the task.
async fn finish_with(
    shared: &Arc<Shared>,
    task: &Claimed,
    io: &Arc<RunIo>,
    mut journal: Journal,
    finish: Finish,
) -> Ended {
    for _ in 0..100 {
        // A step left open (its attempt panicked, or was interrupted before a divergence was
        // found) gets its outcome before the finish.
        let open = match journal.decisions.last().map(|e| &e.decision) {
            Some(Decision::Started(s)) => vec![Decision::Failed(WorkflowStepFailed {
                step: s.step.clone(),
                attempt: s.attempt,
                error: finish.reason.clone().unwrap_or_default(),
                class: FailureClass::Fatal,
                retry_at: None,
            })],
            _ => Vec::new(),
        };
        let j = Journaler {
            io: io.clone(),
            state: Arc::new(Mutex::new(RunState {
                replay: Replay::new(journal.clone()),
                buffer: open,
                retained: HashMap::new(),
                halt: None,
            })),
        };
        match write_finish(&j, &finish).await {
            Ok(()) => {
                let devices = journal.started.devices.clone();
                return complete(shared, task, &devices, &finished_event(&finish)).await;
            }
            Err(Halt::Rerun) => journal = j.lock().replay.journal.clone(),
            Err(Halt::Fenced(_)) => return Ended::Fenced,
            Err(_) => {
                release(
                    shared,
                    task,
                    Some(shared.later(shared.options.failure_backoff)),
                )
                .await;
                return Ended::Failed;
            }
        }
    }
    Ended::Failed
}

/// The journal says the workflow finished: tell its parent, then finish the task row and
/// release its devices (conditional on this claim's attempt).
async fn complete(
    shared: &Arc<Shared>,
    task: &Claimed,
    devices: &[DeviceId],
    finished: &WorkflowFinished,
) -> Ended {
    if let Some(parent) = task.parent {
        // A fixed event id per child: a repeated delivery (after a crash) is refused by the
        // store as a duplicate, so the parent gets the signal once.
        let mut bytes = *task.workflow.as_uuid().as_bytes();
        for b in &mut bytes {
            *b ^= 0xA5;
        }
        let id = EventId::from_uuid(uuid::Builder::from_custom_bytes(bytes).into_uuid());
        let payload = serde_json::json!({
            "workflow_id": task.workflow,
            "outcome": finished.outcome,
            "reason": finished.reason,
            "output": finished.output,
        });
        let delivered = shared
            .engine
            .append_signal(
                task.tenant,
                parent,
                signals::CHILD_FINISHED,
                payload,
                shared.actor(),
                Some(id),
            )
            .await;
        if let Err(e) = delivered {
            tracing::warn!(workflow = %task.workflow, %parent, error = %e, "notifying the parent failed; retrying later");
            release(
                shared,
                task,
                Some(shared.later(shared.options.failure_backoff)),
            )
            .await;
            return Ended::Failed;
        }
        shared.crash(
            task.workflow,
            &task.kind,
            devices,
            "workflow",
            "parent_notified",
        );
    }
    let outcome = serde_json::to_value(finished.outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "failed".to_owned());
    let (reply, answer) = oneshot::channel();
    let request = FinishRequest {
        tenant: task.tenant,
        workflow: task.workflow,
        attempt: task.attempt,
        outcome,
        reply,
    };
    let done = match shared.finisher.send(request).await {
        Ok(()) => answer
            .await
            .unwrap_or_else(|_| Err("the finisher stopped".to_owned())),
        Err(_) => Err("the finisher stopped".to_owned()),
    };
    match done {
        Ok(true) => Ended::Finished,
        Ok(false) => Ended::Fenced,
        Err(e) => {
            tracing::warn!(workflow = %task.workflow, error = %e, "finishing the task row failed; retrying later");
            release(
                shared,
                task,
                Some(shared.later(shared.options.failure_backoff)),
            )
            .await;
            Ended::Failed
        }
    }
}

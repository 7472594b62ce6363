//! The engine's no-op figure of `netledger bench workflows`: journaled no-op steps per
//! second with 1 and 4 workers (`examples/bench_engine.rs` runs it alone).
//!
//! Each run creates a scratch database with the real migrations and roles, starts a backlog
//! of `noop` workflows (N no-op steps each) through [`Engine::start`], then runs the workers
//! (tasks in this process, each with its own pools, event store appender and listener) and
//! counts the `WorkflowStepCompleted` events committed in the measured window, after a
//! warm-up. Everything goes through the public engine API; nothing is skipped: every step
//! journals its start and its outcome.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use netledger_domain::clock::Clock;
use netledger_domain::{Actor, TenantId};
use netledger_store::{EventStore, Pools, StoreOptions};
use serde::Serialize;
use sqlx::{Connection, PgConnection, Row};

use netledger_engine::{
    Definition, Engine, Finish, Registry, StartOptions, Worker, WorkerOptions, WorkflowCard,
};
use netledger_testkit::ScratchDb;

/// The bench's workflow kind.
pub const NOOP_KIND: &str = Noop::KIND;

/// The bench's card: input `{"steps": n}`, output `{"sum": ..}`.
#[derive(Debug, Clone, Copy)]
pub struct Noop;

/// Input of [`Noop`].
#[derive(Debug, Clone, serde::Deserialize, Serialize)]
pub struct NoopInput {
    /// Steps to run.
    pub steps: u32,
}

impl WorkflowCard for Noop {
    const KIND: &'static str = "noop";
    const VERSION: u32 = 1;
    type Input = NoopInput;
    type Output = serde_json::Value;
    fn devices(_: &NoopInput) -> Vec<netledger_domain::DeviceId> {
        Vec::new()
    }
}

/// The no-op definition: n steps that do nothing and return their index.
pub fn noop_definition() -> Definition {
    Definition::of(Noop, |mut ctx, input: NoopInput| async move {
        let mut sum = 0u64;
        for i in 0..input.steps {
            let n: u64 = ctx
                .step(&format!("noop-{i}"), || async move { Ok(u64::from(i)) })
                .await?;
            sum += n;
        }
        Ok(Finish::succeeded(serde_json::json!({ "sum": sum })))
    })
}

/// Options of [`bench_noop_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoopOptions {
    /// Worker count (tasks in this process, each with its own pools).
    pub workers: usize,
    /// Workflows in flight per worker.
    pub concurrency: usize,
    /// Steps per workflow.
    pub steps_per_workflow: u32,
    /// Measured seconds (after one second of warm-up).
    pub seconds: u64,
    /// Connections per pool of each worker.
    pub connections: u32,
}

impl NoopOptions {
    /// Defaults for `workers` workers measured for `seconds`.
    pub fn new(workers: usize, seconds: u64) -> Self {
        Self {
            workers,
            concurrency: 128,
            steps_per_workflow: 10,
            seconds,
            connections: 4,
        }
    }
}

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct NoopReport {
    /// Workers.
    pub workers: usize,
    /// Workflows in flight per worker.
    pub concurrency: usize,
    /// Steps per workflow.
    pub steps_per_workflow: u32,
    /// Length of the measured window, s.
    pub seconds: f64,
    /// Journaled step completions in the window.
    pub steps: u64,
    /// Journaled no-op steps per second (each: a start and an outcome event).
    pub steps_per_s: f64,
    /// Workflows finished per second in the window.
    pub workflows_per_s: f64,
    /// Journal events committed per second in the window (all workflow events).
    pub events_per_s: f64,
    /// Rate of the backlog's starts (`Engine::start`, 16 concurrent callers), before the
    /// workers ran.
    pub starts_per_s: f64,
    /// Whether the backlog ran out before the window ended (the figure is then a floor).
    pub backlog_exhausted: bool,
    /// CPU time of this process per 1,000 steps in the window, ms (Linux `/proc`; `None`
    /// elsewhere).
    pub bench_cpu_ms_per_1000_steps: Option<f64>,
    /// CPU time of the PostgreSQL processes serving the scratch database (and the server's
    /// background processes) per 1,000 steps in the window, ms; `None` when the server's
    /// processes cannot be read (another host, another user).
    pub postgres_cpu_ms_per_1000_steps: Option<f64>,
    /// Steps/s the CPU time alone would allow on 2 otherwise idle cores (ignores waits for
    /// WAL flushes and locks): what the machine's other load hides.
    pub cpu_bound_steps_per_s_2_cores: Option<f64>,
}

/// Journaled no-op steps/s with `workers` workers (defaults otherwise).
pub async fn bench_noop(
    database_url: &str,
    workers: usize,
    seconds: u64,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<NoopReport> {
    bench_noop_with(database_url, NoopOptions::new(workers, seconds), clock).await
}

/// Journaled no-op steps/s with these options.
pub async fn bench_noop_with(
    database_url: &str,
    options: NoopOptions,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<NoopReport> {
    let db = ScratchDb::create(database_url).await?;
    let result = measure(&db, options, clock).await;
    db.drop_db().await?;
    result
}

async fn measure(
    db: &ScratchDb,
    options: NoopOptions,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<NoopReport> {
    let registry = Arc::new(Registry::new().with(noop_definition())?);
    let tenant = TenantId::new_random();

    // The backlog: enough for 20,000 steps/s through warm-up and window.
    let workflows =
        20_000 * (options.seconds as usize + 2) / options.steps_per_workflow.max(1) as usize;
    let pools = Pools::connect(&db.owner, None, None, 16).await?;
    let store = EventStore::start(pools.app.clone(), StoreOptions::default());
    let engine = Engine::new(pools.app.clone(), store, registry.clone(), clock.clone());
    let started = Instant::now();
    let mut starters = tokio::task::JoinSet::new();
    let per = workflows.div_ceil(16);
    for _ in 0..16 {
        let engine = engine.clone();
        let steps = options.steps_per_workflow;
        starters.spawn(async move {
            for _ in 0..per {
                engine
                    .start::<Noop>(
                        tenant,
                        NoopInput { steps },
                        StartOptions::new(Actor::system("bench")),
                    )
                    .await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = starters.join_next().await {
        r??;
    }
    let starts_per_s = (per * 16) as f64 / started.elapsed().as_secs_f64();
    pools.app.close().await;
    pools.system.close().await;

    tracing::info!(
        workflows = per * 16,
        starts_per_s,
        "backlog started; running the workers"
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut runners = tokio::task::JoinSet::new();
    for w in 0..options.workers {
        let pools = Pools::connect(&db.owner, None, None, options.connections).await?;
        let store = EventStore::start(pools.app.clone(), StoreOptions::default());
        let engine = Engine::new(pools.app.clone(), store, registry.clone(), clock.clone());
        let mut worker_options = WorkerOptions::named(format!("bench-{w}"));
        worker_options.concurrency = options.concurrency;
        let worker = Worker::new(engine, pools.system.clone(), worker_options)?;
        let mut stop = stop_rx.clone();
        runners.spawn(async move {
            let report = worker
                .run(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            pools.app.close().await;
            pools.system.close().await;
            report
        });
    }

    let mut admin = PgConnection::connect_with(&db.owner).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pids = server_pids(&mut admin, &db.name).await.unwrap_or_default();
    let cpu0 = (self_cpu_s(), pids_cpu_s(&pids));
    let p0 = head(&mut admin).await?;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(options.seconds)).await;
    let p1 = head(&mut admin).await?;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu1 = (self_cpu_s(), pids_cpu_s(&pids));
    let _ = stop_tx.send(true);
    while let Some(r) = runners.join_next().await {
        r??;
    }
    let row = sqlx::query(
        "SELECT count(*) FILTER (WHERE event_type = 'WorkflowStepCompleted') AS steps, \
                count(*) FILTER (WHERE event_type = 'WorkflowFinished') AS finished, \
                count(*) AS events \
         FROM events WHERE position > $1 AND position <= $2",
    )
    .bind(p0)
    .bind(p1)
    .fetch_one(&mut admin)
    .await?;
    let steps: i64 = row.try_get("steps")?;
    let finished: i64 = row.try_get("finished")?;
    let events: i64 = row.try_get("events")?;
    let left: i64 =
        sqlx::query("SELECT count(*) AS n FROM workflow_tasks WHERE state <> 'finished'")
            .fetch_one(&mut admin)
            .await?
            .try_get("n")?;
    admin.close().await.ok();
    let per_1000 = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if steps > 0 => Some((b - a) * 1e6 / steps as f64),
        _ => None,
    };
    let bench_cpu = per_1000(cpu0.0, cpu1.0);
    let postgres_cpu = per_1000(cpu0.1, cpu1.1);
    let cpu_bound = match (bench_cpu, postgres_cpu) {
        (Some(a), Some(b)) if a + b > 0.0 => Some(2.0 * 1e6 / (a + b)),
        _ => None,
    };
    Ok(NoopReport {
        workers: options.workers,
        concurrency: options.concurrency,
        steps_per_workflow: options.steps_per_workflow,
        seconds: elapsed,
        steps: u64::try_from(steps).unwrap_or(0),
        steps_per_s: steps as f64 / elapsed,
        workflows_per_s: finished as f64 / elapsed,
        events_per_s: events as f64 / elapsed,
        starts_per_s,
        backlog_exhausted: left == 0,
        bench_cpu_ms_per_1000_steps: bench_cpu,
        postgres_cpu_ms_per_1000_steps: postgres_cpu,
        cpu_bound_steps_per_s_2_cores: cpu_bound,
    })
}

/// Process ids of the backends connected to `database` and of the server's background
/// processes (WAL writer, checkpointer, ...), which the workload also drives.
pub async fn server_pids(conn: &mut PgConnection, database: &str) -> anyhow::Result<Vec<i32>> {
    let rows = sqlx::query(
        "SELECT pid FROM pg_stat_activity \
         WHERE datname = $1 OR (datname IS NULL AND backend_type <> 'client backend')",
    )
    .bind(database)
    .fetch_all(conn)
    .await?;
    Ok(rows.iter().filter_map(|r| r.try_get("pid").ok()).collect())
}

/// User + system CPU seconds of a process from `/proc/<pid>/stat` (clock ticks of 1/100 s).
fn proc_cpu_s(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// CPU seconds (user + system) of process `pid` so far (Linux; `None` if it is gone or
/// unreadable).
pub fn pid_cpu_s(pid: i32) -> Option<f64> {
    proc_cpu_s(&format!("/proc/{pid}/stat"))
}

/// CPU seconds (user + system) of this process so far (Linux; `None` elsewhere).
pub fn self_cpu_s() -> Option<f64> {
    proc_cpu_s("/proc/self/stat")
}

/// CPU seconds (user + system) of these processes so far (Linux; `None` if one is gone or
/// unreadable).
pub fn pids_cpu_s(pids: &[i32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    let mut total = 0.0;
    for pid in pids {
        total += proc_cpu_s(&format!("/proc/{pid}/stat"))?;
    }
    Some(total)
}

async fn head(conn: &mut PgConnection) -> anyhow::Result<i64> {
    Ok(
        sqlx::query("SELECT last_position FROM event_log_head WHERE id")
            .fetch_one(conn)
            .await?
            .try_get("last_position")?,
    )
}

/// Options of `netledger bench workflows`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// PostgreSQL server to measure (a scratch database is created there and dropped after).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub database_url: String,
    /// Measured seconds per scenario (after one second of warm-up).
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Workflows in flight per worker.
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    /// Steps per workflow.
    #[arg(long, default_value_t = 10)]
    pub steps: u32,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The figures with 1 and 4 workers.
#[derive(Debug, Clone, Serialize)]
pub struct WorkflowsReport {
    /// One worker.
    pub one_worker: NoopReport,
    /// Four workers.
    pub four_workers: NoopReport,
}

/// Runs the no-op bench with 1 and 4 workers and prints the figures.
pub async fn run(args: BenchArgs, clock: Arc<dyn Clock>) -> anyhow::Result<WorkflowsReport> {
    let mut reports = Vec::new();
    for workers in [1, 4] {
        let options = NoopOptions {
            concurrency: args.concurrency,
            steps_per_workflow: args.steps,
            ..NoopOptions::new(workers, args.seconds)
        };
        reports.push(bench_noop_with(&args.database_url, options, clock.clone()).await?);
    }
    let four_workers = reports.pop().context("no 4-worker figure")?;
    let one_worker = reports.pop().context("no 1-worker figure")?;
    let report = WorkflowsReport {
        one_worker,
        four_workers,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{:<8} {:>10} {:>12} {:>10} {:>9} {:>22} {:>16}  note",
            "workers",
            "steps/s",
            "workflows/s",
            "events/s",
            "starts/s",
            "cpu ms/1k steps pg+us",
            "cpu-bound steps/s"
        );
        let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
        for r in [&report.one_worker, &report.four_workers] {
            println!(
                "{:<8} {:>10.0} {:>12.0} {:>10.0} {:>9.0} {:>22} {:>16}  {} steps/workflow, {} in flight/worker{}",
                r.workers,
                r.steps_per_s,
                r.workflows_per_s,
                r.events_per_s,
                r.starts_per_s,
                format!(
                    "{}+{}",
                    opt(r.postgres_cpu_ms_per_1000_steps),
                    opt(r.bench_cpu_ms_per_1000_steps)
                ),
                opt(r.cpu_bound_steps_per_s_2_cores),
                r.steps_per_workflow,
                r.concurrency,
                if r.backlog_exhausted {
                    " (backlog ran out: a floor)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(report)
}

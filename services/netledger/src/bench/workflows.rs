//! `bench_workflows`: engine no-op steps/s (1 and 4 workers, from [`super::engine`]),
//! config pushes with verify to N devsim devices (RouterOS 7 only: older devices cannot
//! receive a change file), and a firmware rollout over M devsim devices — each against a
//! scratch database on the given server, in this process.
//!
//! The push figure also says where the time went ([`PushProfile`]): per journaled step, the
//! time from its start's commit to its outcome's commit (the journal's `recorded_at`), the
//! wait from start to first claim, the device commands and events per push and the CPU time
//! of this process and of PostgreSQL. It checks what it measured: every push must have
//! ended Committed and devsim must have applied each change exactly once.

use netledger_domain::workflow::card;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use devsim::{Fleet, FleetOptions, SystemClock};
use netledger_archive::{Archive, ArchiveOptions};
use netledger_domain::clock::Clock;
use netledger_domain::device::{DeviceName, Endpoint, Host, Transport};
use netledger_domain::{Actor, DeviceId, EventMetadata, RolloutId, TenantId, WorkflowId};
use netledger_testkit::ScratchDb;

use super::engine::{bench_noop, pid_cpu_s, self_cpu_s, server_pids};
use netledger_engine::{Engine, StartOptions, TaskState, WorkerOptions};
use netledger_store::credentials::{CredentialKeys, DevicePassword, KeyMaterial};
use netledger_store::devices::{DeviceCommands, RegisterDevice};
use netledger_store::{EventStore, Pools, StoreOptions};
use serde::Serialize;
use sqlx::{Connection, PgConnection, Row};
use uuid::Uuid;

use netledger_netops::workflows::{NetopsDeps, NetopsOptions, registry, run_worker};
use netledger_netops::{RollbackOptions, VerifyOptions};

/// Arguments of [`bench_workflows`].
#[derive(Debug, Clone)]
pub struct WorkflowsBenchArgs {
    /// PostgreSQL server (scratch databases are created there and dropped).
    pub database_url: String,
    /// Measured seconds of each no-op figure (0 skips them; their figures are then 0).
    pub noop_seconds: u64,
    /// Devices of the push figure (0 skips it).
    pub push_devices: usize,
    /// Devices of the firmware rollout figure (0 skips it).
    pub firmware_devices: usize,
    /// Workflows in flight in the worker.
    pub concurrency: usize,
    /// Directory for the archive and the firmware cache (removed after).
    pub scratch_dir: PathBuf,
    /// fsync the archive (the production setting).
    pub archive_fsync: bool,
}

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct WorkflowsBenchReport {
    /// Journaled no-op steps/s, one worker (0 when skipped).
    pub noop_steps_per_s_w1: f64,
    /// Journaled no-op steps/s, four workers (0 when skipped).
    pub noop_steps_per_s_w4: f64,
    /// Seconds from the first start to every push finished (`None`: skipped).
    pub push_seconds: Option<f64>,
    /// Pushes that ended Committed.
    pub push_committed: usize,
    /// Devices on which devsim counted exactly one application of the push's change.
    pub push_applied_once: usize,
    /// Devices in the push figure.
    pub push_devices: usize,
    /// Where the pushes spent their time (`None`: skipped).
    pub push_profile: Option<PushProfile>,
    /// Seconds from the rollout's start to its finish (`None`: skipped).
    pub firmware_seconds: Option<f64>,
    /// Devices upgraded (now on the target version).
    pub firmware_upgraded: usize,
    /// Devices in the firmware figure.
    pub firmware_devices: usize,
}

/// Where the push figure's time went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PushProfile {
    /// Per journaled step, from its start's commit to its outcome's commit (which travels
    /// with the next step's start), plus `queued` (start of the workflow to its first
    /// step's start: waiting for a free slot in the worker) and `total` (start to finish).
    pub spans: Vec<SpanFigure>,
    /// RouterOS API commands devsim received per push (logins included).
    pub device_commands_per_push: f64,
    /// Events appended per push (journal and device events).
    pub events_per_push: f64,
    /// CPU seconds of this process (worker, devsim, bench) during the figure.
    pub process_cpu_s: Option<f64>,
    /// CPU seconds of the PostgreSQL processes of the scratch database (and the server's
    /// background processes) during the figure.
    pub postgres_cpu_s: Option<f64>,
    /// Wall-clock seconds of the figure.
    pub wall_s: f64,
    /// Seconds the bench took to start all pushes (one `Engine::start` after the other).
    pub starts_s: f64,
}

/// Durations of one journaled span over all pushes, ms.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SpanFigure {
    /// Step name (or `queued` / `total`).
    pub name: String,
    /// How many spans.
    pub count: i64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// Longest.
    pub max_ms: f64,
    /// Sum over all pushes, s (what the span costs in workflow-seconds).
    pub total_s: f64,
}

const CHANGE: &str = "/ip pool\nadd name=pool-bench ranges=10.99.0.10-10.99.0.20\n";
const TARGET: &str = "7.19.4";

struct Run {
    scratch: ScratchDb,
    pools: Pools,
    deps: NetopsDeps,
    engine: Engine,
    fleet: Fleet,
    tenant: TenantId,
    devices: Vec<DeviceId>,
    stop: tokio::sync::oneshot::Sender<()>,
    worker: tokio::task::JoinHandle<()>,
}

async fn setup(
    args: &WorkflowsBenchArgs,
    clock: &Arc<dyn Clock>,
    n: usize,
    tag: &str,
) -> anyhow::Result<Run> {
    let scratch = ScratchDb::create(&args.database_url).await?;
    let pools = Pools::connect(&scratch.owner, None, None, 24).await?;
    let store = EventStore::start(pools.app.clone(), StoreOptions::default());
    let dir = args.scratch_dir.join(tag);
    let archive = Archive::open_with(
        dir.join("archive"),
        ArchiveOptions {
            fsync: args.archive_fsync,
            ..ArchiveOptions::default()
        },
    )?;
    let cache = dir.join("cache").join(TARGET);
    std::fs::create_dir_all(&cache)?;
    for arch in ["arm64", "arm", "mipsbe", "mmips", "smips", "tile", "ppc"] {
        std::fs::write(
            cache.join(format!("routeros-{TARGET}-{arch}.npk")),
            vec![b'n'; 4096],
        )?;
    }
    std::fs::write(
        cache.join(format!("routeros-{TARGET}.npk")),
        vec![b'n'; 4096],
    )?;
    let keys = CredentialKeys::new("bench", [("bench".to_owned(), KeyMaterial::generate())])?;
    let mut o = FleetOptions::new(n, Arc::new(SystemClock::new()));
    o.v6_share = 0.0;
    o.reboot_time = Duration::from_secs(1);
    o.tick = Some(Duration::from_millis(100));
    let fleet = Fleet::start(o).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let deps = NetopsDeps {
        app: pools.app.clone(),
        system: pools.system.clone(),
        store: store.clone(),
        archive,
        keys: keys.clone(),
        firmware_cache: dir.join("cache"),
        firmware_base_url: base,
        options: NetopsOptions {
            verify: VerifyOptions {
                reachable_within: Duration::from_secs(10),
                retry_every: Duration::from_millis(200),
            },
            rollback: RollbackOptions {
                wait_for_device: Duration::from_secs(60),
                reboot_wait: Duration::from_secs(30),
                retry_every: Duration::from_millis(200),
            },
            arm_margin: Duration::from_secs(120),
            await_reboot: netledger_netops::firmware::AwaitOptions {
                within: Duration::from_secs(60),
                retry_every: Duration::from_millis(250),
            },
            // The benchmark's simulated fleet listens on loopback.
            device_networks: netledger_domain::device::network::DeviceNetworkPolicy::default()
                .with_loopback(),
            ..NetopsOptions::default()
        },
        clock: clock.clone(),
    };
    let tenant = TenantId::from_uuid(Uuid::new_v4());
    let cmds = DeviceCommands::new(pools.app.clone(), keys);
    let mut devices = Vec::with_capacity(n);
    for (i, m) in fleet.manifest().iter().enumerate() {
        let device = DeviceId::from_uuid(Uuid::new_v4());
        cmds.register(
            tenant,
            RegisterDevice {
                device_id: device,
                name: DeviceName::parse(&format!("bench-{i}"))?,
                endpoint: Endpoint {
                    host: Host::parse(&m.api.ip().to_string())?,
                    port: m.api.port(),
                    transport: Transport::Plain,
                    ssh: None,
                },
                username: m.username.clone(),
                password: DevicePassword::new(m.password.clone()),
                tags: BTreeSet::new(),
                poll_interval_secs: 60,
                ssh_key: None,
            },
            EventMetadata::for_command(Actor::system("bench"), Uuid::new_v4()),
        )
        .await?;
        devices.push(device);
    }
    let engine = Engine::new(
        pools.app.clone(),
        store,
        Arc::new(registry(deps.clone())?),
        clock.clone(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut wopts = WorkerOptions::named(format!("netops-bench-{tag}"));
    wopts.concurrency = args.concurrency.max(1);
    wopts.poll = Duration::from_millis(100);
    wopts.max_inline_wait = Duration::from_secs(5);
    let wdeps = deps.clone();
    let worker = tokio::spawn(async move {
        if let Err(e) = run_worker(wdeps, wopts, Some(listener), async move {
            let _ = stopped.await;
        })
        .await
        {
            tracing::error!(error = %netledger_domain::errors::error_chain(&e), "bench worker failed");
        }
    });
    Ok(Run {
        scratch,
        pools,
        deps,
        engine,
        fleet,
        tenant,
        devices,
        stop,
        worker,
    })
}

impl Run {
    async fn wait_all(&self, ids: &[WorkflowId], within: Duration) -> anyhow::Result<Vec<String>> {
        let started = Instant::now();
        loop {
            let mut outcomes = Vec::new();
            let mut done = true;
            for id in ids {
                let s = self
                    .engine
                    .status(self.tenant, *id)
                    .await?
                    .context("workflow vanished")?;
                if s.state != TaskState::Finished {
                    done = false;
                    break;
                }
                outcomes.push(format!("{:?}", s.outcome));
            }
            if done {
                return Ok(outcomes);
            }
            anyhow::ensure!(
                started.elapsed() < within,
                "workflows not finished within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn finish(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(30), self.worker).await;
        self.pools.app.close().await;
        self.pools.system.close().await;
        drop(self.fleet);
        drop(self.deps);
        self.scratch.drop_db().await
    }
}

/// CPU seconds so far of each PostgreSQL process serving `database` (and of the server's
/// background processes), by pid; `None` when they cannot be read.
async fn server_cpu(
    admin: &mut PgConnection,
    database: &str,
) -> Option<std::collections::HashMap<i32, f64>> {
    let pids = server_pids(admin, database).await.ok()?;
    let cpu: std::collections::HashMap<i32, f64> = pids
        .iter()
        .filter_map(|&p| pid_cpu_s(p).map(|c| (p, c)))
        .collect();
    (!cpu.is_empty()).then_some(cpu)
}

/// The journal's view of the pushes: per step, start commit to outcome commit.
async fn push_profile(admin: &mut PgConnection, since: i64) -> anyhow::Result<PushProfile> {
    let rows = sqlx::query(
        "WITH e AS ( \
             SELECT stream, event_type, recorded_at, payload->>'step' AS step, \
                    payload->>'attempt' AS attempt \
               FROM events WHERE category = 'workflow'), \
         spans AS ( \
             SELECT s.step AS name, \
                    extract(epoch FROM o.recorded_at - s.recorded_at) * 1000 AS ms \
               FROM e s JOIN e o ON o.stream = s.stream AND o.step = s.step \
                AND o.attempt = s.attempt \
                AND o.event_type IN ('WorkflowStepCompleted', 'WorkflowStepFailed') \
              WHERE s.event_type = 'WorkflowStepStarted' \
             UNION ALL \
             SELECT 'queued', extract(epoch FROM \
                    min(recorded_at) FILTER (WHERE event_type = 'WorkflowStepStarted') \
                  - min(recorded_at) FILTER (WHERE event_type = 'WorkflowStarted')) * 1000 \
               FROM e GROUP BY stream \
             UNION ALL \
             SELECT 'total', extract(epoch FROM \
                    max(recorded_at) FILTER (WHERE event_type = 'WorkflowFinished') \
                  - min(recorded_at) FILTER (WHERE event_type = 'WorkflowStarted')) * 1000 \
               FROM e GROUP BY stream) \
         SELECT name, count(*) AS n, avg(ms)::float8 AS mean, \
                percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::float8 AS p50, \
                percentile_cont(0.95) WITHIN GROUP (ORDER BY ms)::float8 AS p95, \
                max(ms)::float8 AS max, (sum(ms) / 1000)::float8 AS total \
           FROM spans WHERE ms IS NOT NULL GROUP BY name ORDER BY sum(ms) DESC",
    )
    .fetch_all(&mut *admin)
    .await?;
    let mut spans = Vec::with_capacity(rows.len());
    for r in &rows {
        spans.push(SpanFigure {
            name: r.try_get("name")?,
            count: r.try_get("n")?,
            mean_ms: r.try_get("mean")?,
            p50_ms: r.try_get("p50")?,
            p95_ms: r.try_get("p95")?,
            max_ms: r.try_get("max")?,
            total_s: r.try_get("total")?,
        });
    }
    let events: i64 = sqlx::query("SELECT count(*) AS n FROM events WHERE position > $1")
        .bind(since)
        .fetch_one(&mut *admin)
        .await?
        .try_get("n")?;
    Ok(PushProfile {
        spans,
        events_per_push: events as f64,
        ..PushProfile::default()
    })
}

/// Runs the figures (see [`WorkflowsBenchReport`]).
pub async fn bench_workflows(
    args: WorkflowsBenchArgs,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<WorkflowsBenchReport> {
    let (mut w1, mut w4) = (0.0, 0.0);
    if args.noop_seconds > 0 {
        w1 = bench_noop(&args.database_url, 1, args.noop_seconds, clock.clone())
            .await?
            .steps_per_s;
        w4 = bench_noop(&args.database_url, 4, args.noop_seconds, clock.clone())
            .await?
            .steps_per_s;
    }
    let mut report = WorkflowsBenchReport {
        noop_steps_per_s_w1: w1,
        noop_steps_per_s_w4: w4,
        push_seconds: None,
        push_committed: 0,
        push_applied_once: 0,
        push_devices: args.push_devices,
        push_profile: None,
        firmware_seconds: None,
        firmware_upgraded: 0,
        firmware_devices: args.firmware_devices,
    };
    if args.push_devices > 0 {
        let run = setup(&args, &clock, args.push_devices, "push").await?;
        let mut admin = PgConnection::connect_with(&run.scratch.owner).await?;
        let p0: i64 = sqlx::query("SELECT last_position FROM event_log_head WHERE id")
            .fetch_one(&mut admin)
            .await?
            .try_get("last_position")?;
        let cpu0 = (
            self_cpu_s(),
            server_cpu(&mut admin, &run.scratch.name).await,
        );
        let t = Instant::now();
        let mut ids = Vec::with_capacity(run.devices.len());
        for (i, d) in run.devices.iter().enumerate() {
            let started = run
                .engine
                .start::<card::ConfigPush>(
                    run.tenant,
                    card::PushInput {
                        device_id: *d,
                        change_id: format!("bench-{i}"),
                        script: CHANGE.to_owned(),
                        policy: None,
                        checks: card::HealthChecks::default(),
                        allow_without_timer: false,
                        sealed_script: None,
                    },
                    StartOptions::new(Actor::system("bench")),
                )
                .await?;
            ids.push(started.workflow_id);
        }
        let starts_s = t.elapsed().as_secs_f64();
        let outcomes = run.wait_all(&ids, Duration::from_secs(600)).await?;
        let wall_s = t.elapsed().as_secs_f64();
        let cpu1 = (
            self_cpu_s(),
            server_cpu(&mut admin, &run.scratch.name).await,
        );
        report.push_seconds = Some(wall_s);
        report.push_committed = outcomes.iter().filter(|o| o.contains("Committed")).count();
        let mut commands = 0usize;
        for i in 0..run.devices.len() {
            let device = run.fleet.device(i).context("devsim device missing")?;
            commands += device.command_log().len();
            if device.change_counts().get(&format!("bench-{i}")) == Some(&1) {
                report.push_applied_once += 1;
            }
        }
        let mut profile = push_profile(&mut admin, p0).await?;
        let n = run.devices.len().max(1) as f64;
        profile.device_commands_per_push = commands as f64 / n;
        profile.events_per_push /= n;
        profile.process_cpu_s = cpu0.0.zip(cpu1.0).map(|(a, b)| b - a);
        profile.postgres_cpu_s = match (&cpu0.1, &cpu1.1) {
            (Some(a), Some(b)) => Some(
                b.iter()
                    .map(|(pid, end)| end - a.get(pid).copied().unwrap_or(0.0))
                    .sum(),
            ),
            _ => None,
        };
        profile.wall_s = wall_s;
        profile.starts_s = starts_s;
        tracing::info!(profile = ?profile, "push profile");
        report.push_profile = Some(profile);
        admin.close().await.ok();
        run.finish().await?;
        anyhow::ensure!(
            report.push_committed == args.push_devices
                && report.push_applied_once == args.push_devices,
            "of {} pushes, {} ended Committed and {} were applied exactly once",
            args.push_devices,
            report.push_committed,
            report.push_applied_once
        );
    }
    if args.firmware_devices > 0 {
        let run = setup(&args, &clock, args.firmware_devices, "firmware").await?;
        let rid = RolloutId::from_uuid(Uuid::new_v4());
        let (canary, rest) = run.devices.split_first().context("no devices")?;
        let t = Instant::now();
        let started = run
            .engine
            .start::<card::Rollout>(
                run.tenant,
                card::RolloutInput {
                    rollout_id: rid,
                    name: "bench".to_owned(),
                    target: netledger_domain::workflow::RolloutTarget::Firmware {
                        version: TARGET.to_owned(),
                    },
                    canaries: vec![*canary],
                    devices: rest.to_vec(),
                    batch_size: 50,
                    parallelism: 50,
                    failure_threshold: u32::try_from(run.devices.len()).unwrap_or(u32::MAX),
                    rollback_on_halt: false,
                    policy: None,
                    checks: card::HealthChecks::default(),
                    routerboard: false,
                    change_id: None,
                    window_end: None,
                    allow_without_timer: false,
                },
                StartOptions::new(Actor::system("bench")).rollout(rid),
            )
            .await?;
        run.wait_all(&[started.workflow_id], Duration::from_secs(900))
            .await?;
        report.firmware_seconds = Some(t.elapsed().as_secs_f64());
        report.firmware_upgraded = (0..run.devices.len())
            .filter_map(|i| run.fleet.device(i))
            .filter(|d| d.version().to_string() == TARGET)
            .count();
        run.finish().await?;
    }
    let _ = std::fs::remove_dir_all(&args.scratch_dir);
    Ok(report)
}

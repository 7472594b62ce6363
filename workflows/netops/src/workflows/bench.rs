//! `bench_workflows`: engine no-op steps/s (1 and 4 workers, from `netledger_engine::bench`),
//! config pushes with verify to N devsim devices (RouterOS 7 only: older devices cannot
//! receive a change file), and a firmware rollout over M devsim devices — each against a
//! scratch database on the given server, in this process.

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
use netledger_engine::bench::{ScratchDb, bench_noop};
use netledger_engine::{Engine, StartOptions, TaskState, WorkerOptions};
use netledger_store::credentials::{CredentialKeys, DevicePassword, KeyMaterial};
use netledger_store::devices::{DeviceCommands, RegisterDevice};
use netledger_store::{EventStore, Pools, StoreOptions};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use super::{NetopsDeps, NetopsOptions, registry, run_worker};
use crate::{RollbackOptions, VerifyOptions};

/// Arguments of [`bench_workflows`].
#[derive(Debug, Clone)]
pub struct WorkflowsBenchArgs {
    /// PostgreSQL server (scratch databases are created there and dropped).
    pub database_url: String,
    /// Measured seconds of each no-op figure.
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
    /// Journaled no-op steps/s, one worker.
    pub noop_steps_per_s_w1: f64,
    /// Journaled no-op steps/s, four workers.
    pub noop_steps_per_s_w4: f64,
    /// Seconds from the first start to every push finished (`None`: skipped).
    pub push_seconds: Option<f64>,
    /// Pushes that ended Committed.
    pub push_committed: usize,
    /// Devices in the push figure.
    pub push_devices: usize,
    /// Seconds from the rollout's start to its finish (`None`: skipped).
    pub firmware_seconds: Option<f64>,
    /// Devices upgraded (now on the target version).
    pub firmware_upgraded: usize,
    /// Devices in the firmware figure.
    pub firmware_devices: usize,
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
            await_reboot: crate::firmware::AwaitOptions {
                within: Duration::from_secs(60),
                retry_every: Duration::from_millis(250),
            },
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
                },
                username: m.username.clone(),
                password: DevicePassword::new(m.password.clone()),
                tags: BTreeSet::new(),
                poll_interval_secs: 60,
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
            tracing::error!(error = %e, "bench worker failed");
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

/// Runs the figures (see [`WorkflowsBenchReport`]).
pub async fn bench_workflows(
    args: WorkflowsBenchArgs,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<WorkflowsBenchReport> {
    let w1 = bench_noop(&args.database_url, 1, args.noop_seconds, clock.clone()).await?;
    let w4 = bench_noop(&args.database_url, 4, args.noop_seconds, clock.clone()).await?;
    let mut report = WorkflowsBenchReport {
        noop_steps_per_s_w1: w1.steps_per_s,
        noop_steps_per_s_w4: w4.steps_per_s,
        push_seconds: None,
        push_committed: 0,
        push_devices: args.push_devices,
        firmware_seconds: None,
        firmware_upgraded: 0,
        firmware_devices: args.firmware_devices,
    };
    if args.push_devices > 0 {
        let run = setup(&args, &clock, args.push_devices, "push").await?;
        let t = Instant::now();
        let mut ids = Vec::with_capacity(run.devices.len());
        for (i, d) in run.devices.iter().enumerate() {
            let started = run
                .engine
                .start(
                    run.tenant,
                    "config_push",
                    json!({ "device_id": d, "change_id": format!("bench-{i}"), "script": CHANGE }),
                    StartOptions::new(Actor::system("bench")).devices([*d]),
                )
                .await?;
            ids.push(started.workflow_id);
        }
        let outcomes = run.wait_all(&ids, Duration::from_secs(600)).await?;
        report.push_seconds = Some(t.elapsed().as_secs_f64());
        report.push_committed = outcomes.iter().filter(|o| o.contains("Committed")).count();
        run.finish().await?;
    }
    if args.firmware_devices > 0 {
        let run = setup(&args, &clock, args.firmware_devices, "firmware").await?;
        let rid = RolloutId::from_uuid(Uuid::new_v4());
        let (canary, rest) = run.devices.split_first().context("no devices")?;
        let t = Instant::now();
        let started = run
            .engine
            .start(
                run.tenant,
                "rollout",
                json!({
                    "rollout_id": rid, "name": "bench", "target": { "kind": "firmware", "version": TARGET },
                    "canaries": [canary], "devices": rest,
                    "batch_size": 50, "parallelism": 50,
                    "failure_threshold": u32::try_from(run.devices.len()).unwrap_or(u32::MAX),
                }),
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

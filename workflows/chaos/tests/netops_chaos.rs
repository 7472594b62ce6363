//! Crash test, deterministic and exhaustive: worker PROCESSES (`netops-chaos-worker`, which
//! runs `run_worker`, the code `netledger worker` runs) kill themselves with a real SIGKILL
//! at planned crash points (`netledger_engine::crash`), and other worker processes finish
//! the workflows.
//!
//! For each scenario (config push that commits, the same on RouterOS 6 with its file jobs
//! over SSH/SFTP, config push whose verify fails and rolls back, firmware upgrade, backup,
//! rollout with its child pushes):
//! 1. discovery: one workflow runs without kills; the crash-point labels it passes through
//!    (`<step>/<phase>`, in order) are read from the workers' log;
//! 2. one workflow per label, each on its own device, all at once: workflow i is killed at
//!    label i (a rollout: its parent at parent label i, its canary child at child label i;
//!    the rollout with parallel children plans one label per kind of point, see
//!    `Scenario::sample`).
//!    Workers run one workflow at a time, so a kill interrupts exactly the planned workflow;
//!    a killed worker is replaced, and the workflow is taken over when its lease expires.
//!
//! Then for every workflow: the planned kill happened, it ended with its expected outcome,
//! its journal is complete and ordered, devsim saw its change applied exactly once (a
//! firmware upgrade, with the RouterBOARD firmware: one package fetch and two reboots), no
//! Netledger file (`netledger-*`) and no rollback timer (`netledger-rollback-*`) is left on
//! the device, and every event it appends elsewhere (config
//! snapshots, rollout progress) is there exactly once. All failures are reported together,
//! with the crash point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../netops/tests/support/kinds.rs"]
mod kinds;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use devsim::{Fleet, FleetOptions, SystemClock};
use netledger_domain::device::{DeviceName, Endpoint, Host, SshAccess, SshHostKey, Transport};
use netledger_domain::workflow::Outcome;
use netledger_domain::{Actor, DeviceId, EventMetadata, RolloutId, TenantId, WorkflowId};
use netledger_engine::{Engine, StartOptions};
use netledger_netops::workflows::{NetopsDeps, NetopsOptions, registry};
use netledger_store::credentials::{CredentialKeys, DevicePassword, KeyMaterial};
use netledger_store::devices::{DeviceCommands, RegisterDevice};
use netledger_store::{Direction, EventReader, EventStore, Pools, StoreOptions};
use netledger_testkit::TestClock;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

const CHANGE: &str =
    "/ip pool\nadd name=pool-nl ranges=10.77.0.10-10.77.0.20\n/system identity\nset name=pushed\n";
const FIRMWARE: &str = "7.19.4";
/// Worker processes at once (each runs one workflow at a time).
const WORKERS: usize = 4;
/// The whole kill phase of one scenario must end within this.
const LIMIT: Duration = Duration::from_secs(150);

struct Killer(Child);
impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    PushCommit,
    /// `PushCommit` on a RouterOS 6 device registered with SSH access: the backup is read
    /// back, the apply token and the change file are written and the exports read over
    /// SFTP (one SSH session per step), `/import` over the API.
    PushCommitV6,
    PushRollback,
    Firmware,
    Backup,
    Rollout,
    /// A rollout whose second batch runs two child pushes in parallel.
    RolloutParallel,
    /// `config_restore` of a committed push (the push runs first, without kills).
    Restore,
    /// A push cancelled right after apply: it rolls back and ends cancelled.
    Cancel,
    /// A push paused right after apply (its lease released), resumed by the test.
    Pause,
    /// A push killed at two crash points in a row (the second kill hits the worker that
    /// took the workflow over after the first).
    PushTwice,
    /// A push whose `arm` fails once with a transient device error (devsim's
    /// `Faults::fail_next`: the scheduler entry's `add` is answered `!fatal`, the connection
    /// closed) and is retried after a backoff that releases the lease (workers with no
    /// inline waits): the `retry:arm` suspension points are killed too.
    PushRetry,
}

impl Scenario {
    /// Devices per workflow.
    fn devices(self) -> usize {
        match self {
            Scenario::Rollout => 2,
            Scenario::RolloutParallel => 3,
            _ => 1,
        }
    }

    fn rollout(self) -> bool {
        matches!(self, Scenario::Rollout | Scenario::RolloutParallel)
    }

    /// A signal the worker delivers when the workflow first reaches a crash point live
    /// (`(label, signal)`): it is journaled right after that point.
    fn signal(self) -> Option<(&'static str, &'static str)> {
        match self {
            Scenario::Cancel => Some(("apply/returned", "cancel")),
            Scenario::Pause => Some(("apply/returned", "pause")),
            _ => None,
        }
    }

    fn expected(self) -> Outcome {
        match self {
            Scenario::PushCommit
            | Scenario::PushCommitV6
            | Scenario::Pause
            | Scenario::PushTwice
            | Scenario::PushRetry => Outcome::Committed,
            // a restore that put the snapshot back ends rolled back
            Scenario::PushRollback | Scenario::Restore => Outcome::RolledBack,
            Scenario::Cancel => Outcome::Cancelled,
            Scenario::Firmware
            | Scenario::Backup
            | Scenario::Rollout
            | Scenario::RolloutParallel => Outcome::Succeeded,
        }
    }

    /// The crash points the kill phase plans, from those the discovery run reached
    /// (`devices`: the discovery's, which rollout step names carry). Every scenario but one
    /// plans all of them. `RolloutParallel` plans a deterministic subset that still covers
    /// every kind of point once: its children's points (config pushes) are covered one by
    /// one by `PushCommit` and by `Rollout`'s canary, so here one point per phase
    /// (`before_start`, `started`, `returned`, `armed`, `imported`, `suspended`, ...) of the
    /// child run beside another; for the parent, one point per step and phase with device ids
    /// and numbers taken out (`start-<device>/started`, `signal:child_finished:<n>/suspended`),
    /// the last one reached, so the one in the parallel batch.
    fn sample(self, labels: &[String], parent: bool, devices: &[DeviceId]) -> Vec<String> {
        if self != Scenario::RolloutParallel {
            return labels.to_vec();
        }
        let kind = |label: &str| -> String {
            if !parent {
                return label.rsplit('/').next().unwrap_or(label).to_owned();
            }
            let mut l = label.to_owned();
            for d in devices {
                l = l.replace(&d.to_string(), "<device>");
            }
            let mut out = String::new();
            for c in l.chars() {
                if c.is_ascii_digit() {
                    if !out.ends_with('#') {
                        out.push('#');
                    }
                } else {
                    out.push(c);
                }
            }
            out
        };
        let mut last: BTreeMap<String, usize> = BTreeMap::new();
        let mut first: BTreeMap<String, usize> = BTreeMap::new();
        for (i, l) in labels.iter().enumerate() {
            last.insert(kind(l), i);
            first.entry(kind(l)).or_insert(i);
        }
        let keep: BTreeSet<usize> = if parent {
            last.into_values().collect()
        } else {
            first.into_values().collect()
        };
        keep.into_iter().map(|i| labels[i].clone()).collect()
    }

    /// Whether the devices run RouterOS 6 and are registered with SSH access.
    fn v6(self) -> bool {
        self == Scenario::PushCommitV6
    }

    /// Whether the scenario's change is applied on its devices (exactly once).
    fn applies(self) -> bool {
        !matches!(self, Scenario::Firmware | Scenario::Backup)
    }
}

/// The file under `killed/` that records a kill of `key` at `label` (the worker's `marker`).
fn marker(key: &str, label: &str) -> String {
    format!("{key}#{}", label.replace('/', "|"))
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn push_commit_killed_at_every_crash_point(owner: PgPool) {
    run(owner, Scenario::PushCommit).await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn push_commit_on_routeros_6_over_ssh_killed_at_every_crash_point(owner: PgPool) {
    run(owner, Scenario::PushCommitV6).await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn push_rollback_killed_at_every_crash_point(owner: PgPool) {
    run(owner, Scenario::PushRollback).await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn firmware_upgrade_killed_at_every_crash_point(owner: PgPool) {
    run(owner, Scenario::Firmware).await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn backup_killed_at_every_crash_point(owner: PgPool) {
    run(owner, Scenario::Backup).await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn rollout_killed_at_every_crash_point(owner: PgPool) {
    run(owner, Scenario::Rollout).await;
}

/// Every crash point *kind* rather than every point (see [`Scenario::sample`]): all of them
/// (~40 rollouts of four workflows each) do not finish in CI time on one-workflow workers.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn rollout_with_parallel_children_killed_at_every_crash_point(owner: PgPool) {
    run(owner, Scenario::RolloutParallel).await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn config_restore_killed_at_every_crash_point(owner: PgPool) {
    run(owner, Scenario::Restore).await;
}

/// Killed at `apply/returned`, `verify-1/before_start` or `rollback/before_start`, the cancel
/// arrives while the `apply` attempt is interrupted (issue #15 item 21): the re-run step is
/// refused with `Cancelled`, the engine closes the open attempt, and the push acknowledges
/// the cancel before it rolls back.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn push_cancelled_after_apply_killed_at_every_crash_point(owner: PgPool) {
    run(owner, Scenario::Cancel).await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn push_paused_and_resumed_killed_at_every_crash_point(owner: PgPool) {
    run(owner, Scenario::Pause).await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn push_killed_at_two_crash_points_in_a_row(owner: PgPool) {
    run(owner, Scenario::PushTwice).await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn push_retried_after_a_transient_failure_killed_at_every_crash_point(owner: PgPool) {
    run(owner, Scenario::PushRetry).await;
}

/// One started workflow.
struct Instance {
    wf: WorkflowId,
    devices: Vec<DeviceId>,
    /// Indexes of its devices in the fleet.
    fleet_index: Vec<usize>,
    rollout: Option<RolloutId>,
    change: String,
}

struct Env {
    owner: PgPool,
    url: String,
    dir: PathBuf,
    key_b64: String,
    cache_url: String,
    tenant: TenantId,
    engine: Engine,
    reader: EventReader,
    cmds: DeviceCommands,
    /// Every device starts from this export (same model and version: same crash points).
    template: String,
    /// The scenario.
    sc: Scenario,
}

async fn env(owner: PgPool, sc: Scenario) -> Env {
    let opts = owner.connect_options();
    let db = opts.get_database().unwrap().to_owned();
    let url = format!("postgres://postgres@127.0.0.1:5432/{db}");
    let pools = Pools::connect(&opts, None, None, 4).await.unwrap();
    let dir = std::env::temp_dir().join(format!("netops-chaos-{}", Uuid::new_v4().simple()));
    let tenant = TenantId::from_uuid(Uuid::new_v4());
    // The tenant's part of the cache, each package pinned by the tenant's own upload event.
    let version_dir =
        netledger_store::firmware::tenant_dir(&dir.join("cache"), tenant).join(FIRMWARE);
    std::fs::create_dir_all(&version_dir).unwrap();
    let bytes = vec![b'x'; 3000];
    let sha256 = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let pin_store = EventStore::start(pools.app.clone(), StoreOptions::default());
    for f in [
        "routeros-7.19.4-arm64.npk",
        "routeros-7.19.4-mipsbe.npk",
        "routeros-7.19.4.npk",
    ] {
        std::fs::write(version_dir.join(f), &bytes).unwrap();
        let pin = netledger_domain::NewEvent::from_typed(
            &netledger_domain::firmware::FirmwarePackageCached {
                version: FIRMWARE.to_owned(),
                file_name: f.to_owned(),
                size: bytes.len() as u64,
                sha256: sha256.clone(),
            },
            netledger_domain::EventMetadata::for_command(
                netledger_domain::Actor::system("test"),
                Uuid::new_v4(),
            ),
        )
        .unwrap();
        pin_store
            .append(
                tenant,
                &netledger_domain::StreamName::parse(&format!("firmware-{FIRMWARE}")).unwrap(),
                netledger_domain::ExpectedVersion::Any,
                vec![pin],
            )
            .await
            .unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cache_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(netledger_netops::workflows::serve_firmware_cache(
        dir.join("cache"),
        listener,
        Arc::new(TestClock::new()),
        std::future::pending(),
    ));
    let material = KeyMaterial::generate();
    let key_b64 = material.to_base64();
    let keys = CredentialKeys::new("k1", [("k1".to_owned(), material)]).unwrap();
    let store = EventStore::start(pools.app.clone(), StoreOptions::default());
    let deps = NetopsDeps {
        app: pools.app.clone(),
        system: pools.system.clone(),
        store: store.clone(),
        archive: netledger_archive::Archive::open(dir.join("archive")).unwrap(),
        keys: keys.clone(),
        firmware_cache: dir.join("cache"),
        firmware_base_url: cache_url.clone(),
        options: NetopsOptions::default(),
        clock: Arc::new(TestClock::new()),
    };
    let engine = Engine::new(
        pools.app.clone(),
        store,
        Arc::new(registry(deps).unwrap()),
        Arc::new(TestClock::new()),
    );
    // device 0 of a default fleet: RouterOS 7.16.2 on an RB5009 (arm64); of an all-v6
    // fleet (6.49.13) for the RouterOS 6 scenario
    let mut fo = fleet_options(1, Vec::new());
    if sc.v6() {
        fo.v6_share = 1.0;
    }
    let one = Fleet::start(fo).await.unwrap();
    let template = one.device(0).unwrap().export(false);
    one.shutdown();
    Env {
        owner,
        url,
        dir,
        key_b64,
        cache_url,
        tenant,
        engine,
        reader: EventReader::tenant(pools.app.clone(), tenant),
        cmds: DeviceCommands::new(pools.app.clone(), keys),
        template,
        sc,
    }
}

fn fleet_options(n: usize, exports: Vec<String>) -> FleetOptions {
    let mut fo = FleetOptions::new(n, Arc::new(SystemClock::new()));
    fo.v6_share = 0.0;
    fo.reboot_time = Duration::from_secs(1);
    fo.tick = Some(Duration::from_millis(100));
    fo.exports = exports;
    fo
}

impl Env {
    /// A fleet of `n` identical devices, registered.
    async fn fleet(&self, n: usize) -> (Fleet, Vec<DeviceId>) {
        let fleet = Fleet::start(fleet_options(n, vec![self.template.clone(); n]))
            .await
            .unwrap();
        if self.sc == Scenario::PushRetry {
            for d in fleet.devices() {
                d.edit_faults(|f| {
                    f.fail_next = Some(devsim::FailNext {
                        path: "/system/scheduler/add".into(),
                        count: 1,
                        message: "chaos: transient failure".into(),
                    });
                });
            }
        }
        let mut devices = Vec::new();
        for (i, m) in fleet.manifest().iter().enumerate() {
            let device = DeviceId::from_uuid(Uuid::new_v4());
            self.cmds
                .register(
                    self.tenant,
                    RegisterDevice {
                        device_id: device,
                        name: DeviceName::parse(&format!("chaos-{}-{i}", Uuid::new_v4().simple()))
                            .unwrap(),
                        endpoint: Endpoint {
                            host: Host::parse(&m.api.ip().to_string()).unwrap(),
                            port: m.api.port(),
                            transport: Transport::Plain,
                            ssh: self.sc.v6().then(|| SshAccess {
                                port: m.ssh.port(),
                                host_key: SshHostKey::pinned(&m.ssh_host_key_sha256).unwrap(),
                            }),
                        },
                        username: m.username.clone(),
                        password: DevicePassword::new(m.password.clone()),
                        tags: BTreeSet::new(),
                        poll_interval_secs: 60,
                        ssh_key: None,
                    },
                    EventMetadata::for_command(Actor::system("test"), Uuid::new_v4()),
                )
                .await
                .unwrap();
            devices.push(device);
        }
        (fleet, devices)
    }

    /// Starts the scenario's workflow on `devices` (fleet indexes `first..`); a restore
    /// undoes `push` (committed on `devices[0]`, change id `push_change`).
    async fn start(
        &self,
        sc: Scenario,
        devices: &[DeviceId],
        first: usize,
        push: Option<(WorkflowId, String)>,
    ) -> Instance {
        let opts = || StartOptions::new(Actor::system("test")).devices([devices[0]]);
        let mut change = format!("chaos-{}", Uuid::new_v4().simple());
        let (kind, input, options, rollout) = match sc {
            Scenario::Restore => {
                let (push_wf, push_change) = push.expect("a restore needs its push");
                change = push_change;
                (
                    "config_restore",
                    json!({ "device_id": devices[0], "push_workflow_id": push_wf }),
                    opts(),
                    None,
                )
            }
            Scenario::PushCommit
            | Scenario::PushCommitV6
            | Scenario::Cancel
            | Scenario::Pause
            | Scenario::PushTwice
            | Scenario::PushRetry => (
                "config_push",
                json!({ "device_id": devices[0], "change_id": change, "script": CHANGE }),
                opts(),
                None,
            ),
            Scenario::PushRollback => (
                "config_push",
                // the health check names an interface the device lacks: verify fails
                json!({ "device_id": devices[0], "change_id": change, "script": CHANGE,
                        "checks": { "interfaces_running": ["nl-missing0"], "ping": [] } }),
                opts(),
                None,
            ),
            Scenario::Firmware => (
                "firmware_upgrade",
                // RouterBOARD firmware too: a second reboot, after the RouterOS one
                json!({ "device_id": devices[0], "version": FIRMWARE, "routerboard": true }),
                opts(),
                None,
            ),
            Scenario::Backup => ("backup", json!({ "device_id": devices[0] }), opts(), None),
            Scenario::Rollout | Scenario::RolloutParallel => {
                let rid = RolloutId::from_uuid(Uuid::new_v4());
                // the canary first, then the others in one batch, all at once
                let others = &devices[1..];
                let n = u32::try_from(others.len()).unwrap();
                (
                    "rollout",
                    json!({
                        "rollout_id": rid, "name": "chaos",
                        "target": { "kind": "change_set", "script": CHANGE },
                        "canaries": [devices[0]], "devices": others,
                        "batch_size": n, "parallelism": n, "failure_threshold": 1,
                    }),
                    StartOptions::new(Actor::system("test")).rollout(rid),
                    Some(rid),
                )
            }
        };
        let wf = kinds::start_kind(&self.engine, self.tenant, kind, input, options)
            .await
            .unwrap()
            .workflow_id;
        let change = match rollout {
            Some(rid) => format!("ro-{}", rid.as_uuid().simple()),
            None => change,
        };
        Instance {
            wf,
            devices: devices.to_vec(),
            fleet_index: (first..first + devices.len()).collect(),
            rollout,
            change,
        }
    }

    fn spawn(&self, chaos: &Path, n: usize) -> Killer {
        Killer(
            Command::new(env!("CARGO_BIN_EXE_netops-chaos-worker"))
                .args([
                    self.url.as_str(),
                    self.dir.join("archive").to_str().unwrap(),
                    self.key_b64.as_str(),
                    self.dir.join("cache").to_str().unwrap(),
                    self.cache_url.as_str(),
                    &format!("chaos-{}-{n}", chaos.file_name().unwrap().to_str().unwrap()),
                    chaos.to_str().unwrap(),
                    "1",
                    // no inline waits: a retry's backoff suspends the push
                    if self.sc == Scenario::PushRetry {
                        "0"
                    } else {
                        "5000"
                    },
                ])
                .spawn()
                .unwrap(),
        )
    }

    /// Keeps `workers` worker processes running (replacing killed ones) until every
    /// workflow of the tenant finished; returns the number of SIGKILLed workers.
    async fn run_until_finished(&self, chaos: &Path, workers: usize) -> Result<usize, String> {
        let mut resumed: BTreeSet<Uuid> = BTreeSet::new();
        let mut spawned = 0;
        let mut running: Vec<Killer> = Vec::new();
        let mut kills = 0;
        let mut odd = Vec::new();
        let t = Instant::now();
        loop {
            let open: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM workflow_tasks WHERE tenant_id = $1 AND state <> 'finished'",
            )
            .bind(self.tenant.as_uuid())
            .fetch_one(&self.owner)
            .await
            .unwrap();
            if open == 0 {
                break;
            }
            if t.elapsed() > LIMIT {
                let stuck: Vec<(Uuid, String, Option<String>)> = sqlx::query_as(
                    "SELECT workflow_id, kind, lease_owner FROM workflow_tasks \
                     WHERE tenant_id = $1 AND state <> 'finished'",
                )
                .bind(self.tenant.as_uuid())
                .fetch_all(&self.owner)
                .await
                .unwrap();
                return Err(format!(
                    "{open} workflows not finished after {LIMIT:?}: {stuck:?}"
                ));
            }
            let mut i = 0;
            while i < running.len() {
                match running[i].0.try_wait().unwrap() {
                    Some(status) => {
                        if status.signal() == Some(9) {
                            kills += 1;
                        } else {
                            odd.push(format!("a worker exited with {status}"));
                        }
                        running.swap_remove(i);
                    }
                    None => i += 1,
                }
            }
            while running.len() < workers {
                running.push(self.spawn(chaos, spawned));
                spawned += 1;
            }
            // a paused push waits for a signal with its lease released: resume it (once)
            let paused: Vec<Uuid> = sqlx::query_scalar(
                "SELECT workflow_id FROM workflow_tasks WHERE tenant_id = $1 \
                 AND state = 'runnable' AND runnable_at IS NULL AND lease_owner IS NULL \
                 AND kind = 'config_push'",
            )
            .bind(self.tenant.as_uuid())
            .fetch_all(&self.owner)
            .await
            .unwrap();
            for wf in paused {
                if resumed.insert(wf) {
                    self.engine
                        .signal(
                            self.tenant,
                            WorkflowId::from_uuid(wf),
                            "resume",
                            json!({}),
                            Actor::system("test"),
                        )
                        .await
                        .unwrap();
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if odd.is_empty() {
            Ok(kills)
        } else {
            Err(odd.join("; "))
        }
    }

    async fn journal(&self, wf: WorkflowId) -> Vec<netledger_domain::RecordedEvent> {
        self.reader
            .read_stream(&wf.stream(), 1, Direction::Forward, 100_000)
            .await
            .unwrap()
    }

    async fn outcome(&self, wf: WorkflowId) -> Option<Outcome> {
        self.engine
            .status(self.tenant, wf)
            .await
            .unwrap()
            .and_then(|s| s.outcome)
    }

    async fn children(&self, parent: WorkflowId) -> Vec<WorkflowId> {
        let rows: Vec<Uuid> = sqlx::query_scalar(
            "SELECT workflow_id FROM workflow_tasks WHERE parent_id = $1 ORDER BY created_at",
        )
        .bind(parent.as_uuid())
        .fetch_all(&self.owner)
        .await
        .unwrap();
        rows.into_iter().map(WorkflowId::from_uuid).collect()
    }

    /// Everything that must hold for a finished instance; the problems found.
    async fn check(&self, sc: Scenario, inst: &Instance, fleet: &Fleet) -> Vec<String> {
        let mut bad = Vec::new();
        let journal = self.journal(inst.wf).await;
        let outcome = self.outcome(inst.wf).await;
        // Two kills may both hit a verify attempt (verify is not retried across crashes:
        // each interrupted attempt uses one up): then the push rolls back, which is safe.
        let expected = if sc == Scenario::PushTwice && outcome == Some(Outcome::RolledBack) {
            Outcome::RolledBack
        } else {
            sc.expected()
        };
        if outcome != Some(expected) {
            let last = journal.last().map(|e| e.payload.to_string());
            bad.push(format!(
                "outcome {outcome:?}, expected {expected:?}: {last:?}"
            ));
        }
        if let Err(e) = well_formed(&journal) {
            bad.push(format!("journal: {e}"));
        }
        if sc.rollout() {
            let children = self.children(inst.wf).await;
            if children.len() != inst.devices.len() {
                bad.push(format!(
                    "{} children, expected {}",
                    children.len(),
                    inst.devices.len()
                ));
            }
            for c in &children {
                let o = self.outcome(*c).await;
                if o != Some(Outcome::Committed) {
                    bad.push(format!("child {c}: outcome {o:?}"));
                }
                if let Err(e) = well_formed(&self.journal(*c).await) {
                    bad.push(format!("child {c} journal: {e}"));
                }
            }
        }
        for (device, index) in inst.devices.iter().zip(&inst.fleet_index) {
            let d = fleet.device(*index).unwrap();
            if sc.applies() {
                let n = d.change_counts().get(&inst.change).copied();
                if n != Some(1) {
                    bad.push(format!("device {device} applied the change {n:?} times"));
                }
            }
            if d.export(false).contains("netledger-rollback-") {
                bad.push(format!("device {device} still has a rollback timer"));
            }
            if let Some(left) = leftovers(d) {
                bad.push(format!("device {device} keeps {left}"));
            }
            if (matches!(sc, Scenario::Cancel | Scenario::Restore)
                || expected == Outcome::RolledBack)
                && d.export(false).contains("pool-nl")
            {
                bad.push(format!("device {device} still has the change"));
            }
            if expected == Outcome::Committed && !d.export(false).contains("pool-nl") {
                bad.push(format!("device {device} lost the committed change"));
            }
            if sc == Scenario::Restore {
                // the snapshot backup is loaded once (a re-run finds the device restored)
                let loads = d
                    .command_log()
                    .iter()
                    .filter(|l| l.split_whitespace().nth(1) == Some("/system/backup/load"))
                    .count();
                if loads != 1 {
                    bad.push(format!("device {device}: {loads} backup loads"));
                }
            }
            if sc == Scenario::Firmware {
                let log = d.command_log();
                let count = |path: &str| {
                    log.iter()
                        .filter(|l| l.split_whitespace().nth(1) == Some(path))
                        .count()
                };
                let (reboots, fetches) = (count("/system/reboot"), count("/tool/fetch"));
                if reboots != 2 || fetches != 1 {
                    bad.push(format!(
                        "device {device}: {reboots} reboots and {fetches} package fetches"
                    ));
                }
                if d.version().to_string() != FIRMWARE {
                    bad.push(format!("device {device} runs {}", d.version()));
                }
            }
            // config snapshots: one event per (workflow, reason)
            let events = self
                .reader
                .read_stream(&device.stream(), 1, Direction::Forward, 100_000)
                .await
                .unwrap();
            let mut snaps: BTreeMap<(String, String), usize> = BTreeMap::new();
            for e in events
                .iter()
                .filter(|e| e.event_type == "ConfigSnapshotRecorded")
            {
                let wf = e.payload["workflow_id"].as_str().unwrap_or("-").to_owned();
                let reason = e.payload["reason"].to_string();
                *snaps.entry((wf, reason)).or_default() += 1;
            }
            for ((wf, reason), n) in &snaps {
                if *n != 1 {
                    bad.push(format!(
                        "device {device}: {n} ConfigSnapshotRecorded {reason} of workflow {wf}"
                    ));
                }
            }
            let expected_snaps = match sc {
                Scenario::Firmware | Scenario::Backup => 1,
                // the push's two, and the restore's own
                Scenario::Restore => 3,
                _ => 2,
            };
            if snaps.len() != expected_snaps {
                bad.push(format!(
                    "device {device}: snapshots {snaps:?}, expected {expected_snaps} kinds"
                ));
            }
        }
        if let Some(rid) = inst.rollout {
            let events = self
                .reader
                .read_stream(&rid.stream(), 1, Direction::Forward, 100_000)
                .await
                .unwrap();
            let seen: Vec<String> = events
                .iter()
                .map(|e| match e.event_type.as_str() {
                    "RolloutDeviceFinished" => format!("finished {}", e.payload["device_id"]),
                    "RolloutStateChanged" => format!("state {}", e.payload["state"]),
                    t => t.to_owned(),
                })
                .collect();
            let mut want = vec![
                "RolloutCreated".to_owned(),
                "state \"running\"".to_owned(),
                format!("finished \"{}\"", inst.devices[0]),
            ];
            // the devices after the canary finish in any order (parallel children)
            let mut rest: Vec<String> = inst.devices[1..]
                .iter()
                .map(|d| format!("finished \"{d}\""))
                .collect();
            rest.sort();
            want.extend(rest);
            want.push("state \"completed\"".to_owned());
            let mut seen = seen;
            if seen.len() == want.len() {
                seen[3..want.len() - 1].sort();
            }
            if seen != want {
                bad.push(format!("rollout stream {seen:?}, expected {want:?}"));
            }
        }
        bad
    }
}

/// What Netledger left on a device that reached a terminal state: files whose name (in any
/// folder) starts with `netledger-`, and `netledger-rollback-*` scheduler entries; `None`
/// when there is nothing (issue #15 item 2).
fn leftovers(d: &devsim::Device) -> Option<String> {
    let files: Vec<String> = d
        .file_names()
        .into_iter()
        .filter(|f| f.rsplit('/').next().unwrap_or(f).starts_with("netledger-"))
        .collect();
    let timers: Vec<String> = d
        .scheduler_names()
        .into_iter()
        .filter(|n| n.starts_with(netledger_netops::device::ROLLBACK_TIMER_PREFIX))
        .collect();
    if files.is_empty() && timers.is_empty() {
        None
    } else {
        Some(format!(
            "Netledger files {files:?} and rollback timers {timers:?}"
        ))
    }
}

/// Complete and ordered: `WorkflowStarted` first, `WorkflowFinished` once and last; a
/// started step gets exactly one outcome of that attempt before any other step starts,
/// except an attempt interrupted by a crash, which is followed (after the takeover) by the
/// next attempt of the same step; a completed step never starts again.
fn well_formed(journal: &[netledger_domain::RecordedEvent]) -> Result<(), String> {
    let types: Vec<&str> = journal.iter().map(|e| e.event_type.as_str()).collect();
    if types.first() != Some(&"WorkflowStarted") {
        return Err(format!("does not begin with WorkflowStarted: {types:?}"));
    }
    let finishes = types.iter().filter(|t| **t == "WorkflowFinished").count();
    if finishes != 1 || types.last() != Some(&"WorkflowFinished") {
        return Err(format!(
            "{finishes} WorkflowFinished, last {:?}",
            types.last()
        ));
    }
    let mut open: Option<(String, u64)> = None;
    let mut taken_over_since_open = false;
    let mut done = BTreeSet::new();
    for e in journal {
        let step = e.payload["step"].as_str().unwrap_or_default().to_owned();
        let attempt = e.payload["attempt"].as_u64().unwrap_or_default();
        match e.event_type.as_str() {
            "WorkflowStepStarted" => {
                if let Some((o, a)) = &open
                    && (*o != step || attempt != a + 1 || !taken_over_since_open)
                {
                    return Err(format!(
                        "{step}#{attempt} started while {o}#{a} was open (taken over: \
                         {taken_over_since_open})"
                    ));
                }
                if done.contains(&step) {
                    return Err(format!("{step} started again after it completed"));
                }
                open = Some((step, attempt));
                taken_over_since_open = false;
            }
            "WorkflowStepCompleted" | "WorkflowStepFailed" => {
                match &open {
                    Some((o, a)) if *o == step && *a == attempt => {}
                    other => {
                        return Err(format!(
                            "{} of {step}#{attempt} while {other:?} was open",
                            e.event_type
                        ));
                    }
                }
                if e.event_type == "WorkflowStepCompleted" {
                    done.insert(step);
                }
                open = None;
            }
            "WorkflowTakenOver" => taken_over_since_open = true,
            _ => {}
        }
    }
    match open {
        Some((o, a)) => Err(format!("{o}#{a} never got an outcome")),
        None => Ok(()),
    }
}

/// The labels `workflow` reached, in order, first occurrences only (a kill plan names the
/// first time a workflow reaches a label). `filter` picks log lines: (workflow, kind, device).
fn labels(log: &str, filter: impl Fn(&str, &str, &str) -> bool) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in log.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() == 5
            && f[0] != "KILL"
            && filter(f[1], f[2], f[3])
            && !out.contains(&f[4].to_owned())
        {
            out.push(f[4].to_owned());
        }
    }
    out
}

/// For a restore: commits a push on each of `devices` (first worker run, no kills) and
/// returns (push workflow, change id) per device.
async fn setup_pushes(
    env: &Env,
    sc: Scenario,
    devices: &[DeviceId],
    dir: &Path,
) -> Vec<Option<(WorkflowId, String)>> {
    if sc != Scenario::Restore {
        return vec![None; devices.len()];
    }
    std::fs::create_dir_all(dir).unwrap();
    let mut pushes = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        let p = env.start(Scenario::PushCommit, &[*d], i, None).await;
        pushes.push(Some((p.wf, p.change)));
    }
    env.run_until_finished(dir, WORKERS).await.unwrap();
    for (wf, _) in pushes.iter().flatten() {
        assert_eq!(env.outcome(*wf).await, Some(Outcome::Committed));
    }
    pushes
}

async fn run(owner: PgPool, sc: Scenario) {
    let env = env(owner, sc).await;
    let per = sc.devices();
    let signal_line = |key: &str| {
        sc.signal()
            .map(|(label, signal)| format!("{key}\t{label}\t{signal}\n"))
            .unwrap_or_default()
    };

    // 1. discovery: no kills
    let t0 = Instant::now();
    let discovery = env.dir.join("discovery");
    std::fs::create_dir_all(&discovery).unwrap();
    let (fleet0, devices0) = env.fleet(per).await;
    let push0 = setup_pushes(&env, sc, &devices0[..1], &env.dir.join("setup0")).await;
    let inst0 = env.start(sc, &devices0, 0, push0[0].clone()).await;
    std::fs::write(discovery.join("plan"), signal_line(&inst0.wf.to_string())).unwrap();
    env.run_until_finished(&discovery, 1).await.unwrap();
    let bad = env.check(sc, &inst0, &fleet0).await;
    assert!(bad.is_empty(), "{sc:?} without kills: {bad:?}");
    let log = std::fs::read_to_string(discovery.join("points.log")).unwrap();
    let wf0 = inst0.wf.to_string();
    let parent = labels(&log, |wf, _, _| wf == wf0);
    let d0 = devices0[0].to_string();
    let child = if sc.rollout() {
        labels(&log, |_, kind, device| {
            kind == "config_push" && device == d0
        })
    } else {
        Vec::new()
    };
    assert!(!parent.is_empty(), "no crash points in {log}");
    if sc == Scenario::PushRetry {
        assert!(
            parent.iter().any(|l| l == "retry:arm/suspended"),
            "the retry suspension was not reached: {parent:?}"
        );
    }
    if let Some((label, _)) = sc.signal() {
        assert!(
            parent.iter().any(|l| l == label),
            "the signal point {label} was not reached: {parent:?}"
        );
    }
    let discovery_time = t0.elapsed();
    let all_points = (parent.len(), child.len());
    let parent = sc.sample(&parent, true, &devices0);
    let child = sc.sample(&child, false, &devices0);

    // 2. one workflow per crash point, each killed at its point once (PushTwice: at its
    // point and at the next one)
    let t1 = Instant::now();
    let n = parent.len().max(child.len());
    let (fleet, devices) = env.fleet(n * per).await;
    let firsts: Vec<DeviceId> = devices.iter().step_by(per).copied().collect();
    let pushes = setup_pushes(&env, sc, &firsts, &env.dir.join("setup")).await;
    let killing = env.dir.join("kills");
    std::fs::create_dir_all(&killing).unwrap();
    let mut instances = Vec::new();
    let mut plan = String::new();
    // (key, label) planned for instance i; the kills that must happen come first
    let mut planned: Vec<Vec<(String, String)>> = Vec::new();
    let mut optional: Vec<Vec<(String, String)>> = Vec::new();
    for i in 0..n {
        let devs = &devices[i * per..(i + 1) * per];
        let inst = env.start(sc, devs, i * per, pushes[i].clone()).await;
        let mut keys = Vec::new();
        let mut maybe = Vec::new();
        if i < parent.len() {
            // rollout step names carry device ids: the discovery's become this instance's
            let rename = |l: &str| {
                let mut label = l.to_owned();
                for (a, b) in devices0.iter().zip(devs) {
                    label = label.replace(&a.to_string(), &b.to_string());
                }
                label
            };
            keys.push((inst.wf.to_string(), rename(&parent[i])));
            if sc == Scenario::PushTwice && i + 1 < parent.len() {
                // the next point may not be passed live again after the first kill (a
                // replayed step reports none): planned, reported, not required
                maybe.push((inst.wf.to_string(), rename(&parent[i + 1])));
            }
        }
        if i < child.len() {
            // the canary's push, and (parallel children) one of the batch run beside another
            keys.push((format!("config_push@{}", devs[0]), child[i].clone()));
            if sc == Scenario::RolloutParallel {
                keys.push((format!("config_push@{}", devs[1]), child[i].clone()));
            }
        }
        for (k, l) in keys.iter().chain(&maybe) {
            plan.push_str(&format!("{k}\t{l}\n"));
        }
        plan.push_str(&signal_line(&inst.wf.to_string()));
        planned.push(keys);
        optional.push(maybe);
        instances.push(inst);
    }
    std::fs::write(killing.join("plan"), plan).unwrap();
    let kills = env.run_until_finished(&killing, WORKERS).await;
    let kill_time = t1.elapsed();

    let mut failures = Vec::new();
    if let Err(e) = &kills {
        failures.push(e.clone());
    }
    let mut second_kills = 0;
    for ((inst, keys), maybe) in instances.iter().zip(&planned).zip(&optional) {
        let at: Vec<&str> = keys.iter().chain(maybe).map(|(_, l)| l.as_str()).collect();
        for (key, label) in keys {
            if !killing.join("killed").join(marker(key, label)).exists() {
                failures.push(format!(
                    "{at:?}: the planned kill at {label} ({key}) never happened"
                ));
            }
        }
        second_kills += maybe
            .iter()
            .filter(|(k, l)| killing.join("killed").join(marker(k, l)).exists())
            .count();
        for b in env.check(sc, inst, &fleet).await {
            failures.push(format!("killed at {at:?}: {b}"));
        }
    }
    if sc == Scenario::PushTwice && second_kills * 2 < n {
        failures.push(format!(
            "only {second_kills} of {n} workflows were killed a second time"
        ));
    }
    eprintln!(
        "{sc:?}: {} crash points planned ({} parent, {} child; reached: {all_points:?}), {n} \
         workflows, {:?} workers killed ({second_kills} second kills); discovery \
         {discovery_time:?}, kill phase {kill_time:?}",
        parent.len() + child.len(),
        parent.len(),
        child.len(),
        kills,
    );
    eprintln!("{sc:?} crash points: {parent:?} {child:?}");
    assert!(
        failures.is_empty(),
        "{sc:?}: {} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    drop(fleet0);
    drop(fleet);
    let _ = std::fs::remove_dir_all(&env.dir);
}

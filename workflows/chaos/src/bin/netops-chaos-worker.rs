//! A worker process running `netops::workflows::run_worker` (the code `netledger worker`
//! runs) for the crash test (`tests/netops_chaos.rs`), which makes it kill itself with a real
//! SIGKILL at planned crash points. Arguments:
//! `<database url> <archive dir> <credential key base64> <firmware cache dir> <cache base url>
//! <name> <chaos dir> <concurrency> [<max inline wait ms>]` (default 5000; 0 makes every
//! wait, a retry's backoff included, release the lease: its `<what>/suspending` and
//! `<what>/suspended` points are reached).
//!
//! The chaos dir holds:
//! - `plan` (read at start): lines `<key>\t<label>`, key = a workflow id, or
//!   `<kind>@<device id>` for a workflow started by another (a rollout's child). The worker
//!   dies at the first crash point with that label that the keyed workflow reaches live,
//!   once per (key, label) in the whole test: it first creates `killed/<marker>` ([`marker`];
//!   and skips a pair whose file exists), so a later worker finishes the workflow. A key may
//!   have several labels (killed at each in turn, in plan order: a label is skipped until the
//!   kills planned before it happened).
//!   Lines `<key>\t<label>\t<signal>` deliver signal `<signal>` (`cancel`, `pause`) to the
//!   workflow instead, once, when it first reaches the label live: the signal is journaled
//!   right after that point (the run's next append conflicts and absorbs it), which makes the
//!   cancel and pause paths deterministic.
//! - `points.log` (appended): `<pid>\t<workflow>\t<kind>\t<first device or ->\t<label>`
//!   for every crash point reached, `KILL\t<key>\t<label>` right before a kill and
//!   `SIGNAL\t<key>\t<label>\t<signal>` after a signal.
//!
//! The crash-point hook is given to the worker in `WorkerOptions::crash_points`; production
//! workers have none (and read no plan).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netledger_archive::{Archive, ArchiveOptions};
use netledger_domain::{Actor, TenantId, WorkflowId};
use netledger_engine::{CrashHook, CrashPoint, CrashPoints, Engine, Registry, WorkerOptions};
use netledger_netops::workflows::{NetopsDeps, NetopsOptions, run_worker};
use netledger_netops::{RollbackOptions, VerifyOptions};
use netledger_store::credentials::{CredentialKeys, KeyMaterial};
use netledger_store::{EventStore, Pools, StoreOptions};
use netledger_testkit::TestClock;

/// The file that records the kill of `key` at `label` (under `killed/`).
fn marker(key: &str, label: &str) -> String {
    format!("{key}#{}", label.replace('/', "|"))
}

/// Logs every crash point, dies at the planned ones and delivers the planned signals.
struct Chaos {
    dir: PathBuf,
    url: String,
    /// key -> labels to die at, in order
    plan: HashMap<String, Vec<String>>,
    /// key -> (label, signal)
    signals: HashMap<String, Vec<(String, String)>>,
    log: Mutex<std::fs::File>,
}

impl Chaos {
    fn open(dir: PathBuf, url: String) -> Self {
        let mut plan: HashMap<String, Vec<String>> = HashMap::new();
        let mut signals: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for line in std::fs::read_to_string(dir.join("plan"))
            .unwrap_or_default()
            .lines()
        {
            let f: Vec<&str> = line.split('\t').collect();
            match f.as_slice() {
                [k, l] => plan
                    .entry((*k).to_owned())
                    .or_default()
                    .push((*l).to_owned()),
                [k, l, sig] => signals
                    .entry((*k).to_owned())
                    .or_default()
                    .push(((*l).to_owned(), (*sig).to_owned())),
                _ => {}
            }
        }
        std::fs::create_dir_all(dir.join("killed")).unwrap();
        std::fs::create_dir_all(dir.join("signalled")).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("points.log"))
            .unwrap();
        Self {
            dir,
            url,
            plan,
            signals,
            log: Mutex::new(log),
        }
    }

    /// Appends signal `name` to `workflow`'s journal, synchronously: on a thread of its own
    /// with its own runtime and connection (this process's one thread is inside the hook).
    fn deliver(&self, workflow: WorkflowId, name: &str) {
        let url = self.url.clone();
        let name = name.to_owned();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let owner: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
                let pools = Pools::connect(&owner, None, None, 1).await.unwrap();
                let tenant: sqlx::types::Uuid = sqlx::query_scalar(
                    "SELECT tenant_id FROM workflow_tasks WHERE workflow_id = $1",
                )
                .bind(workflow.as_uuid())
                .fetch_one(&pools.system)
                .await
                .unwrap();
                let store = EventStore::start(pools.app.clone(), StoreOptions::default());
                let engine = Engine::new(
                    pools.app.clone(),
                    store,
                    Arc::new(Registry::new()),
                    Arc::new(TestClock::new()),
                );
                engine
                    .signal(
                        TenantId::from_uuid(tenant),
                        workflow,
                        &name,
                        serde_json::json!({ "reason": "chaos test" }),
                        Actor::system("chaos"),
                    )
                    .await
                    .unwrap();
            });
        })
        .join()
        .unwrap();
    }

    fn write(&self, line: String) {
        let mut f = self.log.lock().unwrap_or_else(|p| p.into_inner());
        // one write per line: appends of whole lines from several processes do not mix
        f.write_all(line.as_bytes()).unwrap();
    }
}

impl CrashPoints for Chaos {
    fn reached(&self, p: &CrashPoint<'_>) {
        let label = p.label();
        let device = p
            .devices
            .first()
            .map_or_else(|| "-".to_owned(), ToString::to_string);
        self.write(format!(
            "{}\t{}\t{}\t{device}\t{label}\n",
            std::process::id(),
            p.workflow,
            p.kind
        ));
        let keys = [p.workflow.to_string(), format!("{}@{device}", p.kind)];
        for key in &keys {
            for (at, signal) in self.signals.get(key).into_iter().flatten() {
                if *at != label {
                    continue;
                }
                let first = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(self.dir.join("signalled").join(marker(key, at)));
                if first.is_ok() {
                    self.deliver(p.workflow, signal);
                    self.write(format!("SIGNAL\t{key}\t{label}\t{signal}\n"));
                }
            }
        }
        for key in &keys {
            let Some(labels) = self.plan.get(key) else {
                continue;
            };
            let Some(i) = labels.iter().position(|l| *l == label) else {
                continue;
            };
            // in plan order: the earlier planned kills of this key come first
            if labels[..i]
                .iter()
                .any(|l| !self.dir.join("killed").join(marker(key, l)).exists())
            {
                continue;
            }
            let marker = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(self.dir.join("killed").join(marker(key, &label)));
            if marker.is_err() {
                continue; // killed there once already: this worker finishes it
            }
            self.write(format!("KILL\t{key}\t{label}\n"));
            let me = rustix::process::getpid();
            rustix::process::kill_process(me, rustix::process::Signal::KILL).unwrap();
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

// One thread: when the hook runs, nothing else in this process moves until it dies.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    let owner: sqlx::postgres::PgConnectOptions = a[1].parse().unwrap();
    let pools = Pools::connect(&owner, None, None, 2).await.unwrap();
    let store = EventStore::start(pools.app.clone(), StoreOptions::default());
    let archive = Archive::open_with(
        a[2].clone(),
        ArchiveOptions {
            fsync: false,
            ..ArchiveOptions::default()
        },
    )
    .unwrap();
    let keys = CredentialKeys::new(
        "k1",
        [(
            "k1".to_owned(),
            KeyMaterial::from_base64("k1", &a[3]).unwrap(),
        )],
    )
    .unwrap();
    let deps = NetopsDeps {
        app: pools.app.clone(),
        system: pools.system.clone(),
        store,
        archive,
        keys,
        firmware_cache: a[4].clone().into(),
        firmware_base_url: a[5].clone(),
        options: NetopsOptions {
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(5),
            verify: VerifyOptions {
                reachable_within: Duration::from_secs(2),
                retry_every: Duration::from_millis(100),
            },
            rollback: RollbackOptions {
                wait_for_device: Duration::from_secs(30),
                reboot_wait: Duration::from_secs(10),
                retry_every: Duration::from_millis(100),
            },
            arm_margin: Duration::from_secs(60),
            await_reboot: netledger_netops::firmware::AwaitOptions {
                within: Duration::from_secs(10),
                retry_every: Duration::from_millis(100),
            },
            retry: netledger_engine::RetryPolicy {
                max_attempts: 10,
                initial_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(1),
                ..netledger_engine::RetryPolicy::default()
            },
            // The chaos fleet listens on loopback: this harness's one opt-in.
            device_networks: netledger_domain::device::network::DeviceNetworkPolicy::default()
                .with_loopback(),
            ..NetopsOptions::default()
        },
        clock: Arc::new(TestClock::new()),
    };
    let mut o = WorkerOptions::named(a[6].clone());
    o.concurrency = a[8].parse().unwrap();
    o.lease = Duration::from_millis(1500);
    o.heartbeat = Duration::from_millis(300);
    o.poll = Duration::from_millis(100);
    o.max_inline_wait = Duration::from_millis(a.get(9).map_or(5000, |ms| ms.parse().unwrap()));
    o.crash_points = Some(CrashHook(Arc::new(Chaos::open(
        PathBuf::from(&a[7]),
        a[1].clone(),
    ))));
    run_worker(deps, o, None, std::future::pending::<()>())
        .await
        .unwrap();
}

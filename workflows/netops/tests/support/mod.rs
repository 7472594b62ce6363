//! Shared harness of the netops integration tests: a real PostgreSQL (the test's fresh
//! database), an archive and a firmware cache in temp dirs, a devsim fleet over real
//! sockets, and one worker running every netops definition.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod kinds;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use devsim::{Fleet, FleetOptions, ManifestEntry, SystemClock};
use netledger_archive::{Archive, ArchiveOptions};
use netledger_domain::device::{DeviceName, Endpoint, Host, SshAccess, SshHostKey, Transport};
use netledger_domain::workflow::Outcome;
use netledger_domain::{Actor, DeviceId, EventMetadata, StreamName, TenantId, WorkflowId};
use netledger_engine::{Engine, StartOptions, TaskState, WorkerOptions};
use netledger_netops::workflows::{NetopsDeps, NetopsOptions, registry, run_worker};
use netledger_netops::{RollbackOptions, VerifyOptions};
use netledger_store::credentials::{CredentialKeys, DevicePassword, KeyMaterial};
use netledger_store::devices::{DeviceCommands, RegisterDevice};
use netledger_store::{Direction, EventReader, EventStore, Pools, StoreOptions};
use netledger_testkit::TestClock;
use sqlx::PgPool;
use uuid::Uuid;

pub struct TempDir(pub PathBuf);
impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("netops-test-{tag}-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Env {
    pub pools: Pools,
    pub deps: NetopsDeps,
    /// The clock of the workflows and the engine (`deps.clock`): tests move it forward.
    pub clock: Arc<TestClock>,
    pub engine: Engine,
    pub tenant: TenantId,
    pub fleet: Fleet,
    pub _dirs: (TempDir, TempDir),
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub worker: Option<tokio::task::JoinHandle<()>>,
    pub worker_name: String,
}

/// The bytes of the harness's credential key `k1`.
pub const K1: [u8; 32] = [0x11; 32];

/// A fresh environment: pools on the test database, an archive and firmware cache in temp
/// dirs, `n` devsim RouterOS 7 devices, and a worker named `worker` running every netops
/// definition.
pub async fn env(owner: PgPool, n: usize, worker: &str) -> Env {
    env_with(owner, n, worker, |_| {}).await
}

/// [`env`] with the workflow options adjusted by `tweak` (CA roots, say).
pub async fn env_with(
    owner: PgPool,
    n: usize,
    worker: &str,
    tweak: impl FnOnce(&mut NetopsOptions),
) -> Env {
    env_full(owner, n, worker, tweak, |_| {}).await
}

/// [`env_with`], and the worker's options adjusted by `worker_tweak` (a lease longer than
/// any clock jump a test makes, say).
pub async fn env_full(
    owner: PgPool,
    n: usize,
    worker: &str,
    tweak: impl FnOnce(&mut NetopsOptions),
    worker_tweak: impl FnOnce(&mut WorkerOptions) + Send + 'static,
) -> Env {
    env_fleet(owner, n, Vec::new(), worker, tweak, worker_tweak).await
}

/// The export of a fresh devsim device whose header says RouterOS `version` (devsim takes
/// a device's version from its export's header): the factory configuration of a v6 or a v7
/// device, whichever `version` is.
pub async fn export_for_version(version: &str) -> String {
    let mut o = FleetOptions::new(1, Arc::new(SystemClock::new()));
    o.v6_share = if version.starts_with('6') { 1.0 } else { 0.0 };
    o.ssh = false;
    o.tick = None;
    let one = Fleet::start(o).await.unwrap();
    let d = one.device(0).unwrap();
    let text = d.export(false);
    let actual = d.version().to_string();
    one.shutdown();
    let header = format!("by RouterOS {actual}");
    assert!(text.contains(&header), "{text}");
    text.replacen(&header, &format!("by RouterOS {version}"), 1)
}

/// [`env_with`] on a fleet whose device `i` runs RouterOS `versions[i]` (SSH served, as on
/// every devsim device).
pub async fn env_versions(
    owner: PgPool,
    versions: &[&str],
    worker: &str,
    tweak: impl FnOnce(&mut NetopsOptions),
) -> Env {
    let mut exports = Vec::new();
    for v in versions {
        exports.push(export_for_version(v).await);
    }
    env_fleet(owner, versions.len(), exports, worker, tweak, |_| {}).await
}

async fn env_fleet(
    owner: PgPool,
    n: usize,
    exports: Vec<String>,
    worker: &str,
    tweak: impl FnOnce(&mut NetopsOptions),
    worker_tweak: impl FnOnce(&mut WorkerOptions) + Send + 'static,
) -> Env {
    let pools = Pools::connect(&owner.connect_options(), None, None, 8)
        .await
        .unwrap();
    let store = EventStore::start(pools.app.clone(), StoreOptions::default());
    let archive_dir = TempDir::new("archive");
    let cache_dir = TempDir::new("cache");
    let archive = Archive::open_with(
        archive_dir.0.clone(),
        ArchiveOptions {
            fsync: false,
            ..ArchiveOptions::default()
        },
    )
    .unwrap();
    let keys = CredentialKeys::new("k1", [("k1".to_owned(), KeyMaterial::from_bytes(K1))]).unwrap();
    let mut o = FleetOptions::new(n, Arc::new(SystemClock::new()));
    o.v6_share = 0.0;
    o.reboot_time = Duration::from_secs(1);
    o.tick = Some(Duration::from_millis(100));
    o.exports = exports;
    let fleet = Fleet::start(o).await.unwrap();
    let cache_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", cache_listener.local_addr().unwrap());
    let mut options = NetopsOptions {
        connect_timeout: Duration::from_secs(1),
        command_timeout: Duration::from_secs(5),
        verify: VerifyOptions {
            reachable_within: Duration::from_secs(1),
            retry_every: Duration::from_millis(100),
        },
        rollback: RollbackOptions {
            wait_for_device: Duration::from_secs(15),
            reboot_wait: Duration::from_secs(10),
            retry_every: Duration::from_millis(100),
        },
        arm_margin: Duration::from_secs(1),
        verify_attempts: 1,
        // The simulated fleet listens on loopback: this harness's one opt-in.
        device_networks: netledger_domain::device::network::DeviceNetworkPolicy::default()
            .with_loopback(),
        ..NetopsOptions::default()
    };
    tweak(&mut options);
    let clock = Arc::new(TestClock::new());
    let deps = NetopsDeps {
        app: pools.app.clone(),
        system: pools.system.clone(),
        store: store.clone(),
        archive,
        keys,
        firmware_cache: cache_dir.0.clone(),
        firmware_base_url: base,
        options,
        clock: clock.clone(),
    };
    let engine = Engine::new(
        pools.app.clone(),
        store,
        Arc::new(registry(deps.clone()).unwrap()),
        deps.clock.clone(),
    );
    let worker_name = worker.to_owned();
    let (stop, worker) = spawn_worker(deps.clone(), worker, Some(cache_listener), worker_tweak);
    Env {
        pools,
        deps,
        clock,
        engine,
        tenant: TenantId::from_uuid(Uuid::new_v4()),
        fleet,
        _dirs: (archive_dir, cache_dir),
        stop: Some(stop),
        worker: Some(worker),
        worker_name,
    }
}

/// Runs a worker named `name` on `deps` until the returned sender fires.
fn spawn_worker(
    deps: NetopsDeps,
    name: &str,
    cache_listener: Option<tokio::net::TcpListener>,
    worker_tweak: impl FnOnce(&mut WorkerOptions) + Send + 'static,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker_name = name.to_owned();
    let worker = tokio::spawn(async move {
        let mut opts = WorkerOptions::named(&worker_name);
        opts.poll = Duration::from_millis(100);
        opts.max_inline_wait = Duration::from_secs(5);
        worker_tweak(&mut opts);
        run_worker(deps, opts, cache_listener, async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (stop, worker)
}

impl Env {
    /// Registers devsim device `i` in the tenant.
    /// Starts card `kind` with `input` (JSON of its input), owning `device`.
    pub async fn start(
        &self,
        kind: &str,
        device: DeviceId,
        input: serde_json::Value,
    ) -> WorkflowId {
        kinds::start_kind(
            &self.engine,
            self.tenant,
            kind,
            input,
            StartOptions::new(Actor::system("test")).devices([device]),
        )
        .await
        .unwrap()
        .workflow_id
    }

    /// Waits (up to 60 s) until `wf` finished: its outcome and journal.
    pub async fn finish(&self, wf: WorkflowId) -> (Outcome, Vec<(String, serde_json::Value)>) {
        self.finish_within(wf, 600).await
    }

    /// Waits up to `polls` × 100 ms until `wf` finished: its outcome and journal.
    pub async fn finish_within(
        &self,
        wf: WorkflowId,
        polls: u32,
    ) -> (Outcome, Vec<(String, serde_json::Value)>) {
        for _ in 0..polls {
            let s = self.engine.status(self.tenant, wf).await.unwrap().unwrap();
            if s.state == TaskState::Finished {
                return (s.outcome.unwrap(), self.journal(wf).await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("workflow {wf} did not finish: {:?}", self.journal(wf).await);
    }

    /// The workflow's journal: (event type, payload) in order.
    pub async fn journal(&self, wf: WorkflowId) -> Vec<(String, serde_json::Value)> {
        self.stream(&wf.stream()).await
    }

    /// A stream of the tenant: (event type, payload) in order.
    pub async fn stream(&self, stream: &StreamName) -> Vec<(String, serde_json::Value)> {
        EventReader::tenant(self.pools.app.clone(), self.tenant)
            .read_stream(stream, 1, Direction::Forward, 10_000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.event_type.clone(), e.payload.clone()))
            .collect()
    }

    pub async fn register(&self, i: usize) -> DeviceId {
        let api = self.fleet.manifest()[i].api;
        let endpoint = Endpoint {
            host: Host::parse(&api.ip().to_string()).unwrap(),
            port: api.port(),
            transport: Transport::Plain,
            ssh: None,
        };
        self.register_at(i, endpoint).await
    }

    /// Registers devsim device `i` with SSH access, its host key pinned from the manifest.
    pub async fn register_ssh(&self, i: usize) -> DeviceId {
        let key = SshHostKey::pinned(&self.fleet.manifest()[i].ssh_host_key_sha256).unwrap();
        self.register_ssh_with(i, key).await
    }

    /// Registers devsim device `i` with SSH access trusted as `host_key`.
    pub async fn register_ssh_with(&self, i: usize, host_key: SshHostKey) -> DeviceId {
        let m = &self.fleet.manifest()[i];
        let endpoint = Endpoint {
            host: Host::parse(&m.api.ip().to_string()).unwrap(),
            port: m.api.port(),
            transport: Transport::Plain,
            ssh: Some(SshAccess {
                port: m.ssh.port(),
                host_key,
            }),
        };
        self.register_at(i, endpoint).await
    }

    /// Registers devsim device `i` with SSH access (host key pinned) and an SSH key in its
    /// credentials (the key of `seed`), authorized on the device for its user when
    /// `authorize` (its SSH password login is then refused, RouterOS's default).
    pub async fn register_ssh_key(&self, i: usize, seed: &str, authorize: bool) -> DeviceId {
        let device = self.register_ssh(i).await;
        let m = &self.fleet.manifest()[i];
        let key = netledger_testkit::ssh_client_key(seed).unwrap();
        if authorize {
            self.fleet
                .device(i)
                .unwrap()
                .authorize_ssh_key(&m.username, &key.public.public_key)
                .unwrap();
        }
        DeviceCommands::new(self.pools.app.clone(), self.deps.keys.clone())
            .change_credentials(
                self.tenant,
                device,
                &m.username,
                &DevicePassword::new(m.password.clone()),
                Some(&key),
                None,
                EventMetadata::for_command(Actor::system("test"), Uuid::new_v4()),
            )
            .await
            .unwrap();
        device
    }

    /// Registers devsim device `i` (its credentials) reached at `endpoint`.
    pub async fn register_at(&self, i: usize, endpoint: Endpoint) -> DeviceId {
        let m: &ManifestEntry = &self.fleet.manifest()[i];
        let device = DeviceId::from_uuid(Uuid::new_v4());
        DeviceCommands::new(self.pools.app.clone(), self.deps.keys.clone())
            .register(
                self.tenant,
                RegisterDevice {
                    device_id: device,
                    name: DeviceName::parse(&format!("dev-{i}")).unwrap(),
                    endpoint,
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
        device
    }

    /// Puts `bytes` as `<version>/<file>` into the tenant's part of the firmware cache and
    /// pins it with the tenant's `FirmwarePackageCached`, as an upload through the API does.
    pub async fn put_firmware(&self, version: &str, file: &str, bytes: &[u8]) {
        use sha2::Digest as _;
        let dir = netledger_store::firmware::tenant_dir(&self.deps.firmware_cache, self.tenant)
            .join(version);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(file), bytes).unwrap();
        let pin = netledger_domain::NewEvent::from_typed(
            &netledger_domain::firmware::FirmwarePackageCached {
                version: version.to_owned(),
                file_name: file.to_owned(),
                size: bytes.len() as u64,
                sha256: hex::encode(sha2::Sha256::digest(bytes)),
            },
            EventMetadata::for_command(Actor::system("test"), Uuid::new_v4()),
        )
        .unwrap();
        self.deps
            .store
            .append(
                self.tenant,
                &StreamName::parse(&format!("firmware-{version}")).unwrap(),
                netledger_domain::ExpectedVersion::Any,
                vec![pin],
            )
            .await
            .unwrap();
    }

    /// Stops the worker (waits up to 20 s).
    pub async fn stop(mut self) {
        self.stop_worker().await;
    }

    async fn stop_worker(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(w) = self.worker.take() {
            let _ = tokio::time::timeout(Duration::from_secs(20), w).await;
        }
    }

    /// Stops the worker and starts it again with `keys` as its credential keys (the
    /// firmware cache server is not started again).
    pub async fn restart_worker_with(&mut self, keys: CredentialKeys) {
        self.stop_worker().await;
        self.deps.keys = keys;
        let (stop, worker) = spawn_worker(self.deps.clone(), &self.worker_name, None, |_| {});
        self.stop = Some(stop);
        self.worker = Some(worker);
    }
}

//! Poller acceptance tests: real PostgreSQL (a fresh database per test with the real
//! migrations), real devsim devices over real sockets, the real config archive in a temporary
//! directory. Also the device registration commands and encrypted credentials of
//! `netledger-store`, which the poller consumes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use devsim::{Fleet, FleetOptions, ManifestEntry};
use netledger_archive::{Archive, ArchiveOptions};
use netledger_domain::clock::Clock;
use netledger_domain::device::{
    ConfigDriftDetected, DeviceName, DeviceState, Endpoint, Host, Tag, Transport,
};
use netledger_domain::{Actor, DeviceId, EventMetadata, RecordedEvent, TenantId};
use netledger_poller::{BreakerOptions, Poller, PollerDeps, PollerOptions};
use netledger_store::credentials::{CredentialError, CredentialKeys, DevicePassword, KeyMaterial};
use netledger_store::devices::metrics::{Resolution, samples};
use netledger_store::devices::{DeviceCommandError, DeviceCommands, RegisterDevice, UpdateDevice};
use netledger_store::{Direction, EventReader, Pools};
use netledger_testkit::{DemoFleet, TestClock, demo_device_id, register_demo_fleet};
use sqlx::{PgPool, Row};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

struct Env {
    owner: PgPool,
    pools: Pools,
    keys: CredentialKeys,
    archive: Archive,
    _dir: tempfile::TempDir,
}

fn keys(current: &str) -> CredentialKeys {
    CredentialKeys::new(
        current,
        [
            ("k1".to_owned(), KeyMaterial::from_bytes([1; 32])),
            ("k2".to_owned(), KeyMaterial::from_bytes([2; 32])),
        ],
    )
    .unwrap()
}

async fn env(owner: PgPool) -> Env {
    let pools = Pools::connect(&owner.connect_options(), None, None, 20)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::open_with(
        dir.path().join("archive"),
        ArchiveOptions {
            fsync: false,
            ..ArchiveOptions::default()
        },
    )
    .unwrap();
    Env {
        owner,
        pools,
        keys: keys("k1"),
        archive,
        _dir: dir,
    }
}

impl Env {
    fn commands(&self) -> DeviceCommands {
        DeviceCommands::new(self.pools.app.clone(), self.keys.clone())
    }

    fn deps(&self) -> PollerDeps {
        PollerDeps {
            app: self.pools.app.clone(),
            system: self.pools.system.clone(),
            keys: self.keys.clone(),
            archive: self.archive.clone(),
            clock: Arc::new(TestClock::new()),
        }
    }

    async fn events(&self, tenant: TenantId, device: DeviceId) -> Vec<RecordedEvent> {
        EventReader::tenant(self.pools.app.clone(), tenant)
            .read_stream(&device.stream(), 1, Direction::Forward, 10_000)
            .await
            .unwrap()
    }

    async fn types(&self, tenant: TenantId, device: DeviceId) -> Vec<String> {
        self.events(tenant, device)
            .await
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }
}

fn meta() -> EventMetadata {
    EventMetadata::for_command(Actor::User { id: Uuid::new_v4() }, Uuid::new_v4())
}

fn fast(name: &str, interval: Duration) -> PollerOptions {
    PollerOptions {
        name: name.to_owned(),
        shards: 6,
        lease_ttl: Duration::from_millis(1_500),
        heartbeat: Duration::from_millis(250),
        sync_interval: Duration::from_millis(150),
        poll_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(1),
        export_timeout: Duration::from_secs(10),
        jitter: 0.0,
        breaker: BreakerOptions {
            failures: 2,
            base_backoff: Duration::from_millis(400),
            max_backoff: Duration::from_millis(800),
        },
        metrics_flush_interval: Duration::from_millis(150),
        interval_override: Some(interval),
        // The simulated fleet listens on loopback: this harness's one opt-in.
        device_networks: netledger_domain::device::network::DeviceNetworkPolicy::default()
            .with_loopback(),
        ..PollerOptions::default()
    }
}

async fn fleet(n: usize, v6_share: f64) -> Fleet {
    let mut o = FleetOptions::new(n, Arc::new(devsim::SystemClock::new()));
    o.v6_share = v6_share;
    o.reboot_time = Duration::from_millis(800);
    o.tick = Some(Duration::from_millis(100));
    Fleet::start(o).await.unwrap()
}

/// Waits until `check` is true, polling every 50 ms; panics with `what` after `limit`.
async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Serves devsim's control API on a free loopback port.
async fn control(f: &Fleet) -> SocketAddr {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let app = devsim::control::router(f.devices().to_vec(), f.manifest());
    tokio::spawn(devsim::control::serve(addr, app));
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return addr;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("control API did not come up");
}

/// One HTTP/1.1 request to the control API; returns (status, body).
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: devsim\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

async fn command_log(addr: SocketAddr, device: usize) -> Vec<String> {
    let (status, body) = http(addr, "GET", &format!("/devices/{device}/log"), "").await;
    assert_eq!(status, 200, "{body}");
    // The body may be chunked; the JSON array is between the first '[' and the last ']'.
    let start = body.find('[').unwrap();
    let end = body.rfind(']').unwrap();
    serde_json::from_str(&body[start..=end]).unwrap()
}

/// Seconds (devsim clock) of every status poll in a device's command log.
fn poll_times(log: &[String]) -> Vec<f64> {
    log.iter()
        .filter(|l| l.contains("/system/resource/print"))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

async fn register_fleet(
    env: &Env,
    tenant: TenantId,
    m: &[ManifestEntry],
    tls: bool,
) -> Vec<DeviceId> {
    register_demo_fleet(
        &env.commands(),
        tenant,
        m,
        &DemoFleet {
            fleet: "t".to_owned(),
            tls,
            poll_interval_secs: 5,
            tags: vec!["test".to_owned()],
            ssh: false,
        },
    )
    .await
    .unwrap()
}

// ---- registration and credentials ----------------------------------------------------------

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn registration_commands_fold_the_stream_and_use_exact_versions(pool: PgPool) {
    let env = env(pool).await;
    let cmds = env.commands();
    let tenant = TenantId::new_random();
    let device = DeviceId::new_random();
    let register = RegisterDevice {
        device_id: device,
        name: DeviceName::parse("core-1").unwrap(),
        endpoint: Endpoint {
            host: Host::parse("192.0.2.1").unwrap(),
            port: 8729,
            transport: Transport::TlsPinned {
                fingerprint_sha256: "00".repeat(32),
            },
            ssh: None,
        },
        username: "netledger".to_owned(),
        password: DevicePassword::new("hunter2-secret"),
        tags: BTreeSet::from([Tag::parse("site:ber").unwrap()]),
        poll_interval_secs: 60,
        ssh_key: None,
    };
    let first = cmds
        .register(tenant, register.clone(), meta())
        .await
        .unwrap();
    assert_eq!(first.stream_version, 1);
    let again = cmds.register(tenant, register.clone(), meta()).await;
    assert!(
        matches!(again, Err(DeviceCommandError::AlreadyRegistered(d)) if d == device),
        "{again:?}"
    );
    // Bad values are refused before anything is written.
    let mut bad = register.clone();
    bad.device_id = DeviceId::new_random();
    bad.poll_interval_secs = 1;
    assert!(matches!(
        cmds.register(tenant, bad, meta()).await,
        Err(DeviceCommandError::Invalid(_))
    ));

    // No change, no event.
    let same = cmds
        .update(
            tenant,
            device,
            UpdateDevice {
                poll_interval_secs: Some(60),
                ..UpdateDevice::default()
            },
            None,
            meta(),
        )
        .await
        .unwrap();
    assert!(same.is_none());
    let renamed = cmds
        .update(
            tenant,
            device,
            UpdateDevice {
                name: Some(DeviceName::parse("core-1a").unwrap()),
                poll_interval_secs: Some(30),
                ..UpdateDevice::default()
            },
            None,
            meta(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renamed.stream_version, 2);
    // A change decided on version 1 (the caller's If-Match) is refused now that the device
    // is at version 2, and writes nothing; decided on version 2 it goes through.
    let stale = cmds
        .set_tags(
            tenant,
            device,
            BTreeSet::from([Tag::parse("stale").unwrap()]),
            Some(1),
            meta(),
        )
        .await;
    assert!(
        matches!(
            stale,
            Err(DeviceCommandError::Stale {
                expected: 1,
                current: 2,
                ..
            })
        ),
        "{stale:?}"
    );
    cmds.set_tags(
        tenant,
        device,
        BTreeSet::from([Tag::parse("role:core").unwrap()]),
        Some(2),
        meta(),
    )
    .await
    .unwrap()
    .unwrap();
    cmds.change_credentials(
        tenant,
        device,
        "netledger2",
        &DevicePassword::new("another-secret"),
        None,
        None,
        meta(),
    )
    .await
    .unwrap();
    let state: DeviceState = cmds.load(tenant, device).await.unwrap();
    let reg = state.registration.clone().unwrap();
    assert_eq!(reg.name.as_str(), "core-1a");
    assert_eq!(reg.poll_interval_secs, 30);
    assert_eq!(reg.username, "netledger2");
    assert_eq!(state.version, 4);
    // Another tenant sees no such device.
    let other = TenantId::new_random();
    assert!(matches!(
        cmds.set_tags(other, device, BTreeSet::new(), None, meta())
            .await,
        Err(DeviceCommandError::NotFound(_))
    ));

    cmds.remove(tenant, device, "decommissioned", None, meta())
        .await
        .unwrap();
    assert!(matches!(
        cmds.remove(tenant, device, "again", None, meta()).await,
        Err(DeviceCommandError::NotFound(_))
    ));
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM device_credentials")
        .fetch_one(&env.owner)
        .await
        .unwrap();
    assert_eq!(
        rows, 0,
        "removal deletes the credentials in the same transaction"
    );
    // A removed device may come back under the same id.
    let back = cmds.register(tenant, register, meta()).await.unwrap();
    assert_eq!(back.stream_version, 6);
    assert_eq!(
        env.types(tenant, device).await,
        [
            "DeviceRegistered",
            "DeviceUpdated",
            "DeviceTagsSet",
            "DeviceCredentialsChanged",
            "DeviceRemoved",
            "DeviceRegistered"
        ]
    );
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn credentials_are_encrypted_at_rest_rotated_and_a_missing_key_is_a_clear_error(
    pool: PgPool,
) {
    let env = env(pool).await;
    let cmds = env.commands();
    let tenant = TenantId::new_random();
    let device = DeviceId::new_random();
    let password = "correct-horse-battery-staple";
    let ssh_key = netledger_testkit::ssh_client_key("rotation").unwrap();
    cmds.register(
        tenant,
        RegisterDevice {
            device_id: device,
            name: DeviceName::parse("edge-1").unwrap(),
            endpoint: Endpoint {
                host: Host::parse("192.0.2.7").unwrap(),
                port: 8728,
                transport: Transport::Plain,
                ssh: None,
            },
            username: "api".to_owned(),
            password: DevicePassword::new(password),
            tags: BTreeSet::new(),
            poll_interval_secs: 60,
            ssh_key: Some(ssh_key.clone()),
        },
        meta(),
    )
    .await
    .unwrap();

    // At rest: ciphertext without the password, nonce of 12 bytes, key id k1.
    let row = sqlx::query("SELECT key_id, nonce, ciphertext FROM device_credentials")
        .fetch_one(&env.owner)
        .await
        .unwrap();
    let key_id: String = row.get("key_id");
    let nonce: Vec<u8> = row.get("nonce");
    let ciphertext: Vec<u8> = row.get("ciphertext");
    assert_eq!(key_id, "k1");
    assert_eq!(nonce.len(), 12);
    assert!(
        !ciphertext
            .windows(password.len())
            .any(|w| w == password.as_bytes())
    );
    // Nor anywhere in the events.
    let events: Vec<String> = sqlx::query_scalar("SELECT payload::text FROM events")
        .fetch_all(&env.owner)
        .await
        .unwrap();
    assert!(events.iter().all(|p| !p.contains(password)));
    assert!(
        events
            .iter()
            .any(|p| p.contains("\"credentials_key_id\":\"k1\""))
    );

    // The poller's view decrypts it in memory.
    let stored = netledger_store::credentials::load(&env.pools.system, tenant, device)
        .await
        .unwrap();
    assert_eq!(
        env.keys
            .open(tenant, device, &stored.sealed)
            .unwrap()
            .expose(),
        password
    );
    // Without key k1 configured: a clear error naming the key and what to do.
    let only_k2 =
        CredentialKeys::new("k2", [("k2".to_owned(), KeyMaterial::from_bytes([2; 32]))]).unwrap();
    let err = only_k2.open(tenant, device, &stored.sealed).unwrap_err();
    assert!(matches!(err, CredentialError::UnknownKey { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("`k1`") && text.contains("credential_keys"),
        "{text}"
    );
    // A key with the right id but other bytes fails as a decryption error, not garbage.
    let impostor =
        CredentialKeys::new("k1", [("k1".to_owned(), KeyMaterial::from_bytes([9; 32]))]).unwrap();
    assert!(matches!(
        impostor.open(tenant, device, &stored.sealed),
        Err(CredentialError::Decrypt { .. })
    ));
    // Row-level security: another tenant's transaction does not see the row.
    let mut tx = netledger_store::begin_tenant(&env.pools.app, TenantId::new_random())
        .await
        .unwrap();
    assert!(
        netledger_store::credentials::load_in(&mut tx, tenant, device)
            .await
            .unwrap()
            .is_none()
    );
    tx.rollback().await.unwrap();

    // Rotation to k2: re-encrypted, event with the new key id, old key no longer needed.
    let rotating = DeviceCommands::new(env.pools.app.clone(), keys("k2"));
    let report = rotating
        .rotate_credentials(&env.pools.system, meta())
        .await
        .unwrap();
    assert_eq!(report.rotated, vec![device]);
    assert!(report.failed.is_empty());
    let stored = netledger_store::credentials::load(&env.pools.system, tenant, device)
        .await
        .unwrap();
    assert_eq!(stored.sealed.key_id, "k2");
    assert_eq!(
        only_k2
            .open(tenant, device, &stored.sealed)
            .unwrap()
            .expose(),
        password
    );
    let last = env.events(tenant, device).await.pop().unwrap();
    assert_eq!(last.event_type, "DeviceCredentialsChanged");
    assert_eq!(last.payload["key_id"], "k2");
    assert_eq!(last.payload["username"], "api");
    // The SSH key sealed with the password is re-encrypted with it and stays announced.
    assert_eq!(
        last.payload["ssh_client_key"]["fingerprint_sha256"],
        ssh_key.public.fingerprint_sha256.as_str()
    );
    let sealed_key = stored.ssh_key.as_ref().unwrap();
    assert_eq!(sealed_key.key_id, "k2");
    assert_eq!(
        only_k2.open_ssh_key(tenant, device, sealed_key).unwrap(),
        ssh_key.private
    );
    // A second rotation has nothing left to do.
    let again = rotating
        .rotate_credentials(&env.pools.system, meta())
        .await
        .unwrap();
    assert!(again.rotated.is_empty() && again.failed.is_empty());
}

// ---- polling ---------------------------------------------------------------------------------

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn poller_reports_changes_only_detects_drift_and_breaks_the_circuit(pool: PgPool) {
    let env = env(pool).await;
    // Device 0: RouterOS 7 over pinned TLS; device 1: RouterOS 6 (export via `contents`).
    let f = fleet(2, 0.5).await;
    let ctl = control(&f).await;
    let m = f.manifest();
    assert!(m[1].version.starts_with('6'), "{m:?}");
    let tenant = TenantId::new_random();
    let ids = register_fleet(&env, tenant, &m, true).await;
    let (d0, d1) = (ids[0], ids[1]);
    let interval = Duration::from_millis(300);
    let poller = Poller::start(fast("p1", interval), env.deps())
        .await
        .unwrap();

    // First contact: online with facts, initial snapshot in the archive.
    for d in [d0, d1] {
        wait_until(Duration::from_secs(20), "first contact", || async {
            let t = env.types(tenant, d).await;
            t.contains(&"DeviceCameOnline".to_owned())
                && t.contains(&"ConfigSnapshotRecorded".to_owned())
        })
        .await;
    }
    let online = env
        .events(tenant, d0)
        .await
        .into_iter()
        .find(|e| e.event_type == "DeviceCameOnline")
        .unwrap();
    assert_eq!(online.payload["facts"]["identity"], m[0].identity);
    assert!(
        online.payload["facts"]["version"]
            .as_str()
            .unwrap()
            .starts_with(&m[0].version)
    );
    let snap = env
        .events(tenant, d1)
        .await
        .into_iter()
        .find(|e| e.event_type == "ConfigSnapshotRecorded")
        .unwrap();
    assert_eq!(snap.payload["reason"], "initial");
    let commit = snap.payload["commit"].as_str().unwrap().to_owned();
    let versions = env.archive.versions(tenant, d1).unwrap();
    assert!(versions.iter().any(|v| v.commit == commit), "{versions:?}");

    // Polls that see nothing new append nothing: and sessions are kept (one login each).
    let settled = env.events(tenant, d0).await.len();
    tokio::time::sleep(interval * 5).await;
    assert_eq!(env.events(tenant, d0).await.len(), settled);
    let logins = command_log(ctl, 0)
        .await
        .iter()
        .filter(|l| l.contains("/login"))
        .count();
    assert_eq!(logins, 1, "the session is kept across polls");

    // Out-of-band change through the control API: drift, recorded in the archive.
    let (status, body) = http(
        ctl,
        "POST",
        "/devices/0/config",
        "/ip address add address=10.66.0.1/24 interface=ether2 comment=oob",
    )
    .await;
    assert_eq!(status, 204, "{body}");
    wait_until(Duration::from_secs(20), "drift", || async {
        env.types(tenant, d0)
            .await
            .contains(&"ConfigDriftDetected".to_owned())
    })
    .await;
    let drift: ConfigDriftDetected = env
        .events(tenant, d0)
        .await
        .into_iter()
        .find(|e| e.event_type == "ConfigDriftDetected")
        .unwrap()
        .decode()
        .unwrap();
    assert_ne!(drift.expected_sha256, drift.found_sha256);
    let stored = env.archive.read(tenant, d0, &drift.commit).unwrap();
    assert!(stored.contains("10.66.0.1/24"), "{stored}");
    // Reported once.
    tokio::time::sleep(interval * 4).await;
    let drifts = env
        .types(tenant, d0)
        .await
        .iter()
        .filter(|t| *t == "ConfigDriftDetected")
        .count();
    assert_eq!(drifts, 1);

    // Unreachable: offline once, then the breaker opens (suspended) once.
    let (status, _) = http(ctl, "PUT", "/devices/1/faults", r#"{"unreachable": true}"#).await;
    assert_eq!(status, 204);
    wait_until(Duration::from_secs(20), "suspension", || async {
        env.types(tenant, d1)
            .await
            .contains(&"DevicePollingSuspended".to_owned())
    })
    .await;
    let down = env.events(tenant, d1).await;
    let offline = down
        .iter()
        .find(|e| e.event_type == "DeviceWentOffline")
        .unwrap();
    assert!(
        offline.payload["reason"]
            .as_str()
            .unwrap()
            .contains("connect"),
        "{}",
        offline.payload
    );
    let suspended = down
        .iter()
        .find(|e| e.event_type == "DevicePollingSuspended")
        .unwrap();
    assert_eq!(suspended.payload["consecutive_failures"], 2);
    // While open the device is tried only once per backoff (400 ms doubling to 800 ms,
    // where the 300 ms schedule alone would try about 7 times in 2 s), with no new events.
    let before = down.len();
    let failed = poller.stats().snapshot().polls_failed;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.events(tenant, d1).await.len(), before);
    let tries = poller.stats().snapshot().polls_failed - failed;
    assert!((1..=4).contains(&tries), "{tries} attempts while suspended");
    // Back: resumed and online, once each.
    let (status, _) = http(ctl, "PUT", "/devices/1/faults", "{}").await;
    assert_eq!(status, 204);
    wait_until(Duration::from_secs(20), "resumption", || async {
        env.types(tenant, d1)
            .await
            .contains(&"DevicePollingResumed".to_owned())
    })
    .await;
    tokio::time::sleep(interval * 3).await;
    let tail: Vec<String> = env.types(tenant, d1).await[before..].to_vec();
    assert_eq!(tail, ["DevicePollingResumed", "DeviceCameOnline"]);

    // An upgrade done out of band: the version change is reported (after the reboot).
    let (status, _) = http(
        ctl,
        "PUT",
        "/devices/0/available-version",
        r#"{"version": "7.19.4"}"#,
    )
    .await;
    assert_eq!(status, 204);
    let mut admin = routeros::Config::new(
        m[0].api.ip().to_string(),
        m[0].username.clone(),
        routeros::Password::new(m[0].password.clone()),
    )
    .with_port(m[0].api.port());
    admin.command_timeout = Duration::from_secs(5);
    let c = routeros::Client::connect(&admin).await.unwrap();
    c.install_updates(Duration::from_secs(5)).await.unwrap();
    wait_until(Duration::from_secs(20), "version change", || async {
        env.types(tenant, d0)
            .await
            .contains(&"DeviceVersionChanged".to_owned())
    })
    .await;
    let changed = env
        .events(tenant, d0)
        .await
        .into_iter()
        .find(|e| e.event_type == "DeviceVersionChanged")
        .unwrap();
    assert!(
        changed.payload["from"]
            .as_str()
            .unwrap()
            .starts_with("7.16.2")
    );
    assert!(
        changed.payload["to"]
            .as_str()
            .unwrap()
            .starts_with("7.19.4")
    );

    poller.stop().await.unwrap();
    // Every append went through the lease fence and optimistic concurrency: versions are
    // contiguous and every event is the poller's or the registration's.
    for d in [d0, d1] {
        let events = env.events(tenant, d).await;
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.version, i as i64 + 1);
        }
    }
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn three_pollers_share_the_fleet_without_double_polls(pool: PgPool) {
    let env = env(pool).await;
    let f = fleet(12, 0.0).await;
    let ctl = control(&f).await;
    let m = f.manifest();
    let tenant = TenantId::new_random();
    let ids = register_fleet(&env, tenant, &m, false).await;
    let interval = Duration::from_millis(800);
    let p1 = Poller::start(fast("p1", interval), env.deps())
        .await
        .unwrap();
    let p2 = Poller::start(fast("p2", interval), env.deps())
        .await
        .unwrap();
    let p3 = Poller::start(fast("p3", interval), env.deps())
        .await
        .unwrap();
    let owners = |pool: PgPool| async move {
        let rows: Vec<(Option<Uuid>,)> =
            sqlx::query_as("SELECT owner FROM poller_shards ORDER BY shard")
                .fetch_all(&pool)
                .await
                .unwrap();
        let mut per: BTreeMap<Uuid, usize> = BTreeMap::new();
        for (o,) in rows {
            if let Some(o) = o {
                *per.entry(o).or_default() += 1;
            }
        }
        per
    };
    // Fair share: 6 shards, 2 each.
    wait_until(Duration::from_secs(20), "a fair split", || async {
        let per = owners(env.owner.clone()).await;
        per.len() == 3 && per.values().all(|n| *n == 2)
    })
    .await;
    // Every device came online, by whichever poller owns it.
    for d in &ids {
        wait_until(Duration::from_secs(20), "online", || async {
            env.types(tenant, *d)
                .await
                .contains(&"DeviceCameOnline".to_owned())
        })
        .await;
    }
    // Devices of shards that changed hands during the split are first polled by their new
    // owner at their next due time (up to an interval later): let that happen first.
    tokio::time::sleep(interval * 2).await;
    // A steady window: no logins (sessions kept, no device polled by a second poller) and
    // every two polls of a device at least most of an interval apart.
    let marks: Vec<usize> = {
        let mut v = Vec::new();
        for i in 0..m.len() {
            v.push(command_log(ctl, i).await.len());
        }
        v
    };
    tokio::time::sleep(interval * 4).await;
    for (i, mark) in marks.iter().enumerate() {
        let log = command_log(ctl, i).await;
        let window = &log[(*mark).min(log.len())..];
        assert!(
            !window.iter().any(|l| l.contains("/login")),
            "device {i} logged in again during a steady window: {window:?}"
        );
        let times = poll_times(window);
        assert!(times.len() >= 3, "device {i} polled {} times", times.len());
        for w in times.windows(2) {
            assert!(
                w[1] - w[0] >= interval.as_secs_f64() * 0.7,
                "device {i} polled twice within an interval: {times:?}"
            );
        }
    }

    // One poller stops: its shards move to the other two (3 each), and no device of the
    // moved shards is polled twice within an interval across the hand-over.
    let gone = p2.id();
    let before: Vec<usize> = {
        let mut v = Vec::new();
        for i in 0..m.len() {
            v.push(command_log(ctl, i).await.len());
        }
        v
    };
    p2.stop().await.unwrap();
    wait_until(Duration::from_secs(60), "the hand-over", || async {
        let per = owners(env.owner.clone()).await;
        !per.contains_key(&gone) && per.len() == 2 && per.values().all(|n| *n == 3)
    })
    .await;
    tokio::time::sleep(interval * 4).await;
    let mut moved = 0;
    for (i, mark) in before.iter().enumerate() {
        let log = command_log(ctl, i).await;
        let window = &log[(*mark).min(log.len())..];
        let logins = window.iter().filter(|l| l.contains("/login")).count();
        assert!(
            logins <= 1,
            "device {i}: {logins} logins after the hand-over"
        );
        moved += logins;
        let times = poll_times(window);
        assert!(
            times.len() >= 3,
            "device {i} polled {} times after the hand-over",
            times.len()
        );
        for w in times.windows(2) {
            assert!(
                w[1] - w[0] >= interval.as_secs_f64() * 0.7,
                "device {i} polled twice within an interval across the hand-over: {times:?}"
            );
        }
    }
    assert!(moved > 0, "the stopped poller's devices moved to others");

    // A poller that dies without handing back: its device tasks die with it, its leases
    // expire and the last one takes all. Expiry (1.5 s after the last renewal) is longer
    // than the interval here, so even this hand-over polls no device twice in an interval.
    let before: Vec<usize> = {
        let mut v = Vec::new();
        for i in 0..m.len() {
            v.push(command_log(ctl, i).await.len());
        }
        v
    };
    p3.kill();
    wait_until(Duration::from_secs(60), "expiry takeover", || async {
        let per = owners(env.owner.clone()).await;
        per.len() == 1 && per.get(&p1.id()) == Some(&6)
    })
    .await;
    let polls = p1.stats().snapshot().polls_ok;
    tokio::time::sleep(interval * 3).await;
    assert!(p1.stats().snapshot().polls_ok >= polls + 12);
    for (i, mark) in before.iter().enumerate() {
        let log = command_log(ctl, i).await;
        let times = poll_times(&log[(*mark).min(log.len())..]);
        assert!(
            times.len() >= 3,
            "device {i} polled {} times after the crash",
            times.len()
        );
        for w in times.windows(2) {
            assert!(
                w[1] - w[0] >= interval.as_secs_f64() * 0.7,
                "device {i} polled twice within an interval across the crash: {times:?}"
            );
        }
    }
    p1.stop().await.unwrap();
    let members: i64 = sqlx::query_scalar("SELECT count(*) FROM poller_members")
        .fetch_one(&env.owner)
        .await
        .unwrap();
    assert_eq!(members, 0, "stopped pollers leave; the killed one expired");
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn metrics_are_written_rolled_up_and_read_back_per_tenant(pool: PgPool) {
    let env = env(pool).await;
    let f = fleet(1, 0.0).await;
    let m = f.manifest();
    let tenant = TenantId::new_random();
    let ids = register_fleet(&env, tenant, &m, false).await;
    let interval = Duration::from_millis(250);
    let start = TestClock::new().now() - time::Duration::seconds(1);
    let poller = Poller::start(fast("p1", interval), env.deps())
        .await
        .unwrap();
    // devsim's counters grow with its uptime in whole seconds: let the samples span more
    // than two of them so that the first and the last must differ.
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    wait_until(Duration::from_secs(20), "samples", || async {
        poller.stats().snapshot().samples >= 4
    })
    .await;
    poller.stop().await.unwrap();
    let end = TestClock::new().now() + time::Duration::seconds(1);

    let raw = samples(&env.pools.app, tenant, ids[0], start, end, Resolution::Auto)
        .await
        .unwrap();
    assert_eq!(raw.resolution, Resolution::Raw);
    assert!(raw.device.len() >= 4, "{raw:?}");
    let p = &raw.device[0];
    assert!(p.memory_total > 0 && p.memory_used.avg > 0.0 && p.hdd_total > 0);
    assert!(p.cpu_load.max <= 100.0);
    let ether1: Vec<_> = raw
        .interfaces
        .iter()
        .filter(|i| i.interface == "ether1")
        .collect();
    assert!(ether1.len() >= 4);
    assert!(ether1.last().unwrap().rx_bytes.unwrap() > ether1[0].rx_bytes.unwrap());
    assert!(ether1.iter().all(|i| i.tx_errors.is_some()));
    assert!(
        ether1
            .iter()
            .skip(1)
            .any(|i| i.rx_bps.is_some_and(|r| r.avg > 0.0))
    );

    // Another tenant reads nothing (row-level security).
    let none = samples(
        &env.pools.app,
        TenantId::new_random(),
        ids[0],
        start,
        end,
        Resolution::Raw,
    )
    .await
    .unwrap();
    assert!(none.device.is_empty() && none.interfaces.is_empty());

    // Rollup of the finished buckets, read back for a long range.
    let later = end + time::Duration::minutes(10);
    netledger_poller::metrics::rollup(&env.pools.system, later, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let long = samples(
        &env.pools.app,
        tenant,
        ids[0],
        start - time::Duration::days(1),
        later,
        Resolution::Auto,
    )
    .await
    .unwrap();
    assert_eq!(long.resolution, Resolution::Rollup);
    let total: i32 = long.device.iter().map(|p| p.samples).sum();
    assert_eq!(total as usize, raw.device.len());
    let b = &long.device[0];
    assert!(b.cpu_load.min <= b.cpu_load.avg && b.cpu_load.avg <= b.cpu_load.max);
    assert!(
        long.interfaces
            .iter()
            .any(|i| i.interface == "ether1" && i.rx_bytes.is_some())
    );

    // Partitions: created ahead, dropped after retention.
    let today = TestClock::new().now().date();
    let opts = PollerOptions {
        raw_retention_days: 2,
        rollup_retention_days: 5,
        ..PollerOptions::default()
    };
    // The poller created today's partitions at start; ten days later they are past
    // retention and the new days are created.
    let (created, dropped) = netledger_poller::metrics::maintain_partitions(
        &env.pools.system,
        today + time::Duration::days(10),
        &opts,
    )
    .await
    .unwrap();
    assert_eq!(
        created,
        4 * 5,
        "four tables, from the day before to three ahead"
    );
    assert_eq!(
        dropped,
        4 * 5,
        "every partition made at start is past retention"
    );
    let again = netledger_poller::metrics::maintain_partitions(
        &env.pools.system,
        today + time::Duration::days(10),
        &opts,
    )
    .await
    .unwrap();
    assert_eq!(again, (0, 0));
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'device_samples'::regclass",
    )
    .fetch_one(&env.owner)
    .await
    .unwrap();
    assert_eq!(
        left, 5,
        "raw partitions left: the day before to three ahead"
    );
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn the_work_table_follows_device_events_and_rebuilds_identically(pool: PgPool) {
    let env = env(pool).await;
    let cmds = env.commands();
    let f = fleet(3, 0.0).await;
    let tenant = TenantId::new_random();
    let ids = register_fleet(&env, tenant, &f.manifest(), false).await;
    cmds.update(
        tenant,
        ids[1],
        UpdateDevice {
            poll_interval_secs: Some(300),
            ..UpdateDevice::default()
        },
        None,
        meta(),
    )
    .await
    .unwrap();
    cmds.remove(tenant, ids[2], "gone", None, meta())
        .await
        .unwrap();
    assert!(
        netledger_poller::worktable::sync_all(&env.pools.system)
            .await
            .unwrap()
    );
    let read = |pool: PgPool| async move {
        sqlx::query_as::<_, (Uuid, i32, bool, i64, i32)>(
            "SELECT device_id, poll_interval_secs, removed, stream_version, port \
             FROM poller_devices ORDER BY device_id",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    let rows = read(env.owner.clone()).await;
    assert_eq!(rows.len(), 3);
    let by_id = |d: DeviceId| *rows.iter().find(|r| r.0 == *d.as_uuid()).unwrap();
    assert_eq!(by_id(ids[1]).1, 300);
    assert!(by_id(ids[2]).2);
    assert!(!by_id(ids[0]).2);
    // Idempotent: nothing new, nothing changes; rebuilt from position 0, the same rows.
    assert!(
        netledger_poller::worktable::sync_all(&env.pools.system)
            .await
            .unwrap()
    );
    assert_eq!(read(env.owner.clone()).await, rows);
    sqlx::query("DELETE FROM poller_devices")
        .execute(&env.owner)
        .await
        .unwrap();
    sqlx::query("UPDATE subscription_checkpoints SET position = 0 WHERE name = 'poller-devices'")
        .execute(&env.owner)
        .await
        .unwrap();
    assert!(
        netledger_poller::worktable::sync_all(&env.pools.system)
            .await
            .unwrap()
    );
    assert_eq!(read(env.owner.clone()).await, rows);
    // Re-registering the demo fleet (new ports after a restart) updates, not duplicates.
    let again = register_fleet(&env, tenant, &f.manifest()[..2], false).await;
    assert_eq!(again, ids[..2]);
    assert_eq!(ids[0], demo_device_id(tenant, "t", 0));
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_concurrent_append_makes_the_poller_re_read_and_re_decide(pool: PgPool) {
    let env = env(pool).await;
    let f = fleet(1, 0.0).await;
    let ctl = control(&f).await;
    let tenant = TenantId::new_random();
    let ids = register_fleet(&env, tenant, &f.manifest(), false).await;
    let poller = Poller::start(fast("p1", Duration::from_millis(300)), env.deps())
        .await
        .unwrap();
    wait_until(Duration::from_secs(20), "first contact", || async {
        env.types(tenant, ids[0])
            .await
            .contains(&"ConfigSnapshotRecorded".to_owned())
    })
    .await;
    // A user's command appends behind the poller's back (tags are not in the work table, so
    // the poller's folded state is now one version behind).
    env.commands()
        .set_tags(
            tenant,
            ids[0],
            BTreeSet::from([Tag::parse("moved").unwrap()]),
            None,
            meta(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(poller.stats().snapshot().conflicts, 0);
    let (status, _) = http(ctl, "PUT", "/devices/0/faults", r#"{"unreachable": true}"#).await;
    assert_eq!(status, 204);
    wait_until(Duration::from_secs(20), "offline", || async {
        env.types(tenant, ids[0])
            .await
            .contains(&"DeviceWentOffline".to_owned())
    })
    .await;
    let stats = poller.stats().clone();
    poller.stop().await.unwrap();
    assert!(stats.snapshot().conflicts >= 1, "{:?}", stats.snapshot());
    // The offline event landed right after the user's event, once: the stale append
    // conflicted, the poller re-read the stream and decided again.
    let types = env.types(tenant, ids[0]).await;
    let tags = types.iter().position(|t| t == "DeviceTagsSet").unwrap();
    assert_eq!(types[tags + 1], "DeviceWentOffline", "{types:?}");
    assert_eq!(
        types.iter().filter(|t| *t == "DeviceWentOffline").count(),
        1,
        "{types:?}"
    );
}

// ---- who changed the device ------------------------------------------------------------------

/// The first `ConfigDriftDetected` of a device, once there is one.
async fn first_drift(env: &Env, tenant: TenantId, device: DeviceId) -> ConfigDriftDetected {
    wait_until(Duration::from_secs(30), "drift", || async {
        env.types(tenant, device)
            .await
            .contains(&"ConfigDriftDetected".to_owned())
    })
    .await;
    env.events(tenant, device)
        .await
        .into_iter()
        .find(|e| e.event_type == "ConfigDriftDetected")
        .unwrap()
        .decode()
        .unwrap()
}

async fn initial_snapshots(env: &Env, tenant: TenantId, ids: &[DeviceId]) {
    for d in ids {
        wait_until(Duration::from_secs(30), "initial snapshot", || async {
            env.types(tenant, *d)
                .await
                .contains(&"ConfigSnapshotRecorded".to_owned())
        })
        .await;
    }
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn drift_names_the_routeros_user_the_devices_history_records(pool: PgPool) {
    let env = env(pool).await;
    // Device 0: RouterOS 7.16.2 (ISO times); device 1: 6.49.7 (`mmm/dd/yyyy`).
    let f = fleet(2, 0.5).await;
    let ctl = control(&f).await;
    let m = f.manifest();
    // A change before Netledger knows the device: in the initial snapshot, so not part of
    // the drift's account below.
    for i in 0..2 {
        f.device(i)
            .unwrap()
            .apply_out_of_band_as("alice", "/system note set note=before")
            .unwrap();
    }
    let tenant = TenantId::new_random();
    let ids = register_fleet(&env, tenant, &m, true).await;
    let poller = Poller::start(fast("p1", Duration::from_millis(300)), env.deps())
        .await
        .unwrap();
    initial_snapshots(&env, tenant, &ids).await;

    // Out of band, by RouterOS user bob (a firewall rule) and carol (an address, on v6).
    let (status, body) = http(
        ctl,
        "POST",
        "/devices/0/config?user=bob",
        "/ip firewall filter add chain=forward action=drop comment=oob-bob",
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = http(
        ctl,
        "POST",
        "/devices/1/config?user=carol",
        "/ip address add address=10.66.1.1/24 interface=ether2",
    )
    .await;
    assert_eq!(status, 204, "{body}");

    let drift = first_drift(&env, tenant, ids[0]).await;
    assert_eq!(drift.device_history_error, None);
    let history = drift.device_history.clone().unwrap();
    assert_eq!(
        history.len(),
        1,
        "only what happened since the snapshot: {history:?}"
    );
    assert_eq!(history[0].action, "filter rule added");
    assert_eq!(history[0].by, "bob");
    assert_eq!(history[0].policy.as_deref(), Some("write"));
    let t = &history[0].time;
    assert!(
        t.len() == 19 && t.as_bytes()[4] == b'-' && t.as_bytes()[10] == b' ',
        "ISO time on 7.16: {t}"
    );
    assert_eq!(drift.changed_by(), ["bob"]);
    // The poller's own session is among the logged-in users.
    let users = drift.active_users.clone().unwrap();
    assert!(
        users
            .iter()
            .any(|u| u.name == m[0].username && u.via == "api" && u.address == "127.0.0.1"),
        "{users:?}"
    );

    let drift = first_drift(&env, tenant, ids[1]).await;
    let history = drift.device_history.clone().unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(
        (history[0].action.as_str(), history[0].by.as_str()),
        ("address added", "carol")
    );
    let t = &history[0].time;
    assert!(
        t.len() == 20 && t.as_bytes()[3] == b'/' && t.as_bytes()[6] == b'/',
        "v6 time: {t}"
    );
    // As stored: the fields in the payload, for the auditor's tools.
    let stored = env
        .events(tenant, ids[1])
        .await
        .into_iter()
        .find(|e| e.event_type == "ConfigDriftDetected")
        .unwrap();
    assert_eq!(stored.payload["device_history"][0]["by"], "carol");
    assert!(stored.payload.get("device_history_error").is_none());
    poller.stop().await.unwrap();
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn drift_is_recorded_without_the_devices_history_when_reading_it_times_out(pool: PgPool) {
    let env = env(pool).await;
    let f = fleet(1, 0.0).await;
    let ctl = control(&f).await;
    let m = f.manifest();
    let tenant = TenantId::new_random();
    let ids = register_fleet(&env, tenant, &m, true).await;
    let options = PollerOptions {
        history_timeout: Duration::from_millis(150),
        ..fast("p1", Duration::from_millis(300))
    };
    let poller = Poller::start(options, env.deps()).await.unwrap();
    initial_snapshots(&env, tenant, &ids).await;

    // Every reply now takes 400 ms: polls and exports still fit their bounds, the read of
    // who changed the device does not.
    let (status, _) = http(ctl, "PUT", "/devices/0/faults", r#"{"delay_ms": 400}"#).await;
    assert_eq!(status, 204);
    let (status, body) = http(
        ctl,
        "POST",
        "/devices/0/config?user=bob",
        "/ip address add address=10.66.2.1/24 interface=ether2",
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let drift = first_drift(&env, tenant, ids[0]).await;
    assert_eq!(drift.device_history, None);
    assert_eq!(drift.active_users, None);
    let error = drift.device_history_error.clone().unwrap();
    assert!(
        error.contains("/system/history/print") && error.contains("timed out"),
        "{error}"
    );
    assert!(drift.changed_by().is_empty());
    let stored = env.archive.read(tenant, ids[0], &drift.commit).unwrap();
    assert!(stored.contains("10.66.2.1/24"), "{stored}");
    // Reported once, and the device keeps being polled normally.
    let (status, _) = http(ctl, "PUT", "/devices/0/faults", "{}").await;
    assert_eq!(status, 204);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let types = env.types(tenant, ids[0]).await;
    assert_eq!(
        types.iter().filter(|t| *t == "ConfigDriftDetected").count(),
        1,
        "{types:?}"
    );
    assert!(
        !types.contains(&"DeviceWentOffline".to_owned()),
        "{types:?}"
    );
    poller.stop().await.unwrap();
}

/// Issue 17: a RouterOS 6 configuration larger than the API can read back (`contents` caps
/// near 4 KB) archives in full through SFTP, byte for byte what the archive makes of the
/// device's own export, logging in with the password or with the SSH key the credentials
/// hold; a device registered to trust its SSH host key on first use gets the
/// key recorded (the manifest's) before anything is read; a device whose pinned key is
/// wrong, and one without SSH access, archive nothing and say why.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_large_v6_config_archives_in_full_over_sftp_and_first_use_pins_the_key(pool: PgPool) {
    use netledger_domain::device::{DeviceSshHostKeyPinned, SshAccess, SshHostKey};
    let env = env(pool).await;
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/routeros-exports/04-v6-hap-verbose-full.rsc");
    let base = std::fs::read_to_string(corpus).unwrap();
    let mut o = FleetOptions::new(4, Arc::new(devsim::SystemClock::new()));
    o.exports = vec![base; 4];
    o.tick = Some(Duration::from_millis(100));
    let f = Fleet::start(o).await.unwrap();
    // Grow every device past 50 KB (an address list, out of band).
    let lines: String = (0..120)
        .map(|i| {
            format!(
                "/ip firewall address-list add address=10.77.{}.{} list=bulk-{} comment=\"netledger issue 17 row {i}\"\n",
                i / 200,
                i % 200,
                i % 7
            )
        })
        .collect();
    for i in 0..4 {
        // The exported device had the API services disabled and SSH restricted.
        let identity = format!(
            "/system identity set name=hap-{i}\n/ip service set api-ssl disabled=no\n\
             /ip service set ssh address=\"\"\n"
        );
        f.device(i).unwrap().apply_out_of_band(&identity).unwrap();
        f.device(i).unwrap().apply_out_of_band(&lines).unwrap();
        let text = f.device(i).unwrap().export(false);
        assert!(text.len() > 50_000, "{} bytes", text.len());
        assert!(text.contains("by RouterOS 6."), "a v6 device");
    }
    let m = f.manifest();
    let tenant = TenantId::new_random();
    let ids = register_demo_fleet(
        &env.commands(),
        tenant,
        &m,
        &DemoFleet {
            fleet: "ssh".to_owned(),
            tls: true,
            poll_interval_secs: 5,
            tags: vec!["test".to_owned()],
            ssh: true,
        },
    )
    .await
    .unwrap();
    // Device 0 logs in over SSH with a key in its credentials, authorized for its user on
    // the device (so its SSH password login is refused, RouterOS's default).
    let key = netledger_testkit::ssh_client_key("poller-key-0").unwrap();
    f.device(0)
        .unwrap()
        .authorize_ssh_key(&m[0].username, &key.public.public_key)
        .unwrap();
    env.commands()
        .change_credentials(
            tenant,
            ids[0],
            &m[0].username,
            &DevicePassword::new(m[0].password.clone()),
            Some(&key),
            None,
            meta(),
        )
        .await
        .unwrap();
    // Device 1 trusts on first use, device 2 has a wrong pin, device 3 no SSH access.
    let endpoint = |i: usize, ssh: Option<SshAccess>| netledger_domain::device::Endpoint {
        host: netledger_domain::device::Host::parse("127.0.0.1").unwrap(),
        port: m[i].api_ssl.port(),
        transport: netledger_domain::device::Transport::TlsPinned {
            fingerprint_sha256: m[i].tls_sha256.clone(),
        },
        ssh,
    };
    let ssh = |i: usize, host_key| {
        Some(SshAccess {
            port: m[i].ssh.port(),
            host_key,
        })
    };
    let wrong = SshHostKey::Pinned {
        fingerprint_sha256: "00".repeat(32),
    };
    for (i, e) in [
        (1, endpoint(1, ssh(1, SshHostKey::FirstUse))),
        (2, endpoint(2, ssh(2, wrong))),
        (3, endpoint(3, None)),
    ] {
        env.commands()
            .update(
                tenant,
                ids[i],
                UpdateDevice {
                    endpoint: Some(e),
                    ..UpdateDevice::default()
                },
                None,
                meta(),
            )
            .await
            .unwrap();
    }
    let poller = Poller::start(fast("p1", Duration::from_millis(300)), env.deps())
        .await
        .unwrap();
    initial_snapshots(&env, tenant, &ids[..2]).await;
    for (i, id) in ids.iter().enumerate().take(2) {
        let snap: netledger_domain::device::ConfigSnapshotRecorded = env
            .events(tenant, *id)
            .await
            .into_iter()
            .find(|e| e.event_type == "ConfigSnapshotRecorded")
            .unwrap()
            .decode()
            .unwrap();
        let stored = env.archive.read(tenant, *id, &snap.commit).unwrap();
        let own = Archive::prepare(&f.device(i).unwrap().export(false)).unwrap();
        assert!(stored.len() > 45_000, "{} bytes archived", stored.len());
        assert_eq!(stored, own.text, "device {i}: archived in full");
        assert_eq!(snap.sha256, own.sha256);
    }
    // First use: the key recorded is the manifest's, before the snapshot.
    let events = env.events(tenant, ids[1]).await;
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let pinned_at = types
        .iter()
        .position(|t| *t == "DeviceSshHostKeyPinned")
        .unwrap();
    let snap_at = types
        .iter()
        .position(|t| *t == "ConfigSnapshotRecorded")
        .unwrap();
    assert!(pinned_at < snap_at, "{types:?}");
    let pinned: DeviceSshHostKeyPinned = events[pinned_at].decode().unwrap();
    assert_eq!(pinned.fingerprint_sha256, m[1].ssh_host_key_sha256);
    assert_eq!(pinned.algorithm, "ssh-ed25519");
    assert_eq!(pinned.recorded_by, "poller");
    // Wrong pin, no SSH: nothing archived (the device answers polls all the same).
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in [2, 3] {
        let types = env.types(tenant, ids[i]).await;
        assert!(types.contains(&"DeviceCameOnline".to_owned()), "{types:?}");
        assert!(
            !types.contains(&"ConfigSnapshotRecorded".to_owned()),
            "device {i}: {types:?}"
        );
        assert!(!types.contains(&"DeviceSshHostKeyPinned".to_owned()));
    }
    poller.stop().await.unwrap();
}

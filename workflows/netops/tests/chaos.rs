//! Crash test: worker PROCESSES (`netops-chaos-worker`, which runs `run_worker`) are killed
//! with SIGKILL while config pushes, firmware upgrades and a rollout run (watching the
//! journal: after 1-3 more completed steps, at once or 15/40 ms later, so at step boundaries
//! and inside steps, apply included), then a last worker finishes everything. Every workflow
//! must reach its documented outcome, every journal must be ordered (a started step gets its
//! outcome before another step starts; only the killed attempt is started again), and no
//! device may receive its change twice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use devsim::{Fleet, FleetOptions, SystemClock};
use netledger_domain::device::{DeviceName, Endpoint, Host, Transport};
use netledger_domain::{Actor, DeviceId, EventMetadata, TenantId, WorkflowId};
use netledger_netops::workflows::{NetopsDeps, NetopsOptions, registry};
use netledger_store::credentials::{CredentialKeys, DevicePassword, KeyMaterial};
use netledger_store::devices::{DeviceCommands, RegisterDevice};
use netledger_store::{Direction, EventReader, EventStore, Pools, StoreOptions};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

const CHANGE: &str =
    "/ip pool\nadd name=pool-nl ranges=10.77.0.10-10.77.0.20\n/system identity\nset name=pushed\n";

#[derive(Debug)]
struct RealClock;
impl netledger_domain::clock::Clock for RealClock {
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }
}

struct Killer(Option<Child>);
impl Drop for Killer {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Push,
    Firmware,
    Rollout,
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn killed_worker_processes_never_apply_a_change_twice(owner: PgPool) {
    chaos(owner, Kind::Push).await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn killed_worker_processes_finish_firmware_upgrades(owner: PgPool) {
    chaos(owner, Kind::Firmware).await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn killed_worker_processes_finish_a_rollout(owner: PgPool) {
    chaos(owner, Kind::Rollout).await;
}

async fn chaos(owner: PgPool, kind: Kind) {
    let opts = owner.connect_options();
    let db = opts.get_database().unwrap().to_owned();
    let url = format!("postgres://postgres@127.0.0.1:5432/{db}");
    let pools = Pools::connect(&opts, None, None, 4).await.unwrap();
    let _ = &pools;
    let dir = std::env::temp_dir().join(format!("netops-chaos-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("cache").join("7.19.4")).unwrap();
    for f in [
        "routeros-7.19.4-arm64.npk",
        "routeros-7.19.4-mipsbe.npk",
        "routeros-7.19.4.npk",
    ] {
        std::fs::write(dir.join("cache").join("7.19.4").join(f), vec![b'x'; 3000]).unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(netledger_netops::workflows::serve_firmware_cache(
        dir.join("cache"),
        listener,
        std::future::pending(),
    ));
    let material = KeyMaterial::generate();
    let key_b64 = material.to_base64();
    let keys = CredentialKeys::new("k1", [("k1".to_owned(), material)]).unwrap();
    let mut fo = FleetOptions::new(3, Arc::new(SystemClock::new()));
    fo.v6_share = 0.0;
    fo.reboot_time = Duration::from_secs(1);
    fo.tick = Some(Duration::from_millis(100));
    let fleet = Fleet::start(fo).await.unwrap();
    let tenant = TenantId::from_uuid(Uuid::new_v4());
    let cmds = DeviceCommands::new(pools.app.clone(), keys.clone());
    let store = EventStore::start(pools.app.clone(), StoreOptions::default());
    let deps = NetopsDeps {
        app: pools.app.clone(),
        system: pools.system.clone(),
        store: store.clone(),
        archive: netledger_archive::Archive::open(dir.join("archive")).unwrap(),
        keys,
        firmware_cache: dir.join("cache"),
        firmware_base_url: "http://127.0.0.1:9".into(),
        options: NetopsOptions::default(),
        clock: Arc::new(RealClock),
    };
    let engine = netledger_engine::Engine::new(
        pools.app.clone(),
        store,
        Arc::new(registry(deps).unwrap()),
        Arc::new(RealClock),
    );
    let mut workflows: Vec<(WorkflowId, usize)> = Vec::new();
    let mut devices = Vec::new();
    for (i, m) in fleet.manifest().iter().enumerate() {
        let device = DeviceId::from_uuid(Uuid::new_v4());
        cmds.register(
            tenant,
            RegisterDevice {
                device_id: device,
                name: DeviceName::parse(&format!("chaos-{i}")).unwrap(),
                endpoint: Endpoint {
                    host: Host::parse(&m.api.ip().to_string()).unwrap(),
                    port: m.api.port(),
                    transport: Transport::Plain,
                },
                username: m.username.clone(),
                password: DevicePassword::new(m.password.clone()),
                tags: BTreeSet::new(),
                poll_interval_secs: 60,
            },
            EventMetadata::for_command(Actor::system("test"), Uuid::new_v4()),
        )
        .await
        .unwrap();
        devices.push(device);
        let (k, input) = match kind {
            Kind::Push | Kind::Rollout => (
                "config_push",
                json!({ "device_id": device, "change_id": format!("chaos-{i}"), "script": CHANGE }),
            ),
            Kind::Firmware => (
                "firmware_upgrade",
                json!({ "device_id": device, "version": "7.19.4" }),
            ),
        };
        if kind != Kind::Rollout {
            let wf = engine
                .start(
                    tenant,
                    k,
                    input,
                    netledger_engine::StartOptions::new(Actor::system("test")).devices([device]),
                )
                .await
                .unwrap()
                .workflow_id;
            workflows.push((wf, i));
        }
    }
    let rid = netledger_domain::RolloutId::from_uuid(Uuid::new_v4());
    if kind == Kind::Rollout {
        let wf = engine
            .start(
                tenant,
                "rollout",
                json!({
                    "rollout_id": rid, "name": "chaos", "target": { "kind": "change_set", "script": CHANGE },
                    "canaries": [devices[0]], "devices": [devices[1], devices[2]],
                    "batch_size": 2, "parallelism": 2, "failure_threshold": 3,
                }),
                netledger_engine::StartOptions::new(Actor::system("test")).rollout(rid),
            )
            .await
            .unwrap()
            .workflow_id;
        workflows.push((wf, usize::MAX));
    }
    let spawn = |n: usize| {
        Killer(Some(
            Command::new(env!("CARGO_BIN_EXE_netops-chaos-worker"))
                .args([
                    url.as_str(),
                    dir.join("archive").to_str().unwrap(),
                    key_b64.as_str(),
                    dir.join("cache").to_str().unwrap(),
                    base.as_str(),
                    &format!("chaos-{n}"),
                ])
                .spawn()
                .unwrap(),
        ))
    };
    let reader = EventReader::tenant(pools.app.clone(), tenant);
    // progress = journaled step completions across the workflows
    let count = || async {
        let mut n = 0;
        for (wf, _) in &workflows {
            n += reader
                .read_stream(&wf.stream(), 1, Direction::Forward, 10_000)
                .await
                .unwrap()
                .iter()
                .filter(|e| e.event_type == "WorkflowStepCompleted")
                .count();
        }
        n
    };
    let finished = || async {
        let mut all = true;
        for (wf, _) in &workflows {
            let s = engine.status(tenant, *wf).await.unwrap().unwrap();
            all &= s.state == netledger_engine::TaskState::Finished;
        }
        all
    };
    // kill after 1, 2, 3, 1, ... more completed steps, right away or a little later (inside
    // the next steps)
    let mut kills = 0;
    for round in 0..10 {
        if finished().await {
            break;
        }
        let before = count().await;
        let mut w = spawn(round);
        let want = before + 1 + round % 3;
        let t = Instant::now();
        while count().await < want && t.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis([0, 15, 40][round % 3] as u64)).await;
        if let Some(c) = &mut w.0 {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
            kills += 1;
        }
        w.0 = None;
    }
    let _last = spawn(99);
    let t = Instant::now();
    while !finished().await {
        assert!(t.elapsed() < Duration::from_secs(90), "not finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(kills >= 3, "{kills} kills");
    for (wf, i) in &workflows {
        let s = engine.status(tenant, *wf).await.unwrap().unwrap();
        let outcome = s.outcome.unwrap();
        let why = reader
            .read_stream(&wf.stream(), 1, Direction::Forward, 10_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.event_type.contains("Failed") || e.event_type == "WorkflowFinished")
            .map(|e| e.payload.to_string())
            .collect::<Vec<_>>();
        use netledger_domain::workflow::Outcome;
        match kind {
            Kind::Push => {
                assert!(
                    matches!(outcome, Outcome::Committed | Outcome::RolledBack),
                    "{wf}: {outcome:?} {why:?}"
                );
                let d = fleet.device(*i).unwrap();
                assert_eq!(
                    d.change_counts().get(&format!("chaos-{i}")).copied(),
                    Some(1),
                    "device {i} received its change once"
                );
            }
            Kind::Firmware => {
                assert_eq!(outcome, Outcome::Succeeded, "{wf} {why:?}");
                assert_eq!(fleet.device(*i).unwrap().version().to_string(), "7.19.4");
            }
            Kind::Rollout => {
                assert_eq!(outcome, Outcome::Succeeded, "{wf} {why:?}");
                let change = format!("ro-{}", rid.as_uuid().simple());
                for j in 0..3 {
                    assert_eq!(
                        fleet
                            .device(j)
                            .unwrap()
                            .change_counts()
                            .get(&change)
                            .copied(),
                        Some(1),
                        "device {j} received the rollout's change once"
                    );
                }
            }
        }
        // ordered journal: a step's outcome before another step starts
        let journal = reader
            .read_stream(&wf.stream(), 1, Direction::Forward, 10_000)
            .await
            .unwrap();
        let mut open: Option<String> = None;
        let mut done = BTreeSet::new();
        for e in &journal {
            let step = e.payload["step"].as_str().map(str::to_owned);
            match e.event_type.as_str() {
                "WorkflowStepStarted" => {
                    let s = step.unwrap();
                    assert!(
                        open.is_none() || open.as_ref() == Some(&s),
                        "{s} started while {open:?} open"
                    );
                    assert!(!done.contains(&s), "{s} started after it completed");
                    open = Some(s);
                }
                "WorkflowStepCompleted" | "WorkflowStepFailed" => {
                    let s = step.unwrap();
                    assert_eq!(open.as_ref(), Some(&s));
                    if e.event_type == "WorkflowStepCompleted" {
                        done.insert(s);
                    }
                    open = None;
                }
                _ => {}
            }
        }
        assert!(open.is_none());
        assert_eq!(journal.last().unwrap().event_type, "WorkflowFinished");
    }
    drop(_last);
    let _ = std::fs::remove_dir_all(&dir);
}

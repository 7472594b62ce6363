//! Crash test: worker PROCESSES (`netops-chaos-worker`, which runs `run_worker`) are killed
//! with SIGKILL at random points of config pushes (watching the journal: after 1-3 new
//! journal events, so at step boundaries and inside steps, apply included), then a last
//! worker finishes everything. Every push must end Committed or RolledBack, every journal
//! must be ordered (a started step gets its outcome before another step starts; only the
//! killed attempt is started again), and no device may receive its change twice.
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

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn killed_worker_processes_never_apply_a_change_twice(owner: PgPool) {
    let opts = owner.connect_options();
    let db = opts.get_database().unwrap().to_owned();
    let url = format!("postgres://postgres@127.0.0.1:5432/{db}");
    let pools = Pools::connect(&opts, None, None, 4).await.unwrap();
    let dir = std::env::temp_dir().join(format!("netops-chaos-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("cache")).unwrap();
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
        let wf = engine
            .start(
                tenant,
                "config_push",
                json!({ "device_id": device, "change_id": format!("chaos-{i}"), "script": CHANGE }),
                netledger_engine::StartOptions::new(Actor::system("test")).devices([device]),
            )
            .await
            .unwrap()
            .workflow_id;
        workflows.push((wf, i));
    }
    let spawn = |n: usize| {
        Killer(Some(
            Command::new(env!("CARGO_BIN_EXE_netops-chaos-worker"))
                .args([
                    url.as_str(),
                    dir.join("archive").to_str().unwrap(),
                    key_b64.as_str(),
                    dir.join("cache").to_str().unwrap(),
                    "http://127.0.0.1:9",
                    &format!("chaos-{n}"),
                ])
                .spawn()
                .unwrap(),
        ))
    };
    let reader = EventReader::tenant(pools.app.clone(), tenant);
    let count = || async {
        let mut n = 0;
        for (wf, _) in &workflows {
            n += reader
                .read_stream(&wf.stream(), 1, Direction::Forward, 10_000)
                .await
                .unwrap()
                .len();
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
    // kill after 1, 2, 3, 1, 2, 3... new journal events
    let mut kills = 0;
    for round in 0..12 {
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
        assert!(
            matches!(
                outcome,
                netledger_domain::workflow::Outcome::Committed
                    | netledger_domain::workflow::Outcome::RolledBack
            ),
            "{wf}: {outcome:?}"
        );
        let d = fleet.device(*i).unwrap();
        assert_eq!(
            d.change_counts().get(&format!("chaos-{i}")).copied(),
            Some(1),
            "device {i} received its change once"
        );
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

//! The engine's crash tests: real worker processes (`engine-chaos-worker`) killed with
//! SIGKILL, at random times and at each crash point. Moved here from
//! `workflows/engine/tests/engine.rs` (they need this package's binaries); they share that
//! file's harness (`workflows/engine/tests/support`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../engine/tests/support/mod.rs"]
mod support;

use std::time::Duration;

use netledger_domain::workflow::{Outcome, WorkflowStepStarted, WorkflowTakenOver};
use netledger_domain::{DeviceId, EventType, TenantId};
use netledger_engine::{Definition, Finish, StartOptions, TaskState};
use serde_json::{Value, json};
use sqlx::{PgPool, Row};

use support::*;

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn workers_killed_with_sigkill_leave_every_workflow_finished_exactly_once(pool: PgPool) {
    use rand::Rng;

    let env = env(pool).await;
    // This process only starts the workflows; the chaos-worker processes run them.
    let reg = registry(vec![Definition::of(Chaos, |_ctx, _: Value| async {
        Ok(Finish::failed(
            "the test process does not run chaos workflows",
            Value::Null,
        ))
    })]);
    let engine = env.engine(&reg);
    let tenant = TenantId::new_random();
    const STEPS: u64 = 8;
    let mut ids = Vec::new();
    for i in 0..24 {
        let mut options = StartOptions::new(actor());
        if i % 3 == 0 {
            options = options.devices([DeviceId::new_random()]);
        }
        let started = engine
            .start::<Chaos>(
                tenant,
                json!({ "steps": STEPS, "max_sleep_ms": 200 }),
                options,
            )
            .await
            .unwrap();
        ids.push(started.workflow_id);
    }

    let opts = env.owner.connect_options();
    let url = format!(
        "postgres://{}@{}:{}/{}",
        opts.get_username(),
        opts.get_host(),
        opts.get_port(),
        opts.get_database().unwrap()
    );
    let spawn = |name: String| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_engine-chaos-worker"))
            .arg(&url)
            .arg(name)
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let mut rng = rand::thread_rng();
    for round in 0..8 {
        let mut children = vec![spawn(format!("chaos-{round}-a"))];
        if round % 2 == 1 {
            children.push(spawn(format!("chaos-{round}-b")));
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(150..700))).await;
        for child in &mut children {
            child.start_kill().unwrap(); // SIGKILL
            child.wait().await.unwrap();
        }
    }
    let mut last = spawn("chaos-last".to_owned());
    for id in &ids {
        finished(&engine, tenant, *id).await;
    }
    last.start_kill().unwrap();
    last.wait().await.unwrap();

    let expected_sum: u64 = (0..STEPS).map(|i| i * 2).sum();
    let mut takeovers = 0;
    let mut reattempts = 0;
    for id in &ids {
        let s = status(&engine, tenant, *id).await;
        assert_eq!(s.outcome, Some(Outcome::Succeeded), "{id}");
        let events = env.journal(tenant, *id).await;
        let completed = assert_well_formed(&events);
        let expected: Vec<String> = (0..STEPS).map(|i| format!("s{i}")).collect();
        assert_eq!(completed, expected, "{id}");
        assert_eq!(finish_of(&events).output, json!({ "sum": expected_sum }));
        takeovers += events
            .iter()
            .filter(|e| e.event_type == WorkflowTakenOver::TYPE)
            .count();
        reattempts += events
            .iter()
            .filter_map(|e| e.decode::<WorkflowStepStarted>().ok())
            .filter(|s| s.attempt > 1)
            .count();
    }
    let locks: i64 = sqlx::query("SELECT count(*) FROM workflow_device_locks")
        .fetch_one(&env.owner)
        .await
        .unwrap()
        .get(0);
    assert_eq!(locks, 0);
    assert!(takeovers > 0, "no kill landed while a worker held a lease");
    eprintln!("chaos: {takeovers} takeovers, {reattempts} interrupted steps re-attempted");
}

/// Deterministic and exhaustive: a discovery run records the crash points a `chaos`
/// workflow passes (its halfway sleep is long enough to release the lease); then one
/// workflow per point, each killed exactly there (its worker process SIGKILLs itself, see
/// `engine-chaos-worker`), once; other worker processes finish them all.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_worker_killed_at_each_crash_point_leaves_every_workflow_finished_once(pool: PgPool) {
    let env = env(pool).await;
    let reg = registry(vec![Definition::of(Chaos, |_ctx, _: Value| async {
        Ok(Finish::failed(
            "the test process does not run chaos workflows",
            Value::Null,
        ))
    })]);
    let engine = env.engine(&reg);
    let tenant = TenantId::new_random();
    const STEPS: u64 = 4;
    let input = json!({ "steps": STEPS, "max_sleep_ms": 5, "sleep_ms": 300 });
    let opts = env.owner.connect_options();
    let url = format!(
        "postgres://{}@{}:{}/{}",
        opts.get_username(),
        opts.get_host(),
        opts.get_port(),
        opts.get_database().unwrap()
    );
    let dir = std::env::temp_dir().join(format!("engine-chaos-{}", uuid::Uuid::new_v4().simple()));
    let spawn = |chaos: &std::path::Path, name: String| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_engine-chaos-worker"))
            .arg(&url)
            .arg(name)
            .arg(chaos)
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };

    // discovery
    let discovery = dir.join("discovery");
    std::fs::create_dir_all(&discovery).unwrap();
    let first = engine
        .start::<Chaos>(tenant, input.clone(), StartOptions::new(actor()))
        .await
        .unwrap()
        .workflow_id;
    let mut w = spawn(&discovery, "discovery".to_owned());
    finished(&engine, tenant, first).await;
    w.start_kill().unwrap();
    w.wait().await.unwrap();
    let log = std::fs::read_to_string(discovery.join("points.log")).unwrap();
    let mut labels: Vec<String> = Vec::new();
    for line in log.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() == 3 && f[1] == first.to_string() && !labels.iter().any(|l| l == f[2]) {
            labels.push(f[2].to_owned());
        }
    }
    for must in ["s0/started", "halfway/suspended", "workflow/finished"] {
        assert!(labels.iter().any(|l| l == must), "{must} not in {labels:?}");
    }

    // one workflow killed at each point
    let kills = dir.join("kills");
    std::fs::create_dir_all(&kills).unwrap();
    let mut planned = Vec::new();
    let mut plan = String::new();
    for label in &labels {
        let id = engine
            .start::<Chaos>(tenant, input.clone(), StartOptions::new(actor()))
            .await
            .unwrap()
            .workflow_id;
        plan.push_str(&format!("{id}\t{label}\n"));
        planned.push((id, label.clone()));
    }
    std::fs::write(kills.join("plan"), plan).unwrap();
    let mut workers = Vec::new();
    let mut spawned = 0;
    let mut killed = 0;
    let t = std::time::Instant::now();
    loop {
        let mut open = 0;
        for (id, _) in &planned {
            if status(&engine, tenant, *id).await.state != TaskState::Finished {
                open += 1;
            }
        }
        if open == 0 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "{open} not finished"
        );
        let mut i = 0;
        while i < workers.len() {
            let w: &mut tokio::process::Child = &mut workers[i];
            match w.try_wait().unwrap() {
                Some(exit) => {
                    use std::os::unix::process::ExitStatusExt;
                    assert_eq!(exit.signal(), Some(9), "a worker exited with {exit}");
                    killed += 1;
                    workers.swap_remove(i);
                }
                None => i += 1,
            }
        }
        while workers.len() < 3 {
            workers.push(spawn(&kills, format!("kills-{spawned}")));
            spawned += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for w in &mut workers {
        w.start_kill().unwrap();
        w.wait().await.unwrap();
    }

    let expected: Vec<String> = (0..STEPS).map(|i| format!("s{i}")).collect();
    let expected_sum: u64 = (0..STEPS).map(|i| i * 2).sum();
    for (id, label) in &planned {
        assert!(
            kills.join("killed").join(id.to_string()).exists(),
            "the planned kill at {label} never happened"
        );
        let s = status(&engine, tenant, *id).await;
        assert_eq!(s.outcome, Some(Outcome::Succeeded), "killed at {label}");
        let events = env.journal(tenant, *id).await;
        assert_eq!(assert_well_formed(&events), expected, "killed at {label}");
        assert_eq!(
            finish_of(&events).output,
            json!({ "sum": expected_sum }),
            "killed at {label}"
        );
    }
    eprintln!(
        "engine chaos: {} crash points {labels:?}, {killed} kills",
        labels.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

//! Engine tests against a real PostgreSQL: every test gets a fresh database with the real
//! migrations (`#[sqlx::test]`) and connects as the real roles. Workers run as tasks (the
//! SIGKILL crash tests, which kill real worker processes, are in `workflows/chaos`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use netledger_domain::clock::Clock;
use netledger_domain::workflow::{
    FailureClass, Outcome, WorkflowStepFailed, WorkflowStepStarted, WorkflowTakenOver,
};
use netledger_domain::{Actor, DeviceId, EventType, TenantId, WorkflowId};
use netledger_engine::{
    Definition, EngineError, Finish, RetryPolicy, StartOptions, StepError, StepOptions, TaskState,
    WorkflowCard,
};
use serde_json::{Value, json};
use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use tokio::sync::Notify;

mod support;

use support::*;

// ---------------------------------------------------------------------------------------
// Replay

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_step_completes_once_however_often_the_workflow_is_resumed(pool: PgPool) {
    let env = env(pool).await;
    let counts: Counts = Arc::default();
    let c = counts.clone();
    let def = Definition::of(Replay, move |mut ctx, _: Value| {
        let c = c.clone();
        async move {
            let mut total = 0u64;
            for i in 0..5u64 {
                let name = format!("s{i}");
                let c2 = c.clone();
                let n2 = name.clone();
                total += ctx
                    .step(&name, move || {
                        let c = c2.clone();
                        let n = n2.clone();
                        async move {
                            bump(&c, &n);
                            Ok(i * 10)
                        }
                    })
                    .await?;
                // Each sleep suspends the workflow; each resume replays from the top.
                ctx.sleep(&format!("nap{i}"), Duration::from_millis(20))
                    .await?;
            }
            Ok(Finish::succeeded(json!({ "total": total })))
        }
    });
    let reg = registry(vec![def]);
    let engine = env.engine(&reg);
    let tenant = TenantId::new_random();
    let started = engine
        .start::<Replay>(tenant, Value::Null, StartOptions::new(actor()))
        .await
        .unwrap();
    let worker = env.worker(&reg, fast("w1"));
    finished(&engine, tenant, started.workflow_id).await;
    let report = worker.stop().await;

    assert!(report.suspended >= 5, "every sleep suspended: {report:?}");
    let counts = counts.lock().unwrap().clone();
    assert_eq!(counts.len(), 5);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    let events = env.journal(tenant, started.workflow_id).await;
    assert_eq!(
        assert_well_formed(&events),
        vec!["s0", "s1", "s2", "s3", "s4"]
    );
    assert_eq!(finish_of(&events).output, json!({ "total": 100 }));
    assert_eq!(finish_of(&events).outcome, Outcome::Succeeded);
}

// ---------------------------------------------------------------------------------------
// Crash, takeover, fencing

/// Step `a`, then step `b` which hangs on its first attempt (until `gate` opens), then `c`.
fn hanging(counts: Counts, entered: Arc<Notify>, gate: Arc<Gate>) -> Definition {
    let first = Arc::new(AtomicU32::new(0));
    Definition::of(Hang, move |mut ctx, _: Value| {
        let (counts, entered, gate, first) =
            (counts.clone(), entered.clone(), gate.clone(), first.clone());
        async move {
            let c = counts.clone();
            ctx.step("a", move || {
                let c = c.clone();
                async move {
                    bump(&c, "a");
                    Ok(())
                }
            })
            .await?;
            let c = counts.clone();
            ctx.step("b", move || {
                let (c, entered, gate, first) =
                    (c.clone(), entered.clone(), gate.clone(), first.clone());
                async move {
                    bump(&c, "b");
                    if first.fetch_add(1, Ordering::SeqCst) == 0 {
                        entered.notify_one();
                        gate.wait().await;
                    }
                    Ok(())
                }
            })
            .await?;
            let c = counts.clone();
            ctx.step("c", move || {
                let c = c.clone();
                async move {
                    bump(&c, "c");
                    Ok(())
                }
            })
            .await?;
            Ok(Finish::succeeded(Value::Null))
        }
    })
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_crashed_workers_workflow_is_taken_over_and_resumed_from_the_journal(pool: PgPool) {
    let env = env(pool).await;
    let counts: Counts = Arc::default();
    let entered = Arc::new(Notify::new());
    let gate = Arc::new(Gate::default());
    let reg = registry(vec![hanging(counts.clone(), entered.clone(), gate)]);
    let engine = env.engine(&reg);
    let tenant = TenantId::new_random();
    let id = engine
        .start::<Hang>(tenant, Value::Null, StartOptions::new(actor()))
        .await
        .unwrap()
        .workflow_id;

    let mut short = fast("doomed");
    short.lease = Duration::from_millis(800);
    short.heartbeat = Duration::from_millis(200);
    let doomed = env.worker(&reg, short);
    tokio::time::timeout(Duration::from_secs(10), entered.notified())
        .await
        .expect("the first worker enters step b");
    doomed.crash().await;

    let mut o = fast("rescuer");
    o.lease = Duration::from_millis(800);
    o.heartbeat = Duration::from_millis(200);
    let rescuer = env.worker(&reg, o);
    let s = finished(&engine, tenant, id).await;
    rescuer.stop().await;
    assert_eq!(s.outcome, Some(Outcome::Succeeded));
    assert_eq!(
        s.attempt, 2,
        "claimed by the crashed worker, then taken over"
    );

    let counts = counts.lock().unwrap().clone();
    assert_eq!(
        counts.get("a"),
        Some(&1),
        "a completed before the crash: not re-run"
    );
    assert_eq!(counts.get("b"), Some(&2), "b was interrupted: run again");
    assert_eq!(counts.get("c"), Some(&1));
    let events = env.journal(tenant, id).await;
    assert_eq!(assert_well_formed(&events), vec!["a", "b", "c"]);
    let takeover = events
        .iter()
        .find(|e| e.event_type == WorkflowTakenOver::TYPE)
        .expect("a takeover event")
        .decode::<WorkflowTakenOver>()
        .unwrap();
    assert_eq!(
        (
            takeover.attempt,
            takeover.worker.as_str(),
            takeover.previous_worker.as_str()
        ),
        (2, "rescuer", "doomed")
    );
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn fenced_attempts_ignore_stale_workers(pool: PgPool) {
    let env = env(pool).await;
    let counts: Counts = Arc::default();
    let entered = Arc::new(Notify::new());
    let gate = Arc::new(Gate::default());
    let reg = registry(vec![hanging(counts.clone(), entered.clone(), gate.clone())]);
    let engine = env.engine(&reg);
    let tenant = TenantId::new_random();
    let id = engine
        .start::<Hang>(tenant, Value::Null, StartOptions::new(actor()))
        .await
        .unwrap()
        .workflow_id;

    // The stale worker: alive, but it will not heartbeat before the clock passes its lease.
    let mut o = fast("stale");
    o.lease = Duration::from_secs(60);
    o.heartbeat = Duration::from_secs(59);
    // Busy with this one workflow: it cannot claim it back itself after the clock jump.
    o.concurrency = 1;
    let stale = env.worker(&reg, o);
    tokio::time::timeout(Duration::from_secs(10), entered.notified())
        .await
        .expect("the stale worker enters step b");
    env.clock.advance(Duration::from_secs(61));

    let fresh = env.worker(&reg, fast("fresh"));
    let s = finished(&engine, tenant, id).await;
    assert_eq!(s.attempt, 2);
    // Now let the stale worker finish its attempt of b: its append must conflict.
    gate.open();
    let stale_report = stale.stop().await;
    fresh.stop().await;
    assert_eq!(stale_report.fenced, 1, "{stale_report:?}");
    assert_eq!(stale_report.finished, 0);

    let events = env.journal(tenant, id).await;
    assert_eq!(assert_well_formed(&events), vec!["a", "b", "c"]);
    let takeover_at = events
        .iter()
        .position(|e| e.event_type == WorkflowTakenOver::TYPE)
        .unwrap();
    for e in &events[takeover_at..] {
        assert_ne!(
            e.metadata.actor,
            Actor::system("workflow-worker/stale"),
            "the stale worker journaled {} after the takeover",
            e.event_type
        );
    }
    // b: started by the stale worker (attempt 1), re-attempted and completed by the new one.
    let b: Vec<(String, u32)> = events
        .iter()
        .filter_map(|e| e.decode::<WorkflowStepStarted>().ok())
        .filter(|s| s.step == "b")
        .map(|s| (s.step, s.attempt))
        .collect();
    assert_eq!(b, vec![("b".to_owned(), 1), ("b".to_owned(), 2)]);

    // The task row refuses the stale attempt's writes too.
    let stale_finish: bool =
        sqlx::query("SELECT netledger_workflow_finish($1, $2, 1, 'failed', now())")
            .bind(tenant.as_uuid())
            .bind(id.as_uuid())
            .fetch_one(&env.pools.app)
            .await
            .unwrap()
            .get(0);
    assert!(!stale_finish);
    let heartbeat = sqlx::query(
        "UPDATE workflow_tasks SET lease_expires_at = now() WHERE workflow_id = $1 AND attempt = 1",
    )
    .bind(id.as_uuid())
    .execute(&env.pools.system)
    .await
    .unwrap();
    assert_eq!(heartbeat.rows_affected(), 0);
}

/// Sets a flag and notifies when dropped (a step body's future dropped mid-way).
struct DropSignal(Arc<Notify>, Arc<std::sync::atomic::AtomicBool>);
impl Drop for DropSignal {
    fn drop(&mut self) {
        self.1.store(true, Ordering::SeqCst);
        self.0.notify_one();
    }
}

/// Issue #15 item 4: a worker whose heartbeats fail (its claim/heartbeat pool is closed: cut
/// off from PostgreSQL) must stop driving the device once its local lease deadline passes,
/// while another worker takes the workflow over. On the old code the failed heartbeat only
/// logged and the first attempt kept sending "device commands" next to the second one.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_worker_whose_heartbeats_fail_stops_its_device_commands_at_its_lease_deadline(
    pool: PgPool,
) {
    let env = env(pool).await;
    // (invocation of the step body, time) of every "device command"
    let device: Arc<std::sync::Mutex<Vec<(u32, OffsetDateTime)>>> = Arc::default();
    let invocations = Arc::new(AtomicU32::new(0));
    let entered = Arc::new(Notify::new());
    let dropped = Arc::new(Notify::new());
    let dropped_flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clock = env.clock.clone();
    let (d, inv, ent, drp, flag) = (
        device.clone(),
        invocations.clone(),
        entered.clone(),
        dropped.clone(),
        dropped_flag.clone(),
    );
    let def = Definition::of(Lease, move |mut ctx, _: Value| {
        let (d, inv, ent, drp, flag, clock) = (
            d.clone(),
            inv.clone(),
            ent.clone(),
            drp.clone(),
            flag.clone(),
            clock.clone(),
        );
        async move {
            let n: u32 = ctx
                .step("drive", move || {
                    let (d, ent, drp, flag, clock) = (
                        d.clone(),
                        ent.clone(),
                        drp.clone(),
                        flag.clone(),
                        clock.clone(),
                    );
                    let n = inv.fetch_add(1, Ordering::SeqCst) + 1;
                    async move {
                        if n == 1 {
                            // The first attempt drives the device until it is stopped.
                            let _dropped = DropSignal(drp, flag);
                            ent.notify_one();
                            loop {
                                d.lock().unwrap().push((n, clock.now()));
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        }
                        d.lock().unwrap().push((n, clock.now()));
                        Ok(n)
                    }
                })
                .await?;
            Ok(Finish::succeeded(json!(n)))
        }
    });
    let reg = registry(vec![def]);
    let engine = env.engine(&reg);
    let tenant = TenantId::new_random();
    let id = engine
        .start::<Lease>(tenant, Value::Null, StartOptions::new(actor()))
        .await
        .unwrap()
        .workflow_id;

    // Worker A claims and heartbeats through a pool of its own; its journal appends still work.
    let a_pools = netledger_store::Pools::connect(&env.owner.connect_options(), None, None, 2)
        .await
        .unwrap();
    let mut o = fast("cut-off");
    o.lease = Duration::from_millis(1500);
    o.heartbeat = Duration::from_millis(300);
    o.concurrency = 1;
    let a = env.worker_on(&reg, a_pools.system.clone(), o);
    tokio::time::timeout(Duration::from_secs(20), entered.notified())
        .await
        .expect("worker A enters the step");
    // Cut A off: its heartbeats fail from now on (closing marks the pool closed at once).
    let _closing = a_pools.system.close();

    let mut o = fast("rescuer");
    o.lease = Duration::from_millis(1500);
    o.heartbeat = Duration::from_millis(300);
    let b = env.worker(&reg, o);
    let s = finished(&engine, tenant, id).await;
    assert_eq!(s.outcome, Some(Outcome::Succeeded));
    assert_eq!(s.attempt, 2, "claimed by A, then taken over by B");

    // A's attempt must have been stopped (its future dropped) rather than left running.
    if !dropped_flag.load(Ordering::SeqCst) {
        tokio::time::timeout(Duration::from_secs(30), dropped.notified())
            .await
            .expect("worker A is still driving the device after its lease passed and B took over");
    }
    let a_report = a.stop().await;
    b.stop().await;
    assert_eq!(a_report.fenced, 1, "{a_report:?}");
    assert_eq!(a_report.finished, 0, "{a_report:?}");

    let commands = device.lock().unwrap().clone();
    let last_a = commands
        .iter()
        .filter(|(n, _)| *n == 1)
        .map(|(_, t)| *t)
        .max();
    let first_b = commands
        .iter()
        .filter(|(n, _)| *n == 2)
        .map(|(_, t)| *t)
        .min();
    let (Some(last_a), Some(first_b)) = (last_a, first_b) else {
        panic!("both attempts drove the device: {commands:?}");
    };
    assert!(
        last_a < first_b,
        "A sent a command at {last_a}, after B's first at {first_b}: two workers drove the device"
    );
    let events = env.journal(tenant, id).await;
    assert_eq!(assert_well_formed(&events), vec!["drive"]);
    let takeover = events
        .iter()
        .find(|e| e.event_type == WorkflowTakenOver::TYPE)
        .expect("a takeover event")
        .decode::<WorkflowTakenOver>()
        .unwrap();
    assert_eq!(
        (takeover.worker.as_str(), takeover.previous_worker.as_str()),
        ("rescuer", "cut-off")
    );
}

// ---------------------------------------------------------------------------------------
// Timers, retries, timeouts

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_durable_timer_fires_on_the_injected_clock(pool: PgPool) {
    let env = env(pool).await;
    let def = Definition::of(Timer, |mut ctx, _: Value| async move {
        ctx.sleep("an-hour", Duration::from_secs(3600)).await?;
        let v: u32 = ctx.step("after", || async { Ok(7) }).await?;
        Ok(Finish::succeeded(json!(v)))
    });
    let reg = registry(vec![def]);
    let engine = env.engine(&reg);
    let tenant = TenantId::new_random();
    let id = engine
        .start::<Timer>(tenant, Value::Null, StartOptions::new(actor()))
        .await
        .unwrap()
        .workflow_id;
    let worker = env.worker(&reg, fast("w"));
    let due = env.clock.now() + time::Duration::minutes(59);
    let s = wait_for(&engine, tenant, id, "suspended on its timer", |s| {
        s.lease_owner.is_none() && s.runnable_at.is_some_and(|at| at > due)
    })
    .await;
    assert_eq!(s.state, TaskState::Runnable);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(status(&engine, tenant, id).await.state, TaskState::Runnable);

    env.clock.advance(Duration::from_secs(3601));
    finished(&engine, tenant, id).await;
    worker.stop().await;
    let events = env.journal(tenant, id).await;
    assert_well_formed(&events);
    assert_eq!(
        types(&events),
        vec![
            "WorkflowStarted",
            "WorkflowTimerScheduled",
            "WorkflowTimerFired",
            "WorkflowStepStarted",
            "WorkflowStepCompleted",
            "WorkflowFinished"
        ]
    );
    assert_eq!(finish_of(&events).output, json!(7));
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn retries_back_off_and_give_up_after_the_maximum_attempts(pool: PgPool) {
    let env = env(pool).await;
    let flaky_calls = Arc::new(AtomicU32::new(0));
    let broken_calls = Arc::new(AtomicU32::new(0));
    let fatal_calls = Arc::new(AtomicU32::new(0));
    let (f1, b1, x1) = (
        flaky_calls.clone(),
        broken_calls.clone(),
        fatal_calls.clone(),
    );
    let def = Definition::of(Retry, move |mut ctx, _: Value| {
        let (flaky, broken, fatal) = (f1.clone(), b1.clone(), x1.clone());
        async move {
            let policy = RetryPolicy {
                max_attempts: 3,
                initial_backoff: Duration::from_millis(20),
                max_backoff: Duration::from_millis(100),
                multiplier: 2.0,
                jitter: 0.0,
            };
            let opts = StepOptions::default().retry(policy);
            // Fails twice, then succeeds.
            let n: u32 = ctx
                .step_with("flaky", opts, || {
                    let flaky = flaky.clone();
                    async move {
                        let n = flaky.fetch_add(1, Ordering::SeqCst) + 1;
                        if n < 3 {
                            Err(StepError::retryable(format!("flake {n}")))
                        } else {
                            Ok(n)
                        }
                    }
                })
                .await?;
            // Fatal: no retry.
            let fatal_result = ctx
                .step_with("fatal", opts, || {
                    let fatal = fatal.clone();
                    async move {
                        fatal.fetch_add(1, Ordering::SeqCst);
                        Err::<(), _>(StepError::fatal("refused"))
                    }
                })
                .await;
            assert_eq!(fatal_result, Err(StepError::Fatal("refused".to_owned())));
            // Always fails: three attempts, then a fatal error naming the last one.
            ctx.step_with("broken", opts, || {
                let broken = broken.clone();
                async move {
                    let n = broken.fetch_add(1, Ordering::SeqCst) + 1;
                    Err::<(), _>(StepError::retryable(format!("still broken ({n})")))
                }
            })
            .await?;
            Ok(Finish::succeeded(json!(n)))
        }
    });
    let reg = registry(vec![def]);
    let engine = env.engine(&reg);
    let tenant = TenantId::new_random();
    let id = engine
        .start::<Retry>(tenant, Value::Null, StartOptions::new(actor()))
        .await
        .unwrap()
        .workflow_id;
    let worker = env.worker(&reg, fast("w"));
    let s = finished(&engine, tenant, id).await;
    worker.stop().await;
    assert_eq!(s.outcome, Some(Outcome::Failed));
    assert_eq!(flaky_calls.load(Ordering::SeqCst), 3);
    assert_eq!(fatal_calls.load(Ordering::SeqCst), 1);
    assert_eq!(broken_calls.load(Ordering::SeqCst), 3);

    let events = env.journal(tenant, id).await;
    assert_eq!(assert_well_formed(&events), vec!["flaky"]);
    let fin = finish_of(&events);
    assert_eq!(
        fin.reason.as_deref(),
        Some("step `broken` failed after 3 attempts: still broken (3)")
    );
    let failures: Vec<WorkflowStepFailed> = events
        .iter()
        .filter_map(|e| e.decode::<WorkflowStepFailed>().ok())
        .collect();
    let summary: Vec<(&str, u32, FailureClass, bool)> = failures
        .iter()
        .map(|f| (f.step.as_str(), f.attempt, f.class, f.retry_at.is_some()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("flaky", 1, FailureClass::Retryable, true),
            ("flaky", 2, FailureClass::Retryable, true),
            ("fatal", 1, FailureClass::Fatal, false),
            ("broken", 1, FailureClass::Retryable, true),
            ("broken", 2, FailureClass::Retryable, true),
            ("broken", 3, FailureClass::Retryable, false),
        ]
    );
    // Backoff grows: attempt 2 runs no earlier than the first retry time, so the second
    // retry time is at least the second backoff (40 ms, no jitter) after the first.
    let retry_times: Vec<OffsetDateTime> = failures
        .iter()
        .filter(|f| f.step == "broken")
        .filter_map(|f| f.retry_at)
        .collect();
    assert_eq!(retry_times.len(), 2);
    assert!(
        retry_times[1] - retry_times[0] >= time::Duration::milliseconds(40),
        "{retry_times:?}"
    );
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_step_attempt_that_outlives_its_timeout_is_abandoned_and_retried(pool: PgPool) {
    let env = env(pool).await;
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let def = Definition::of(Slow, move |mut ctx, _: Value| {
        let c = c.clone();
        async move {
            let opts = StepOptions::default()
                .timeout(Duration::from_millis(100))
                .retry(RetryPolicy {
                    initial_backoff: Duration::from_millis(10),
                    ..RetryPolicy::attempts(3)
                });
            ctx.step_with("slow", opts, || {
                let c = c.clone();
                async move {
                    if c.fetch_add(1, Ordering::SeqCst) == 0 {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                    Ok(())
                }
            })
            .await?;
            Ok(Finish::succeeded(Value::Null))
        }
    });
    let reg = registry(vec![def]);
    let engine = env.engine(&reg);
    let tenant = TenantId::new_random();
    let id = engine
        .start::<Slow>(tenant, Value::Null, StartOptions::new(actor()))
        .await
        .unwrap()
        .workflow_id;
    let worker = env.worker(&reg, fast("w"));
    let s = finished(&engine, tenant, id).await;
    worker.stop().await;
    assert_eq!(s.outcome, Some(Outcome::Succeeded));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let events = env.journal(tenant, id).await;
    assert_well_formed(&events);
    let failed = events
        .iter()
        .find_map(|e| e.decode::<WorkflowStepFailed>().ok())
        .unwrap();
    assert_eq!(failed.attempt, 1);
    assert!(
        failed.error.contains("timed out after 100 ms"),
        "{}",
        failed.error
    );
}

// ---------------------------------------------------------------------------------------
// Signals, pause, cancel

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn signals_wake_a_waiting_workflow_and_a_wait_times_out(pool: PgPool) {
    let env = env(pool).await;
    let def = Definition::of(Approval, |mut ctx, _: Value| async move {
        let approved: Option<u32> = ctx
            .wait_signal("approve", Some(Duration::from_secs(600)))
            .await?;
        Ok(Finish::succeeded(json!(approved)))
    });
    let reg = registry(vec![def]);
    let engine = env.engine(&reg);
    let tenant = TenantId::new_random();
    let a = engine
        .start::<Approval>(tenant, Value::Null, StartOptions::new(actor()))
        .await
        .unwrap()
        .workflow_id;
    let b = engine
        .start::<Approval>(tenant, Value::Null, StartOptions::new(actor()))
        .await
        .unwrap()
        .workflow_id;
    let worker = env.worker(&reg, fast("w"));
    for id in [a, b] {
        wait_for(&engine, tenant, id, "waiting on its timeout", |s| {
            s.lease_owner.is_none() && s.runnable_at.is_some()
        })
        .await;
    }
    engine
        .signal(tenant, a, "approve", json!(42), actor())
        .await
        .unwrap();
    finished(&engine, tenant, a).await;
    assert_eq!(status(&engine, tenant, b).await.state, TaskState::Runnable);
    env.clock.advance(Duration::from_secs(601));
    finished(&engine, tenant, b).await;
    worker.stop().await;

    let ea = env.journal(tenant, a).await;
    assert_well_formed(&ea);
    assert_eq!(finish_of(&ea).output, json!(42));
    let eb = env.journal(tenant, b).await;
    assert_well_formed(&eb);
    assert_eq!(finish_of(&eb).output, Value::Null);
    assert!(types(&eb).contains(&"WorkflowTimerFired".to_owned()));
    // A finished workflow takes no more signals.
    assert!(matches!(
        engine.signal(tenant, a, "approve", json!(1), actor()).await,
        Err(EngineError::Finished(_))
    ));
    assert!(matches!(
        engine
            .signal(TenantId::new_random(), b, "approve", json!(1), actor())
            .await,
        Err(EngineError::NotFound(_))
    ));
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn pause_holds_the_next_step_until_resume(pool: PgPool) {
    let env = env(pool).await;
    let def = Definition::of(Paused, |mut ctx, _: Value| async move {
        let n: u32 = ctx.wait_signal("go", None).await?.unwrap_or(0);
        let m: u32 = ctx.step("double", || async move { Ok(n * 2) }).await?;
        Ok(Finish::succeeded(json!(m)))
    });
    let reg = registry(vec![def]);
    let engine = env.engine(&reg);
    let tenant = TenantId::new_random();
    let id = engine
        .start::<Paused>(tenant, Value::Null, StartOptions::new(actor()))
        .await
        .unwrap()
        .workflow_id;
    let worker = env.worker(&reg, fast("w"));
    waiting_for_signal(&engine, tenant, id).await;
    engine.pause(tenant, id, actor()).await.unwrap();
    engine
        .signal(tenant, id, "go", json!(21), actor())
        .await
        .unwrap();
    // It takes `go`, then holds before `double`, lease released.
    tokio::time::sleep(Duration::from_millis(300)).await;
    waiting_for_signal(&engine, tenant, id).await;
    let events = env.journal(tenant, id).await;
    assert!(
        !types(&events).contains(&"WorkflowStepStarted".to_owned()),
        "{:?}",
        types(&events)
    );
    engine.resume(tenant, id, actor()).await.unwrap();
    finished(&engine, tenant, id).await;
    worker.stop().await;
    let events = env.journal(tenant, id).await;
    assert_well_formed(&events);
    assert_eq!(finish_of(&events).output, json!(42));
}

/// `apply`, then wait for approval; a cancel unwinds with `rollback`.
fn cancellable(rolled_back: Arc<AtomicU32>) -> Definition {
    Definition::of(Push, move |mut ctx, _: Value| {
        let rolled_back = rolled_back.clone();
        async move {
            ctx.step("apply", || async { Ok(()) }).await?;
            match ctx.wait_signal::<Value>("approve", None).await {
                Ok(_) => Ok(Finish::committed(Value::Null)),
                Err(StepError::Cancelled) => {
                    assert!(ctx.cancelled());
                    ctx.step("rollback", || {
                        let r = rolled_back.clone();
                        async move {
                            r.fetch_add(1, Ordering::SeqCst);
                            Ok(())
                        }
                    })
                    .await?;
                    Ok(Finish::cancelled("operator", Value::Null))
                }
                Err(e) => Err(e),
            }
        }
    })
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_cancel_is_observed_and_the_definition_unwinds(pool: PgPool) {
    let env = env(pool).await;
    let rolled_back = Arc::new(AtomicU32::new(0));
    let plain = Definition::of(Plain, |mut ctx, _: Value| async move {
        ctx.wait_signal::<Value>("never", Some(Duration::from_secs(3600)))
            .await?;
        ctx.step("after", || async { Ok(()) }).await?;
        Ok(Finish::succeeded(Value::Null))
    });
    let reg = registry(vec![cancellable(rolled_back.clone()), plain]);
    let engine = env.engine(&reg);
    let tenant = TenantId::new_random();
    let push = engine
        .start::<Push>(tenant, Value::Null, StartOptions::new(actor()))
        .await
        .unwrap()
        .workflow_id;
    let other = engine
        .start::<Plain>(tenant, Value::Null, StartOptions::new(actor()))
        .await
        .unwrap()
        .workflow_id;
    let worker = env.worker(&reg, fast("w"));
    waiting_for_signal(&engine, tenant, push).await;
    // Runnable only far in the future: the timer is journaled (a task that no worker has
    // claimed yet is unleased and runnable now, which must not count).
    let later = env.clock.now() + time::Duration::minutes(30);
    wait_for(&engine, tenant, other, "sleeping", |s| {
        s.lease_owner.is_none() && s.runnable_at.is_some_and(|t| t > later)
    })
    .await;
    engine
        .cancel(tenant, push, "changed my mind", actor())
        .await
        .unwrap();
    engine
        .cancel(tenant, other, "not needed", actor())
        .await
        .unwrap();
    let s = finished(&engine, tenant, push).await;
    let o = finished(&engine, tenant, other).await;
    worker.stop().await;

    assert_eq!(s.outcome, Some(Outcome::Cancelled));
    assert_eq!(rolled_back.load(Ordering::SeqCst), 1);
    let events = env.journal(tenant, push).await;
    assert_eq!(assert_well_formed(&events), vec!["apply", "rollback"]);
    assert!(types(&events).contains(&"WorkflowSignalled".to_owned()));
    // A definition that does not look at cancellation stops at its next wait.
    assert_eq!(o.outcome, Some(Outcome::Cancelled));
    let events = env.journal(tenant, other).await;
    assert_eq!(assert_well_formed(&events), Vec::<String>::new());
}

/// Step `apply` (its first attempt hangs until `gate` opens); a cancel unwinds with
/// `rollback`, then a sleep, so the unwinding is replayed from the top.
fn cancelled_in_flight(counts: Counts, entered: Arc<Notify>, gate: Arc<Gate>) -> Definition {
    let first = Arc::new(AtomicU32::new(0));
    Definition::of(CancelledInFlight, move |mut ctx, _: Value| {
        let (counts, entered, gate, first) =
            (counts.clone(), entered.clone(), gate.clone(), first.clone());
        async move {
            let c = counts.clone();
            let applied = ctx
                .step("apply", move || {
                    let (c, entered, gate, first) =
                        (c.clone(), entered.clone(), gate.clone(), first.clone());
                    async move {
                        bump(&c, "apply");
                        if first.fetch_add(1, Ordering::SeqCst) == 0 {
                            entered.notify_one();
                            gate.wait().await;
                        }
                        Ok(())
                    }
                })
                .await;
            match applied {
                Ok(()) => Ok(Finish::committed(Value::Null)),
                Err(StepError::Cancelled) => {
                    assert!(ctx.cancelled());
                    let c = counts.clone();
                    ctx.step("rollback", move || {
                        let c = c.clone();
                        async move {
                            bump(&c, "rollback");
                            Ok(())
                        }
                    })
                    .await?;
                    ctx.sleep("settle", Duration::from_millis(20)).await?;
                    Ok(Finish::cancelled("operator", Value::Null))
                }
                Err(e) => Err(e),
            }
        }
    })
}

/// Issue #15 item 21: a cancel that arrives while a step attempt is interrupted (its worker
/// died inside it) stops the step from running again; the interrupted attempt gets an
/// outcome (the journal has no open attempt when the unwinding starts), and a replay of the
/// journal returns `Cancelled` from the step again.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_cancel_during_an_interrupted_attempt_closes_it_and_the_definition_unwinds(pool: PgPool) {
    let env = env(pool).await;
    let counts: Counts = Arc::default();
    let entered = Arc::new(Notify::new());
    let gate = Arc::new(Gate::default());
    let reg = registry(vec![cancelled_in_flight(
        counts.clone(),
        entered.clone(),
        gate,
    )]);
    let engine = env.engine(&reg);
    let tenant = TenantId::new_random();
    let id = engine
        .start::<CancelledInFlight>(tenant, Value::Null, StartOptions::new(actor()))
        .await
        .unwrap()
        .workflow_id;
    let mut short = fast("doomed");
    short.lease = Duration::from_millis(800);
    short.heartbeat = Duration::from_millis(200);
    let doomed = env.worker(&reg, short.clone());
    tokio::time::timeout(Duration::from_secs(10), entered.notified())
        .await
        .expect("the first worker enters step apply");
    doomed.crash().await;
    engine
        .cancel(tenant, id, "changed my mind", actor())
        .await
        .unwrap();

    short.name = "rescuer".into();
    let rescuer = env.worker(&reg, short);
    let s = finished(&engine, tenant, id).await;
    let report = rescuer.stop().await;

    assert_eq!(s.outcome, Some(Outcome::Cancelled), "{s:?}");
    assert!(report.suspended >= 1, "the sleep suspended: {report:?}");
    let counts = counts.lock().unwrap().clone();
    assert_eq!(counts.get("apply"), Some(&1), "apply does not run again");
    assert_eq!(counts.get("rollback"), Some(&1));
    let events = env.journal(tenant, id).await;
    assert_eq!(assert_well_formed(&events), vec!["rollback"]);
    let failed: Vec<WorkflowStepFailed> = events
        .iter()
        .filter(|e| e.event_type == WorkflowStepFailed::TYPE)
        .map(|e| e.decode().unwrap())
        .collect();
    assert_eq!(failed.len(), 1, "{:?}", types(&events));
    assert_eq!(
        (failed[0].step.as_str(), failed[0].attempt, failed[0].class),
        ("apply", 1, FailureClass::Fatal)
    );
    assert!(failed[0].error.contains("cancelled"), "{:?}", failed[0]);
}

// ---------------------------------------------------------------------------------------
// Starting: idempotency, devices, versions, children

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn concurrent_starts_with_one_idempotency_key_give_one_workflow(pool: PgPool) {
    let env = env(pool).await;
    let reg = registry(vec![Definition::of(Once, |_ctx, _: Value| async {
        Ok(Finish::succeeded(Value::Null))
    })]);
    let engine = env.engine(&reg);
    let tenant = TenantId::new_random();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            engine
                .start::<Once>(
                    tenant,
                    json!({"x": 1}),
                    StartOptions::new(actor()).idempotency_key("request-1"),
                )
                .await
                .unwrap()
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let id = results[0].workflow_id;
    assert!(results.iter().all(|r| r.workflow_id == id));
    assert_eq!(results.iter().filter(|r| !r.existed).count(), 1);
    let created = results.iter().find(|r| !r.existed).unwrap();
    assert!(results.iter().all(|r| r.positions == created.positions));
    let n: i64 = sqlx::query("SELECT count(*) FROM events WHERE event_type = 'WorkflowStarted'")
        .fetch_one(&env.owner)
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // The same key in another tenant is another request.
    let elsewhere = engine
        .start::<Once>(
            TenantId::new_random(),
            Value::Null,
            StartOptions::new(actor()).idempotency_key("request-1"),
        )
        .await
        .unwrap();
    assert!(!elsewhere.existed);
    assert_ne!(elsewhere.workflow_id, id);
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_busy_device_refuses_a_second_workflow_or_queues_it(pool: PgPool) {
    let env = env(pool).await;
    let reg = registry(vec![Definition::of(
        Touch,
        |mut ctx, _: Value| async move {
            ctx.step("touch", || async { Ok(()) }).await?;
            Ok(Finish::succeeded(Value::Null))
        },
    )]);
    let engine = env.engine(&reg);
    let tenant = TenantId::new_random();
    let d1 = DeviceId::new_random();
    let d2 = DeviceId::new_random();
    let first = engine
        .start::<Touch>(
            tenant,
            Value::Null,
            StartOptions::new(actor()).devices([d1, d2]),
        )
        .await
        .unwrap()
        .workflow_id;
    let err = engine
        .start::<Touch>(
            tenant,
            Value::Null,
            StartOptions::new(actor()).devices([d2]),
        )
        .await
        .unwrap_err();
    match &err {
        EngineError::DeviceBusy {
            device,
            owner,
            owner_kind,
        } => {
            assert_eq!((*device, *owner, owner_kind.as_str()), (d2, first, "touch"));
        }
        other => panic!("expected DeviceBusy, got {other}"),
    }
    assert!(err.to_string().contains(&first.to_string()), "{err}");
    // Nothing of the refused start remains.
    let rows: i64 = sqlx::query("SELECT count(*) FROM workflow_tasks")
        .fetch_one(&env.owner)
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
    // Another tenant's device with the same id is another device.
    engine
        .start::<Touch>(
            TenantId::new_random(),
            Value::Null,
            StartOptions::new(actor()).devices([d2]),
        )
        .await
        .unwrap();

    let queued = engine
        .start::<Touch>(
            tenant,
            Value::Null,
            StartOptions::new(actor()).devices([d2]).queue_if_busy(true),
        )
        .await
        .unwrap();
    assert!(queued.queued);
    assert_eq!(
        status(&engine, tenant, queued.workflow_id).await.state,
        TaskState::Queued
    );

    let worker = env.worker(&reg, fast("w"));
    finished(&engine, tenant, first).await;
    finished(&engine, tenant, queued.workflow_id).await;
    worker.stop().await;
    let locks: i64 = sqlx::query("SELECT count(*) FROM workflow_device_locks WHERE tenant_id = $1")
        .bind(tenant.as_uuid())
        .fetch_one(&env.owner)
        .await
        .unwrap()
        .get(0);
    assert_eq!(locks, 0, "finished workflows release their devices");
    // Free again: a new start takes the device.
    engine
        .start::<Touch>(
            tenant,
            Value::Null,
            StartOptions::new(actor()).devices([d2]),
        )
        .await
        .unwrap();
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_worker_without_the_definition_version_leaves_it_or_fails_it_clearly(pool: PgPool) {
    let env = env(pool).await;
    fn def<C: WorkflowCard<Input = Value, Output = Value>>(card: C, v: u32) -> Definition {
        Definition::of(card, move |_ctx, _: Value| async move {
            Ok(Finish::succeeded(json!(v)))
        })
    }
    let v2 = registry(vec![def(EvolvingV1, 1), def(EvolvingV2, 2)]);
    let v1_only = registry(vec![def(EvolvingV1, 1)]);
    let engine = env.engine(&v2);
    let tenant = TenantId::new_random();
    let id = engine
        .start::<EvolvingV2>(tenant, Value::Null, StartOptions::new(actor()))
        .await
        .unwrap()
        .workflow_id;
    assert_eq!(status(&engine, tenant, id).await.definition_version, 2);

    let old = env.worker(&v1_only, fast("old"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let s = status(&engine, tenant, id).await;
    assert_eq!((s.state, s.attempt), (TaskState::Runnable, 0), "left alone");
    old.stop().await;

    let mut only = fast("only");
    only.fail_unknown_definitions = true;
    let only = env.worker(&v1_only, only);
    let s = finished(&engine, tenant, id).await;
    only.stop().await;
    assert_eq!(s.outcome, Some(Outcome::Failed));
    let events = env.journal(tenant, id).await;
    assert_eq!(
        finish_of(&events).reason.as_deref(),
        Some("definition evolving v2 not available; this worker has evolving v1")
    );

    // A v2 worker finishes a v2 workflow under v2.
    let id = engine
        .start::<EvolvingV2>(tenant, Value::Null, StartOptions::new(actor()))
        .await
        .unwrap()
        .workflow_id;
    let new = env.worker(&v2, fast("new"));
    finished(&engine, tenant, id).await;
    new.stop().await;
    assert_eq!(finish_of(&env.journal(tenant, id).await).output, json!(2));
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_definition_changed_in_place_fails_the_workflow_with_the_divergence(pool: PgPool) {
    let env = env(pool).await;
    let original = Definition::of(Edited, |mut ctx, _: Value| async move {
        ctx.step("a", || async { Ok(()) }).await?;
        ctx.sleep("wait", Duration::from_secs(3600)).await?;
        ctx.step("b", || async { Ok(()) }).await?;
        Ok(Finish::succeeded(Value::Null))
    });
    let edited = Definition::of(Edited, |mut ctx, _: Value| async move {
        ctx.step("x", || async { Ok(()) }).await?;
        Ok(Finish::succeeded(Value::Null))
    });
    let before = registry(vec![original]);
    let after = registry(vec![edited]);
    let engine = env.engine(&before);
    let tenant = TenantId::new_random();
    let id = engine
        .start::<Edited>(tenant, Value::Null, StartOptions::new(actor()))
        .await
        .unwrap()
        .workflow_id;
    let w = env.worker(&before, fast("before"));
    // Runnable only far in the future: the sleep is journaled (a task that no worker has
    // claimed yet is unleased and runnable now, which must not count).
    let later = env.clock.now() + time::Duration::minutes(30);
    wait_for(&engine, tenant, id, "sleeping", |s| {
        s.lease_owner.is_none() && s.runnable_at.is_some_and(|t| t > later)
    })
    .await;
    w.stop().await;
    env.clock.advance(Duration::from_secs(3601));
    let w = env.worker(&after, fast("after"));
    let s = finished(&engine, tenant, id).await;
    w.stop().await;
    assert_eq!(s.outcome, Some(Outcome::Failed));
    let reason = finish_of(&env.journal(tenant, id).await).reason.unwrap();
    assert!(
        reason.contains("diverged") && reason.contains("step `x`") && reason.contains("step `a`"),
        "{reason}"
    );
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_parent_starts_children_once_and_hears_when_they_finish(pool: PgPool) {
    let env = env(pool).await;
    let child = Definition::of(Child, |mut ctx, n: u32| async move {
        let d: u32 = ctx.step("double", || async move { Ok(n * 2) }).await?;
        Ok(Finish::succeeded(json!(d)))
    });
    let parent = Definition::of(Parent, |mut ctx, _: Value| async move {
        let mut children = Vec::new();
        for i in 1..=3u32 {
            let id = ctx
                .start_child::<Child>(
                    &format!("child-{i}"),
                    i,
                    StartOptions::new(Actor::system("parent")),
                    true,
                )
                .await?;
            children.push(id);
        }
        let mut sum = 0u64;
        for _ in &children {
            let done: Value = ctx
                .wait_signal("child_finished", None)
                .await?
                .unwrap_or_default();
            sum += done["output"].as_u64().unwrap_or(0);
        }
        Ok(Finish::succeeded(json!(sum)))
    });
    let reg = registry(vec![child, parent]);
    let engine = env.engine(&reg);
    let tenant = TenantId::new_random();
    let id = engine
        .start::<Parent>(tenant, Value::Null, StartOptions::new(actor()))
        .await
        .unwrap()
        .workflow_id;
    let w = env.worker(&reg, fast("w"));
    finished(&engine, tenant, id).await;
    w.stop().await;
    let events = env.journal(tenant, id).await;
    assert_eq!(
        assert_well_formed(&events),
        vec!["child-1", "child-2", "child-3"]
    );
    assert_eq!(finish_of(&events).output, json!(12));
    let children: i64 = sqlx::query("SELECT count(*) FROM workflow_tasks WHERE parent_id = $1")
        .bind(id.as_uuid())
        .fetch_one(&env.owner)
        .await
        .unwrap()
        .get(0);
    assert_eq!(children, 3);
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_child_carries_its_parents_correlation_id_unless_told_otherwise(pool: PgPool) {
    let env = env(pool).await;
    let own = uuid::Uuid::new_v4();
    // the child reports the correlation id it sees
    let child = Definition::of(Child, |mut ctx, _: u32| async move {
        let seen = ctx.correlation_id();
        let c: uuid::Uuid = ctx.step("look", || async move { Ok(seen) }).await?;
        Ok(Finish::succeeded(json!(c)))
    });
    let parent = Definition::of(Parent, move |mut ctx, _: Value| async move {
        let inherited = ctx
            .start_child::<Child>(
                "inherits",
                1,
                StartOptions::new(Actor::system("parent")),
                true,
            )
            .await?;
        let set = ctx
            .start_child::<Child>(
                "own",
                2,
                StartOptions::new(Actor::system("parent")).correlation_id(own),
                true,
            )
            .await?;
        let mut seen = serde_json::Map::new();
        for _ in 0..2 {
            let done: Value = ctx
                .wait_signal("child_finished", None)
                .await?
                .unwrap_or_default();
            let key = if done["workflow_id"] == json!(inherited) {
                "inherits"
            } else if done["workflow_id"] == json!(set) {
                "own"
            } else {
                "other"
            };
            seen.insert(key.to_owned(), done["output"].clone());
        }
        Ok(Finish::succeeded(Value::Object(seen)))
    });
    let reg = registry(vec![child, parent]);
    let engine = env.engine(&reg);
    let tenant = TenantId::new_random();
    let request = uuid::Uuid::new_v4();
    let id = engine
        .start::<Parent>(
            tenant,
            Value::Null,
            StartOptions::new(actor()).correlation_id(request),
        )
        .await
        .unwrap()
        .workflow_id;
    let w = env.worker(&reg, fast("w"));
    finished(&engine, tenant, id).await;
    w.stop().await;
    let events = env.journal(tenant, id).await;
    let out = finish_of(&events).output;
    assert_eq!(out["inherits"], json!(request), "{out}");
    assert_eq!(out["own"], json!(own), "{out}");
    assert!(events.iter().all(|e| e.metadata.correlation_id == request));
    // every event of each child's journal carries the correlation id it was started with
    let rows = sqlx::query("SELECT workflow_id FROM workflow_tasks WHERE parent_id = $1")
        .bind(id.as_uuid())
        .fetch_all(&env.owner)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let mut correlations = Vec::new();
    for row in rows {
        let child = WorkflowId::from_uuid(row.get::<uuid::Uuid, _>(0));
        let journal = env.journal(tenant, child).await;
        assert!(journal.len() >= 4, "{:?}", types(&journal));
        let c = journal[0].metadata.correlation_id;
        assert!(journal.iter().all(|e| e.metadata.correlation_id == c));
        correlations.push(c);
    }
    correlations.sort();
    let mut want = vec![request, own];
    want.sort();
    assert_eq!(correlations, want);
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_workflow_cancels_its_child_once_from_a_step(pool: PgPool) {
    let env = env(pool).await;
    let hang = Definition::of(Hang, |mut ctx, _: Value| async move {
        match ctx.wait_signal::<Value>("never", None).await {
            Err(StepError::Cancelled) => {
                let _ = ctx.cancelled();
                Ok(Finish::cancelled("told to stop", Value::Null))
            }
            Err(e) => Err(e),
            Ok(_) => Ok(Finish::succeeded(Value::Null)),
        }
    });
    let parent = Definition::of(Parent, |mut ctx, _: Value| async move {
        let child = ctx
            .start_child::<Hang>("hang", Value::Null, StartOptions::new(actor()), true)
            .await?;
        let first = ctx
            .cancel_workflow("stop-hang", child, "no longer needed")
            .await?;
        let done: Value = ctx
            .wait_signal("child_finished", None)
            .await?
            .unwrap_or_default();
        // the child finished: a second cancel appends nothing
        let again = ctx
            .cancel_workflow("stop-hang-again", child, "again")
            .await?;
        Ok(Finish::succeeded(json!({
            "first": first, "again": again, "outcome": done["outcome"], "child": child,
        })))
    });
    let reg = registry(vec![hang, parent]);
    let engine = env.engine(&reg);
    let tenant = TenantId::new_random();
    let id = engine
        .start::<Parent>(tenant, Value::Null, StartOptions::new(actor()))
        .await
        .unwrap()
        .workflow_id;
    let w = env.worker(&reg, fast("w"));
    finished(&engine, tenant, id).await;
    w.stop().await;
    let out = finish_of(&env.journal(tenant, id).await).output;
    assert_eq!(out["first"], json!(true), "{out}");
    assert_eq!(out["again"], json!(false), "{out}");
    assert_eq!(out["outcome"], json!("cancelled"), "{out}");
    let child = WorkflowId::from_uuid(out["child"].as_str().unwrap().parse().unwrap());
    let journal = env.journal(tenant, child).await;
    let cancels = journal
        .iter()
        .filter(|e| e.event_type == "WorkflowSignalled" && e.payload["signal"] == "cancel")
        .count();
    assert_eq!(cancels, 1, "{:?}", types(&journal));
}

// ---------------------------------------------------------------------------------------
// Tenant isolation

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn task_rows_are_tenant_scoped_and_the_system_role_can_only_touch_leases(pool: PgPool) {
    let env = env(pool).await;
    let reg = registry(vec![Definition::of(X, |_ctx, _: Value| async {
        Ok(Finish::succeeded(Value::Null))
    })]);
    let engine = env.engine(&reg);
    let (t1, t2) = (TenantId::new_random(), TenantId::new_random());
    let id = engine
        .start::<X>(
            t1,
            Value::Null,
            StartOptions::new(actor()).devices([DeviceId::new_random()]),
        )
        .await
        .unwrap()
        .workflow_id;
    assert!(engine.status(t2, id).await.unwrap().is_none());
    assert!(engine.status(t1, id).await.unwrap().is_some());
    let mut tx = netledger_store::begin_tenant(&env.pools.app, t2)
        .await
        .unwrap();
    let seen: i64 = sqlx::query("SELECT count(*) FROM workflow_tasks")
        .fetch_one(&mut *tx)
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen, 0);
    let updated = sqlx::query("UPDATE workflow_tasks SET state = 'finished', outcome = 'failed'")
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(updated.rows_affected(), 0);
    let locks: i64 = sqlx::query("SELECT count(*) FROM workflow_device_locks")
        .fetch_one(&mut *tx)
        .await
        .unwrap()
        .get(0);
    assert_eq!(locks, 0);
    tx.rollback().await.unwrap();
    // Without a tenant the app role sees nothing.
    let none: i64 = sqlx::query("SELECT count(*) FROM workflow_tasks")
        .fetch_one(&env.pools.app)
        .await
        .unwrap()
        .get(0);
    assert_eq!(none, 0);

    // The system role sees every tenant's tasks but may change only the lease columns.
    let all: i64 = sqlx::query("SELECT count(*) FROM workflow_tasks")
        .fetch_one(&env.pools.system)
        .await
        .unwrap()
        .get(0);
    assert_eq!(all, 1);
    for forbidden in [
        "UPDATE workflow_tasks SET state = 'finished', outcome = 'failed'",
        "UPDATE workflow_tasks SET tenant_id = gen_random_uuid()",
        "DELETE FROM workflow_tasks",
        "DELETE FROM workflow_device_locks",
        "INSERT INTO workflow_tasks (workflow_id, tenant_id, kind, definition_version, state, created_at) \
         VALUES (gen_random_uuid(), gen_random_uuid(), 'x', 1, 'runnable', now())",
    ] {
        let err = sqlx::query(forbidden)
            .execute(&env.pools.system)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("permission denied"),
            "{forbidden}: {err}"
        );
    }
    let lease =
        sqlx::query("UPDATE workflow_tasks SET lease_owner = 'w', lease_expires_at = now()")
            .execute(&env.pools.system)
            .await
            .unwrap();
    assert_eq!(lease.rows_affected(), 1);
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_panicking_step_fails_the_workflow_instead_of_looping(pool: PgPool) {
    let env = env(pool).await;
    let def = Definition::of(Panics, |mut ctx, _: Value| async move {
        ctx.step("boom", || async {
            let v: Vec<u32> = Vec::new();
            #[allow(clippy::indexing_slicing)]
            Ok(v[3])
        })
        .await?;
        Ok(Finish::succeeded(Value::Null))
    });
    let reg = registry(vec![def]);
    let engine = env.engine(&reg);
    let tenant = TenantId::new_random();
    let id = engine
        .start::<Panics>(tenant, Value::Null, StartOptions::new(actor()))
        .await
        .unwrap()
        .workflow_id;
    let w = env.worker(&reg, fast("w"));
    let s = finished(&engine, tenant, id).await;
    w.stop().await;
    assert_eq!((s.outcome, s.attempt), (Some(Outcome::Failed), 1));
    let events = env.journal(tenant, id).await;
    assert_eq!(assert_well_formed(&events), Vec::<String>::new());
    let reason = finish_of(&events).reason.unwrap();
    assert!(
        reason.starts_with("panics v1 panicked: index out of bounds"),
        "{reason}"
    );
}

//! The engine tests' harness: a fresh database per test (`#[sqlx::test]`), pools for the
//! real roles, workers as tasks, and the journal invariants every workflow must keep. Shared
//! by `tests/engine.rs` and the SIGKILL crash tests of `workflows/chaos`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netledger_domain::workflow::{
    WorkflowFinished, WorkflowStepCompleted, WorkflowStepFailed, WorkflowStepStarted,
};
use netledger_domain::{Actor, DeviceId, EventType, RecordedEvent, TenantId, WorkflowId};
use netledger_engine::{
    Definition, Engine, Registry, TaskState, Worker, WorkerOptions, WorkerReport, WorkflowCard,
    WorkflowStatus,
};
use netledger_store::{Direction, EventReader, EventStore, Pools, StoreOptions};
use netledger_testkit::TestClock;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

/// Cards of the test workflows (input and output: any JSON, no owned devices).
macro_rules! cards {
    ($($name:ident = ($kind:literal, $v:literal)),* $(,)?) => {$(
        pub struct $name;
        impl WorkflowCard for $name {
            const KIND: &'static str = $kind;
            const VERSION: u32 = $v;
            type Input = Value;
            type Output = Value;
            fn devices(_: &Value) -> Vec<DeviceId> {
                Vec::new()
            }
        }
    )*};
}

cards! {
    Approval = ("approval", 1),
    CancelledInFlight = ("cancelled_in_flight", 1),
    Chaos = ("chaos", 1),
    Edited = ("edited", 1),
    Hang = ("hang", 1),
    Lease = ("lease", 1),
    Once = ("once", 1),
    Panics = ("panics", 1),
    Parent = ("parent", 1),
    Paused = ("paused", 1),
    Plain = ("plain", 1),
    Push = ("push", 1),
    Replay = ("replay", 1),
    Retry = ("retry", 1),
    Slow = ("slow", 1),
    Timer = ("timer", 1),
    Touch = ("touch", 1),
    X = ("x", 1),
    EvolvingV1 = ("evolving", 1),
    EvolvingV2 = ("evolving", 2),
}

/// A child workflow: doubles its input.
pub struct Child;
impl WorkflowCard for Child {
    const KIND: &'static str = "child";
    const VERSION: u32 = 1;
    type Input = u32;
    type Output = Value;
    fn devices(_: &u32) -> Vec<DeviceId> {
        Vec::new()
    }
}

pub struct Env {
    pub owner: PgPool,
    pub pools: Pools,
    pub clock: Arc<TestClock>,
}

pub async fn env(owner: PgPool) -> Env {
    let pools = Pools::connect(&owner.connect_options(), None, None, 6)
        .await
        .unwrap();
    Env {
        owner,
        pools,
        clock: Arc::new(TestClock::default()),
    }
}

impl Env {
    pub fn engine(&self, registry: &Arc<Registry>) -> Engine {
        let store = EventStore::start(self.pools.app.clone(), StoreOptions::default());
        Engine::new(
            self.pools.app.clone(),
            store,
            registry.clone(),
            self.clock.clone(),
        )
    }

    /// Starts a worker task; `stop` ends it gracefully, aborting its handle is a crash.
    pub fn worker(&self, registry: &Arc<Registry>, options: WorkerOptions) -> RunningWorker {
        let worker = Worker::new(self.engine(registry), self.pools.system.clone(), options)
            .expect("valid worker options");
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            worker
                .run(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap()
        });
        RunningWorker {
            stop: Some(stop),
            handle,
        }
    }

    /// Starts a worker task that claims and heartbeats through `system` (a pool of its own:
    /// closing it cuts the worker off from the database for claims and heartbeats).
    pub fn worker_on(
        &self,
        registry: &Arc<Registry>,
        system: PgPool,
        options: WorkerOptions,
    ) -> RunningWorker {
        let worker =
            Worker::new(self.engine(registry), system, options).expect("valid worker options");
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            worker
                .run(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap()
        });
        RunningWorker {
            stop: Some(stop),
            handle,
        }
    }

    pub async fn journal(&self, tenant: TenantId, id: WorkflowId) -> Vec<RecordedEvent> {
        EventReader::tenant(self.pools.app.clone(), tenant)
            .read_stream(&id.stream(), 1, Direction::Forward, 10_000)
            .await
            .unwrap()
    }
}

pub struct RunningWorker {
    pub stop: Option<oneshot::Sender<()>>,
    pub handle: JoinHandle<WorkerReport>,
}

impl RunningWorker {
    pub async fn stop(mut self) -> WorkerReport {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(20), &mut self.handle)
            .await
            .expect("worker stops")
            .unwrap()
    }

    /// A crash: the worker's future is dropped where it is.
    pub async fn crash(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}

/// Fast options for tests.
pub fn fast(name: &str) -> WorkerOptions {
    let mut o = WorkerOptions::named(name);
    o.concurrency = 16;
    o.lease = Duration::from_secs(5);
    o.heartbeat = Duration::from_millis(500);
    o.poll = Duration::from_millis(50);
    o.max_inline_wait = Duration::ZERO;
    o.shutdown_grace = Duration::from_secs(5);
    o.failure_backoff = Duration::from_millis(100);
    o
}

pub fn actor() -> Actor {
    Actor::system("test")
}

pub fn registry(defs: Vec<Definition>) -> Arc<Registry> {
    let mut r = Registry::new();
    for d in defs {
        r.register(d).unwrap();
    }
    Arc::new(r)
}

pub async fn status(engine: &Engine, tenant: TenantId, id: WorkflowId) -> WorkflowStatus {
    engine.status(tenant, id).await.unwrap().expect("task row")
}

pub async fn wait_for(
    engine: &Engine,
    tenant: TenantId,
    id: WorkflowId,
    what: &str,
    pred: impl Fn(&WorkflowStatus) -> bool,
) -> WorkflowStatus {
    for _ in 0..400 {
        let s = status(engine, tenant, id).await;
        if pred(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "workflow {id} never got to: {what}; last status {:?}",
        status(engine, tenant, id).await
    );
}

pub async fn finished(engine: &Engine, tenant: TenantId, id: WorkflowId) -> WorkflowStatus {
    wait_for(engine, tenant, id, "finished", |s| {
        s.state == TaskState::Finished
    })
    .await
}

/// Waits until the workflow has released its lease to wait for a signal (no runnable time).
pub async fn waiting_for_signal(engine: &Engine, tenant: TenantId, id: WorkflowId) {
    wait_for(engine, tenant, id, "waiting for a signal", |s| {
        s.runnable_at.is_none() && s.lease_owner.is_none() && s.state == TaskState::Runnable
    })
    .await;
}

pub fn types(events: &[RecordedEvent]) -> Vec<String> {
    events.iter().map(|e| e.event_type.clone()).collect()
}

pub fn finish_of(events: &[RecordedEvent]) -> WorkflowFinished {
    events.last().unwrap().decode::<WorkflowFinished>().unwrap()
}

/// The journal invariants: starts with WorkflowStarted, ends with exactly one
/// WorkflowFinished; every step start is followed by exactly one outcome of that attempt
/// before any other step starts, except an interrupted attempt, which is followed by the
/// next attempt of the same step; a step completes at most once. Returns the completed
/// steps in order.
pub fn assert_well_formed(events: &[RecordedEvent]) -> Vec<String> {
    let t = types(events);
    assert_eq!(
        t.first().map(String::as_str),
        Some("WorkflowStarted"),
        "{t:?}"
    );
    assert_eq!(
        t.last().map(String::as_str),
        Some("WorkflowFinished"),
        "{t:?}"
    );
    assert_eq!(
        t.iter().filter(|x| *x == "WorkflowFinished").count(),
        1,
        "{t:?}"
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.version, i as i64 + 1, "versions are contiguous");
    }
    let mut open: Option<WorkflowStepStarted> = None;
    let mut completed: Vec<String> = Vec::new();
    for e in events {
        match e.event_type.as_str() {
            WorkflowStepStarted::TYPE => {
                let s: WorkflowStepStarted = e.decode().unwrap();
                if let Some(prev) = &open {
                    assert_eq!(
                        prev.step, s.step,
                        "step {} started before {} ended: {t:?}",
                        s.step, prev.step
                    );
                    assert_eq!(s.attempt, prev.attempt + 1, "the re-attempt follows: {t:?}");
                }
                assert!(
                    !completed.contains(&s.step),
                    "step {} started after it completed",
                    s.step
                );
                open = Some(s);
            }
            WorkflowStepCompleted::TYPE => {
                let c: WorkflowStepCompleted = e.decode().unwrap();
                let s = open.take().expect("an outcome follows a start");
                assert_eq!((s.step.as_str(), s.attempt), (c.step.as_str(), c.attempt));
                completed.push(c.step);
            }
            WorkflowStepFailed::TYPE => {
                let f: WorkflowStepFailed = e.decode().unwrap();
                let s = open.take().expect("an outcome follows a start");
                assert_eq!((s.step.as_str(), s.attempt), (f.step.as_str(), f.attempt));
            }
            WorkflowFinished::TYPE => assert!(open.is_none(), "finished with a step open: {t:?}"),
            _ => {}
        }
    }
    completed
}

/// A gate a step can wait on.
#[derive(Default)]
pub struct Gate {
    notify: Notify,
    open: std::sync::atomic::AtomicBool,
}

impl Gate {
    pub async fn wait(&self) {
        while !self.open.load(Ordering::SeqCst) {
            let n = self.notify.notified();
            if self.open.load(Ordering::SeqCst) {
                break;
            }
            n.await;
        }
    }
    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }
}

pub type Counts = Arc<Mutex<HashMap<String, u32>>>;

pub fn bump(counts: &Counts, step: &str) {
    *counts.lock().unwrap().entry(step.to_owned()).or_default() += 1;
}

//! `engine-chaos-worker <database-url> <worker-name> [<chaos dir>]`: runs a workflow worker
//! with the `chaos` definition until it is killed. The engine's SIGKILL crash tests
//! (`tests/engine_chaos.rs`) start and kill these: at random times, or (with a chaos dir) each
//! worker kills itself with SIGKILL at planned crash points (`netledger_engine::crash`).
//!
//! With a chaos dir the worker runs one workflow at a time, appends every crash point it
//! reaches to `<dir>/points.log` (`<pid>\t<workflow>\t<label>`), and dies the first time a
//! workflow named in `<dir>/plan` (lines `<workflow id>\t<label>`) reaches its label, once
//! per workflow in the whole test (it creates `<dir>/killed/<workflow id>` first).
//!
//! The `chaos` definition (v1): input `{"steps": n, "max_sleep_ms": m, "sleep_ms": s}`; n
//! steps, each sleeping a random time below m ms and returning its index times two; a
//! durable sleep of s ms (default 30) halfway; output `{"sum": <sum of the step outputs>}`.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netledger_engine::{
    CrashHook, CrashPoint, CrashPoints, Definition, Engine, Finish, Registry, RetryPolicy,
    StepOptions, Worker, WorkerOptions, WorkflowCard,
};
use netledger_store::{EventStore, Pools, StoreOptions};
use netledger_testkit::TestClock;
use sqlx::postgres::PgConnectOptions;

/// The chaos card (the test's starter declares the same kind and version).
struct ChaosCard;

impl WorkflowCard for ChaosCard {
    const KIND: &'static str = "chaos";
    const VERSION: u32 = 1;
    type Input = Input;
    type Output = serde_json::Value;
    fn devices(_: &Input) -> Vec<netledger_domain::DeviceId> {
        Vec::new()
    }
}

#[derive(serde::Deserialize, serde::Serialize)]
struct Input {
    steps: u32,
    max_sleep_ms: u64,
    #[serde(default = "thirty")]
    sleep_ms: u64,
}

fn thirty() -> u64 {
    30
}

/// The chaos definition.
fn chaos() -> Definition {
    Definition::of(ChaosCard, |mut ctx, input: Input| async move {
        // Many attempts: a step may be interrupted by several kills in a row.
        let options = StepOptions::default().retry(RetryPolicy::attempts(1000));
        let mut sum = 0u64;
        for i in 0..input.steps {
            if i == input.steps / 2 {
                ctx.sleep("halfway", Duration::from_millis(input.sleep_ms))
                    .await?;
            }
            let max = input.max_sleep_ms.max(1);
            let n: u64 = ctx
                .step_with(&format!("s{i}"), options, || async move {
                    let ms = rand::random::<u64>() % max;
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok(u64::from(i) * 2)
                })
                .await?;
            sum += n;
        }
        Ok(Finish::succeeded(serde_json::json!({ "sum": sum })))
    })
}

/// Logs every crash point and dies at the planned ones.
struct Chaos {
    dir: PathBuf,
    plan: HashMap<String, String>,
    log: Mutex<std::fs::File>,
}

impl Chaos {
    fn open(dir: PathBuf) -> anyhow::Result<Self> {
        let plan = std::fs::read_to_string(dir.join("plan"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        std::fs::create_dir_all(dir.join("killed"))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("points.log"))?;
        Ok(Self {
            dir,
            plan,
            log: Mutex::new(log),
        })
    }
}

impl CrashPoints for Chaos {
    fn reached(&self, p: &CrashPoint<'_>) {
        let label = p.label();
        let line = format!("{}\t{}\t{label}\n", std::process::id(), p.workflow);
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        // one write per line: lines of several processes do not mix
        let _ = log.write_all(line.as_bytes());
        let key = p.workflow.to_string();
        if self.plan.get(&key) != Some(&label) {
            return;
        }
        let marker = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.dir.join("killed").join(&key));
        if marker.is_err() {
            return; // killed there once already: this worker finishes it
        }
        let me = rustix::process::getpid();
        let _ = rustix::process::kill_process(me, rustix::process::Signal::KILL);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

// One thread: when a crash point's hook runs, nothing else in the process moves.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(name)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: engine-chaos-worker <database-url> <worker-name> [<chaos dir>]");
    };
    let chaos_dir = args.next().map(PathBuf::from);
    let owner = PgConnectOptions::from_str(&url)?;
    let pools = Pools::connect(&owner, None, None, 4).await?;
    let store = EventStore::start(pools.app.clone(), StoreOptions::default());
    let registry = Arc::new(Registry::new().with(chaos())?);
    let engine = Engine::new(
        pools.app.clone(),
        store,
        registry,
        Arc::new(TestClock::new()),
    );
    let mut options = WorkerOptions::named(name);
    options.concurrency = 16;
    options.lease = Duration::from_millis(1000);
    options.heartbeat = Duration::from_millis(250);
    options.poll = Duration::from_millis(100);
    options.max_inline_wait = Duration::from_millis(100);
    if let Some(dir) = chaos_dir {
        options.concurrency = 1;
        options.crash_points = Some(CrashHook(Arc::new(Chaos::open(dir)?)));
    }
    let worker = Worker::new(engine, pools.system.clone(), options)?;
    worker.run(std::future::pending::<()>()).await?;
    Ok(())
}

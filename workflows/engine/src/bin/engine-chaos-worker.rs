//! `engine-chaos-worker <database-url> <worker-name>`: runs a workflow worker with the
//! `chaos` definition until it is killed. The engine's SIGKILL crash test
//! (`tests/engine.rs`) starts and kills these at random points, inside steps and between
//! them, and checks that every workflow still finishes exactly once with a complete journal.
//!
//! The `chaos` definition (v1): input `{"steps": n, "max_sleep_ms": m}`; n steps, each
//! sleeping a random time below m ms and returning its index times two; a 30 ms durable
//! sleep halfway; output `{"sum": <sum of the step outputs>}`.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use netledger_domain::clock::Clock;
use netledger_engine::{
    Definition, Engine, Finish, Registry, RetryPolicy, StepOptions, Worker, WorkerOptions,
};
use netledger_store::{EventStore, Pools, StoreOptions};
use sqlx::postgres::PgConnectOptions;
use time::OffsetDateTime;

struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // a binary owns the real clock
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// The chaos definition (shared shape with the test's starter, which only needs its kind).
fn chaos() -> Definition {
    Definition::new("chaos", 1, |mut ctx| async move {
        #[derive(serde::Deserialize)]
        struct Input {
            steps: u32,
            max_sleep_ms: u64,
        }
        let input: Input = ctx.input()?;
        // Many attempts: a step may be interrupted by several kills in a row.
        let options = StepOptions::default().retry(RetryPolicy::attempts(1000));
        let mut sum = 0u64;
        for i in 0..input.steps {
            if i == input.steps / 2 {
                ctx.sleep("halfway", Duration::from_millis(30)).await?;
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

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(name)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: engine-chaos-worker <database-url> <worker-name>");
    };
    let owner = PgConnectOptions::from_str(&url)?;
    let pools = Pools::connect(&owner, None, None, 4).await?;
    let store = EventStore::start(pools.app.clone(), StoreOptions::default());
    let registry = Arc::new(Registry::new().with(chaos())?);
    let engine = Engine::new(pools.app.clone(), store, registry, Arc::new(SystemClock));
    let mut options = WorkerOptions::named(name);
    options.concurrency = 16;
    options.lease = Duration::from_millis(1000);
    options.heartbeat = Duration::from_millis(250);
    options.poll = Duration::from_millis(100);
    options.max_inline_wait = Duration::from_millis(100);
    let worker = Worker::new(engine, pools.system.clone(), options)?;
    worker.run(std::future::pending::<()>()).await?;
    Ok(())
}

//! Runs `bench_workflows` (release: `cargo run --release -p netledger-netops --example
//! bench_workflows -- <push devices> <firmware devices> <noop seconds>`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::sync::Arc;

use netledger_domain::clock::Clock;
use netledger_netops::workflows::{WorkflowsBenchArgs, bench_workflows};

#[derive(Debug)]
struct RealClock;
impl Clock for RealClock {
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }
}

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: usize| a.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let args = WorkflowsBenchArgs {
        database_url: std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
        push_devices: arg(1, 1000),
        firmware_devices: arg(2, 200),
        noop_seconds: arg(3, 5) as u64,
        concurrency: 512,
        scratch_dir: std::env::temp_dir().join(format!("netops-bench-{}", std::process::id())),
        archive_fsync: true,
    };
    let r = bench_workflows(args, Arc::new(RealClock)).await.unwrap();
    println!("{}", serde_json::to_string_pretty(&r).unwrap());
}

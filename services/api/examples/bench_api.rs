//! Runs `bench_api` outside the binary: `cargo run --release -p netledger-api --example
//! bench_api -- [devices] [rps] [seconds]` (DATABASE_URL names the server). Prints the JSON
//! report.

#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::time::Duration;

use netledger_domain::clock::Clock;
use time::OffsetDateTime;

struct SystemClock;
impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let devices = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);
    let rps = args.next().map(|a| a.parse()).transpose()?.unwrap_or(500);
    let secs: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10);
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let report = netledger_api::bench_api(netledger_api::ApiBenchArgs {
        database_url: url,
        devices,
        rps,
        duration: Duration::from_secs(secs),
        page_size: 50,
        clock: Arc::new(SystemClock),
    })
    .await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

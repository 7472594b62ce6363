//! Runs the replay benchmark: `cargo run --release -p netledger --example
//! bench_replay -- [events] [database-url] [fill-only]` (defaults: 1,000,000 events, the
//! local server), printing the report as JSON. `netledger bench replay` is the same
//! function. With `fill-only`, keeps the filled scratch database and prints its name.

use netledger::bench::replay::{bench_replay, fill_scratch};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let events: u64 = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 1_000_000,
    };
    let url = std::env::args()
        .nth(2)
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    if std::env::args().nth(3).as_deref() == Some("fill-only") {
        // Keep a filled scratch database for `replay_existing` and print its name.
        let (db, fill) = fill_scratch(&url, events).await?;
        println!("{} {}", db.name, serde_json::to_string(&fill)?);
        return Ok(());
    }
    let report = bench_replay(&url, events).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

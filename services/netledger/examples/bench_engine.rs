//! Runs the engine's no-op figure of `netledger bench workflows` alone:
//! `cargo run --release -p netledger --example bench_engine -- --seconds 5`.
//! `--workers N` runs one scenario with N workers instead of the 1 and 4 worker pair.

use std::sync::Arc;

use clap::Parser;
use netledger::bench::engine::{BenchArgs, NoopOptions, bench_noop_with, run};
use netledger::clock::SystemClock;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,
    /// Only this many workers.
    #[arg(long)]
    workers: Option<usize>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // RUST_LOG=netledger_store=trace shows the store's group commits.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match cli.workers {
        Some(workers) => {
            let options = NoopOptions {
                concurrency: cli.bench.concurrency,
                steps_per_workflow: cli.bench.steps,
                ..NoopOptions::new(workers, cli.bench.seconds)
            };
            let report =
                bench_noop_with(&cli.bench.database_url, options, Arc::new(SystemClock)).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        None => {
            run(cli.bench, Arc::new(SystemClock)).await?;
        }
    }
    Ok(())
}

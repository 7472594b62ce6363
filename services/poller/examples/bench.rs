//! Runs `netledger bench poller` without the netledger binary:
//! `cargo run --release -p netledger-poller --example bench -- bench --devices 10000 --interval 60s`.
//! The `devsim` subcommand is what the benchmark starts in its child processes.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use netledger_domain::clock::Clock;
use netledger_poller::PollerBenchArgs;
use time::OffsetDateTime;

#[derive(Debug, Parser)]
enum Cli {
    /// A simulated fleet (started by the benchmark).
    Devsim(DevsimArgs),
    /// The poller benchmark.
    Bench(PollerBenchArgs),
}

/// The flags the benchmark passes to its `devsim` children (same as `netledger devsim`).
#[derive(Debug, clap::Args)]
struct DevsimArgs {
    #[arg(long)]
    devices: usize,
    #[arg(long)]
    listen: std::net::SocketAddr,
    #[arg(long)]
    manifest: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug)]
struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // an executable owns the real clock
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NETLEDGER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse() {
        Cli::Devsim(args) => {
            let mut o =
                devsim::DevsimOptions::new(args.devices, Arc::new(devsim::SystemClock::new()));
            o.listen = args.listen;
            o.manifest = args.manifest;
            o.seed = args.seed;
            let ctrl_c = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            devsim::run(o, ctrl_c).await.map_err(anyhow::Error::from)
        }
        Cli::Bench(args) => netledger_poller::bench_poller(args, Arc::new(SystemClock))
            .await
            .map(drop),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

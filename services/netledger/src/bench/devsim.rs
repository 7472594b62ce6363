//! `netledger bench devsim`: starts a simulated fleet in-process, measures resident memory
//! and command round-trips per second through the `routeros` client (many connections,
//! pipelined tags).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use routeros::{Client, Command, Config, Password};
use serde::Serialize;

use devsim::{Fleet, FleetOptions, SystemClock};

/// Benchmark parameters.
#[derive(Debug, Clone, clap::Args)]
pub struct DevsimBenchArgs {
    /// Devices to simulate.
    #[arg(long, default_value_t = 1000)]
    pub devices: usize,
    /// Seconds of round-trip measurement.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Benchmark results.
#[derive(Debug, Clone, Serialize)]
pub struct DevsimBenchReport {
    /// Devices simulated.
    pub devices: usize,
    /// Resident set size after start, MiB.
    pub rss_mib: f64,
    /// RSS growth per device, KiB (start-up baseline subtracted).
    pub rss_per_device_kib: f64,
    /// Command round trips per second.
    pub roundtrips_per_s: f64,
    /// Client connections used.
    pub connections: usize,
}

/// Resident set size of this process in KiB (`VmRSS` of `/proc/self/status`).
pub fn rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs the benchmark and prints its result.
pub async fn run(args: DevsimBenchArgs) -> anyhow::Result<DevsimBenchReport> {
    devsim::raise_fd_limit(args.devices);
    let base = rss_kib().unwrap_or(0);
    let mut opts = FleetOptions::new(args.devices, Arc::new(SystemClock::new()));
    opts.tick = Some(Duration::from_secs(1));
    let fleet = Fleet::start(opts).await?;
    let rss = rss_kib().unwrap_or(0);
    let manifest = fleet.manifest();
    let conns = manifest.len().min(64);
    let pipeline = 16usize;
    let count = Arc::new(AtomicU64::new(0));
    // Connect every client first, then time the round-trips alone: the window starts when
    // the load starts (connecting inside it counted round-trips against a shorter elapsed
    // time and overstated the rate, wildly for short runs).
    let mut clients = Vec::with_capacity(conns);
    for m in manifest.iter().take(conns) {
        let cfg = Config::new(
            m.api.ip().to_string(),
            m.username.clone(),
            Password::new(m.password.clone()),
        )
        .with_port(m.api.port());
        clients.push(Client::connect(&cfg).await?);
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for client in &clients {
        for _ in 0..pipeline {
            let client = client.clone();
            let count = count.clone();
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    if client
                        .run(Command::new("/system/identity/print"))
                        .await
                        .is_err()
                    {
                        break;
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = started.elapsed().as_secs_f64().max(0.001);
    let n = args.devices.max(1) as f64;
    let report = DevsimBenchReport {
        devices: args.devices,
        rss_mib: rss as f64 / 1024.0,
        rss_per_device_kib: rss.saturating_sub(base) as f64 / n,
        roundtrips_per_s: count.load(Ordering::Relaxed) as f64 / secs,
        connections: conns,
    };
    fleet.shutdown();
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("devices  rss_mib  rss_per_device_kib  roundtrips_per_s  connections");
        println!(
            "{:<8} {:<8.1} {:<19.2} {:<17.0} {}",
            report.devices,
            report.rss_mib,
            report.rss_per_device_kib,
            report.roundtrips_per_s,
            report.connections
        );
    }
    Ok(report)
}

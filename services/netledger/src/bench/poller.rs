//! `netledger bench poller`: the poller alone against a simulated fleet running in child
//! processes (`<exe> devsim`, several when one process would exceed the file descriptor
//! limit: each simulated device holds two listeners and one connection).
//!
//! Steps: scratch database, devsim children, registration of every device (spread over
//! `--tenants` tenants), a poller in this process, a warm-up until every device was polled
//! and its initial snapshot taken, then a measurement window (default two intervals) over
//! which this process's CPU time (`/proc/self/stat` utime+stime) and resident memory are
//! read. Nothing else runs in this process during the window, so the figures are the
//! poller's own.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use devsim::ManifestEntry;
use netledger_archive::{Archive, ArchiveOptions};
use netledger_domain::TenantId;
use netledger_domain::clock::Clock;
use netledger_store::Pools;
use netledger_store::credentials::{CredentialKeys, KeyMaterial};
use netledger_store::devices::DeviceCommands;
use serde::Serialize;
use sqlx::ConnectOptions as _;
use sqlx::postgres::PgConnectOptions;

use netledger_poller::{Poller, PollerDeps, PollerOptions};
use netledger_testkit::{DemoFleet, ScratchDb, register_demo_fleet};

/// Benchmark parameters.
#[derive(Debug, Clone, clap::Args)]
pub struct PollerBenchArgs {
    /// Devices to poll.
    #[arg(long, default_value_t = 1000)]
    pub devices: usize,
    /// Poll interval of every device.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Measurement window after the warm-up (default: two intervals).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub measure: Option<Duration>,
    /// Give up on the warm-up after this long.
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    pub warmup_limit: Duration,
    /// Tenants the devices are spread over (one config repository each).
    #[arg(long, default_value_t = 100)]
    pub tenants: usize,
    /// PostgreSQL URL of a user that may create databases (a scratch database is created
    /// and dropped).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// Devices per devsim child process (each device holds 3 descriptors there).
    #[arg(long, default_value_t = 2_500)]
    pub devices_per_devsim: usize,
    /// First API port of the simulated fleet: each child gets the next range of 3 ports per
    /// device that is free on loopback (API, API-SSL and SSH); the range for 10,000 devices
    /// reaches into Linux's ephemeral ports (from 32768), which works while they are free.
    #[arg(long, default_value_t = 6_000)]
    pub base_port: u16,
    /// Executable whose `devsim` subcommand runs the fleet (default: this executable).
    #[arg(long)]
    pub devsim_exe: Option<PathBuf>,
    /// Poll over API-SSL with pinned certificates instead of the plain API.
    #[arg(long)]
    pub tls: bool,
    /// Scratch directory for manifests and the config archive (default: under /tmp).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What the benchmark measured.
#[derive(Debug, Clone, Serialize)]
pub struct PollerReport {
    /// Devices polled.
    pub devices: usize,
    /// Poll interval, seconds.
    pub interval_secs: f64,
    /// Transport (`plain` or `tls`).
    pub transport: String,
    /// Warm-up (first poll and initial snapshot of every device), seconds.
    pub warmup_secs: f64,
    /// Measurement window, seconds.
    pub measure_secs: f64,
    /// CPU of the poller process over the window, percent of one core.
    pub cpu_pct: f64,
    /// Resident memory at the end of the window, MiB.
    pub rss_mib: f64,
    /// Peak resident memory of the process (`VmHWM`, includes the warm-up), MiB.
    pub peak_rss_mib: f64,
    /// Resident memory before the poller started (the harness: pools, manifests), MiB.
    pub baseline_rss_mib: f64,
    /// Median poll latency in the window, ms.
    pub poll_p50_ms: f64,
    /// 99th percentile poll latency in the window, ms.
    pub poll_p99_ms: f64,
    /// Polls per second in the window.
    pub polls_per_s: f64,
    /// What the schedule asks for: devices / interval.
    pub scheduled_polls_per_s: f64,
    /// Failed polls in the window.
    pub failed_polls: u64,
    /// Samples written in the window.
    pub samples: u64,
    /// Logins (new sessions) in the window: 0 when every session is kept.
    pub logins: u64,
    /// CPU of the devsim children over the window, percent of one core (for context).
    pub devsim_cpu_pct: f64,
}

struct Children(Vec<tokio::process::Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.start_kill();
        }
    }
}

/// CPU time (user + system) of a process in seconds, from `/proc/<pid>/stat`
/// (clock ticks of 1/100 s, the Linux `USER_HZ`).
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields after it start past the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// A `/proc/self/status` value in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn start_devsim(
    args: &PollerBenchArgs,
    dir: &std::path::Path,
) -> anyhow::Result<(Children, Vec<ManifestEntry>)> {
    let exe = match &args.devsim_exe {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("cannot find this executable")?,
    };
    let per = args.devices_per_devsim.max(1);
    let mut children = Children(Vec::new());
    let mut manifests = Vec::new();
    let mut offset = 0usize;
    let mut k = 0usize;
    let mut next_port = usize::from(args.base_port);
    while offset < args.devices {
        let n = per.min(args.devices - offset);
        // API and API-SSL on `port + 2i` and `+ 2i + 1`, SSH on `port + 2n + i`.
        let port = free_range(next_port, 3 * n)?;
        next_port = port + 3 * n;
        let port = u16::try_from(port)?;
        let manifest = dir.join(format!("devsim-{k}.json"));
        let child = tokio::process::Command::new(&exe)
            .arg("devsim")
            .arg("--devices")
            .arg(n.to_string())
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--manifest")
            .arg(&manifest)
            .arg("--seed")
            .arg((k + 1).to_string())
            .env("NETLEDGER_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run {} devsim", exe.display()))?;
        children.0.push(child);
        manifests.push((manifest, n, k));
        offset += n;
        k += 1;
    }
    let mut all = Vec::with_capacity(args.devices);
    for (path, n, k) in manifests {
        let started = Instant::now();
        let entries: Vec<ManifestEntry> = loop {
            if let Ok(text) = std::fs::read(&path)
                && let Ok(entries) = serde_json::from_slice::<Vec<ManifestEntry>>(&text)
                && entries.len() == n
            {
                break entries;
            }
            if let Some(child) = children.0.get_mut(k)
                && let Ok(Some(status)) = child.try_wait()
            {
                anyhow::bail!("devsim child {k} exited ({status}) before writing its manifest");
            }
            if started.elapsed() > Duration::from_secs(300) {
                anyhow::bail!("devsim child {k} did not write its manifest within 5 minutes");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        // Ids must be unique across children: renumber in fleet order.
        let base = all.len();
        all.extend(entries.into_iter().map(|mut e| {
            e.id += base;
            e
        }));
    }
    Ok((children, all))
}

/// The first port from `start` such that `len` consecutive ports are free on loopback (an
/// occupied one is skipped past). Start low: ports above 32767 are also handed out to
/// outgoing connections.
fn free_range(start: usize, len: usize) -> anyhow::Result<usize> {
    let mut first = start;
    while first + len <= 65_536 {
        let busy = (first..first + len).find(|&p| {
            u16::try_from(p).map_or(true, |port| {
                std::net::TcpListener::bind(("127.0.0.1", port)).is_err()
            })
        });
        match busy {
            Some(p) => first = p + 1,
            None => return Ok(first),
        }
    }
    anyhow::bail!(
        "no {len} consecutive free ports from {start} for the simulated fleet; lower --base-port or use fewer devices"
    )
}

/// Runs the benchmark. `clock` supplies event timestamps (the system clock in the binary).
pub async fn bench_poller(
    args: PollerBenchArgs,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<PollerReport> {
    devsim::raise_fd_limit(args.devices);
    let dir = args.work_dir.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "/tmp/netledger-bench-poller-{:08x}",
            rand::random::<u32>()
        ))
    });
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let db = ScratchDb::create(&args.database_url).await?;
    let owner = db.owner.clone().disable_statement_logging();
    let result = run_bench(&args, clock, &dir, &owner).await;
    let _ = db.drop_db().await;
    let _ = std::fs::remove_dir_all(&dir);
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "poller: {} devices every {:.0}s over {}: cpu {:.1}% of one core, rss {:.0} MiB (peak {:.0}), \
             poll p50 {:.1} ms p99 {:.1} ms, {:.1} polls/s (schedule {:.1}/s), {} failed, {} logins in window; \
             warm-up {:.0}s, window {:.0}s; devsim {:.1}% cpu",
            report.devices,
            report.interval_secs,
            report.transport,
            report.cpu_pct,
            report.rss_mib,
            report.peak_rss_mib,
            report.poll_p50_ms,
            report.poll_p99_ms,
            report.polls_per_s,
            report.scheduled_polls_per_s,
            report.failed_polls,
            report.logins,
            report.warmup_secs,
            report.measure_secs,
            report.devsim_cpu_pct,
        );
    }
    Ok(report)
}

async fn run_bench(
    args: &PollerBenchArgs,
    clock: Arc<dyn Clock>,
    dir: &std::path::Path,
    owner: &PgConnectOptions,
) -> anyhow::Result<PollerReport> {
    let pools = Pools::connect(owner, None, None, 24).await?;
    let (children, manifest) = start_devsim(args, dir).await?;
    let child_pids: Vec<String> = children
        .0
        .iter()
        .filter_map(|c| c.id().map(|p| p.to_string()))
        .collect();
    let keys = CredentialKeys::new("bench", [("bench".to_owned(), KeyMaterial::generate())])?;
    let commands = DeviceCommands::new(pools.app.clone(), keys.clone());
    let tenants: Vec<TenantId> = (0..args.tenants.max(1))
        .map(|_| TenantId::new_random())
        .collect();
    let fleet = DemoFleet {
        fleet: "bench".to_owned(),
        tls: args.tls,
        poll_interval_secs: u32::try_from(args.interval.as_secs().max(5)).unwrap_or(60),
        tags: vec!["bench".to_owned()],
        // As `netledger all` registers a fleet: SSH where devsim serves it (exports of
        // RouterOS 6 and 7.0-7.12 devices then go over SFTP; polls never do).
        ssh: true,
    };
    let registered = Instant::now();
    let mut jobs = Vec::new();
    for (i, tenant) in tenants.iter().enumerate() {
        let part: Vec<ManifestEntry> = manifest
            .iter()
            .filter(|e| e.id % tenants.len() == i)
            .cloned()
            .collect();
        let (commands, fleet, tenant) = (commands.clone(), fleet.clone(), *tenant);
        jobs.push(tokio::spawn(async move {
            register_demo_fleet(&commands, tenant, &part, &fleet).await
        }));
        if jobs.len() >= 8 {
            for j in jobs.drain(..) {
                j.await??;
            }
        }
    }
    for j in jobs {
        j.await??;
    }
    tracing::info!(
        devices = manifest.len(),
        secs = registered.elapsed().as_secs_f64(),
        "fleet registered"
    );

    let archive = Archive::open_with(
        dir.join("archive"),
        ArchiveOptions {
            fsync: false,
            ..ArchiveOptions::default()
        },
    )?;
    let baseline = status_kib("VmRSS:").unwrap_or(0) as f64 / 1024.0;
    tracing::info!(rss_mib = baseline, "before the poller starts");
    let options = PollerOptions {
        name: "bench".to_owned(),
        // The benchmark's simulated fleet listens on loopback.
        device_networks: netledger_domain::device::network::DeviceNetworkPolicy::default()
            .with_loopback(),
        ..PollerOptions::default()
    };
    let poller = Poller::start(
        options,
        PollerDeps {
            app: pools.app.clone(),
            system: pools.system.clone(),
            keys,
            archive,
            clock,
        },
    )
    .await?;
    let stats = poller.stats().clone();
    let warm = Instant::now();
    loop {
        let s = stats.snapshot();
        let exported = s.exports + s.export_failures;
        if s.polls_ok + s.polls_failed >= args.devices as u64 && exported >= args.devices as u64 {
            break;
        }
        if warm.elapsed() > args.warmup_limit {
            tracing::warn!(?s, "warm-up limit reached; measuring anyway");
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let warmup = warm.elapsed();
    tracing::info!(
        rss_mib = status_kib("VmRSS:").unwrap_or(0) as f64 / 1024.0,
        secs = warmup.as_secs_f64(),
        "warm-up done"
    );
    // Let the writer and the archive settle before the window starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let window = args.measure.unwrap_or(args.interval * 2);
    stats.reset_latency();
    let before = stats.snapshot();
    let cpu0 = cpu_seconds("self").unwrap_or(0.0);
    let child0: f64 = child_pids.iter().filter_map(|p| cpu_seconds(p)).sum();
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_seconds("self").unwrap_or(0.0);
    let child1: f64 = child_pids.iter().filter_map(|p| cpu_seconds(p)).sum();
    let after = stats.snapshot();
    let rss = status_kib("VmRSS:").unwrap_or(0) as f64 / 1024.0;
    let peak = status_kib("VmHWM:").unwrap_or(0) as f64 / 1024.0;
    let report = PollerReport {
        devices: args.devices,
        interval_secs: args.interval.as_secs_f64(),
        transport: if args.tls { "tls" } else { "plain" }.to_owned(),
        warmup_secs: warmup.as_secs_f64(),
        measure_secs: elapsed,
        cpu_pct: (cpu1 - cpu0) / elapsed * 100.0,
        rss_mib: rss,
        peak_rss_mib: peak,
        baseline_rss_mib: baseline,
        poll_p50_ms: stats.latency_quantile(0.5).as_secs_f64() * 1000.0,
        poll_p99_ms: stats.latency_quantile(0.99).as_secs_f64() * 1000.0,
        polls_per_s: ((after.polls_ok + after.polls_failed)
            - (before.polls_ok + before.polls_failed)) as f64
            / elapsed,
        scheduled_polls_per_s: args.devices as f64 / args.interval.as_secs_f64(),
        failed_polls: after.polls_failed - before.polls_failed,
        samples: after.samples - before.samples,
        logins: after.logins - before.logins,
        devsim_cpu_pct: (child1 - child0) / elapsed * 100.0,
    };
    poller.stop().await?;
    drop(children);
    pools.app.close().await;
    pools.system.close().await;
    Ok(report)
}

//! `netledger`: one binary, many roles (see docs/architecture.md). Parses the command line,
//! loads the layered configuration, sets up JSON or human logs and runs the chosen role.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use netledger::bench::devsim::DevsimBenchArgs;
use netledger::bench::eventstore::EventstoreArgs;
use netledger::config::{Config, Secret};
use netledger::roles;
use netledger_domain::TenantId;
use tokio::sync::watch;

#[derive(Debug, Parser)]
#[command(
    name = "netledger",
    version,
    about = "Event-sourced configuration management for RouterOS fleets"
)]
struct Cli {
    /// TOML configuration file (see compose/netledger.example.toml).
    #[arg(long, global = true, env = "NETLEDGER_CONFIG")]
    config: Option<PathBuf>,
    /// Log as JSON lines (for log shippers) instead of human-readable text.
    #[arg(long, global = true, env = "NETLEDGER_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args, Clone)]
struct Conn {
    /// PostgreSQL URL of the schema owner.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// NATS URL.
    #[arg(long, env = "NATS_URL")]
    nats_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every role in one process (the embedded default).
    All {
        #[command(flatten)]
        conn: Conn,
        /// HTTP listen address.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Also start N simulated RouterOS devices and register them.
        #[arg(long)]
        demo_fleet: Option<usize>,
        /// Serve the built web UI from this folder at `/` (e.g. `frontend/dist`).
        #[arg(long)]
        ui_dir: Option<std::path::PathBuf>,
        #[command(flatten)]
        firmware: FirmwareArgs,
    },
    /// REST API, live events, OpenAPI and the web UI.
    Api {
        #[command(flatten)]
        conn: Conn,
        /// HTTP listen address (default 127.0.0.1:8080, or `listen` in the config).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Serve the built web UI from this folder at `/` (e.g. `frontend/dist`).
        #[arg(long)]
        ui_dir: Option<std::path::PathBuf>,
    },
    /// Durable workflows.
    Worker {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        firmware: FirmwareArgs,
    },
    /// Device poller.
    Poller {
        #[command(flatten)]
        conn: Conn,
    },
    /// Read models, the NATS outbox relay and audit checkpoints.
    Projector {
        #[command(flatten)]
        conn: Conn,
    },
    /// Applies the migrations (creating the database if missing).
    Migrate {
        #[command(flatten)]
        conn: Conn,
    },
    /// Prints the OpenAPI document.
    Openapi,
    /// Rebuilds read models from the event store (position 0), each in one transaction.
    Replay {
        #[command(flatten)]
        conn: Conn,
        /// Rebuild only this projector (default: all of them).
        #[arg(long)]
        only: Option<String>,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Audit bundles: export and offline verification.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Runs a simulated RouterOS fleet.
    Devsim(DevsimArgs),
    /// Registers a simulated fleet (a `netledger devsim` manifest) in the first tenant: the
    /// demo fleet of a deployment whose simulator runs in another process or container.
    RegisterFleet {
        #[command(flatten)]
        conn: Conn,
        /// The manifest `netledger devsim --manifest` wrote.
        #[arg(long)]
        manifest: PathBuf,
        /// Reach the devices at this host instead of the manifest's addresses (the
        /// simulator's container name when it listens on 0.0.0.0); ports are kept.
        #[arg(long)]
        host: Option<String>,
        /// Poll interval of the registered devices (default 60).
        #[arg(long, value_parser = clap::value_parser!(u32).range(5..=86_400))]
        poll_interval_secs: Option<u32>,
        /// How long to wait for the manifest and the first tenant.
        #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
        wait: std::time::Duration,
    },
    /// Secrets of a production installation.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Asks a role's health endpoint (for container health checks: the image has no shell);
    /// exit 0 when it answers 200.
    Healthcheck {
        /// Address to ask (default: `health.listen` when set, else the API's `listen`).
        #[arg(long)]
        addr: Option<std::net::SocketAddr>,
        /// Path to ask.
        #[arg(long, default_value = "/health/ready")]
        path: String,
        /// How long to wait for the answer.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Writes every secret a production installation needs into a folder, one file each
    /// (0600; never overwrites), and prints which variable reads which file.
    Init {
        /// The folder (created 0700 if missing).
        #[arg(long)]
        out_dir: PathBuf,
    },
    /// Re-encrypts every device credential, sealed change script and backup under the
    /// current credential key (`[secrets] current_credential_key`), online. Make the new key
    /// current and keep the old ones listed on every role first; when this reports nothing
    /// failed, remove the old keys. Exit 1 when something could not be rotated.
    RotateCredentials {
        #[command(flatten)]
        conn: Conn,
    },
    /// Replaces the audit signing key in a folder `keys init` wrote (new key and key id;
    /// `audit-signing.pub` keeps every earlier public key by its key id, so checkpoints
    /// signed before stay verifiable). Then restart the API processes, then the projectors.
    RotateAuditKey {
        /// The folder (`audit-signing.key`, `audit-signing.pub`, `audit-key-id`).
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Writes one tenant's audit bundle (format v2, docs/auditing.md): events of the range,
    /// every checkpoint through it, the keys with their hand-overs, the newest checkpoint
    /// published outside PostgreSQL and the config history as a git bundle, in one tar.
    Export {
        #[command(flatten)]
        conn: Conn,
        /// Tenant id.
        #[arg(long)]
        tenant: TenantId,
        /// Start of the range: a global position or an RFC 3339 time (widened to the start
        /// of the checkpoint that covers it). Default: the tenant's first event.
        #[arg(long)]
        from: Option<netledger::bundle::Bound>,
        /// End of the range: a position or a time (widened to the end of its checkpoint).
        /// Default: the newest event.
        #[arg(long)]
        to: Option<netledger::bundle::Bound>,
        /// Restrict the bundle to these devices (device ids; repeat the option or separate
        /// ids with commas). The events of every other device's own stream `device-<id>`
        /// become hash-only stubs (position, stream, version, time, content hash and hash:
        /// no type, metadata or payload), so chains and checkpoints still verify offline.
        /// Fleet-level streams (change requests, rollouts, workflows, users, sessions,
        /// security) stay in full, and config.bundle stays whole: `--devices` withholds
        /// other devices' event payloads, not their config texts (docs/auditing.md §3.1).
        #[arg(long, value_name = "ID", value_delimiter = ',')]
        devices: Vec<netledger_domain::ids::DeviceId>,
        /// Output file (`.nlaudit.tar`).
        #[arg(long)]
        out: PathBuf,
    },
    /// Verifies a bundle offline, with no database and no network: exit 0 `OK`, exit 1
    /// `TAMPERED at position N` or `TAMPERED in member NAME`, exit 2 when it cannot run.
    Verify {
        /// The bundle file (v2 tar, or a v1 JSON bundle).
        bundle: PathBuf,
        /// A key you trust, obtained from the operator out of band: 64 hex characters (the
        /// public key), `SHA256:<64 hex>` (its fingerprint) or `<key id>=<hex>`. Repeat for
        /// several. Keys in the bundle count only when they chain to one of these through
        /// signed hand-overs.
        #[arg(long = "trusted-key", visible_alias = "public-key")]
        trusted_key: Vec<String>,
        /// A file of trusted keys (one per line, e.g. the installation's `audit-signing.pub`).
        #[arg(long)]
        trusted_keys: Option<PathBuf>,
        /// v1 bundles: checkpoints obtained independently (JetStream, git), as a JSON array.
        #[arg(long)]
        checkpoints: Option<PathBuf>,
    },
    /// A device (`--device`) or the whole fleet as it was at `--at`, folded from the events
    /// up to then, with the config text from git checked against them; JSON on stdout.
    AsOf {
        #[command(flatten)]
        conn: Conn,
        /// Tenant id.
        #[arg(long)]
        tenant: TenantId,
        /// One device (default: the fleet).
        #[arg(long)]
        device: Option<uuid::Uuid>,
        /// The instant (RFC 3339).
        #[arg(long, value_parser = parse_rfc3339)]
        at: time::OffsetDateTime,
    },
    /// Prints the public key of the configured audit signing key (64 hex); with `--all`
    /// also its key id and fingerprint, what an auditor pins.
    PublicKey {
        /// Print `key id`, `public key` and `fingerprint` lines.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Event store appends, conflicts and subscription reads.
    Eventstore(EventstoreArgs),
    /// Simulated fleet memory and round-trips.
    Devsim(DevsimBenchArgs),
    /// REST API latency: device list pages under an open-loop load.
    Api(ApiBenchCli),
    /// Poller CPU, memory and poll latency against a simulated fleet.
    Poller(netledger::bench::poller::PollerBenchArgs),
    /// Read-model rebuild from a scratch database of realistic events.
    Replay(ReplayBenchArgs),
    /// Workflow engine no-op steps, config pushes and a firmware rollout.
    Workflows(WorkflowsBenchCli),
}

/// Flags of `netledger devsim` (the simulator takes plain [`devsim::DevsimOptions`]).
#[derive(Debug, Clone, Args)]
struct DevsimArgs {
    /// Number of devices.
    #[arg(long, default_value_t = 10)]
    devices: usize,
    /// Base address: device i gets the API on port+2i, API-SSL on port+2i+1 and SSH on
    /// port+2n+i for n devices (port 0: ephemeral ports, see the manifest).
    #[arg(long, default_value = "127.0.0.1:18728")]
    listen: std::net::SocketAddr,
    /// Serve no SSH/SFTP (the manifest's `ssh` is then `0.0.0.0:0`).
    #[arg(long = "no-ssh")]
    no_ssh: bool,
    /// Write the manifest (JSON array) here.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Serve the HTTP control API here.
    #[arg(long)]
    control: Option<std::net::SocketAddr>,
    /// Share of RouterOS 6 devices (0.0-1.0).
    #[arg(long = "v6-share", default_value_t = 0.3)]
    v6_share: f64,
    /// Seconds a reboot keeps a device offline.
    #[arg(long, default_value_t = 5)]
    reboot_secs: u64,
    /// Export files loaded as the configuration of the first devices.
    #[arg(long = "load")]
    load: Vec<PathBuf>,
    /// Seed for passwords, serials and counters.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl DevsimArgs {
    fn options(self) -> devsim::DevsimOptions {
        let mut o = devsim::DevsimOptions::new(self.devices, Arc::new(devsim::SystemClock::new()));
        o.listen = self.listen;
        o.ssh = !self.no_ssh;
        o.manifest = self.manifest;
        o.control = self.control;
        o.v6_share = self.v6_share;
        o.reboot_time = std::time::Duration::from_secs(self.reboot_secs);
        o.load = self.load;
        o.seed = self.seed;
        o
    }
}

/// Completes on Ctrl-C (or at once when the signal cannot be watched).
async fn ctrl_c() {
    if let Err(e) = tokio::signal::ctrl_c().await {
        tracing::error!(error = %e, "cannot watch for Ctrl-C");
    }
}

/// Where the worker serves firmware packages to devices (flags over `[worker]`).
#[derive(Debug, Args, Clone)]
struct FirmwareArgs {
    /// Listen address of the read-only firmware package server devices fetch from
    /// (default `worker.firmware_listen`, 127.0.0.1:8089).
    #[arg(long)]
    firmware_listen: Option<std::net::SocketAddr>,
    /// URL devices use to reach it (default `worker.firmware_base_url`, else
    /// `http://<firmware-listen>`).
    #[arg(long)]
    firmware_base_url: Option<String>,
}

impl FirmwareArgs {
    fn serving(&self, config: &Config) -> roles::FirmwareServing {
        let mut serving = roles::FirmwareServing::from_config(config);
        if let Some(listen) = self.firmware_listen {
            serving.listen = listen;
        }
        if let Some(url) = &self.firmware_base_url {
            serving.base_url = Some(url.clone());
        }
        serving
    }
}

/// `netledger bench workflows` options.
#[derive(Debug, Args)]
struct WorkflowsBenchCli {
    /// PostgreSQL URL of a superuser; scratch databases are created and dropped.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// Measured seconds of each no-op figure.
    #[arg(long, default_value_t = 10)]
    noop_seconds: u64,
    /// Devices of the config-push figure (0 skips it).
    #[arg(long, default_value_t = 1000)]
    push_devices: usize,
    /// Devices of the firmware-rollout figure (0 skips it).
    #[arg(long, default_value_t = 200)]
    firmware_devices: usize,
    /// Workflows in flight in the worker.
    #[arg(long, default_value_t = 512)]
    concurrency: usize,
    /// Do not fsync the config archive (production always does; this shows the cost).
    #[arg(long)]
    no_archive_fsync: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// `netledger bench api` options.
#[derive(Debug, Args)]
struct ApiBenchCli {
    /// PostgreSQL URL of a superuser; a scratch database is created and dropped.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// Devices registered before the load.
    #[arg(long, default_value_t = 10_000)]
    devices: usize,
    /// Requests per second offered (open loop).
    #[arg(long, default_value_t = 500)]
    rps: u32,
    /// How long the load runs.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: std::time::Duration,
    /// Devices per page.
    #[arg(long, default_value_t = 50)]
    page_size: u32,
    /// Print one JSON object (`devices`, `rps`, `p50_ms`, `p99_ms`, ...).
    #[arg(long)]
    json: bool,
}

/// `netledger bench replay` options.
#[derive(Debug, Args)]
struct ReplayBenchArgs {
    /// PostgreSQL URL of a superuser; a scratch database is created and dropped.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// Events to append before the timed replay.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Print one JSON object (`events`, `seconds`, and the details).
    #[arg(long)]
    json: bool,
}

/// Starts `n` simulated devices in this process; their manifest goes to
/// `<data_dir>/demo-fleet.json`.
fn start_demo_fleet(
    config: &Config,
    n: usize,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let manifest = config.data_dir.join("demo-fleet.json");
    let mut opts = devsim::DevsimOptions::new(n, Arc::new(devsim::SystemClock::new()));
    opts.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    opts.manifest = Some(manifest.clone());
    tracing::info!(
        devices = n,
        manifest = %manifest.display(),
        "starting the simulated fleet"
    );
    Ok(tokio::spawn(async move {
        devsim::run(opts, ctrl_c()).await?;
        Ok(())
    }))
}

/// The first administrator from `NETLEDGER_BOOTSTRAP_ADMIN_EMAIL` and
/// `NETLEDGER_BOOTSTRAP_ADMIN_PASSWORD` (both or neither).
fn bootstrap_admin() -> anyhow::Result<Option<roles::Bootstrap>> {
    login_from_env("NETLEDGER_BOOTSTRAP_ADMIN")
}

/// The demo's second account, an approver, from `NETLEDGER_DEMO_APPROVER_EMAIL` and
/// `NETLEDGER_DEMO_APPROVER_PASSWORD` (both or neither; `scripts/run` sets them).
fn demo_approver() -> anyhow::Result<Option<roles::Bootstrap>> {
    login_from_env("NETLEDGER_DEMO_APPROVER")
}

/// An account from `<prefix>_EMAIL` and `<prefix>_PASSWORD` (or `<prefix>_PASSWORD_FILE`):
/// both set, or neither.
fn login_from_env(prefix: &str) -> anyhow::Result<Option<roles::Bootstrap>> {
    let (email_var, password_var) = (format!("{prefix}_EMAIL"), format!("{prefix}_PASSWORD"));
    let password_file_var = format!("{password_var}_FILE");
    let mut email = None;
    let mut password = None;
    let mut password_file = None;
    for (name, value) in netledger::config::environment()? {
        if name == email_var {
            email = Some(value);
        } else if name == password_var {
            password = Some(value);
        } else if name == password_file_var {
            password_file = Some(value);
        }
    }
    if let Some(path) = password_file {
        if password.is_some() {
            anyhow::bail!("set {password_var} or {password_file_var}, not both");
        }
        password = Some(
            netledger::config::read_value_file(&path)
                .map_err(|e| anyhow::anyhow!("{password_file_var}: {e}"))?,
        );
    }
    match (email, password) {
        (Some(email), Some(password)) => Ok(Some(roles::Bootstrap {
            email,
            password: Secret::new(password),
        })),
        (None, None) => Ok(None),
        _ => anyhow::bail!("set both {email_var} and {password_var} (or neither)"),
    }
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NETLEDGER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn load_config(path: Option<&std::path::Path>, conn: Option<&Conn>) -> anyhow::Result<Config> {
    let mut config = Config::load(path, netledger::config::environment()?)?;
    if let Some(conn) = conn {
        if let Some(url) = &conn.database_url {
            config.database_url = Secret::new(url.clone());
            config.database_url_file = None;
        }
        if let Some(url) = &conn.nats_url {
            config.nats_url = url.clone();
        }
    }
    Ok(config)
}

fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        let _ = tx.send(true);
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    rx
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let cfg = cli.config.as_deref();
    match cli.command {
        Command::Migrate { conn } => {
            roles::migrate(&load_config(cfg, Some(&conn))?).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Projector { conn } => {
            let config = load_config(cfg, Some(&conn))?;
            let pools = roles::pools(&config).await?;
            roles::run_projector(&config, &pools, shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::All {
            conn,
            listen,
            demo_fleet,
            ui_dir,
            firmware,
        } => {
            let mut config = load_config(cfg, Some(&conn))?;
            if let Some(l) = listen {
                config.listen = l;
            }
            if ui_dir.is_some() {
                config.api.ui_dir = ui_dir;
            }
            if demo_fleet.is_some_and(|n| n > 0) {
                // The demo fleet's simulated devices listen on loopback: its one opt-in.
                config
                    .devices
                    .allowed_networks
                    .extend(netledger_domain::device::network::loopback_networks());
            }
            roles::migrate(&config).await?;
            let pools = roles::pools(&config).await?;
            let shutdown = shutdown_signal();
            let state = roles::api_state(&config, &pools).await?;
            roles::bootstrap(&state, bootstrap_admin()?.as_ref()).await?;
            roles::bootstrap_demo_approver(&state, demo_approver()?.as_ref(), config.production)
                .await?;
            let fleet = match demo_fleet {
                Some(n) if n > 0 => {
                    let handle = start_demo_fleet(&config, n)?;
                    let registered = roles::register_demo_fleet(
                        &config,
                        &pools,
                        &config.data_dir.join("demo-fleet.json"),
                    )
                    .await?;
                    tracing::info!(devices = registered, "demo fleet registered");
                    Some(handle)
                }
                _ => None,
            };
            let serving = firmware.serving(&config);
            // Every role under one supervisor: one that stops on its own ends the process.
            let mut tasks = netledger::supervise::Tasks::new();
            let listen = config.listen;
            tasks.spawn("api", roles::run_api(state, listen, tasks.stop_signal()));
            let (c, p, stop) = (config.clone(), pools.clone(), tasks.stop_signal());
            tasks.spawn("projector", async move {
                roles::run_projector(&c, &p, stop).await
            });
            let (c, p, stop) = (config.clone(), pools.clone(), tasks.stop_signal());
            tasks.spawn(
                "poller",
                async move { roles::run_poller(&c, &p, stop).await },
            );
            let (c, p, stop) = (config.clone(), pools.clone(), tasks.stop_signal());
            tasks.spawn("worker", async move {
                roles::run_worker(&c, &p, &serving, stop).await
            });
            let result = netledger::supervise::supervise(shutdown, tasks).await;
            if let Some(f) = fleet {
                f.abort();
            }
            result?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Api {
            conn,
            listen,
            ui_dir,
        } => {
            let mut config = load_config(cfg, Some(&conn))?;
            if ui_dir.is_some() {
                config.api.ui_dir = ui_dir;
            }
            // The API's settings are checked against the address it really listens on.
            if let Some(l) = listen {
                config.listen = l;
            }
            let pools = roles::pools(&config).await?;
            let state = roles::api_state(&config, &pools).await?;
            roles::bootstrap(&state, bootstrap_admin()?.as_ref()).await?;
            roles::bootstrap_demo_approver(&state, demo_approver()?.as_ref(), config.production)
                .await?;
            roles::run_api(state, config.listen, shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Openapi => {
            print!("{}", netledger_api::openapi_json());
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker { conn, firmware } => {
            let config = load_config(cfg, Some(&conn))?;
            let pools = roles::pools(&config).await?;
            let serving = firmware.serving(&config);
            roles::run_worker(&config, &pools, &serving, shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Poller { conn } => {
            let config = load_config(cfg, Some(&conn))?;
            let pools = roles::pools(&config).await?;
            roles::run_poller(&config, &pools, shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay { conn, only, json } => {
            let config = load_config(cfg, Some(&conn))?;
            roles::migrate(&config).await?;
            let pools = roles::pools(&config).await?;
            let report = netledger_projections::replay(&pools.system, only.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "replayed {} events in {:.2} s ({:.0} events/s), checkpoint {}",
                    report.events, report.seconds, report.events_per_second, report.checkpoint
                );
                for p in &report.per_projector {
                    println!(
                        "  {:<20} {:>9} events  clear {:.2} s  fold+write {:.2} s  commit {:.2} s",
                        p.projector, p.events, p.clear_seconds, p.busy_seconds, p.commit_seconds
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Devsim(args) => {
            devsim::run(args.options(), ctrl_c()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::RegisterFleet {
            conn,
            manifest,
            host,
            poll_interval_secs,
            wait,
        } => {
            let config = load_config(cfg, Some(&conn))?;
            let pools = roles::pools(&config).await?;
            let n = roles::register_fleet(
                &config,
                &pools,
                &manifest,
                host.as_deref(),
                poll_interval_secs,
                wait,
            )
            .await?;
            println!("registered {n} devices");
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys {
            command: KeysCommand::Init { out_dir },
        } => {
            let written = netledger::keys::init(&out_dir)?;
            println!("wrote {} files to {}:", written.len(), out_dir.display());
            for f in netledger::keys::FILES {
                println!("  {:<20} {:<48} {}", f.name, f.variable, f.roles);
            }
            println!(
                "Point each variable at its file (as a Docker/Kubernetes secret), readable by \
                 the container user (uid 10001). Keep audit-signing.pub with your auditors."
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys {
            command: KeysCommand::RotateCredentials { conn },
        } => {
            let config = load_config(cfg, Some(&conn))?;
            let keys = netledger::config::credential_keys(&config)?;
            let pools = roles::pools(&config).await?;
            let archive = roles::archive(&config)?;
            let r = netledger::keys::rotate_credentials(&pools, &archive, &keys).await?;
            println!("{r}");
            Ok(if r.failed() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Keys {
            command: KeysCommand::RotateAuditKey { dir },
        } => {
            let r = netledger::keys::rotate_audit_key(&dir)?;
            println!(
                "audit signing key rotated in {}: `{}` -> `{}`",
                dir.display(),
                r.old_id,
                r.new_id
            );
            println!(
                "audit-signing.pub now trusts {} (give it to your auditors: audit verify \
                 --trusted-keys audit-signing.pub)",
                r.trusted.join(", ")
            );
            println!(
                "next: restart the API processes (they read audit-signing.pub at start), then \
                 the projectors (they sign with the new key from their next start); checkpoints \
                 signed with `{}` stay verifiable by their key id",
                r.old_id
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Healthcheck {
            addr,
            path,
            timeout,
        } => {
            let config = load_config(cfg, None)?;
            // The API's own listener speaks HTTPS when it has a certificate; the roles'
            // health address is always plain HTTP.
            let api_tls = config.api.tls_cert_file.is_some();
            let (addr, tls) = match (addr, config.health.listen) {
                (Some(a), _) => (a, api_tls && a == config.listen),
                (None, Some(health)) => (health, false),
                (None, None) => (config.listen, api_tls),
            };
            let (code, body) = netledger::supervise::healthcheck(addr, &path, timeout, tls).await?;
            println!("{code} {}", body.trim());
            Ok(if code == 200 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Audit { command } => match command {
            AuditCommand::Export {
                conn,
                tenant,
                from,
                to,
                devices,
                out,
            } => {
                let config = load_config(cfg, Some(&conn))?;
                let pools = roles::pools(&config).await?;
                let archive = roles::archive(&config)?;
                let keys = roles::verifying_key(&config)?;
                let mut file = std::io::BufWriter::new(
                    std::fs::File::create(&out)
                        .with_context(|| format!("creating {}", out.display()))?,
                );
                let req = netledger::bundle::ExportRequest {
                    tenant,
                    from,
                    to,
                    created_at: netledger_domain::clock::Clock::now(&netledger::clock::SystemClock),
                };
                let options = netledger::bundle::ExportOptions {
                    devices: (!devices.is_empty())
                        .then(|| netledger::bundle::DeviceFilter::new(devices)),
                };
                let s = netledger::bundle::export_with(
                    &pools.system,
                    &archive,
                    &keys,
                    req,
                    &options,
                    &mut file,
                )
                .await?;
                std::io::Write::flush(&mut file)?;
                let withheld = if options.devices.is_some() {
                    format!(
                        "; device filter: {} events of other devices written as hash-only stubs \
                         (the config history stays whole)",
                        s.withheld
                    )
                } else {
                    String::new()
                };
                println!(
                    "exported {} events (positions {}..{}) and {} checkpoints of tenant {tenant}{} to {}{withheld}",
                    s.events,
                    s.from_position,
                    s.to_position.map_or("newest".to_owned(), |t| t.to_string()),
                    s.checkpoints,
                    if s.config {
                        " with its config history"
                    } else {
                        ""
                    },
                    out.display()
                );
                Ok(ExitCode::SUCCESS)
            }
            AuditCommand::Verify {
                bundle,
                mut trusted_key,
                trusted_keys,
                checkpoints,
            } => {
                // Exit 2 when verification cannot run (docs/auditing.md): 1 means tampering.
                let outcome = (|| {
                    if let Some(path) = trusted_keys {
                        trusted_key.push(
                            std::fs::read_to_string(&path)
                                .with_context(|| format!("reading {}", path.display()))?,
                        );
                    }
                    netledger::audit::verify_any(&bundle, &trusted_key, checkpoints.as_deref())
                })();
                Ok(match outcome {
                    Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        ExitCode::from(2)
                    }
                })
            }
            AuditCommand::AsOf {
                conn,
                tenant,
                device,
                at,
            } => {
                let config = load_config(cfg, Some(&conn))?;
                let pools = roles::pools(&config).await?;
                let archive = roles::archive(&config)?;
                let reader =
                    netledger_store::EventReader::system(pools.system.clone(), Some(tenant));
                let out = match device {
                    Some(id) => {
                        let d = netledger::bundle::as_of::device_as_of(
                            &reader,
                            &archive,
                            tenant,
                            netledger_domain::DeviceId::from_uuid(id),
                            at,
                        )
                        .await?
                        .with_context(|| format!("device {id} has no event at or before {at}"))?;
                        serde_json::to_value(d)?
                    }
                    None => {
                        let mut all = Vec::new();
                        let mut after = None;
                        loop {
                            let (page, next) = netledger::bundle::as_of::fleet_as_of(
                                &reader, &archive, tenant, at, after, 200,
                            )
                            .await?;
                            all.extend(page);
                            match next {
                                Some(n) => after = Some(n),
                                None => break,
                            }
                        }
                        serde_json::json!({ "at": at.format(&time::format_description::well_known::Rfc3339)?, "devices": all })
                    }
                };
                println!("{}", serde_json::to_string_pretty(&out)?);
                Ok(ExitCode::SUCCESS)
            }
            AuditCommand::PublicKey { all } => {
                let config = load_config(cfg, None)?;
                let key = roles::signing_key(&config)?.verifying_key();
                if all {
                    println!("key id       {}", config.audit.key_id);
                    println!("public key   {}", hex::encode(key.to_bytes()));
                    println!(
                        "fingerprint  {}",
                        netledger_domain::audit::fingerprint(&key)
                    );
                } else {
                    println!("{}", hex::encode(key.to_bytes()));
                }
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Bench { command } => match command {
            BenchCommand::Eventstore(args) => {
                netledger::bench::eventstore::run(args).await?;
                Ok(ExitCode::SUCCESS)
            }
            BenchCommand::Devsim(args) => {
                netledger::bench::devsim::run(args).await?;
                Ok(ExitCode::SUCCESS)
            }
            BenchCommand::Api(cli) => {
                let report =
                    netledger::bench::api::bench_api(netledger::bench::api::ApiBenchArgs {
                        database_url: cli.database_url,
                        devices: cli.devices,
                        rps: cli.rps,
                        duration: cli.duration,
                        page_size: cli.page_size,
                        clock: std::sync::Arc::new(netledger::clock::SystemClock),
                    })
                    .await
                    .map_err(|e| anyhow::anyhow!("bench api: {}", e.0))?;
                if cli.json {
                    println!("{}", serde_json::to_string(&report)?);
                } else {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                }
                Ok(ExitCode::SUCCESS)
            }
            BenchCommand::Poller(args) => {
                let json = args.json;
                let report = netledger::bench::poller::bench_poller(
                    args,
                    std::sync::Arc::new(netledger::clock::SystemClock),
                )
                .await?;
                if json {
                    println!("{}", serde_json::to_string(&report)?);
                } else {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                }
                Ok(ExitCode::SUCCESS)
            }
            BenchCommand::Replay(args) => {
                let report =
                    netledger::bench::replay::bench_replay(&args.database_url, args.events).await?;
                if args.json {
                    let mut out = serde_json::to_value(&report)?;
                    if let Some(obj) = out.as_object_mut() {
                        obj.insert("events".into(), report.replay.events.into());
                        obj.insert("seconds".into(), report.replay.seconds.into());
                    }
                    println!("{out}");
                } else {
                    println!(
                        "filled {} events; replay: {} events in {:.2} s ({:.0} events/s); \
                         replay over existing tables: {:.2} s",
                        report.fill.events,
                        report.replay.events,
                        report.replay.seconds,
                        report.replay.events_per_second,
                        report.replay_over_existing.seconds
                    );
                    for p in &report.replay.per_projector {
                        println!(
                            "  {:<20} {:>9} events  fold+write {:.2} s  commit {:.2} s",
                            p.projector, p.events, p.busy_seconds, p.commit_seconds
                        );
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            BenchCommand::Workflows(cli) => {
                let scratch_dir = std::env::temp_dir()
                    .join(format!("netledger-bench-workflows-{}", std::process::id()));
                let args = netledger::bench::workflows::WorkflowsBenchArgs {
                    database_url: cli.database_url,
                    noop_seconds: cli.noop_seconds,
                    push_devices: cli.push_devices,
                    firmware_devices: cli.firmware_devices,
                    concurrency: cli.concurrency,
                    scratch_dir,
                    archive_fsync: !cli.no_archive_fsync,
                };
                let r = netledger::bench::workflows::bench_workflows(
                    args,
                    std::sync::Arc::new(netledger::clock::SystemClock),
                )
                .await?;
                let out = serde_json::json!({
                    "noop_steps_per_s_w1": r.noop_steps_per_s_w1,
                    "noop_steps_per_s_w4": r.noop_steps_per_s_w4,
                    "push_1000_seconds": r.push_seconds,
                    "push_devices": r.push_devices,
                    "push_committed": r.push_committed,
                    "push_applied_once": r.push_applied_once,
                    "push_profile": r.push_profile,
                    "archive_fsync": !cli.no_archive_fsync,
                    "firmware_200_seconds": r.firmware_seconds,
                    "firmware_devices": r.firmware_devices,
                    "firmware_upgraded": r.firmware_upgraded,
                });
                if cli.json {
                    println!("{out}");
                } else {
                    println!("{}", serde_json::to_string_pretty(&out)?);
                }
                Ok(ExitCode::SUCCESS)
            }
        },
    }
}

fn parse_rfc3339(s: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("`{s}` is not an RFC 3339 time (2026-12-07T10:00:00Z): {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("netledger: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)).context("netledger failed") {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

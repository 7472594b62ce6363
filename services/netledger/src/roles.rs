//! Process roles: migrations, and the long-running roles that exist so far (the outbox relay
//! and the audit checkpointer, which make up the `projector` role for now).

use std::path::Path;
use std::str::FromStr;

use anyhow::Context as _;
use ed25519_dalek::SigningKey;
use netledger_store::Pools;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio::sync::watch;

use crate::config::Config;
use crate::relay::{Checkpointer, Relay, RelayOptions};

/// Owner connect options from the configured URL.
pub fn owner_options(config: &Config) -> anyhow::Result<PgConnectOptions> {
    PgConnectOptions::from_str(config.database_url.expose()).context(
        "database URL is not a valid PostgreSQL URL (postgres://user[:password]@host:port/db)",
    )
}

/// Creates the database if it does not exist yet (connecting to `postgres` on the same
/// server), then applies every migration. Sets the role passwords when configured.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let owner = owner_options(config)?;
    create_database_if_missing(&owner).await?;
    let mut conn = PgConnection::connect_with(&owner).await.context(
        "cannot connect to PostgreSQL as the owner; is it running and is the URL right?",
    )?;
    netledger_store::MIGRATOR
        .run(&mut conn)
        .await
        .context("applying migrations failed")?;
    for (role, password) in [
        ("netledger_app", &config.app_db_password),
        ("netledger_system", &config.system_db_password),
    ] {
        if let Some(p) = password {
            // Role names are fixed identifiers; the password is passed as a literal by
            // PostgreSQL's own quoting function.
            let sql: String = sqlx::query_scalar(
                "SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)",
            )
            .bind(role)
            .bind(p.expose())
            .fetch_one(&mut conn)
            .await?;
            sqlx::raw_sql(&sql)
                .execute(&mut conn)
                .await
                .context("setting role password")?;
        }
    }
    conn.close().await.ok();
    tracing::info!("migrations applied");
    Ok(())
}

async fn create_database_if_missing(owner: &PgConnectOptions) -> anyhow::Result<()> {
    let Some(name) = owner.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let admin = owner.clone().database("postgres");
    let mut conn = PgConnection::connect_with(&admin).await.with_context(|| {
        format!(
            "cannot connect to PostgreSQL at {}:{}; is it running?",
            owner.get_host(),
            owner.get_port()
        )
    })?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        let sql: String = sqlx::query_scalar("SELECT format('CREATE DATABASE %I', $1::text)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await?;
        match sqlx::raw_sql(&sql).execute(&mut conn).await {
            Ok(_) => tracing::info!(database = %name, "created database"),
            // A concurrent creator won the race.
            Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42P04") => {}
            Err(e) => return Err(e).context(format!("cannot create database {name}")),
        }
    }
    conn.close().await.ok();
    Ok(())
}

/// Connects the app and system pools.
pub async fn pools(config: &Config) -> anyhow::Result<Pools> {
    let owner = owner_options(config)?.log_statements(tracing::log::LevelFilter::Trace);
    Pools::connect(
        &owner,
        config.app_db_password.as_ref().map(|s| s.expose()),
        config.system_db_password.as_ref().map(|s| s.expose()),
        16,
    )
    .await
    .context("cannot connect as the application roles; run `netledger migrate` first")
}

/// Loads the audit signing key, generating one under `data_dir` outside production.
pub fn signing_key(config: &Config) -> anyhow::Result<SigningKey> {
    let path = match &config.audit.signing_key_file {
        Some(p) => p.clone(),
        None if config.production => {
            anyhow::bail!(
                "production mode needs audit.signing_key_file (NETLEDGER_AUDIT_SIGNING_KEY_FILE): a file with a hex ed25519 key"
            )
        }
        None => config.data_dir.join("audit-signing.key"),
    };
    if !path.exists() && !config.production && config.audit.signing_key_file.is_none() {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating {}", config.data_dir.display()))?;
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        write_private(&path, &hex::encode(key.to_bytes()))?;
        tracing::warn!(path = %path.display(), public_key = %hex::encode(key.verifying_key().to_bytes()), "generated a development audit signing key");
    }
    read_key(&path)
}

fn read_key(path: &Path) -> anyhow::Result<SigningKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading signing key {}", path.display()))?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes).with_context(|| {
        format!(
            "{} must hold 64 hex characters (an ed25519 secret key)",
            path.display()
        )
    })?;
    Ok(SigningKey::from_bytes(&bytes))
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// Runs the read-model projectors, the relay and the checkpointer until `shutdown`.
pub async fn run_projector(
    config: &Config,
    pools: &Pools,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let key = signing_key(config)?;
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(&config.nats_url)
        .await
        .with_context(|| format!("cannot connect to NATS at {}", config.nats_url))?;
    let js = async_nats::jetstream::new(client);
    let relay = Relay::new(
        pools.system.clone(),
        js.clone(),
        RelayOptions {
            stream: config.relay.stream.clone(),
            subject_prefix: config.relay.subject_prefix.clone(),
            batch: config.relay.batch,
        },
    );
    let checkpointer = Checkpointer {
        system: pools.system.clone(),
        js,
        stream: config.relay.checkpoint_stream.clone(),
        key,
        key_id: config.audit.key_id.clone(),
        interval: config.audit.checkpoint_interval,
        archive: Some(archive(config)?),
    };
    let projections_task = tokio::spawn(netledger_projections::run(
        pools.system.clone(),
        netledger_projections::RunOptions::default(),
        shutdown.clone(),
    ));
    let relay_task = tokio::spawn(relay.run(shutdown.clone()));
    let checkpoint_task = tokio::spawn(checkpointer.run(shutdown));
    let (p, r, c) = tokio::join!(projections_task, relay_task, checkpoint_task);
    p.context("projections task panicked")??;
    r.context("relay task panicked")??;
    c.context("checkpointer task panicked")??;
    Ok(())
}

/// The config-history store under `<data_dir>/config-history`.
pub fn archive(config: &Config) -> anyhow::Result<netledger_archive::Archive> {
    netledger_archive::Archive::open(config.data_dir.join("config-history"))
        .context("open the config-history store")
}

/// This process's name among its peers (host and pid), for leases and logs.
pub fn process_name(role: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    format!("{role}@{host}:{}", std::process::id())
}

/// Runs the device poller until `shutdown`.
pub async fn run_poller(
    config: &Config,
    pools: &Pools,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let deps = netledger_poller::PollerDeps {
        app: pools.app.clone(),
        system: pools.system.clone(),
        keys: crate::config::credential_keys(config)?,
        archive: archive(config)?,
        clock: std::sync::Arc::new(crate::clock::SystemClock),
    };
    let options = config.poller.to_options(&process_name("poller"));
    netledger_poller::run(options, deps, shutdown)
        .await
        .context("poller stopped")
}

/// Where the worker serves the firmware cache that devices fetch packages from.
#[derive(Debug, Clone)]
pub struct FirmwareServing {
    /// Listen address of the read-only package server.
    pub listen: std::net::SocketAddr,
    /// URL devices use to reach it (defaults to `http://<listen>`).
    pub base_url: Option<String>,
}

/// Runs a workflow worker (push, firmware, backup, rollout definitions) until `shutdown`.
pub async fn run_worker(
    config: &Config,
    pools: &Pools,
    firmware: &FirmwareServing,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let firmware_cache = config.data_dir.join("firmware");
    std::fs::create_dir_all(&firmware_cache)
        .with_context(|| format!("creating {}", firmware_cache.display()))?;
    let listener = tokio::net::TcpListener::bind(firmware.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for the firmware cache",
                firmware.listen
            )
        })?;
    let bound = listener.local_addr()?;
    let deps = netledger_netops::workflows::NetopsDeps {
        app: pools.app.clone(),
        system: pools.system.clone(),
        store: netledger_store::EventStore::start(
            pools.app.clone(),
            netledger_store::StoreOptions::default(),
        ),
        archive: archive(config)?,
        keys: crate::config::credential_keys(config)?,
        firmware_cache,
        firmware_base_url: firmware
            .base_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}")),
        options: netledger_netops::workflows::NetopsOptions::default(),
        clock: std::sync::Arc::new(crate::clock::SystemClock),
    };
    let options = netledger_engine::WorkerOptions::named(process_name("worker"));
    let report =
        netledger_netops::workflows::run_worker(deps, options, Some(listener), async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
        .context("worker stopped")?;
    tracing::info!(?report, "worker stopped");
    Ok(())
}

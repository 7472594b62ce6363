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
    let client = crate::relay::connect_nats(
        &config.nats_url,
        "projector",
        &config.nats.projector,
        config.production,
    )
    .await?;
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
    let mut options = config.poller.to_options(&process_name("poller"));
    options.device_networks = config.device_network_policy();
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
    let listener = tokio::net::TcpListener::bind(firmware.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for the firmware cache",
                firmware.listen
            )
        })?;
    let bound = listener.local_addr()?;
    let deps = netops_deps(
        config,
        pools,
        firmware
            .base_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}")),
    )?;
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

/// The firmware cache directory, `<data_dir>/firmware` (created if missing).
pub fn firmware_cache(config: &Config) -> anyhow::Result<std::path::PathBuf> {
    let dir = config.data_dir.join("firmware");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// What the workflow definitions need (workers run them; the API starts them).
pub fn netops_deps(
    config: &Config,
    pools: &Pools,
    firmware_base_url: String,
) -> anyhow::Result<netledger_netops::workflows::NetopsDeps> {
    Ok(netledger_netops::workflows::NetopsDeps {
        app: pools.app.clone(),
        system: pools.system.clone(),
        store: netledger_store::EventStore::start(
            pools.app.clone(),
            netledger_store::StoreOptions::default(),
        ),
        archive: archive(config)?,
        keys: crate::config::credential_keys(config)?,
        firmware_cache: firmware_cache(config)?,
        firmware_base_url,
        options: netledger_netops::workflows::NetopsOptions {
            device_networks: config.device_network_policy(),
            ..netledger_netops::workflows::NetopsOptions::default()
        },
        clock: std::sync::Arc::new(crate::clock::SystemClock),
    })
}

/// The first administrator, from `NETLEDGER_BOOTSTRAP_ADMIN_EMAIL`/`_PASSWORD` (read by the
/// binary's `main`).
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// E-mail address.
    pub email: String,
    /// Password.
    pub password: crate::config::Secret,
}

/// Builds the API state: pools, event store, NATS, archive, firmware cache, audit key, device
/// commands and the engine with the workflow definitions.
pub async fn api_state(config: &Config, pools: &Pools) -> anyhow::Result<netledger_api::ApiState> {
    let clock: std::sync::Arc<dyn netledger_domain::clock::Clock> =
        std::sync::Arc::new(crate::clock::SystemClock);
    let store = netledger_store::EventStore::start(
        pools.app.clone(),
        netledger_store::StoreOptions::default(),
    );
    let nats =
        crate::relay::connect_nats(&config.nats_url, "api", &config.nats.api, config.production)
            .await?;
    let netops = netops_deps(config, pools, String::new())?;
    let registry = std::sync::Arc::new(netledger_netops::workflows::registry(netops)?);
    let engine =
        netledger_engine::Engine::new(pools.app.clone(), store.clone(), registry, clock.clone());
    let mut deps = netledger_api::ApiDeps::new(pools.clone(), store, clock);
    deps.nats = Some(nats);
    deps.archive = Some(archive(config)?);
    deps.firmware_dir = Some(firmware_cache(config)?);
    deps.audit_key = Some(signing_key(config)?.verifying_key());
    deps.devices = Some(netledger_store::devices::DeviceCommands::new(
        pools.app.clone(),
        crate::config::credential_keys(config)?,
    ));
    deps.engine = Some(engine);
    let mut api_config = crate::config::api_config(config)?;
    api_config.nats_subject_prefix = config.relay.subject_prefix.clone();
    api_config.nats_events_stream = config.relay.stream.clone();
    api_config.device_networks = config.device_network_policy();
    if let Some(q) = config.devices.firmware_quota_bytes {
        api_config.firmware_quota_bytes = q;
    }
    config.edge.apply(&mut api_config)?;
    if let Some(dir) = &config.api.ui_dir {
        api_config.ui = Some(netledger_api::ui::UiDir::new(dir)?);
        tracing::info!(dir = %dir.display(), "serving the web UI");
    }
    netledger_api::ApiState::new(deps, api_config).context("API settings refused")
}

/// Creates the first tenant and admin when no user exists yet.
pub async fn bootstrap(
    state: &netledger_api::ApiState,
    admin: Option<&Bootstrap>,
) -> anyhow::Result<()> {
    let Some(admin) = admin else {
        return Ok(());
    };
    let outcome = netledger_api::bootstrap_admin(state, &admin.email, admin.password.expose())
        .await
        .map_err(|e| anyhow::anyhow!("bootstrap admin: {e}"))?;
    tracing::info!(?outcome, email = %admin.email, "bootstrap admin");
    Ok(())
}

/// Creates the demo's approver account in the first tenant when no user has its address yet
/// (the second user a newcomer needs to walk change control alone: create as the admin,
/// approve as the approver). A demo account has no place in production: refused there.
pub async fn bootstrap_demo_approver(
    state: &netledger_api::ApiState,
    approver: Option<&Bootstrap>,
    production: bool,
) -> anyhow::Result<()> {
    let Some(approver) = approver else {
        return Ok(());
    };
    if production {
        anyhow::bail!(
            "NETLEDGER_DEMO_APPROVER_EMAIL/_PASSWORD seed a demo account; production refuses \
             it (create approvers with POST /api/v1/users)"
        );
    }
    let outcome = netledger_api::accounts::bootstrap_demo_user(
        state,
        &approver.email,
        "Demo approver",
        netledger_domain::identity::Role::Approver,
        approver.password.expose(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("demo approver: {e}"))?;
    tracing::info!(?outcome, email = %approver.email, "demo approver");
    Ok(())
}

/// Serves the REST API, live events, OpenAPI and docs on `listen` until `shutdown`.
pub async fn run_api(
    state: netledger_api::ApiState,
    listen: std::net::SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (pass --listen ADDR)"))?;
    tracing::info!(address = %listener.local_addr()?, "API listening");
    netledger_api::serve(listener, state, async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    })
    .await
    .context("API server stopped")
}

/// Registers every device of the demo fleet's manifest into the first tenant (the one the
/// bootstrap created), waiting for the manifest to appear.
pub async fn register_demo_fleet(
    config: &Config,
    pools: &Pools,
    manifest_path: &std::path::Path,
) -> anyhow::Result<usize> {
    let mut waited = 0;
    while !manifest_path.exists() {
        if waited > 300 {
            anyhow::bail!(
                "the demo fleet's manifest {} did not appear",
                manifest_path.display()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        waited += 1;
    }
    let text = tokio::fs::read_to_string(manifest_path)
        .await
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let manifest: Vec<devsim::ManifestEntry> = serde_json::from_str(&text)
        .with_context(|| format!("parsing {}", manifest_path.display()))?;
    let tenant: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM tenants ORDER BY created_at, id LIMIT 1")
            .fetch_optional(&pools.system)
            .await
            .context("looking up the first tenant")?;
    let Some(tenant) = tenant else {
        anyhow::bail!(
            "no tenant to register the demo fleet in: set NETLEDGER_BOOTSTRAP_ADMIN_EMAIL and \
             NETLEDGER_BOOTSTRAP_ADMIN_PASSWORD so that the first start creates one"
        );
    };
    let commands = netledger_store::devices::DeviceCommands::new(
        pools.app.clone(),
        crate::config::credential_keys(config)?,
    );
    let ids = netledger_testkit::register_demo_fleet(
        &commands,
        netledger_domain::TenantId::from_uuid(tenant),
        &manifest,
        &netledger_testkit::DemoFleet::default(),
    )
    .await
    .context("registering the demo fleet")?;
    Ok(ids.len())
}

//! Process roles: migrations, and the long-running roles that exist so far (the outbox relay
//! and the audit checkpointer, which make up the `projector` role for now).
//!
//! Each role loads only its own credentials: the owner's URL only where migrations run
//! ([`owner_options`], [`migrate`]); the application roles' URLs ([`role_options`]) never
//! carry the owner's password; the audit signing key only in the checkpointer
//! ([`signing_key`]), the API gets the public key ([`verifying_key`]).

use std::path::Path;
use std::str::FromStr;

use anyhow::Context as _;
use ed25519_dalek::SigningKey;
use netledger_domain::audit::{Handover, TrustedKeys};
use netledger_store::Pools;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio::sync::watch;

use crate::config::{Config, DbRole};
use crate::keys::write_private;
use crate::relay::{Checkpointer, Relay, RelayOptions};
use crate::supervise::{HealthDeps, Tasks, serve_health, supervise};

/// Owner connect options from the configured URL (for migrations only).
/// The password comes from `database_password` when the URL carries none.
pub fn owner_options(config: &Config) -> anyhow::Result<PgConnectOptions> {
    let options = PgConnectOptions::from_str(config.owner_url()?.expose()).context(
        "database URL is not a valid PostgreSQL URL (postgres://user[:password]@host:port/db)",
    )?;
    Ok(with_password(options, config.database_password.as_ref()))
}

/// `options` with `password` when they carry none of their own.
fn with_password(
    options: PgConnectOptions,
    password: Option<&crate::config::Secret>,
) -> PgConnectOptions {
    match password {
        Some(p) if options.to_url_lossy().password().is_none() => options.password(p.expose()),
        _ => options,
    }
}

/// Connect options of `role`: its configured URL, or else the owner's server and database
/// with the role's name and its own password (`<role>_db_password`), never the owner's. The
/// owner's URL is not read when the role's URL is configured; a configured URL without a
/// password takes the role's password.
pub fn role_options(config: &Config, role: DbRole) -> anyhow::Result<PgConnectOptions> {
    if let Some(url) = config.role_url(role)? {
        let options = PgConnectOptions::from_str(url.expose()).with_context(|| {
            format!(
                "the {} database URL is not a valid PostgreSQL URL",
                role.role_name()
            )
        })?;
        return Ok(with_password(options, config.role_password(role)));
    }
    let owner = config.owner_url()?;
    let mut options = PgConnectOptions::from_str(&crate::config::without_userinfo(owner.expose()))
        .context(
            "database URL is not a valid PostgreSQL URL (postgres://user[:password]@host:port/db)",
        )?
        .username(role.role_name());
    if let Some(password) = config.role_password(role) {
        options = options.password(password.expose());
    }
    Ok(options)
}

/// Creates the database if it does not exist yet (connecting to `postgres` on the same
/// server), then applies every migration. Sets the role passwords when configured.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let owner = owner_options(config)?;
    if config.production {
        refuse_passwordless(&owner, "database_url (the schema owner, for migrate)")?;
    }
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

/// Production refuses a TCP connection without a password: it can only work against a
/// server that trusts the network (`trust` in `pg_hba.conf`), where anyone reaching the port
/// is the owner. A Unix socket (peer authentication) is the exception.
pub fn refuse_passwordless(options: &PgConnectOptions, what: &str) -> anyhow::Result<()> {
    let socket = options.get_socket().is_some() || options.get_host().starts_with('/');
    let url = options.to_url_lossy();
    if socket || url.password().is_some_and(|p| !p.is_empty()) {
        return Ok(());
    }
    anyhow::bail!(
        "production mode refuses {what} without a password: a password-less TCP connection \
         only works where PostgreSQL trusts the network. Give the role a password (set it in \
         the URL, postgres://user:PASSWORD@host/db, or app_db_password/system_db_password, \
         which `netledger migrate` sets) and use scram-sha-256 in pg_hba.conf"
    )
}

/// Connects the app and system pools, each with its own role's credentials
/// ([`role_options`]).
pub async fn pools(config: &Config) -> anyhow::Result<Pools> {
    let trace = tracing::log::LevelFilter::Trace;
    let app = role_options(config, DbRole::App)?.log_statements(trace);
    let system = role_options(config, DbRole::System)?.log_statements(trace);
    if config.production {
        refuse_passwordless(&app, "app_database_url (role netledger_app)")?;
        refuse_passwordless(&system, "system_database_url (role netledger_system)")?;
    }
    // The same pool settings as `Pools::connect` (no ping before each acquire).
    let max_connections = 16;
    let app = sqlx::postgres::PgPoolOptions::new()
        .max_connections(max_connections)
        .test_before_acquire(false)
        .connect_with(app)
        .await
        .context("cannot connect as netledger_app; run `netledger migrate` first")?;
    let system = sqlx::postgres::PgPoolOptions::new()
        .max_connections(max_connections.clamp(2, 8))
        .test_before_acquire(false)
        .connect_with(system)
        .await
        .context("cannot connect as netledger_system; run `netledger migrate` first")?;
    Ok(Pools { app, system })
}

/// The development public key file next to the generated signing key.
const DEV_VERIFYING_KEY_FILE: &str = "audit-signing.pub";

/// The audit public keys the API verifies checkpoints with: `audit.verifying_key_file`, else
/// `audit.verifying_key` (a hex key, or `<key id>=<hex>` entries: every key a checkpoint of
/// this installation was signed with, after rotations); outside production
/// `<data_dir>/audit-signing.pub` (written with the generated development key), generating
/// that key first when there is none yet. Never reads the signing key when a public key is
/// configured; production refuses to fall back.
pub fn verifying_key(config: &Config) -> anyhow::Result<TrustedKeys> {
    let audit = &config.audit;
    let text = if let Some(path) = &audit.verifying_key_file {
        std::fs::read_to_string(path)
            .with_context(|| format!("reading audit public key {}", path.display()))?
    } else if let Some(hex) = &audit.verifying_key {
        hex.clone()
    } else if config.production {
        anyhow::bail!(
            "production mode needs the audit public key for the API: set audit.verifying_key              (NETLEDGER_AUDIT_VERIFYING_KEY, hex; print it with `netledger audit public-key`              where the signing key is) or audit.verifying_key_file              (NETLEDGER_AUDIT_VERIFYING_KEY_FILE)"
        )
    } else {
        let dev = config.data_dir.join(DEV_VERIFYING_KEY_FILE);
        if audit.signing_key_file.is_none() && dev.exists() {
            std::fs::read_to_string(&dev)
                .with_context(|| format!("reading audit public key {}", dev.display()))?
        } else {
            // Development without a public key yet: derive it (and write it for next time).
            return Ok(TrustedKeys::any(signing_key(config)?.verifying_key()));
        }
    };
    TrustedKeys::parse(&text).map_err(|e| {
        anyhow::anyhow!(
            "the audit public key is unusable: {e}; give 64 hex characters (an ed25519 public \
             key, `netledger audit public-key`) or <key id>=<hex> entries, one per signing key"
        )
    })
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
        let public = config.data_dir.join(DEV_VERIFYING_KEY_FILE);
        std::fs::write(&public, hex::encode(key.verifying_key().to_bytes()))
            .with_context(|| format!("writing {}", public.display()))?;
        tracing::warn!(path = %path.display(), public_key = %hex::encode(key.verifying_key().to_bytes()), "generated a development audit signing key");
    }
    read_key(&path)
}

fn read_key(path: &Path) -> anyhow::Result<SigningKey> {
    Ok(read_key_file(path)?.0)
}

fn read_key_file(path: &Path) -> anyhow::Result<(SigningKey, Option<Handover>)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading signing key {}", path.display()))?;
    audit_key_from_text(&text).with_context(|| path.display().to_string())
}

/// The audit signing key and the previous key's hand-over to it, checked against the
/// configured key id: what the checkpointer signs with. Outside production without a key
/// file, a development key is generated as by [`signing_key`].
pub fn checkpoint_signer(config: &Config) -> anyhow::Result<(SigningKey, Option<Handover>)> {
    let key = signing_key(config)?;
    let path = config
        .audit
        .signing_key_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join("audit-signing.key"));
    let (_, handover) = read_key_file(&path)?;
    if let Some(h) = &handover {
        let id = &config.audit.key_id;
        if h.to_key_id != *id || h.to_public_key != key.verifying_key().to_bytes() {
            anyhow::bail!(
                "{}: its hand-over is to key `{}`, but this key is `{id}` (audit.key_id) with \
                 another public key; the key file and audit.key_id do not belong together",
                path.display(),
                h.to_key_id
            );
        }
        h.verify()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    Ok((key, handover))
}

/// An audit signing key from its file's text (64 hex characters, then optionally a
/// `handover=<json>` line written by `keys rotate-audit-key`).
pub fn signing_key_from_text(text: &str) -> anyhow::Result<SigningKey> {
    Ok(audit_key_from_text(text)?.0)
}

/// An audit key file's key and hand-over ([`signing_key_from_text`]).
pub fn audit_key_from_text(text: &str) -> anyhow::Result<(SigningKey, Option<Handover>)> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(lines.next().unwrap_or_default(), &mut bytes).context(
        "an audit signing key file must start with 64 hex characters (an ed25519 secret key)",
    )?;
    let mut handover = None;
    for line in lines {
        let Some(json) = line.strip_prefix("handover=") else {
            anyhow::bail!(
                "an audit signing key file holds the key and at most a `handover=` line; found \
                 `{}`",
                line.chars().take(20).collect::<String>()
            );
        };
        if handover.is_some() {
            anyhow::bail!("an audit signing key file holds one `handover=` line");
        }
        handover = Some(
            serde_json::from_str::<Handover>(json)
                .context("the `handover=` line is not a hand-over")?,
        );
    }
    Ok((SigningKey::from_bytes(&bytes), handover))
}

/// Runs the read-model projectors, the relay and the checkpointer (and the health endpoints
/// when `health.listen` is set) until `shutdown`; the first of them to stop on its own ends
/// the role with an error ([`supervise`]).
pub async fn run_projector(
    config: &Config,
    pools: &Pools,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (key, handover) = checkpoint_signer(config)?;
    let client = crate::relay::connect_nats(
        &config.nats_url,
        "projector",
        &config.nats.projector,
        config.production,
    )
    .await?;
    let js = async_nats::jetstream::new(client.clone());
    let relay = Relay::new(
        pools.system.clone(),
        js.clone(),
        RelayOptions {
            stream: config.relay.stream.clone(),
            subject_prefix: config.relay.subject_prefix.clone(),
            batch: config.relay.batch,
            max_bytes: config.relay.stream_max_bytes,
        },
    );
    let checkpointer = Checkpointer {
        system: pools.system.clone(),
        js,
        stream: config.relay.checkpoint_stream.clone(),
        key,
        key_id: config.audit.key_id.clone(),
        handover,
        interval: config.audit.checkpoint_interval,
        archive: Some(archive(config)?),
    };
    let mut tasks = Tasks::new();
    let system = pools.system.clone();
    let stop = tasks.stop_signal();
    tasks.spawn("projections", async move {
        netledger_projections::run(system, netledger_projections::RunOptions::default(), stop)
            .await
            .map_err(anyhow::Error::from)
    });
    let stop = tasks.stop_signal();
    tasks.spawn("relay", async move {
        relay.run(stop).await.map_err(anyhow::Error::from)
    });
    let stop = tasks.stop_signal();
    tasks.spawn("checkpointer", async move {
        checkpointer.run(stop).await.map_err(anyhow::Error::from)
    });
    spawn_health(config, &mut tasks, "projector", pools, Some(client));
    supervise(shutdown, tasks).await
}

/// Adds the health endpoints to `tasks` when `health.listen` is configured.
fn spawn_health(
    config: &Config,
    tasks: &mut Tasks,
    role: &'static str,
    pools: &Pools,
    nats: Option<async_nats::Client>,
) {
    if let Some(listen) = config.health.listen {
        let deps = HealthDeps {
            role,
            pool: pools.system.clone(),
            nats,
        };
        let stop = tasks.stop_signal();
        tasks.spawn("health endpoints", serve_health(listen, deps, stop));
    }
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
    let mut tasks = Tasks::new();
    let stop = tasks.stop_signal();
    tasks.spawn("poller", async move {
        netledger_poller::run(options, deps, stop)
            .await
            .map_err(anyhow::Error::from)
    });
    spawn_health(config, &mut tasks, "poller", pools, None);
    supervise(shutdown, tasks).await
}

/// Where the worker serves the firmware cache that devices fetch packages from.
#[derive(Debug, Clone)]
pub struct FirmwareServing {
    /// Listen address of the read-only package server.
    pub listen: std::net::SocketAddr,
    /// URL devices use to reach it (defaults to `http://<listen>`).
    pub base_url: Option<String>,
}

impl FirmwareServing {
    /// The configured `[worker]` settings.
    pub fn from_config(config: &Config) -> Self {
        Self {
            listen: config.worker.firmware_listen,
            base_url: config.worker.firmware_base_url.clone(),
        }
    }
}

/// Runs a workflow worker (push, firmware, backup, rollout definitions) until `shutdown`.
pub async fn run_worker(
    config: &Config,
    pools: &Pools,
    firmware: &FirmwareServing,
    shutdown: watch::Receiver<bool>,
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
    let mut options = netledger_engine::WorkerOptions::named(process_name("worker"));
    options.shutdown_grace = config.worker.shutdown_grace;
    let mut tasks = Tasks::new();
    let mut stop = tasks.stop_signal();
    tasks.spawn("worker", async move {
        let report =
            netledger_netops::workflows::run_worker(deps, options, Some(listener), async move {
                let _ = stop.wait_for(|stop| *stop).await;
            })
            .await?;
        tracing::info!(?report, "worker stopped");
        Ok(())
    });
    spawn_health(config, &mut tasks, "worker", pools, None);
    supervise(shutdown, tasks).await
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
    refuse_development_keys_off_loopback(config)?;
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
    deps.audit_key = Some(verifying_key(config)?);
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

/// An API listening beyond this machine must not run on keys generated for development
/// (they live unencrypted under `data_dir` and nobody outside holds them): the device
/// credential keys and the audit public key must be configured. (The token secret has the
/// same rule in [`crate::config::api_config`].)
pub fn refuse_development_keys_off_loopback(config: &Config) -> anyhow::Result<()> {
    if config.listen.ip().is_loopback() {
        return Ok(());
    }
    if config.secrets.credential_keys.is_empty() {
        anyhow::bail!(
            "refusing to listen on {} (not loopback) with the generated development credential \
             key: set secrets.credential_keys (NETLEDGER_SECRETS_CREDENTIAL_KEYS or \
             NETLEDGER_SECRETS_CREDENTIAL_KEYS_FILE, `<id>=<base64 of 32 bytes>`; \
             `netledger keys init` writes one) and secrets.current_credential_key",
            config.listen
        );
    }
    if config.audit.verifying_key.is_none() && config.audit.verifying_key_file.is_none() {
        anyhow::bail!(
            "refusing to listen on {} (not loopback) with the generated development audit key: \
             set audit.verifying_key_file (NETLEDGER_AUDIT_VERIFYING_KEY_FILE) to the public key \
             of the projector's audit.signing_key_file (`netledger keys init` writes both)",
            config.listen
        );
    }
    Ok(())
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
    let tls = state.config().tls.clone();
    tracing::info!(
        address = %listener.local_addr()?,
        https = tls.is_some(),
        "API listening"
    );
    #[cfg(unix)]
    let reloader = tls.map(|tls| tokio::spawn(reload_on_sighup(tls)));
    let served = netledger_api::serve(listener, state, async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    })
    .await
    .context("API server stopped");
    #[cfg(unix)]
    if let Some(r) = reloader {
        r.abort();
    }
    served
}

/// Reloads the API's certificate and key from their files on every SIGHUP; a pair that
/// does not load keeps the current one (and says why).
#[cfg(unix)]
async fn reload_on_sighup(tls: netledger_api::TlsServerConfig) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGHUP; the TLS certificate will not reload");
            return;
        }
    };
    while hup.recv().await.is_some() {
        match tls.reload() {
            Ok(()) => {
                tracing::info!(cert = %tls.files().cert.display(), "TLS certificate reloaded")
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS reload failed; keeping the current certificate")
            }
        }
    }
}

/// Registers every device of the demo fleet's manifest into the first tenant (the one the
/// bootstrap created), waiting for the manifest to appear.
pub async fn register_demo_fleet(
    config: &Config,
    pools: &Pools,
    manifest_path: &std::path::Path,
) -> anyhow::Result<usize> {
    register_fleet(
        config,
        pools,
        manifest_path,
        None,
        None,
        std::time::Duration::from_secs(30),
    )
    .await
}

/// Registers every device of a simulator manifest into the first tenant, waiting up to
/// `wait` for the manifest and for the first tenant (an API's bootstrap creates it). With
/// `host`, the devices are reached at that host's address (resolved once) on the manifest's
/// ports; in production mode over API-SSL with the manifest's certificate fingerprints pinned.
/// `poll_interval_secs` overrides the demo default (60 s). Registering again (a
/// restarted one-shot) updates the same devices: their ids are derived from the tenant and
/// the manifest.
pub async fn register_fleet(
    config: &Config,
    pools: &Pools,
    manifest_path: &std::path::Path,
    host: Option<&str>,
    poll_interval_secs: Option<u32>,
    wait: std::time::Duration,
) -> anyhow::Result<usize> {
    let deadline = tokio::time::Instant::now() + wait;
    let pause = std::time::Duration::from_millis(200);
    while !manifest_path.exists() {
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!(
                "the fleet's manifest {} did not appear within {wait:?}",
                manifest_path.display()
            );
        }
        tokio::time::sleep(pause).await;
    }
    let text = tokio::fs::read_to_string(manifest_path)
        .await
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let mut manifest: Vec<devsim::ManifestEntry> =
        serde_json::from_str(&text).with_context(|| {
            format!(
                "parsing {} (a netledger devsim manifest)",
                manifest_path.display()
            )
        })?;
    if let Some(host) = host {
        let ip = tokio::net::lookup_host((host, 0))
            .await
            .with_context(|| format!("cannot resolve {host}"))?
            .next()
            .with_context(|| format!("{host} has no address"))?
            .ip();
        for entry in &mut manifest {
            entry.api.set_ip(ip);
            entry.api_ssl.set_ip(ip);
            // A simulator without SSH lists port 0: no SSH access is registered for it.
            if entry.ssh.port() != 0 {
                entry.ssh.set_ip(ip);
            }
        }
    }
    let tenant = loop {
        let tenant: Option<uuid::Uuid> =
            sqlx::query_scalar("SELECT id FROM tenants ORDER BY created_at, id LIMIT 1")
                .fetch_optional(&pools.system)
                .await
                .context("looking up the first tenant")?;
        match tenant {
            Some(t) => break t,
            None if tokio::time::Instant::now() > deadline => anyhow::bail!(
                "no tenant to register the fleet in: set NETLEDGER_BOOTSTRAP_ADMIN_EMAIL and \
                 NETLEDGER_BOOTSTRAP_ADMIN_PASSWORD for the API so that its first start creates one"
            ),
            None => tokio::time::sleep(pause).await,
        }
    };
    let commands = netledger_store::devices::DeviceCommands::new(
        pools.app.clone(),
        crate::config::credential_keys(config)?,
    );
    let mut fleet = netledger_testkit::DemoFleet::default();
    if let Some(secs) = poll_interval_secs {
        fleet.poll_interval_secs = secs;
    }
    // Production refuses the plain API transport for devices registered through the API;
    // the demo fleet keeps to that rule: API-SSL with each device's certificate pinned.
    fleet.tls = config.production;
    let ids = netledger_testkit::register_demo_fleet(
        &commands,
        netledger_domain::TenantId::from_uuid(tenant),
        &manifest,
        &fleet,
    )
    .await
    .context("registering the fleet")?;
    Ok(ids.len())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use sqlx::ConnectOptions as _;

    use super::*;
    use crate::config::Secret;

    fn env(pairs: &[(&str, String)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    /// Issue #15 item 12: what the `api` role loads (pool credentials, audit key) comes from
    /// its own settings; the owner's URL and the signing key are never read (their files do
    /// not exist here, so reading them would fail).
    #[test]
    fn the_api_role_never_reads_the_owner_url_or_the_signing_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[7; 32]);
        let system_url = dir.path().join("system-url");
        std::fs::write(
            &system_url,
            "postgres://netledger_system:systempw@db.example:5433/nl\n",
        )
        .unwrap();
        let public = dir.path().join("audit.pub");
        std::fs::write(&public, hex::encode(key.verifying_key().to_bytes())).unwrap();
        let config = Config::load(
            None,
            env(&[
                ("NETLEDGER_PRODUCTION", "true".into()),
                (
                    "NETLEDGER_DATABASE_URL_FILE",
                    dir.path().join("missing-owner-url").display().to_string(),
                ),
                (
                    "NETLEDGER_AUDIT_SIGNING_KEY_FILE",
                    dir.path().join("missing-signing-key").display().to_string(),
                ),
                (
                    "NETLEDGER_APP_DATABASE_URL",
                    "postgres://netledger_app:apppw@db.example:5433/nl".into(),
                ),
                (
                    "NETLEDGER_SYSTEM_DATABASE_URL_FILE",
                    system_url.display().to_string(),
                ),
                (
                    "NETLEDGER_AUDIT_VERIFYING_KEY_FILE",
                    public.display().to_string(),
                ),
                (
                    "NETLEDGER_DATA_DIR",
                    dir.path().join("data").display().to_string(),
                ),
            ]),
        )
        .unwrap();
        // The owner's URL and the signing key are out of reach of this process.
        assert!(owner_options(&config).is_err());
        assert!(signing_key(&config).is_err());
        // Yet everything the API loads is there.
        let app = role_options(&config, DbRole::App).unwrap();
        assert_eq!(app.get_username(), "netledger_app");
        assert_eq!((app.get_host(), app.get_port()), ("db.example", 5433));
        assert!(app.to_url_lossy().to_string().contains("apppw"));
        let system = role_options(&config, DbRole::System).unwrap();
        assert_eq!(system.get_username(), "netledger_system");
        assert!(system.to_url_lossy().to_string().contains("systempw"));
        assert_eq!(
            verifying_key(&config).unwrap(),
            TrustedKeys::any(key.verifying_key())
        );
        assert!(!config.data_dir.exists(), "nothing was generated");

        // Production without a public key: refused, even with a signing key configured.
        let mut no_public = config.clone();
        no_public.audit.verifying_key_file = None;
        let err = verifying_key(&no_public).unwrap_err().to_string();
        assert!(err.contains("verifying_key"), "{err}");
    }

    /// Issue #15 item 12: without role URLs, the application roles' options are derived from
    /// the owner's server and database with the role's own password, never the owner's.
    #[test]
    fn derived_role_options_never_carry_the_owner_password() {
        let mut config = Config {
            database_url: Secret::new("postgres://owner:hunter2@db.example:5432/nl"),
            ..Config::default()
        };
        for role in [DbRole::App, DbRole::System] {
            let o = role_options(&config, role).unwrap();
            assert_eq!(o.get_username(), role.role_name());
            assert_eq!(o.get_database(), Some("nl"));
            let url = o.to_url_lossy().to_string();
            assert!(!url.contains("hunter2"), "{role:?}: {url}");
            assert!(!url.contains("owner"), "{role:?}: {url}");
        }
        config.app_db_password = Some(Secret::new("appsecret"));
        let url = role_options(&config, DbRole::App)
            .unwrap()
            .to_url_lossy()
            .to_string();
        assert!(
            url.contains("appsecret") && !url.contains("hunter2"),
            "{url}"
        );
        assert_eq!(
            crate::config::without_userinfo("postgres://a:b%40c@h:1/d?sslmode=require"),
            "postgres://h:1/d?sslmode=require"
        );
    }

    /// Outside production the API reads the public key written next to the generated
    /// development signing key, not the signing key itself.
    #[test]
    fn development_api_reads_the_generated_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        let key = signing_key(&config).unwrap();
        std::fs::remove_file(config.data_dir.join("audit-signing.key")).unwrap();
        assert_eq!(
            verifying_key(&config).unwrap(),
            TrustedKeys::any(key.verifying_key())
        );
    }

    /// Issue #16: production refuses password-less TCP database connections (trust
    /// authentication) for the owner and for both roles, saying how to fix it; a password
    /// from its own setting, or a Unix socket, is accepted.
    #[test]
    fn production_refuses_passwordless_database_urls() {
        let config = Config::load(
            None,
            env(&[
                ("NETLEDGER_PRODUCTION", "true".into()),
                (
                    "NETLEDGER_DATABASE_URL",
                    "postgres://postgres@db.example/nl".into(),
                ),
                (
                    "NETLEDGER_APP_DATABASE_URL",
                    "postgres://netledger_app@db.example/nl".into(),
                ),
            ]),
        )
        .unwrap();
        let err = refuse_passwordless(&owner_options(&config).unwrap(), "database_url")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("database_url without a password") && err.contains("scram-sha-256"),
            "{err}"
        );
        for role in [DbRole::App, DbRole::System] {
            let err = refuse_passwordless(&role_options(&config, role).unwrap(), role.role_name())
                .unwrap_err()
                .to_string();
            assert!(err.contains("app_db_password/system_db_password"), "{err}");
        }
        // Passwords from their own settings (files in a deployment) make them acceptable.
        let mut fixed = config.clone();
        fixed.database_password = Some(Secret::new("ownerpw"));
        fixed.app_db_password = Some(Secret::new("apppw"));
        fixed.system_db_password = Some(Secret::new("systempw"));
        refuse_passwordless(&owner_options(&fixed).unwrap(), "database_url").unwrap();
        for role in [DbRole::App, DbRole::System] {
            let o = role_options(&fixed, role).unwrap();
            refuse_passwordless(&o, role.role_name()).unwrap();
            assert!(!o.to_url_lossy().to_string().contains("ownerpw"));
        }
        // A password in the URL wins over the setting.
        let mut in_url = fixed.clone();
        in_url.app_database_url = Some(Secret::new("postgres://netledger_app:urlpw@db.example/nl"));
        let url = role_options(&in_url, DbRole::App)
            .unwrap()
            .to_url_lossy()
            .to_string();
        assert!(url.contains("urlpw") && !url.contains("apppw"), "{url}");
        // A Unix socket (peer authentication) needs none.
        let mut socket = config.clone();
        socket.app_database_url = Some(Secret::new(
            "postgres://netledger_app@%2Fvar%2Frun%2Fpostgresql/nl",
        ));
        refuse_passwordless(&role_options(&socket, DbRole::App).unwrap(), "app").unwrap();
    }

    /// Issue #16: an API listening beyond loopback refuses the generated development keys
    /// (credential key, audit key), each with the setting that fixes it.
    #[test]
    fn an_exposed_api_refuses_development_keys() {
        let mut config = Config {
            listen: "0.0.0.0:8080".parse().unwrap(),
            ..Config::default()
        };
        let err = refuse_development_keys_off_loopback(&config)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("development credential key")
                && err.contains("NETLEDGER_SECRETS_CREDENTIAL_KEYS"),
            "{err}"
        );
        config.secrets.credential_keys.insert(
            "k1".into(),
            Secret::new("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        );
        let err = refuse_development_keys_off_loopback(&config)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("development audit key")
                && err.contains("NETLEDGER_AUDIT_VERIFYING_KEY_FILE"),
            "{err}"
        );
        config.audit.verifying_key = Some("ab".repeat(32));
        refuse_development_keys_off_loopback(&config).unwrap();
        // On loopback the development keys are fine.
        let local = Config::default();
        refuse_development_keys_off_loopback(&local).unwrap();
        // The token secret has the same rule (config::api_config).
        let mut exposed = Config {
            listen: "[::]:8080".parse().unwrap(),
            ..Config::default()
        };
        let err = crate::config::api_config(&exposed).unwrap_err().to_string();
        assert!(err.contains("NETLEDGER_API_JWT_SECRET"), "{err}");
        exposed.api.jwt_secret = Some(Secret::new("x".repeat(40)));
        crate::config::api_config(&exposed).unwrap();
    }
}

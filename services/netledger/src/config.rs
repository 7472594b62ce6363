//! Typed configuration, layered as defaults -> TOML file -> `NETLEDGER_*` environment ->
//! command-line flags. Unknown keys in the file and unknown `NETLEDGER_*` variables are
//! refused with the list of known ones. Secrets are wrapped so they never print.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::keys::write_private;

/// A value that must never appear in logs or debug output.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// PostgreSQL URL of the schema owner. May carry a password. Read only by the roles
    /// that migrate (`migrate`, `all`, `replay`), and by the others only to derive the
    /// application roles' URLs when `app_database_url`/`system_database_url` are not set.
    pub database_url: Secret,
    /// File holding the owner URL (wins over `database_url`; read only when the URL is
    /// needed, so a process that does not need it may have no access to the file).
    pub database_url_file: Option<PathBuf>,
    /// The owner's password when its URL carries none (a URL in plain configuration, the
    /// password in a secret file: `NETLEDGER_DATABASE_PASSWORD_FILE`).
    pub database_password: Option<Secret>,
    /// PostgreSQL URL of the `netledger_app` role (user, password, host, database); without
    /// a password in it, `app_db_password` is used. When absent it is derived from the owner
    /// URL: the role's name, `app_db_password`, and never the owner's password.
    pub app_database_url: Option<Secret>,
    /// File holding `app_database_url` (wins over it).
    pub app_database_url_file: Option<PathBuf>,
    /// PostgreSQL URL of the `netledger_system` role (as `app_database_url`).
    pub system_database_url: Option<Secret>,
    /// File holding `system_database_url` (wins over it).
    pub system_database_url_file: Option<PathBuf>,
    /// Password of the `netledger_app` role (none with trust or peer auth); `migrate` sets
    /// it, the other roles use it when `app_database_url` is not given.
    pub app_db_password: Option<Secret>,
    /// Password of the `netledger_system` role.
    pub system_db_password: Option<Secret>,
    /// NATS server URL.
    pub nats_url: String,
    /// HTTP listen address of the API.
    pub listen: SocketAddr,
    /// Where local state lives (generated dev keys, git repositories).
    pub data_dir: PathBuf,
    /// Production mode: refuses generated keys and default secrets.
    pub production: bool,
    /// Audit checkpoints.
    pub audit: AuditConfig,
    /// The NATS outbox relay.
    pub relay: RelayConfig,
    /// The device poller.
    pub poller: PollerConfig,
    /// Keys for secrets at rest (device credentials).
    pub secrets: SecretsConfig,
    /// REST API settings.
    pub api: ApiSettings,
    /// Device settings (`[devices]`): networks allowed for every tenant.
    pub devices: DevicesConfig,
    /// NATS credentials per role.
    pub nats: NatsConfig,
    /// The HTTP edge: trusted proxies, connection and stream limits, timeouts, metrics access.
    pub edge: EdgeConfig,
    /// Health endpoints of the roles without an API (`[health]`).
    pub health: HealthConfig,
    /// Workflow workers (`[worker]`): the firmware package server devices fetch from.
    pub worker: WorkerConfig,
}

/// Health endpoints (`[health]`) of `worker`, `poller` and `projector`: `GET /health/live`
/// and `GET /health/ready` on `listen` (the API serves its own on its listener).
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Address of the health endpoints; none by default (`netledger healthcheck` then has
    /// nothing to ask for these roles).
    pub listen: Option<SocketAddr>,
}

/// Workflow worker settings (`[worker]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Listen address of the read-only firmware package server devices fetch from.
    pub firmware_listen: SocketAddr,
    /// URL devices use to reach that server (default `http://<firmware_listen>`): behind
    /// NAT, a load balancer or in a container, the address devices see.
    pub firmware_base_url: Option<String>,
    /// On SIGTERM, how long running steps may take to reach a step boundary before the
    /// worker abandons them to lease expiry (keep it below the supervisor's stop timeout:
    /// compose `stop_grace_period`, Kubernetes `terminationGracePeriodSeconds`).
    #[serde(with = "humantime_serde_compat")]
    pub shutdown_grace: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            firmware_listen: SocketAddr::from(([127, 0, 0, 1], 8089)),
            firmware_base_url: None,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// NATS credentials (`[nats.api]`, `[nats.projector]`): each role that connects to NATS
/// presents its own. Set at most one of user + password, token or creds file per role;
/// none connects without credentials (a server without authorization accepts that).
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// The API (subscribes to the events stream for live-event wake-ups).
    pub api: NatsAuth,
    /// The projector (the outbox relay and the checkpointer publish).
    pub projector: NatsAuth,
}

/// One role's NATS credentials.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NatsAuth {
    /// User name (with `password`).
    pub user: Option<String>,
    /// Password of `user`.
    pub password: Option<Secret>,
    /// Authentication token.
    pub token: Option<Secret>,
    /// A NATS credentials file (user JWT + nkey seed, `nsc generate creds`).
    pub creds_file: Option<PathBuf>,
}

impl NatsAuth {
    /// Whether any credential is set.
    pub fn is_set(&self) -> bool {
        self.user.is_some()
            || self.password.is_some()
            || self.token.is_some()
            || self.creds_file.is_some()
    }
}

/// The HTTP edge (`[edge]`); defaults are those of `netledger_api::ApiConfig::development`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// Proxies (CIDRs or addresses) whose `X-Forwarded-For` is believed: the client is the
    /// right-most address not in this list. Empty: the peer address is the client.
    pub trusted_proxies: Vec<String>,
    /// Serve `/metrics` on this address only (not on the API's listener).
    pub metrics_listen: Option<SocketAddr>,
    /// Require `Authorization: Bearer <token>` on `/metrics`.
    pub metrics_token: Option<Secret>,
    /// Open TCP connections the API accepts at once.
    pub max_connections: usize,
    /// Time a client has to send the request head.
    #[serde(with = "humantime_serde_compat")]
    pub header_timeout: Duration,
    /// Time a client has to send the request body.
    #[serde(with = "humantime_serde_compat")]
    pub body_timeout: Duration,
    /// Password hashes (argon2id) computed at once; more wait, beyond a queue of as many
    /// again they are refused (503).
    pub max_concurrent_password_hashes: usize,
    /// Live-event streams per user or API key, per tenant and per process.
    pub sse_max_per_principal: usize,
    /// See `sse_max_per_principal`.
    pub sse_max_per_tenant: usize,
    /// See `sse_max_per_principal`.
    pub sse_max_streams: usize,
    /// How long an API-key lookup (valid or not) is cached.
    #[serde(with = "humantime_serde_compat")]
    pub api_key_cache_ttl: Duration,
    /// API-key lookups that reach the database, per client address per minute.
    pub api_key_lookups_per_minute: u32,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        let a = netledger_api::ApiConfig::development();
        Self {
            trusted_proxies: Vec::new(),
            metrics_listen: None,
            metrics_token: None,
            max_connections: a.max_connections,
            header_timeout: a.header_timeout,
            body_timeout: a.body_timeout,
            max_concurrent_password_hashes: a.max_concurrent_password_hashes,
            sse_max_per_principal: a.sse_max_per_principal,
            sse_max_per_tenant: a.sse_max_per_tenant,
            sse_max_streams: a.sse_max_streams,
            api_key_cache_ttl: a.api_key_cache_ttl,
            api_key_lookups_per_minute: a.api_key_lookups.max,
        }
    }
}

/// Device settings (`[devices]`), see docs/devices.md.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DevicesConfig {
    /// Networks every tenant's devices may be in although a default rule refuses them
    /// (loopback, link-local, unspecified, multicast), as CIDRs; each tenant adds its own
    /// with `PUT /api/v1/tenants/{id}/device-settings`. Empty by default; `all --demo-fleet` adds
    /// loopback for its simulated devices.
    pub allowed_networks: Vec<netledger_domain::device::network::Cidr>,
    /// Most bytes one tenant's firmware packages may take together (default 2 GiB).
    pub firmware_quota_bytes: Option<u64>,
}

impl Config {
    /// The operator's device-network policy: `[devices] allowed_networks`, and this
    /// configuration's own service endpoints (PostgreSQL, NATS, the API listen address),
    /// which no device may have. Host names are resolved once, here.
    pub fn device_network_policy(&self) -> netledger_domain::device::network::DeviceNetworkPolicy {
        use std::net::ToSocketAddrs as _;
        let mut endpoints: Vec<SocketAddr> = vec![self.listen];
        for (url, default_port) in [
            (self.database_url.expose(), 5432u16),
            (self.nats_url.as_str(), 4222),
        ] {
            let Some((host, port)) = url_host_port(url, default_port) else {
                continue;
            };
            match (host.as_str(), port).to_socket_addrs() {
                Ok(addrs) => endpoints.extend(addrs),
                Err(e) => {
                    tracing::warn!(host = %host, error = %e, "cannot resolve a service host; it is not in the device address check")
                }
            }
        }
        endpoints.sort();
        endpoints.dedup();
        netledger_domain::device::network::DeviceNetworkPolicy {
            allowed: self.devices.allowed_networks.clone(),
            service_endpoints: endpoints,
        }
    }
}

/// Host and port of `scheme://[user[:password]@]host[:port][/...]` (IPv6 in brackets).
fn url_host_port(url: &str, default_port: u16) -> Option<(String, u16)> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next()?;
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        (h, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default_port,
    };
    Some((host.to_owned(), port))
}

impl EdgeConfig {
    /// Writes these settings into the API's configuration; refuses a bad proxy CIDR.
    pub fn apply(&self, c: &mut netledger_api::ApiConfig) -> anyhow::Result<()> {
        c.trusted_proxies = self
            .trusted_proxies
            .iter()
            .map(|t| {
                netledger_api::ratelimit::Cidr::parse(t)
                    .map_err(|e| anyhow::anyhow!("edge.trusted_proxies: {e}"))
            })
            .collect::<anyhow::Result<_>>()?;
        c.metrics_listen = self.metrics_listen;
        c.metrics_token = self
            .metrics_token
            .as_ref()
            .map(|t| netledger_api::config::SecretString::new(t.expose().to_owned()));
        c.max_connections = self.max_connections;
        c.header_timeout = self.header_timeout;
        c.body_timeout = self.body_timeout;
        c.max_concurrent_password_hashes = self.max_concurrent_password_hashes;
        c.sse_max_per_principal = self.sse_max_per_principal;
        c.sse_max_per_tenant = self.sse_max_per_tenant;
        c.sse_max_streams = self.sse_max_streams;
        c.api_key_cache_ttl = self.api_key_cache_ttl;
        c.api_key_lookups.max = self.api_key_lookups_per_minute;
        Ok(())
    }
}

/// REST API settings (`[api]`); the rest of the API's knobs keep their defaults
/// (`netledger_api::ApiConfig::development`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    /// HS256 key for access tokens (at least 32 bytes); production, and any listen address
    /// other than loopback, refuse to start without. Outside production a random
    /// per-install secret is generated under `data_dir` when none is configured.
    pub jwt_secret: Option<Secret>,
    /// Absolute lifetime of a login session however often it is refreshed (default 12h).
    #[serde(with = "humantime_serde_compat")]
    pub session_max_lifetime: Duration,
    /// How long a session check is cached while NATS carries revocations (default 30s).
    #[serde(with = "humantime_serde_compat")]
    pub session_cache_ttl: Duration,
    /// How long a session check is cached while NATS is away (default 2s).
    #[serde(with = "humantime_serde_compat")]
    pub session_cache_fallback_ttl: Duration,
    /// Lifetime of an API key created without `expires_at` (default 90d).
    #[serde(with = "humantime_serde_compat")]
    pub api_key_default_ttl: Duration,
    /// Longest API key lifetime (default 365d); older keys stop working.
    #[serde(with = "humantime_serde_compat")]
    pub api_key_max_ttl: Duration,
    /// Mark the refresh cookie `Secure` (HTTPS only); production forces it on.
    pub cookie_secure: bool,
    /// Folder of the built web UI (`frontend/dist`) to serve at `/`; `--ui-dir` overrides.
    pub ui_dir: Option<PathBuf>,
    /// Serve HTTPS: the PEM certificate chain (leaf first). With `tls_key_file`; reloaded
    /// on SIGHUP (new connections get the new certificate; a bad pair keeps the old one).
    pub tls_cert_file: Option<PathBuf>,
    /// The PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        let d = netledger_api::ApiConfig::development();
        Self {
            jwt_secret: None,
            session_max_lifetime: d.session_max_lifetime,
            session_cache_ttl: d.session_cache_ttl,
            session_cache_fallback_ttl: d.session_cache_fallback_ttl,
            api_key_default_ttl: d.api_key_default_ttl,
            api_key_max_ttl: d.api_key_max_ttl,
            cookie_secure: false,
            ui_dir: None,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

impl ApiSettings {
    /// The API configuration these settings give (with the configured token secret, if any;
    /// [`api_config`] supplies the per-install one otherwise).
    pub fn to_api_config(&self, production: bool) -> netledger_api::ApiConfig {
        let mut c = netledger_api::ApiConfig::development();
        c.production = production;
        if let Some(secret) = &self.jwt_secret {
            c.jwt_secret = netledger_api::config::SecretString::new(secret.expose().to_owned());
        }
        c.cookie_secure = self.cookie_secure || production;
        c.session_max_lifetime = self.session_max_lifetime;
        c.session_cache_ttl = self.session_cache_ttl;
        c.session_cache_fallback_ttl = self.session_cache_fallback_ttl;
        c.api_key_default_ttl = self.api_key_default_ttl;
        c.api_key_max_ttl = self.api_key_max_ttl;
        c
    }
}

/// File (under `data_dir`) of the per-install token signing secret generated outside
/// production when `api.jwt_secret` is not configured.
pub const DEV_JWT_SECRET_FILE: &str = "jwt-secret.dev";

/// The API configuration of `config`. The token signing secret is `api.jwt_secret` when
/// configured; otherwise production refuses to start, and development generates a random
/// secret once under `data_dir` (`jwt-secret.dev`, mode 0600) and reuses it across
/// restarts (no public constant signs tokens). A listen address other than loopback is
/// refused without a configured secret of at least 32 bytes: a generated development setup
/// is for this machine only.
pub fn api_config(config: &Config) -> anyhow::Result<netledger_api::ApiConfig> {
    use anyhow::Context as _;
    let mut c = config.api.to_api_config(config.production);
    c.tls = match (&config.api.tls_cert_file, &config.api.tls_key_file) {
        (Some(cert), Some(key)) => Some(
            netledger_api::TlsServerConfig::load(netledger_api::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            })
            .context("api.tls_cert_file / api.tls_key_file")?,
        ),
        (None, None) => None,
        _ => anyhow::bail!(
            "set both api.tls_cert_file and api.tls_key_file (NETLEDGER_API_TLS_CERT_FILE, \
             NETLEDGER_API_TLS_KEY_FILE) to serve HTTPS, or neither"
        ),
    };
    // Served over HTTPS, the refresh cookie is HTTPS-only.
    c.cookie_secure |= c.tls.is_some();
    let min = netledger_api::config::MIN_PRODUCTION_SECRET_BYTES;
    let configured = config
        .api
        .jwt_secret
        .as_ref()
        .filter(|s| !s.expose().is_empty());
    if !config.listen.ip().is_loopback() && configured.is_none_or(|s| s.expose().len() < min) {
        anyhow::bail!(
            "refusing to listen on {} (not loopback) without a production-grade token secret: \
             set api.jwt_secret (NETLEDGER_API_JWT_SECRET) to at least {min} random bytes, e.g. \
             `openssl rand -hex 32` (the generated development secret is for 127.0.0.1 only)",
            config.listen
        );
    }
    if configured.is_some() {
        return Ok(c);
    }
    if config.production {
        anyhow::bail!(
            "production mode needs api.jwt_secret (NETLEDGER_API_JWT_SECRET): at least {min} \
             random bytes, e.g. `openssl rand -hex 32`"
        );
    }
    let path = config.data_dir.join(DEV_JWT_SECRET_FILE);
    if !path.exists() {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating {}", config.data_dir.display()))?;
        write_private(
            &path,
            netledger_api::config::SecretString::random().expose(),
        )?;
        tracing::warn!(path = %path.display(), "generated a development token signing secret (refused in production and on non-loopback addresses)");
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let secret = text.trim();
    if secret.len() < min {
        anyhow::bail!(
            "{} holds a {}-byte secret; it needs at least {min} (delete it to generate a new one)",
            path.display(),
            secret.len()
        );
    }
    c.jwt_secret = netledger_api::config::SecretString::new(secret.to_owned());
    Ok(c)
}

/// Audit checkpoint settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// File holding the hex ed25519 signing key; generated under `data_dir` outside
    /// production. Read only by the checkpointer (`projector`, `all`).
    pub signing_key_file: Option<PathBuf>,
    /// The public (verifying) keys the API checks checkpoints with: one hex ed25519 key, or
    /// `<key id>=<hex>` entries, one per signing key after rotations. The API never reads
    /// the signing key when this or `verifying_key_file` is set; production requires one of
    /// them for `api`.
    pub verifying_key: Option<String>,
    /// File holding the public keys, in the same form (wins over `verifying_key`; `keys
    /// init` and `keys rotate-audit-key` write `audit-signing.pub`). Outside production the
    /// default is `<data_dir>/audit-signing.pub`, written next to the generated signing key.
    pub verifying_key_file: Option<PathBuf>,
    /// Identifier recorded with each checkpoint: the verifier picks the public key by it.
    pub key_id: String,
    /// How often new events are covered by a checkpoint.
    #[serde(with = "humantime_serde_compat")]
    pub checkpoint_interval: Duration,
}

/// Relay settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// JetStream stream for events (subjects `<subject_prefix>.<tenant>.<category>.<type>`).
    pub stream: String,
    /// First subject token.
    pub subject_prefix: String,
    /// JetStream stream for published audit checkpoints.
    pub checkpoint_stream: String,
    /// Events read and published per round.
    pub batch: i64,
    /// Retention of the events stream in bytes (oldest discarded; -1: none). Default 1 GiB:
    /// the stream feeds live consumers, PostgreSQL is the record.
    pub stream_max_bytes: i64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: Secret::new("postgres://postgres@127.0.0.1:5432/netledger"),
            database_url_file: None,
            database_password: None,
            app_database_url: None,
            app_database_url_file: None,
            system_database_url: None,
            system_database_url_file: None,
            app_db_password: None,
            system_db_password: None,
            nats_url: "nats://127.0.0.1:4222".to_owned(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from(".netledger"),
            production: false,
            audit: AuditConfig::default(),
            relay: RelayConfig::default(),
            poller: PollerConfig::default(),
            secrets: SecretsConfig::default(),
            api: ApiSettings::default(),
            devices: DevicesConfig::default(),
            nats: NatsConfig::default(),
            edge: EdgeConfig::default(),
            health: HealthConfig::default(),
            worker: WorkerConfig::default(),
        }
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            signing_key_file: None,
            verifying_key: None,
            verifying_key_file: None,
            key_id: "dev-1".to_owned(),
            checkpoint_interval: Duration::from_secs(30),
        }
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            stream: "NETLEDGER_EVENTS".to_owned(),
            subject_prefix: "netledger".to_owned(),
            checkpoint_stream: "NETLEDGER_CHECKPOINTS".to_owned(),
            batch: 1_000,
            stream_max_bytes: 1 << 30,
        }
    }
}

/// Poller settings (`[poller]`); see docs/poller.md. Defaults are those of
/// [`netledger_poller::PollerOptions`].
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PollerConfig {
    /// Shards the fleet is split into (the first poller to start fixes the number).
    pub shards: u32,
    /// Shard lease lifetime without a heartbeat.
    #[serde(with = "humantime_serde_compat")]
    pub lease_ttl: Duration,
    /// Lease renewal and rebalancing period (well under `lease_ttl`).
    #[serde(with = "humantime_serde_compat")]
    pub heartbeat: Duration,
    /// Polls running at once.
    pub max_concurrent_polls: usize,
    /// Exports (and archive writes) running at once.
    pub max_concurrent_exports: usize,
    /// Bound on one poll (connect, login, status commands).
    #[serde(with = "humantime_serde_compat")]
    pub poll_timeout: Duration,
    /// Bound on TCP connect plus TLS handshake.
    #[serde(with = "humantime_serde_compat")]
    pub connect_timeout: Duration,
    /// Bound on one export and its archive write.
    #[serde(with = "humantime_serde_compat")]
    pub export_timeout: Duration,
    /// Fraction (0.0-0.5) by which each poll interval is stretched or shortened at random.
    pub jitter: f64,
    /// Consecutive failed polls that open a device's circuit breaker.
    pub breaker_failures: u32,
    /// First backoff of an open breaker (doubles per failure).
    #[serde(with = "humantime_serde_compat")]
    pub breaker_base_backoff: Duration,
    /// Largest breaker backoff.
    #[serde(with = "humantime_serde_compat")]
    pub breaker_max_backoff: Duration,
    /// Scheduled snapshot interval (an event only when the configuration changed).
    #[serde(with = "humantime_serde_compat")]
    pub snapshot_interval: Duration,
    /// Full export for a drift check at least this often, whatever the change indicator.
    #[serde(with = "humantime_serde_compat")]
    pub export_check_interval: Duration,
    /// Metric samples are written at least this often.
    #[serde(with = "humantime_serde_compat")]
    pub metrics_flush_interval: Duration,
    /// Days raw samples are kept.
    pub raw_retention_days: u32,
    /// Days 5-minute rollups are kept.
    pub rollup_retention_days: u32,
}

impl Default for PollerConfig {
    fn default() -> Self {
        let o = netledger_poller::PollerOptions::default();
        Self {
            shards: o.shards,
            lease_ttl: o.lease_ttl,
            heartbeat: o.heartbeat,
            max_concurrent_polls: o.max_concurrent_polls,
            max_concurrent_exports: o.max_concurrent_exports,
            poll_timeout: o.poll_timeout,
            connect_timeout: o.connect_timeout,
            export_timeout: o.export_timeout,
            jitter: o.jitter,
            breaker_failures: o.breaker.failures,
            breaker_base_backoff: o.breaker.base_backoff,
            breaker_max_backoff: o.breaker.max_backoff,
            snapshot_interval: o.snapshot_interval,
            export_check_interval: o.export_check_interval,
            metrics_flush_interval: o.metrics_flush_interval,
            raw_retention_days: o.raw_retention_days,
            rollup_retention_days: o.rollup_retention_days,
        }
    }
}

impl PollerConfig {
    /// The poller's options; `name` identifies this process among the pollers (host, pid).
    pub fn to_options(&self, name: &str) -> netledger_poller::PollerOptions {
        netledger_poller::PollerOptions {
            name: name.to_owned(),
            shards: self.shards,
            lease_ttl: self.lease_ttl,
            heartbeat: self.heartbeat,
            max_concurrent_polls: self.max_concurrent_polls,
            max_concurrent_exports: self.max_concurrent_exports,
            poll_timeout: self.poll_timeout,
            connect_timeout: self.connect_timeout,
            export_timeout: self.export_timeout,
            jitter: self.jitter,
            breaker: netledger_poller::BreakerOptions {
                failures: self.breaker_failures,
                base_backoff: self.breaker_base_backoff,
                max_backoff: self.breaker_max_backoff,
            },
            snapshot_interval: self.snapshot_interval,
            export_check_interval: self.export_check_interval,
            metrics_flush_interval: self.metrics_flush_interval,
            raw_retention_days: self.raw_retention_days,
            rollup_retention_days: self.rollup_retention_days,
            ..netledger_poller::PollerOptions::default()
        }
    }
}

/// Secrets at rest (`[secrets]`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// Device credential keys by key id: base64 of 32 random bytes each
    /// (`openssl rand -base64 32`). Keep old ids here until `rotate` re-encrypted everything.
    pub credential_keys: BTreeMap<String, Secret>,
    /// The key id new credentials are encrypted with (may be omitted with exactly one key).
    pub current_credential_key: Option<String>,
}

/// File (under `data_dir`) of the development credential key generated outside production.
pub const DEV_CREDENTIAL_KEY_FILE: &str = "credential-key.dev";
/// Key id of the generated development credential key.
pub const DEV_CREDENTIAL_KEY_ID: &str = "dev-local";

/// The device credential keys. Configured keys (`[secrets]`) are used as given; production
/// refuses to start without them. Outside production, a development key is generated once
/// under `data_dir` (id `dev-local`, file `credential-key.dev`, mode 0600) when none is
/// configured, and an existing development key stays readable next to configured ones so
/// its devices can be rotated to the configured key.
pub fn credential_keys(
    config: &Config,
) -> anyhow::Result<netledger_store::credentials::CredentialKeys> {
    use anyhow::Context as _;
    use netledger_store::credentials::{CredentialKeys, KeyMaterial};

    let secrets = &config.secrets;
    let mut keys: Vec<(String, KeyMaterial)> = Vec::new();
    for (id, text) in &secrets.credential_keys {
        keys.push((id.clone(), KeyMaterial::from_base64(id, text.expose())?));
    }
    let dev_path = config.data_dir.join(DEV_CREDENTIAL_KEY_FILE);
    if config.production {
        if keys.is_empty() {
            anyhow::bail!(
                "production mode needs device credential keys: set [secrets] credential_keys = {{ \"<id>\" = \"<base64 of 32 bytes>\" }} and current_credential_key (or NETLEDGER_SECRETS_CREDENTIAL_KEYS=<id>=<base64> and NETLEDGER_SECRETS_CURRENT_CREDENTIAL_KEY=<id>)"
            );
        }
    } else if !secrets.credential_keys.contains_key(DEV_CREDENTIAL_KEY_ID) {
        if !dev_path.exists() && keys.is_empty() {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("creating {}", config.data_dir.display()))?;
            write_private(&dev_path, &KeyMaterial::generate().to_base64())?;
            tracing::warn!(path = %dev_path.display(), key_id = DEV_CREDENTIAL_KEY_ID, "generated a development credential key (refused in production)");
        }
        if dev_path.exists() {
            let text = std::fs::read_to_string(&dev_path)
                .with_context(|| format!("reading {}", dev_path.display()))?;
            keys.push((
                DEV_CREDENTIAL_KEY_ID.to_owned(),
                KeyMaterial::from_base64(DEV_CREDENTIAL_KEY_ID, &text)
                    .with_context(|| format!("in {}", dev_path.display()))?,
            ));
        }
    }
    let current = match (
        &secrets.current_credential_key,
        secrets.credential_keys.len(),
    ) {
        (Some(id), _) => id.clone(),
        (None, 0) => DEV_CREDENTIAL_KEY_ID.to_owned(),
        (None, 1) => secrets
            .credential_keys
            .keys()
            .next()
            .cloned()
            .unwrap_or_default(),
        (None, _) => anyhow::bail!(
            "several credential keys are configured: set [secrets] current_credential_key to the one that encrypts new credentials"
        ),
    };
    Ok(CredentialKeys::new(&current, keys)?)
}

/// Why the configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// File path.
        path: PathBuf,
        /// IO error.
        source: std::io::Error,
    },
    /// The file is not valid (syntax, unknown key, wrong type).
    #[error("config file {path} is invalid: {message}")]
    Parse {
        /// File path.
        path: PathBuf,
        /// What the parser said, with the key and line.
        message: String,
    },
    /// An environment variable is unknown or has a bad value.
    #[error("environment variable {name}: {message}")]
    Env {
        /// Variable name.
        name: String,
        /// What is wrong.
        message: String,
    },
}

type Setter = fn(&mut Config, &str) -> Result<(), String>;

/// The `NETLEDGER_*` variables and the keys they set.
const ENV: &[(&str, Setter)] = &[
    ("NETLEDGER_API_JWT_SECRET", |c, v| {
        c.api.jwt_secret = Some(Secret::new(v));
        Ok(())
    }),
    ("NETLEDGER_API_SESSION_MAX_LIFETIME", |c, v| {
        c.api.session_max_lifetime = parse_duration(v)?;
        Ok(())
    }),
    ("NETLEDGER_API_SESSION_CACHE_TTL", |c, v| {
        c.api.session_cache_ttl = parse_duration(v)?;
        Ok(())
    }),
    ("NETLEDGER_API_SESSION_CACHE_FALLBACK_TTL", |c, v| {
        c.api.session_cache_fallback_ttl = parse_duration(v)?;
        Ok(())
    }),
    ("NETLEDGER_API_API_KEY_DEFAULT_TTL", |c, v| {
        c.api.api_key_default_ttl = parse_duration(v)?;
        Ok(())
    }),
    ("NETLEDGER_API_API_KEY_MAX_TTL", |c, v| {
        c.api.api_key_max_ttl = parse_duration(v)?;
        Ok(())
    }),
    ("NETLEDGER_DATABASE_URL", |c, v| {
        c.database_url = Secret::new(v);
        Ok(())
    }),
    ("NETLEDGER_DATABASE_URL_FILE", |c, v| {
        c.database_url_file = Some(PathBuf::from(v));
        Ok(())
    }),
    ("NETLEDGER_DATABASE_PASSWORD", |c, v| {
        c.database_password = Some(Secret::new(v));
        Ok(())
    }),
    ("NETLEDGER_APP_DATABASE_URL", |c, v| {
        c.app_database_url = Some(Secret::new(v));
        Ok(())
    }),
    ("NETLEDGER_APP_DATABASE_URL_FILE", |c, v| {
        c.app_database_url_file = Some(PathBuf::from(v));
        Ok(())
    }),
    ("NETLEDGER_SYSTEM_DATABASE_URL", |c, v| {
        c.system_database_url = Some(Secret::new(v));
        Ok(())
    }),
    ("NETLEDGER_SYSTEM_DATABASE_URL_FILE", |c, v| {
        c.system_database_url_file = Some(PathBuf::from(v));
        Ok(())
    }),
    ("NETLEDGER_APP_DB_PASSWORD", |c, v| {
        c.app_db_password = Some(Secret::new(v));
        Ok(())
    }),
    ("NETLEDGER_SYSTEM_DB_PASSWORD", |c, v| {
        c.system_db_password = Some(Secret::new(v));
        Ok(())
    }),
    ("NETLEDGER_NATS_URL", |c, v| {
        c.nats_url = v.to_owned();
        Ok(())
    }),
    ("NETLEDGER_LISTEN", |c, v| {
        c.listen = v
            .parse()
            .map_err(|e| format!("not a socket address like 127.0.0.1:8080: {e}"))?;
        Ok(())
    }),
    ("NETLEDGER_DATA_DIR", |c, v| {
        c.data_dir = PathBuf::from(v);
        Ok(())
    }),
    ("NETLEDGER_PRODUCTION", |c, v| {
        c.production = parse_bool(v)?;
        Ok(())
    }),
    ("NETLEDGER_AUDIT_SIGNING_KEY_FILE", |c, v| {
        c.audit.signing_key_file = Some(PathBuf::from(v));
        Ok(())
    }),
    ("NETLEDGER_AUDIT_VERIFYING_KEY", |c, v| {
        c.audit.verifying_key = Some(v.to_owned());
        Ok(())
    }),
    ("NETLEDGER_AUDIT_VERIFYING_KEY_FILE", |c, v| {
        c.audit.verifying_key_file = Some(PathBuf::from(v));
        Ok(())
    }),
    ("NETLEDGER_AUDIT_KEY_ID", |c, v| {
        c.audit.key_id = v.to_owned();
        Ok(())
    }),
    ("NETLEDGER_AUDIT_CHECKPOINT_INTERVAL", |c, v| {
        c.audit.checkpoint_interval =
            humantime::parse_duration(v).map_err(|e| format!("{e} (e.g. 30s, 5m)"))?;
        Ok(())
    }),
    ("NETLEDGER_RELAY_STREAM", |c, v| {
        c.relay.stream = v.to_owned();
        Ok(())
    }),
    ("NETLEDGER_RELAY_STREAM_MAX_BYTES", |c, v| {
        c.relay.stream_max_bytes = v
            .parse()
            .map_err(|e| format!("not a number of bytes (-1: no limit): {e}"))?;
        if c.relay.stream_max_bytes == 0 || c.relay.stream_max_bytes < -1 {
            return Err("must be positive, or -1 for no limit".to_owned());
        }
        Ok(())
    }),
    ("NETLEDGER_SECRETS_CURRENT_CREDENTIAL_KEY", |c, v| {
        c.secrets.current_credential_key = Some(v.to_owned());
        Ok(())
    }),
    ("NETLEDGER_SECRETS_CREDENTIAL_KEYS", |c, v| {
        // `<id>=<base64>[,<id>=<base64>...]` (base64 may end in `=`: split at the first).
        let mut keys = BTreeMap::new();
        for pair in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, key) = pair
                .split_once('=')
                .ok_or_else(|| "expected <id>=<base64>[,<id>=<base64>...]".to_owned())?;
            keys.insert(id.trim().to_owned(), Secret::new(key.trim()));
        }
        c.secrets.credential_keys = keys;
        Ok(())
    }),
    ("NETLEDGER_DEVICES_ALLOWED_NETWORKS", |c, v| {
        // `<cidr>[,<cidr>...]`
        c.devices.allowed_networks = v
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| netledger_domain::device::network::Cidr::parse(p).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        Ok(())
    }),
    ("NETLEDGER_DEVICES_FIRMWARE_QUOTA_BYTES", |c, v| {
        c.devices.firmware_quota_bytes = Some(
            v.parse()
                .map_err(|e| format!("not a number of bytes: {e}"))?,
        );
        Ok(())
    }),
    ("NETLEDGER_NATS_API_USER", |c, v| {
        c.nats.api.user = Some(v.to_owned());
        Ok(())
    }),
    ("NETLEDGER_NATS_API_PASSWORD", |c, v| {
        c.nats.api.password = Some(Secret::new(v));
        Ok(())
    }),
    ("NETLEDGER_NATS_API_TOKEN", |c, v| {
        c.nats.api.token = Some(Secret::new(v));
        Ok(())
    }),
    ("NETLEDGER_NATS_API_CREDS_FILE", |c, v| {
        c.nats.api.creds_file = Some(PathBuf::from(v));
        Ok(())
    }),
    ("NETLEDGER_NATS_PROJECTOR_USER", |c, v| {
        c.nats.projector.user = Some(v.to_owned());
        Ok(())
    }),
    ("NETLEDGER_NATS_PROJECTOR_PASSWORD", |c, v| {
        c.nats.projector.password = Some(Secret::new(v));
        Ok(())
    }),
    ("NETLEDGER_NATS_PROJECTOR_TOKEN", |c, v| {
        c.nats.projector.token = Some(Secret::new(v));
        Ok(())
    }),
    ("NETLEDGER_NATS_PROJECTOR_CREDS_FILE", |c, v| {
        c.nats.projector.creds_file = Some(PathBuf::from(v));
        Ok(())
    }),
    ("NETLEDGER_EDGE_TRUSTED_PROXIES", |c, v| {
        c.edge.trusted_proxies = v
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(())
    }),
    ("NETLEDGER_EDGE_METRICS_LISTEN", |c, v| {
        c.edge.metrics_listen = Some(
            v.parse()
                .map_err(|e| format!("not a socket address like 127.0.0.1:9100: {e}"))?,
        );
        Ok(())
    }),
    ("NETLEDGER_EDGE_METRICS_TOKEN", |c, v| {
        c.edge.metrics_token = Some(Secret::new(v));
        Ok(())
    }),
    ("NETLEDGER_EDGE_MAX_CONNECTIONS", |c, v| {
        c.edge.max_connections = v
            .parse()
            .map_err(|e| format!("not a positive number: {e}"))?;
        Ok(())
    }),
    ("NETLEDGER_API_COOKIE_SECURE", |c, v| {
        c.api.cookie_secure = parse_bool(v)?;
        Ok(())
    }),
    ("NETLEDGER_API_TLS_CERT_FILE", |c, v| {
        c.api.tls_cert_file = Some(PathBuf::from(v));
        Ok(())
    }),
    ("NETLEDGER_API_TLS_KEY_FILE", |c, v| {
        c.api.tls_key_file = Some(PathBuf::from(v));
        Ok(())
    }),
    ("NETLEDGER_API_UI_DIR", |c, v| {
        c.api.ui_dir = Some(PathBuf::from(v));
        Ok(())
    }),
    ("NETLEDGER_HEALTH_LISTEN", |c, v| {
        c.health.listen = Some(
            v.parse()
                .map_err(|e| format!("not a socket address like 0.0.0.0:8081: {e}"))?,
        );
        Ok(())
    }),
    ("NETLEDGER_WORKER_FIRMWARE_LISTEN", |c, v| {
        c.worker.firmware_listen = v
            .parse()
            .map_err(|e| format!("not a socket address like 0.0.0.0:8089: {e}"))?;
        Ok(())
    }),
    ("NETLEDGER_WORKER_FIRMWARE_BASE_URL", |c, v| {
        c.worker.firmware_base_url = Some(v.to_owned());
        Ok(())
    }),
    ("NETLEDGER_WORKER_SHUTDOWN_GRACE", |c, v| {
        c.worker.shutdown_grace =
            humantime::parse_duration(v).map_err(|e| format!("{e} (e.g. 10s, 45s)"))?;
        Ok(())
    }),
    ("NETLEDGER_POLLER_SHARDS", |c, v| {
        c.poller.shards = v
            .parse()
            .map_err(|e| format!("not a positive number: {e}"))?;
        Ok(())
    }),
];

/// Variables that belong to other parts of the platform or to the launcher, not to `Config`.
const ENV_ALLOWED_ELSEWHERE: &[&str] = &[
    "NETLEDGER_CONFIG",
    "NETLEDGER_LOG",
    "NETLEDGER_LOG_JSON",
    "NETLEDGER_BOOTSTRAP_ADMIN_EMAIL",
    "NETLEDGER_BOOTSTRAP_ADMIN_PASSWORD",
    "NETLEDGER_BOOTSTRAP_ADMIN_PASSWORD_FILE",
    "NETLEDGER_DEMO_APPROVER_EMAIL",
    "NETLEDGER_DEMO_APPROVER_PASSWORD",
    "NETLEDGER_DEMO_APPROVER_PASSWORD_FILE",
];

/// Variables the command line reads (`#[arg(env = ...)]` in `main.rs`), listed so that the
/// deployment documents can be checked against everything the binary reads.
pub const CLI_ENV: &[&str] = &[
    "NETLEDGER_CONFIG",
    "NETLEDGER_LOG_JSON",
    "DATABASE_URL",
    "NATS_URL",
];

/// Every variable the binary reads, by name: the `NETLEDGER_*` table, the launcher's and the
/// command line's. Each `NETLEDGER_*` one of the table may also be given as `<NAME>_FILE`
/// (the value read from that file), see [`Config::load`].
pub fn known_variables() -> Vec<&'static str> {
    ENV.iter()
        .map(|(n, _)| *n)
        .chain(ENV_ALLOWED_ELSEWHERE.iter().copied())
        .chain(CLI_ENV.iter().copied())
        .collect()
}

/// The process environment as text for [`Config::load`] (`std::env::vars` panics on a value
/// that is not UTF-8): a variable the binary reads (`NETLEDGER_*`, `DATABASE_URL`,
/// `NATS_URL`) that is not UTF-8 is an error naming it; any other such variable is skipped.
pub fn environment() -> anyhow::Result<Vec<(String, String)>> {
    utf8_environment(std::env::vars_os())
}

fn utf8_environment(
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> anyhow::Result<Vec<(String, String)>> {
    let read = |n: &str| n.starts_with("NETLEDGER_") || CLI_ENV.contains(&n);
    let mut out = Vec::new();
    for (name, value) in vars {
        match (name.into_string(), value.into_string()) {
            (Ok(name), Ok(value)) => out.push((name, value)),
            (Ok(name), Err(_)) if read(&name) => {
                anyhow::bail!(
                    "environment variable {name} is not valid UTF-8; set it to UTF-8 text"
                )
            }
            (Err(name), _) if read(&name.to_string_lossy()) => anyhow::bail!(
                "an environment variable named like {} is not valid UTF-8; unset it",
                name.to_string_lossy()
            ),
            _ => {}
        }
    }
    Ok(out)
}

/// A value given through a `<NAME>_FILE` variable: the file's text without its trailing
/// line break (a secret written by `echo` or an editor), refused when empty.
pub fn read_value_file(path: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let value = text.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        return Err(format!("{path} is empty"));
    }
    Ok(value.to_owned())
}

fn parse_duration(v: &str) -> Result<Duration, String> {
    humantime::parse_duration(v).map_err(|e| format!("{e} (e.g. 30s, 12h, 90d)"))
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        other => Err(format!("`{other}` is not a boolean (use true or false)")),
    }
}

impl Config {
    /// Parses a TOML document over the defaults.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Builds the configuration: defaults, then `file` if given, then the `env` pairs
    /// (normally [`environment`]).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Self::from_toml(&text, path)?
            }
            None => Self::default(),
        };
        let env: Vec<(String, String)> = env.into_iter().collect();
        for (name, value) in &env {
            if !name.starts_with("NETLEDGER_") || ENV_ALLOWED_ELSEWHERE.contains(&name.as_str()) {
                continue;
            }
            // `<NAME>_FILE`: the value of `<NAME>` read from a file (Docker and Kubernetes
            // secrets), for every variable without a `_FILE` twin of its own.
            let (name, value) = match name.strip_suffix("_FILE") {
                Some(base)
                    if !ENV.iter().any(|(n, _)| n == name)
                        && ENV.iter().any(|(n, _)| *n == base) =>
                {
                    if env.iter().any(|(n, _)| n == base) {
                        return Err(ConfigError::Env {
                            name: name.clone(),
                            message: format!("{base} is set too; set one of the two"),
                        });
                    }
                    let value = read_value_file(value).map_err(|message| ConfigError::Env {
                        name: name.clone(),
                        message,
                    })?;
                    (base.to_owned(), value)
                }
                _ => (name.clone(), value.clone()),
            };
            let Some((_, set)) = ENV.iter().find(|(n, _)| *n == name) else {
                let known: Vec<&str> = ENV
                    .iter()
                    .map(|(n, _)| *n)
                    .chain(ENV_ALLOWED_ELSEWHERE.iter().copied())
                    .collect();
                return Err(ConfigError::Env {
                    name,
                    message: format!("unknown variable; known ones are {}", known.join(", ")),
                });
            };
            set(&mut config, &value).map_err(|message| ConfigError::Env { name, message })?;
        }
        Ok(config)
    }
}

/// A database role's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbRole {
    /// `netledger_app`: tenant-scoped reads and appends under row-level security.
    App,
    /// `netledger_system`: cross-tenant reads (relay, projectors, checkpointer, poller).
    System,
}

impl DbRole {
    /// The PostgreSQL role name.
    pub fn role_name(self) -> &'static str {
        match self {
            Self::App => "netledger_app",
            Self::System => "netledger_system",
        }
    }
}

/// A secret given inline or as a file (the file wins; surrounding whitespace is trimmed).
fn inline_or_file(
    inline: Option<&Secret>,
    file: Option<&Path>,
    what: &str,
) -> anyhow::Result<Option<Secret>> {
    use anyhow::Context as _;
    match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {what} from {}", path.display()))?;
            Ok(Some(Secret::new(text.trim())))
        }
        None => Ok(inline.cloned()),
    }
}

impl Config {
    /// The owner's URL (`database_url_file`, else `database_url`). Only the roles that
    /// migrate need it; the others call it only to derive a role URL that is not configured.
    pub fn owner_url(&self) -> anyhow::Result<Secret> {
        Ok(inline_or_file(
            Some(&self.database_url),
            self.database_url_file.as_deref(),
            "the owner's database URL",
        )?
        .unwrap_or_default())
    }

    /// The configured URL of `role` (`<role>_database_url_file`, else
    /// `<role>_database_url`), or `None` to derive it from the owner's URL.
    pub fn role_url(&self, role: DbRole) -> anyhow::Result<Option<Secret>> {
        let (inline, file) = match role {
            DbRole::App => (&self.app_database_url, &self.app_database_url_file),
            DbRole::System => (&self.system_database_url, &self.system_database_url_file),
        };
        inline_or_file(
            inline.as_ref(),
            file.as_deref(),
            &format!("the {} database URL", role.role_name()),
        )
    }

    /// The password configured for `role` (used only when its URL is derived).
    pub fn role_password(&self, role: DbRole) -> Option<&Secret> {
        match role {
            DbRole::App => self.app_db_password.as_ref(),
            DbRole::System => self.system_db_password.as_ref(),
        }
    }
}

/// `url` without its user information (`postgres://user:pw@host/db` -> `postgres://host/db`):
/// a role URL derived from the owner's must not carry the owner's name or password.
pub fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rfind('@') {
        Some(at) => format!("{scheme}://{}{tail}", &authority[at + 1..]),
        None => url.to_owned(),
    }
}

mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("`{text}`: {e} (e.g. 30s, 5m)")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worker's shutdown grace is configurable (it was fixed at 10 s).
    #[test]
    fn worker_shutdown_grace_is_configurable() {
        let config = Config::load(None, Vec::<(String, String)>::new()).unwrap();
        assert_eq!(config.worker.shutdown_grace, Duration::from_secs(10));
        let config = Config::load(
            None,
            [(
                "NETLEDGER_WORKER_SHUTDOWN_GRACE".to_owned(),
                "45s".to_owned(),
            )],
        )
        .unwrap();
        assert_eq!(config.worker.shutdown_grace, Duration::from_secs(45));
        let err = Config::load(
            None,
            [(
                "NETLEDGER_WORKER_SHUTDOWN_GRACE".to_owned(),
                "soon".to_owned(),
            )],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("NETLEDGER_WORKER_SHUTDOWN_GRACE"), "{err}");
    }

    /// A non-UTF-8 value of a variable the binary reads is an error naming it (not a
    /// panic); other non-UTF-8 variables are skipped.
    #[cfg(unix)]
    #[test]
    fn non_utf8_environment_is_an_error_for_our_variables_only() {
        use std::ffi::OsString;
        use std::os::unix::ffi::OsStringExt as _;
        let bad = || OsString::from_vec(vec![0x66, 0xff, 0x6f]);
        let ok = utf8_environment([
            (OsString::from("LANG"), bad()),
            (
                OsString::from("NETLEDGER_LISTEN"),
                OsString::from("127.0.0.1:1"),
            ),
        ])
        .unwrap();
        assert_eq!(
            ok,
            [("NETLEDGER_LISTEN".to_owned(), "127.0.0.1:1".to_owned())]
        );
        let err = utf8_environment([(OsString::from("NETLEDGER_DATA_DIR"), bad())])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("NETLEDGER_DATA_DIR") && err.contains("UTF-8"),
            "{err}"
        );
        assert!(utf8_environment([(OsString::from("DATABASE_URL"), bad())]).is_err());
    }

    #[test]
    fn the_example_config_parses() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../compose/netledger.example.toml");
        let config = Config::load(Some(&path), Vec::new()).unwrap();
        assert_eq!(config.relay.stream, "NETLEDGER_EVENTS");
        assert_eq!(config.audit.checkpoint_interval, Duration::from_secs(30));
    }

    #[test]
    fn the_device_policy_holds_the_service_endpoints_and_allowed_networks() {
        let config = Config::load(
            None,
            vec![
                (
                    "NETLEDGER_DATABASE_URL".to_owned(),
                    "postgres://u:p@127.0.0.1:6543/x".to_owned(),
                ),
                ("NETLEDGER_NATS_URL".to_owned(), "nats://[::1]".to_owned()),
                (
                    "NETLEDGER_DEVICES_ALLOWED_NETWORKS".to_owned(),
                    "127.0.0.0/8, ::1".to_owned(),
                ),
            ],
        )
        .unwrap();
        let p = config.device_network_policy();
        let want: Vec<SocketAddr> = vec![
            "127.0.0.1:6543".parse().unwrap(),
            "127.0.0.1:8080".parse().unwrap(),
            "[::1]:4222".parse().unwrap(),
        ];
        assert_eq!(p.service_endpoints, want);
        assert_eq!(p.allowed.len(), 2);
        assert!(p.check("127.0.0.1".parse().unwrap(), 8728).is_ok());
        assert!(p.check("127.0.0.1".parse().unwrap(), 6543).is_err());
        let bad = Config::load(
            None,
            vec![(
                "NETLEDGER_DEVICES_ALLOWED_NETWORKS".to_owned(),
                "127.0.0.0/99".to_owned(),
            )],
        );
        assert!(bad.is_err());
    }

    #[test]
    fn unknown_keys_and_variables_are_refused() {
        let err = Config::from_toml("listne = \"1.2.3.4:5\"", Path::new("x.toml")).unwrap_err();
        assert!(err.to_string().contains("listne"), "{err}");
        let err =
            Config::load(None, vec![("NETLEDGER_LISTNE".to_owned(), "x".to_owned())]).unwrap_err();
        assert!(err.to_string().contains("NETLEDGER_LISTEN"), "{err}");
        let err = Config::load(
            None,
            vec![("NETLEDGER_LISTEN".to_owned(), "nope".to_owned())],
        )
        .unwrap_err();
        assert!(err.to_string().contains("socket address"), "{err}");
    }

    #[test]
    fn env_overrides_file_and_secrets_do_not_print() {
        let config = Config::load(
            None,
            vec![
                (
                    "NETLEDGER_DATABASE_URL".to_owned(),
                    "postgres://u:hunter2@db/x".to_owned(),
                ),
                ("PATH".to_owned(), "/bin".to_owned()),
            ],
        )
        .unwrap();
        assert_eq!(config.database_url.expose(), "postgres://u:hunter2@db/x");
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn the_example_poller_and_secrets_sections_parse() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../compose/netledger.example.toml");
        let config = Config::load(Some(&path), Vec::new()).unwrap();
        assert_eq!(config.poller, PollerConfig::default());
        let options = config.poller.to_options("p");
        assert_eq!(options.breaker.max_backoff, Duration::from_secs(1800));
        assert_eq!(options.snapshot_interval, Duration::from_secs(86_400));
        assert!(config.secrets.credential_keys.is_empty());
    }

    #[test]
    fn the_token_secret_is_generated_per_install_and_refused_off_loopback() {
        // Issue #15 item 11: no public constant signs tokens, and a generated secret never
        // serves beyond this machine.
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        let first = api_config(&config).unwrap();
        let file = config.data_dir.join(DEV_JWT_SECRET_FILE);
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(first.jwt_secret.expose(), text.trim());
        assert!(text.trim().len() >= netledger_api::config::MIN_PRODUCTION_SECRET_BYTES);
        assert_ne!(
            first.jwt_secret.expose(),
            "netledger-development-secret-do-not-use-in-production"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Reused across restarts.
        assert_eq!(api_config(&config).unwrap().jwt_secret, first.jwt_secret);
        // Another install has another secret.
        let other = Config {
            data_dir: dir.path().join("other"),
            ..Config::default()
        };
        assert_ne!(api_config(&other).unwrap().jwt_secret, first.jwt_secret);

        // Not loopback: a configured secret of 32 bytes or more, nothing less.
        let mut exposed = Config {
            data_dir: dir.path().join("exposed"),
            listen: "0.0.0.0:8080".parse().unwrap(),
            ..Config::default()
        };
        let err = api_config(&exposed).unwrap_err().to_string();
        assert!(err.contains("not loopback"), "{err}");
        assert!(!exposed.data_dir.join(DEV_JWT_SECRET_FILE).exists());
        exposed.api.jwt_secret = Some(Secret::new("too-short"));
        assert!(api_config(&exposed).is_err());
        exposed.api.jwt_secret = Some(Secret::new("x".repeat(32)));
        assert_eq!(
            api_config(&exposed).unwrap().jwt_secret.expose(),
            "x".repeat(32)
        );

        // Production: configured or nothing.
        let prod = Config {
            production: true,
            data_dir: dir.path().join("prod"),
            ..Config::default()
        };
        let err = api_config(&prod).unwrap_err().to_string();
        assert!(err.contains("api.jwt_secret"), "{err}");
    }

    #[test]
    fn session_and_api_key_lifetimes_are_configurable() {
        let config = Config::load(
            None,
            vec![
                (
                    "NETLEDGER_API_SESSION_MAX_LIFETIME".to_owned(),
                    "7d".to_owned(),
                ),
                (
                    "NETLEDGER_API_API_KEY_DEFAULT_TTL".to_owned(),
                    "30d".to_owned(),
                ),
                ("NETLEDGER_API_API_KEY_MAX_TTL".to_owned(), "60d".to_owned()),
            ],
        )
        .unwrap();
        let api = config.api.to_api_config(false);
        assert_eq!(api.session_max_lifetime, Duration::from_secs(7 * 86_400));
        assert_eq!(api.api_key_default_ttl, Duration::from_secs(30 * 86_400));
        assert_eq!(api.api_key_max_ttl, Duration::from_secs(60 * 86_400));
        let toml = Config::from_toml(
            "[api]\nsession_max_lifetime = \"8h\"\napi_key_max_ttl = \"180d\"\n",
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(toml.api.session_max_lifetime, Duration::from_secs(8 * 3600));
        assert_eq!(toml.api.api_key_max_ttl, Duration::from_secs(180 * 86_400));
        assert_eq!(
            toml.api.api_key_default_ttl,
            ApiSettings::default().api_key_default_ttl
        );
    }

    #[test]
    fn credential_keys_dev_key_production_refusal_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        // Outside production a development key is generated once, then reused.
        let first = credential_keys(&config).unwrap();
        assert_eq!(first.current_key_id(), DEV_CREDENTIAL_KEY_ID);
        let file = config.data_dir.join(DEV_CREDENTIAL_KEY_FILE);
        let text = std::fs::read_to_string(&file).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (t, d) = (
            netledger_domain::TenantId::new_random(),
            netledger_domain::DeviceId::new_random(),
        );
        let sealed = first.seal(t, d, "pw").unwrap();
        let again = credential_keys(&config).unwrap();
        assert_eq!(again.open(t, d, &sealed).unwrap().expose(), "pw");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
        assert!(!format!("{again:?}").contains(text.trim()));

        // Configured keys by environment (base64 padding survives); the dev key stays
        // readable so its devices can be rotated.
        let key = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
        config = Config::load(
            None,
            vec![
                (
                    "NETLEDGER_SECRETS_CREDENTIAL_KEYS".to_owned(),
                    format!("k1={key}"),
                ),
                (
                    "NETLEDGER_DATA_DIR".to_owned(),
                    config.data_dir.display().to_string(),
                ),
            ],
        )
        .unwrap();
        assert!(!format!("{config:?}").contains(key));
        let configured = credential_keys(&config).unwrap();
        assert_eq!(configured.current_key_id(), "k1");
        assert!(configured.has_key(DEV_CREDENTIAL_KEY_ID));
        assert_eq!(configured.open(t, d, &sealed).unwrap().expose(), "pw");

        // Production: no generated keys, a clear refusal without configured ones.
        let prod = Config {
            production: true,
            data_dir: dir.path().join("prod"),
            ..Config::default()
        };
        let err = credential_keys(&prod).unwrap_err().to_string();
        assert!(err.contains("credential_keys"), "{err}");
        assert!(!prod.data_dir.join(DEV_CREDENTIAL_KEY_FILE).exists());
        // Several keys need the current one named.
        let mut two = config.clone();
        two.secrets
            .credential_keys
            .insert("k2".to_owned(), Secret::new(key));
        let err = credential_keys(&two).unwrap_err().to_string();
        assert!(err.contains("current_credential_key"), "{err}");
    }

    /// Every `NETLEDGER_*` variable may come from a file (`<NAME>_FILE`): the file's text
    /// without its line break; both forms at once, an empty file or a missing one are
    /// refused with the variable's name.
    #[test]
    fn any_variable_may_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("jwt");
        std::fs::write(&secret, "0123456789abcdef0123456789abcdef\n").unwrap();
        let listen = dir.path().join("listen");
        std::fs::write(&listen, "0.0.0.0:9000").unwrap();
        let env = |pairs: &[(&str, &std::path::Path)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.display().to_string()))
                .collect()
        };
        let config = Config::load(
            None,
            env(&[
                ("NETLEDGER_API_JWT_SECRET_FILE", &secret),
                ("NETLEDGER_LISTEN_FILE", &listen),
            ]),
        )
        .unwrap();
        assert_eq!(
            config.api.jwt_secret.unwrap().expose(),
            "0123456789abcdef0123456789abcdef"
        );
        assert_eq!(config.listen.port(), 9000);
        // A variable with its own `_FILE` twin keeps it (read lazily, by path).
        let config = Config::load(None, env(&[("NETLEDGER_DATABASE_URL_FILE", &secret)])).unwrap();
        assert_eq!(config.database_url_file.as_deref(), Some(secret.as_path()));

        let mut both = env(&[("NETLEDGER_API_JWT_SECRET_FILE", &secret)]);
        both.push(("NETLEDGER_API_JWT_SECRET".into(), "x".repeat(40)));
        let err = Config::load(None, both).unwrap_err().to_string();
        assert!(
            err.contains("NETLEDGER_API_JWT_SECRET_FILE") && err.contains("one of"),
            "{err}"
        );

        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let err = Config::load(None, env(&[("NETLEDGER_API_JWT_SECRET_FILE", &empty)]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is empty"), "{err}");
        let missing = dir.path().join("missing");
        let err = Config::load(None, env(&[("NETLEDGER_API_JWT_SECRET_FILE", &missing)]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("NETLEDGER_API_JWT_SECRET_FILE") && err.contains("cannot read"),
            "{err}"
        );
        // `_FILE` of an unknown variable is an unknown variable.
        let err = Config::load(None, env(&[("NETLEDGER_NOPE_FILE", &secret)]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variable"), "{err}");
    }

    /// Issue #16: every variable the binary reads is explained in compose/.env.example and
    /// docs/deployment.md (a new variable fails here until it is documented).
    #[test]
    fn every_variable_the_binary_reads_is_documented() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let main = std::fs::read_to_string(root.join("services/netledger/src/main.rs")).unwrap();
        // The command line's variables are all in CLI_ENV.
        for part in main.split("env = \"").skip(1) {
            let name = part.split('"').next().unwrap();
            assert!(
                CLI_ENV.contains(&name),
                "main.rs reads {name}: add it to CLI_ENV"
            );
        }
        let mut missing = Vec::new();
        for doc in ["compose/.env.example", "docs/deployment.md"] {
            let text = std::fs::read_to_string(root.join(doc)).unwrap();
            for name in known_variables() {
                let listed = text.match_indices(name).any(|(i, _)| {
                    let next = text[i + name.len()..].chars().next();
                    !next.is_some_and(|c| c.is_ascii_uppercase() || c == '_')
                });
                if !listed {
                    missing.push(format!("{doc}: {name}"));
                }
            }
        }
        assert!(missing.is_empty(), "not documented: {missing:#?}");
    }

    /// HTTPS takes both files or neither, a pair that does not load is refused at start
    /// naming the file, and over HTTPS the refresh cookie is `Secure`.
    #[test]
    fn https_needs_both_files_that_load() {
        let dir = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let (cert_file, key_file) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert_file, cert.cert.pem()).unwrap();
        std::fs::write(&key_file, cert.key_pair.serialize_pem()).unwrap();
        let mut config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        let plain = api_config(&config).unwrap();
        assert!(plain.tls.is_none() && !plain.cookie_secure);

        config.api.tls_cert_file = Some(cert_file.clone());
        let err = api_config(&config).unwrap_err().to_string();
        assert!(
            err.contains("set both api.tls_cert_file and api.tls_key_file"),
            "{err}"
        );

        config.api.tls_key_file = Some(dir.path().join("missing.key"));
        let err = format!("{:#}", api_config(&config).unwrap_err());
        assert!(err.contains("missing.key"), "{err}");

        config.api.tls_key_file = Some(key_file);
        let https = api_config(&config).unwrap();
        assert!(https.tls.is_some());
        assert!(
            https.cookie_secure,
            "the refresh cookie is HTTPS-only over HTTPS"
        );
    }
}

//! The state every handler shares: pools, the event store, the NATS client, the clock,
//! settings, token keys, rate limiters and metrics. Cheap to clone (one `Arc`).

use std::sync::Arc;

use netledger_domain::clock::Clock;
use netledger_store::{EventStore, Pools};
use time::OffsetDateTime;
use tokio::sync::OnceCell;

use crate::auth::JwtKeys;
use crate::config::{ApiConfig, ApiConfigError};
use crate::metrics::Metrics;
use crate::ratelimit::Limiter;

/// What the API is built from; the binary connects these, tests build their own.
#[derive(Clone)]
pub struct ApiDeps {
    /// The app (RLS, tenant per transaction) and system (read-all) pools.
    pub pools: Pools,
    /// The event store's write side (started on the app pool).
    pub store: EventStore,
    /// NATS, for live events across API processes; `None` makes live events poll the
    /// event store instead (single-process setups and tests).
    pub nats: Option<async_nats::Client>,
    /// The clock (system in production, manual in tests).
    pub clock: Arc<dyn Clock>,
    /// The config history (git); `None` makes config text, diff and as-of routes 503.
    pub archive: Option<netledger_archive::Archive>,
    /// The firmware cache directory (`<dir>/<version>/<package file>`, the layout the
    /// firmware workflow reads); `None` makes the firmware routes 503.
    pub firmware_dir: Option<std::path::PathBuf>,
    /// The audit checkpoint verifying key, for `/audit/verify`; without it only the hash
    /// chains are verified.
    pub audit_key: Option<netledger_domain::audit::TrustedKeys>,
    /// Device commands (register, update, tags, credentials, remove); `None` makes the
    /// device write routes 503.
    pub devices: Option<netledger_store::devices::DeviceCommands>,
    /// The workflow engine, with the definitions this process may start (backup,
    /// config_push, firmware_upgrade, rollout); `None` makes the workflow and rollout write
    /// routes 503.
    pub engine: Option<netledger_engine::Engine>,
}

impl ApiDeps {
    /// The required parts; everything optional off (set the public fields to add them).
    pub fn new(pools: Pools, store: EventStore, clock: Arc<dyn Clock>) -> Self {
        Self {
            pools,
            store,
            nats: None,
            clock,
            archive: None,
            firmware_dir: None,
            audit_key: None,
            devices: None,
            engine: None,
        }
    }
}

impl std::fmt::Debug for ApiDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiDeps")
            .field("nats", &self.nats.is_some())
            .finish_non_exhaustive()
    }
}

/// Why the state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ApiStateError {
    /// The settings are refused.
    #[error(transparent)]
    Config(#[from] ApiConfigError),
    /// The metrics registry refused a collector.
    #[error("metrics registry")]
    Metrics(#[from] prometheus::Error),
}

/// The shared state of the API's handlers.
#[derive(Clone)]
pub struct ApiState(Arc<Inner>);

pub(crate) struct Inner {
    deps: ApiDeps,
    sessions: crate::sessions::SessionCache,
    config: ApiConfig,
    jwt: JwtKeys,
    metrics: Metrics,
    login_ip: Limiter,
    login_account: Limiter,
    token_ip: Limiter,
    dummy_hash: OnceCell<String>,
    idempotency_key: crate::idempotency::HashKey,
    shutdown: tokio::sync::watch::Sender<bool>,
    live_limits: Arc<crate::routes::live::LiveLimits>,
    key_cache: crate::keycache::KeyCache,
    key_use_days: crate::security::KeyUseDays,
    health_cache: crate::routes::health::HealthCache,
    notifier: std::sync::OnceLock<netledger_store::Notifier>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("config", &self.0.config)
            .finish_non_exhaustive()
    }
}

impl Inner {
    pub(crate) fn sessions(&self) -> &crate::sessions::SessionCache {
        &self.sessions
    }

    /// Drops what `r` ends from this process's caches: sessions, and the API-key lookups it
    /// concerns (a user's revocation ends the keys that user created, so every cached key
    /// lookup goes: the cache does not know the creators).
    pub(crate) fn apply_revocation(&self, r: crate::sessions::Revocation) {
        self.sessions.apply(r);
        match r {
            crate::sessions::Revocation::User(_) => self.key_cache.clear(),
            crate::sessions::Revocation::ApiKey(id) => self.key_cache.forget_key(id),
            crate::sessions::Revocation::Session(_) => {}
        }
    }
}

impl ApiState {
    /// Builds the state after validating `config` (production refuses default or short
    /// secrets).
    pub fn new(deps: ApiDeps, config: ApiConfig) -> Result<Self, ApiStateError> {
        config.validate()?;
        crate::ratelimit::PasswordGate::process(config.max_concurrent_password_hashes);
        let jwt = JwtKeys::new(config.jwt_secret.expose().as_bytes(), &config.jwt_issuer);
        let clock = deps.clock.clone();
        let sessions = crate::sessions::SessionCache::new(
            config.session_cache_ttl,
            config.session_cache_fallback_ttl,
        );
        let listen = deps.nats.clone().map(|client| {
            (
                client,
                crate::sessions::subject(&config.nats_subject_prefix),
            )
        });
        let key_cache = crate::keycache::KeyCache::new(
            config.api_key_cache_ttl,
            config.api_key_lookups,
            clock.clone(),
        );
        let state = Self(Arc::new(Inner {
            sessions,
            login_ip: Limiter::new(config.login_per_ip, clock.clone()),
            login_account: Limiter::new(config.login_per_account, clock.clone()),
            token_ip: Limiter::new(config.token_per_ip, clock),
            metrics: Metrics::new()?,
            jwt,
            idempotency_key: crate::idempotency::HashKey::derive(
                config.jwt_secret.expose().as_bytes(),
            ),
            deps,
            dummy_hash: OnceCell::new(),
            shutdown: tokio::sync::watch::channel(false).0,
            live_limits: crate::routes::live::LiveLimits::new(
                config.sse_max_per_principal,
                config.sse_max_per_tenant,
                config.sse_max_streams,
            ),
            notifier: std::sync::OnceLock::new(),
            key_cache,
            key_use_days: Default::default(),
            health_cache: Default::default(),
            config,
        }));
        if let Some((client, subject)) = listen {
            crate::sessions::spawn_listener(Arc::downgrade(&state.0), client, subject);
        }
        Ok(state)
    }

    /// The session-check cache and revocation feed.
    pub fn sessions(&self) -> &crate::sessions::SessionCache {
        &self.0.sessions
    }

    /// Makes `r` take effect: drops it from this process's cache, tells this process's
    /// live-event watchers and publishes it to the other API processes (best effort: without
    /// NATS they notice within the short cache lifetime). Call after the commit.
    pub async fn revoke(&self, r: crate::sessions::Revocation) {
        self.0.apply_revocation(r);
        if let Some(client) = self.nats() {
            let subject = crate::sessions::subject(&self.0.config.nats_subject_prefix);
            match serde_json::to_vec(&r) {
                Ok(payload) => {
                    if let Err(e) = client.publish(subject, payload.into()).await {
                        tracing::warn!(error = %e, revocation = ?r, "cannot publish a revocation; other API processes notice it within the short cache lifetime");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot encode a revocation"),
            }
        }
    }

    /// The pools.
    pub fn pools(&self) -> &Pools {
        &self.0.deps.pools
    }
    /// The event store.
    pub fn store(&self) -> &EventStore {
        &self.0.deps.store
    }
    /// The NATS client, if configured.
    pub fn nats(&self) -> Option<&async_nats::Client> {
        self.0.deps.nats.as_ref()
    }
    /// The config history, if configured.
    pub fn archive(&self) -> Option<&netledger_archive::Archive> {
        self.0.deps.archive.as_ref()
    }
    /// The firmware cache directory, if configured.
    pub fn firmware_dir(&self) -> Option<&std::path::Path> {
        self.0.deps.firmware_dir.as_deref()
    }
    /// The audit verifying key, if configured.
    pub fn audit_key(&self) -> Option<&netledger_domain::audit::TrustedKeys> {
        self.0.deps.audit_key.as_ref()
    }
    /// The device commands, or 503.
    pub fn devices(&self) -> Result<&netledger_store::devices::DeviceCommands, crate::ApiError> {
        self.0.deps.devices.as_ref().ok_or_else(|| {
            crate::ApiError::unavailable(
                "device commands are not configured in this process (credential keys missing?)",
            )
        })
    }
    /// The workflow engine, or 503.
    pub fn engine(&self) -> Result<&netledger_engine::Engine, crate::ApiError> {
        self.0.deps.engine.as_ref().ok_or_else(|| {
            crate::ApiError::unavailable("the workflow engine is not configured in this process")
        })
    }
    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.0.deps.clock
    }
    /// The current time.
    pub fn now(&self) -> OffsetDateTime {
        self.0.deps.clock.now()
    }
    /// The settings.
    pub fn config(&self) -> &ApiConfig {
        &self.0.config
    }
    /// The access-token keys.
    pub fn jwt(&self) -> &JwtKeys {
        &self.0.jwt
    }
    /// The key of idempotency request hashes (derived from the token secret).
    pub fn idempotency_key(&self) -> &crate::idempotency::HashKey {
        &self.0.idempotency_key
    }
    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }
    /// Login attempts per client address.
    pub fn login_ip_limiter(&self) -> &Limiter {
        &self.0.login_ip
    }
    /// Login attempts per account.
    pub fn login_account_limiter(&self) -> &Limiter {
        &self.0.login_account
    }
    /// Refresh/logout calls per client address.
    pub fn token_ip_limiter(&self) -> &Limiter {
        &self.0.token_ip
    }

    /// Which API keys' first use today this process has recorded.
    pub fn key_use_days(&self) -> &crate::security::KeyUseDays {
        &self.0.key_use_days
    }

    /// API-key authentication results (cached, lookups rate-limited).
    pub fn key_cache(&self) -> &crate::keycache::KeyCache {
        &self.0.key_cache
    }

    /// The last readiness result and lag figures.
    pub fn health_cache(&self) -> &crate::routes::health::HealthCache {
        &self.0.health_cache
    }

    /// The limits of open live-event streams.
    pub fn live_limits(&self) -> &Arc<crate::routes::live::LiveLimits> {
        &self.0.live_limits
    }

    /// The process's one shared `LISTEN netledger_events` (on one system-pool connection),
    /// started on first use (call inside the runtime).
    pub fn notifier(&self) -> &netledger_store::Notifier {
        self.0
            .notifier
            .get_or_init(|| netledger_store::Notifier::start(self.0.deps.pools.system.clone()))
    }

    /// Tells long-lived responses (live events) to end: the server is shutting down.
    pub fn begin_shutdown(&self) {
        self.0.shutdown.send_replace(true);
    }

    /// Turns true when [`ApiState::begin_shutdown`] was called.
    pub fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.0.shutdown.subscribe()
    }

    /// A hash to verify against when the e-mail is unknown, so a failed login takes as long
    /// whether or not the user exists.
    pub async fn dummy_password_hash(&self) -> Result<String, crate::error::ApiError> {
        let params = self.0.config.password;
        self.0
            .dummy_hash
            .get_or_try_init(|| {
                crate::auth::hash_password(params, "netledger-dummy-password".to_owned())
            })
            .await
            .cloned()
    }
}

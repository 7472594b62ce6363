//! The API's settings. The binary fills them from its layered configuration; this crate
//! reads no environment. [`ApiConfig::validate`] refuses unsafe settings in production.

use std::fmt;
use std::time::Duration;

/// Bytes of a generated token signing secret (hex-encoded: twice as many characters).
pub const GENERATED_SECRET_BYTES: usize = 32;

/// The shortest signing secret production accepts, in bytes (HS256 wants at least the
/// hash's 32 bytes of key).
pub const MIN_PRODUCTION_SECRET_BYTES: usize = 32;

/// A secret string that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// A new random secret: [`GENERATED_SECRET_BYTES`] bytes from the OS, hex-encoded.
    pub fn random() -> Self {
        use rand::RngCore as _;
        let mut bytes = [0u8; GENERATED_SECRET_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(hex::encode(bytes))
    }
    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(***)")
    }
}

/// A limit of `max` events per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Events allowed per window.
    pub max: u32,
    /// The window.
    pub window: Duration,
}

/// Argon2id cost parameters for password hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordParams {
    /// Memory in KiB (OWASP: at least 19,456).
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl PasswordParams {
    /// The OWASP-recommended minimum for argon2id (19 MiB, 2 passes, 1 lane).
    pub const RECOMMENDED: Self = Self {
        memory_kib: 19_456,
        iterations: 2,
        parallelism: 1,
    };

    /// Cheap parameters for tests only; production refuses them.
    pub const TESTING: Self = Self {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    };
}

/// Everything the API needs to know besides its pools and clients.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Production mode: refuses default or short secrets, weak password hashing and cookies
    /// without `Secure`.
    pub production: bool,
    /// HS256 key for access tokens.
    pub jwt_secret: SecretString,
    /// `iss` of issued tokens.
    pub jwt_issuer: String,
    /// Lifetime of an access token.
    pub access_token_ttl: Duration,
    /// Lifetime of a refresh token (each refresh issues a new one): the sliding part of a
    /// session.
    pub refresh_token_ttl: Duration,
    /// Absolute lifetime of a session from its login, however often it is refreshed
    /// (default 12 h: one working day; log in again after).
    pub session_max_lifetime: Duration,
    /// How long a user's session check (disabled, role, session version, live session) is
    /// cached in-process while NATS carries revocations between API processes (default 30 s;
    /// a revocation in this process takes effect at once).
    pub session_cache_ttl: Duration,
    /// The same cache's lifetime when NATS is not connected (default 2 s): how long another
    /// API process may still accept a revoked token.
    pub session_cache_fallback_ttl: Duration,
    /// Lifetime of an API key created without `expires_at` (default 90 days).
    pub api_key_default_ttl: Duration,
    /// Longest lifetime of an API key (default 365 days): a later `expires_at` is refused,
    /// and a key older than this stops working whatever it was created with.
    pub api_key_max_ttl: Duration,
    /// Whether the refresh cookie carries `Secure` (HTTPS only). The binary sets it when
    /// [`Self::tls`] is set.
    pub cookie_secure: bool,
    /// Password hashing cost.
    pub password: PasswordParams,
    /// Login attempts per client address.
    pub login_per_ip: RateLimit,
    /// Login attempts per account (e-mail address).
    pub login_per_account: RateLimit,
    /// Refresh and logout calls per client address.
    pub token_per_ip: RateLimit,
    /// Proxies whose `X-Forwarded-For` is believed (CIDRs): the client address is the
    /// right-most entry that is not one of them ([`crate::ratelimit::client_ip`]). Empty:
    /// the connection's peer address is the client.
    pub trusted_proxies: Vec<crate::ratelimit::Cidr>,
    /// Serve `/metrics` on this address only ([`crate::serve`] binds it), not on the API's.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Require `Authorization: Bearer <token>` on `/metrics`.
    pub metrics_token: Option<SecretString>,
    /// Serve HTTPS with this certificate and key ([`crate::serve`]; the metrics address
    /// stays plain HTTP). None (the default): plain HTTP, e.g. behind a TLS-terminating
    /// reverse proxy.
    pub tls: Option<crate::tls::TlsServerConfig>,
    /// Open TCP connections [`crate::serve`] accepts at once; more wait in the backlog.
    pub max_connections: usize,
    /// Time a client has to send the request head (then the connection is closed).
    pub header_timeout: Duration,
    /// Time a client has to send the request body (then 408).
    pub body_timeout: Duration,
    /// Password hashes (argon2id) computed at once in this process; as many more wait,
    /// beyond that 429 ([`crate::ratelimit::PasswordGate`]).
    pub max_concurrent_password_hashes: usize,
    /// How long an API-key lookup's result (valid or not) is cached.
    pub api_key_cache_ttl: Duration,
    /// API-key lookups that reach the database per client address (cache misses).
    pub api_key_lookups: RateLimit,
    /// First token of the NATS subjects the relay publishes (`<prefix>.<tenant>.<category>.<type>`).
    pub nats_subject_prefix: String,
    /// JetStream stream the relay publishes events to.
    pub nats_events_stream: String,
    /// `/health/ready` fails when a subscriber (projector, relay) is more events behind.
    pub max_ready_lag: i64,
    /// Comment lines sent on idle live-event connections (an idle connection also reads the
    /// store once per interval).
    pub sse_keepalive: Duration,
    /// Open live-event streams allowed per user or API key in this process (default 8).
    pub sse_max_per_principal: usize,
    /// Open live-event streams allowed per tenant in this process (default 200).
    pub sse_max_per_tenant: usize,
    /// Open live-event streams this process serves (default 2000).
    pub sse_max_streams: usize,
    /// Largest request body in bytes (firmware uploads have their own limit).
    pub body_limit_bytes: usize,
    /// Largest firmware package in bytes.
    pub firmware_limit_bytes: usize,
    /// Most bytes one tenant's firmware packages may take together (default 2 GiB).
    pub firmware_quota_bytes: u64,
    /// Largest page a list returns.
    pub max_page_size: u32,
    /// The built web UI to serve at `/`, if any.
    pub ui: Option<crate::ui::UiDir>,
    /// How long an emergency change request may have run unreviewed before it shows as
    /// `review_overdue` (default 24 h).
    pub change_review_grace: Duration,
    /// How long a read with `min_position` waits for the projectors before it answers with
    /// what there is and `Netledger-Projection-Behind: true` (default 5 s).
    pub projection_wait: Duration,
    /// The operator's device-network policy (networks allowed for every tenant beyond the
    /// defaults, the platform's service endpoints); each tenant's allowed networks are added
    /// when a device's host is registered or changed.
    pub device_networks: netledger_domain::device::network::DeviceNetworkPolicy,
    /// How long an `Idempotency-Key` is remembered (default 24 h): a retry within it
    /// replays the first answer; rows older than it are purged (on every keyed request of
    /// the tenant, and by [`crate::idempotency::purge_expired`]), and the key may be reused.
    pub idempotency_window: Duration,
}

impl ApiConfig {
    /// Development defaults: a random token secret of this process (tokens do not survive a
    /// restart; the binary passes a configured or per-install secret), recommended password
    /// cost, cookies without `Secure` (plain HTTP on localhost).
    pub fn development() -> Self {
        Self {
            production: false,
            jwt_secret: SecretString::random(),
            jwt_issuer: "netledger".to_owned(),
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(14 * 24 * 3600),
            session_max_lifetime: Duration::from_secs(12 * 3600),
            session_cache_ttl: Duration::from_secs(30),
            session_cache_fallback_ttl: Duration::from_secs(2),
            api_key_default_ttl: Duration::from_secs(90 * 24 * 3600),
            api_key_max_ttl: Duration::from_secs(365 * 24 * 3600),
            cookie_secure: false,
            password: PasswordParams::RECOMMENDED,
            login_per_ip: RateLimit {
                max: 20,
                window: Duration::from_secs(60),
            },
            login_per_account: RateLimit {
                max: 5,
                window: Duration::from_secs(60),
            },
            token_per_ip: RateLimit {
                max: 60,
                window: Duration::from_secs(60),
            },
            trusted_proxies: Vec::new(),
            metrics_listen: None,
            metrics_token: None,
            tls: None,
            max_connections: 4_096,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_concurrent_password_hashes: crate::ratelimit::DEFAULT_PASSWORD_HASHES,
            api_key_cache_ttl: Duration::from_secs(5),
            api_key_lookups: RateLimit {
                max: 120,
                window: Duration::from_secs(60),
            },
            nats_subject_prefix: "netledger".to_owned(),
            nats_events_stream: "NETLEDGER_EVENTS".to_owned(),
            max_ready_lag: 10_000,
            sse_keepalive: Duration::from_secs(15),
            sse_max_per_principal: 8,
            sse_max_per_tenant: 200,
            sse_max_streams: 2_000,
            body_limit_bytes: 1024 * 1024,
            firmware_limit_bytes: 128 * 1024 * 1024,
            firmware_quota_bytes: 2 * 1024 * 1024 * 1024,
            max_page_size: 500,
            ui: None,
            change_review_grace: Duration::from_secs(24 * 3600),
            projection_wait: Duration::from_secs(5),
            device_networks: Default::default(),
            idempotency_window: Duration::from_secs(24 * 3600),
        }
    }

    /// Checks the settings; in production refuses the development or a short secret, weak
    /// password hashing and insecure cookies.
    pub fn validate(&self) -> Result<(), ApiConfigError> {
        if self.jwt_secret.expose().is_empty() {
            return Err(ApiConfigError::EmptySecret);
        }
        if self.access_token_ttl.is_zero()
            || self.refresh_token_ttl.is_zero()
            || self.session_max_lifetime.is_zero()
            || self.api_key_default_ttl.is_zero()
        {
            return Err(ApiConfigError::ZeroTtl);
        }
        if self.max_page_size == 0 {
            return Err(ApiConfigError::ZeroPageSize);
        }
        if self.api_key_default_ttl > self.api_key_max_ttl {
            return Err(ApiConfigError::ApiKeyTtl);
        }
        if self.production {
            if self.jwt_secret.expose().len() < MIN_PRODUCTION_SECRET_BYTES {
                return Err(ApiConfigError::ShortSecret {
                    len: self.jwt_secret.expose().len(),
                });
            }
            if self.password.memory_kib < PasswordParams::RECOMMENDED.memory_kib
                || self.password.iterations < PasswordParams::RECOMMENDED.iterations
            {
                return Err(ApiConfigError::WeakPasswordHashing);
            }
            if !self.cookie_secure {
                return Err(ApiConfigError::InsecureCookie);
            }
        }
        Ok(())
    }
}

/// Why the API refuses its settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiConfigError {
    /// No signing secret.
    #[error("the API token signing secret is empty: set api.jwt_secret (NETLEDGER_API_JWT_SECRET)")]
    EmptySecret,
    /// Production with a short secret.
    #[error(
        "production mode refuses a {len}-byte token secret: api.jwt_secret \
         (NETLEDGER_API_JWT_SECRET) needs at least {MIN_PRODUCTION_SECRET_BYTES} bytes, e.g. \
         `openssl rand -hex 32`"
    )]
    ShortSecret {
        /// Its length.
        len: usize,
    },
    /// Production with test-grade password hashing.
    #[error(
        "production mode refuses argon2id parameters below 19456 KiB and 2 passes (OWASP minimum)"
    )]
    WeakPasswordHashing,
    /// Production without `Secure` cookies.
    #[error("production mode needs api.cookie_secure = true (refresh cookies over HTTPS only)")]
    InsecureCookie,
    /// A token lifetime of zero.
    #[error("token lifetimes must be longer than zero")]
    ZeroTtl,
    /// The default API key lifetime is longer than the maximum.
    #[error("api_key_default_ttl must not exceed api_key_max_ttl")]
    ApiKeyTtl,
    /// A page size of zero.
    #[error("max_page_size must be at least 1")]
    ZeroPageSize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_refuses_short_secrets() {
        let mut c = ApiConfig::development();
        assert_eq!(c.validate(), Ok(()));
        c.production = true;
        c.cookie_secure = true;
        c.jwt_secret = SecretString::new("short");
        assert_eq!(c.validate(), Err(ApiConfigError::ShortSecret { len: 5 }));
        c.jwt_secret = SecretString::new("x".repeat(32));
        assert_eq!(c.validate(), Ok(()));
        c.password = PasswordParams::TESTING;
        assert_eq!(c.validate(), Err(ApiConfigError::WeakPasswordHashing));
        c.password = PasswordParams::RECOMMENDED;
        c.cookie_secure = false;
        assert_eq!(c.validate(), Err(ApiConfigError::InsecureCookie));
        c.cookie_secure = true;
        c.api_key_default_ttl = c.api_key_max_ttl + Duration::from_secs(1);
        assert_eq!(c.validate(), Err(ApiConfigError::ApiKeyTtl));
    }

    #[test]
    fn the_development_secret_is_random_and_does_not_print() {
        // Issue #15 item 11: no public constant signs development tokens.
        let (a, b) = (ApiConfig::development(), ApiConfig::development());
        assert_ne!(a.jwt_secret, b.jwt_secret);
        assert_eq!(a.jwt_secret.expose().len(), 2 * GENERATED_SECRET_BYTES);
        assert!(!format!("{a:?}").contains(a.jwt_secret.expose()));
    }
}

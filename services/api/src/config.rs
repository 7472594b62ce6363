//! The API's settings. The binary fills them from its layered configuration; this crate
//! reads no environment. [`ApiConfig::validate`] refuses unsafe settings in production.

use std::fmt;
use std::time::Duration;

/// The signing secret used when none is configured. Accepted only outside production.
pub const DEVELOPMENT_JWT_SECRET: &str = "netledger-development-secret-do-not-use-in-production";

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
    /// Lifetime of a refresh token (each refresh issues a new one).
    pub refresh_token_ttl: Duration,
    /// Whether the refresh cookie carries `Secure` (HTTPS only).
    pub cookie_secure: bool,
    /// Password hashing cost.
    pub password: PasswordParams,
    /// Login attempts per client address.
    pub login_per_ip: RateLimit,
    /// Login attempts per account (e-mail address).
    pub login_per_account: RateLimit,
    /// Refresh and logout calls per client address.
    pub token_per_ip: RateLimit,
    /// Take the client address from the first `X-Forwarded-For` entry (only behind a proxy
    /// that sets it).
    pub trust_forwarded_for: bool,
    /// First token of the NATS subjects the relay publishes (`<prefix>.<tenant>.<category>.<type>`).
    pub nats_subject_prefix: String,
    /// JetStream stream the relay publishes events to.
    pub nats_events_stream: String,
    /// `/health/ready` fails when a subscriber (projector, relay) is more events behind.
    pub max_ready_lag: i64,
    /// Comment lines sent on idle live-event connections.
    pub sse_keepalive: Duration,
    /// Largest request body in bytes (firmware uploads have their own limit).
    pub body_limit_bytes: usize,
    /// Largest firmware package in bytes.
    pub firmware_limit_bytes: usize,
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
    /// How long an `Idempotency-Key` is remembered (default 24 h): a retry within it
    /// replays the first answer; rows older than it are purged (on every keyed request of
    /// the tenant, and by [`crate::idempotency::purge_expired`]), and the key may be reused.
    pub idempotency_window: Duration,
}

impl ApiConfig {
    /// Development defaults: the development secret, recommended password cost, cookies
    /// without `Secure` (plain HTTP on localhost).
    pub fn development() -> Self {
        Self {
            production: false,
            jwt_secret: SecretString::new(DEVELOPMENT_JWT_SECRET),
            jwt_issuer: "netledger".to_owned(),
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(14 * 24 * 3600),
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
            trust_forwarded_for: false,
            nats_subject_prefix: "netledger".to_owned(),
            nats_events_stream: "NETLEDGER_EVENTS".to_owned(),
            max_ready_lag: 10_000,
            sse_keepalive: Duration::from_secs(15),
            body_limit_bytes: 1024 * 1024,
            firmware_limit_bytes: 128 * 1024 * 1024,
            max_page_size: 500,
            ui: None,
            change_review_grace: Duration::from_secs(24 * 3600),
            projection_wait: Duration::from_secs(5),
            idempotency_window: Duration::from_secs(24 * 3600),
        }
    }

    /// Checks the settings; in production refuses the development or a short secret, weak
    /// password hashing and insecure cookies.
    pub fn validate(&self) -> Result<(), ApiConfigError> {
        if self.jwt_secret.expose().is_empty() {
            return Err(ApiConfigError::EmptySecret);
        }
        if self.access_token_ttl.is_zero() || self.refresh_token_ttl.is_zero() {
            return Err(ApiConfigError::ZeroTtl);
        }
        if self.max_page_size == 0 {
            return Err(ApiConfigError::ZeroPageSize);
        }
        if self.production {
            if self.jwt_secret.expose() == DEVELOPMENT_JWT_SECRET {
                return Err(ApiConfigError::DefaultSecret);
            }
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
    /// Production with the built-in development secret.
    #[error(
        "production mode refuses the built-in development token secret: set api.jwt_secret \
         (NETLEDGER_API_JWT_SECRET) to at least {MIN_PRODUCTION_SECRET_BYTES} random bytes, \
         e.g. `openssl rand -hex 32`"
    )]
    DefaultSecret,
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
    /// A page size of zero.
    #[error("max_page_size must be at least 1")]
    ZeroPageSize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_refuses_default_and_short_secrets() {
        let mut c = ApiConfig::development();
        assert_eq!(c.validate(), Ok(()));
        c.production = true;
        c.cookie_secure = true;
        assert_eq!(c.validate(), Err(ApiConfigError::DefaultSecret));
        c.jwt_secret = SecretString::new("short");
        assert_eq!(c.validate(), Err(ApiConfigError::ShortSecret { len: 5 }));
        c.jwt_secret = SecretString::new("x".repeat(32));
        assert_eq!(c.validate(), Ok(()));
        c.password = PasswordParams::TESTING;
        assert_eq!(c.validate(), Err(ApiConfigError::WeakPasswordHashing));
        c.password = PasswordParams::RECOMMENDED;
        c.cookie_secure = false;
        assert_eq!(c.validate(), Err(ApiConfigError::InsecureCookie));
    }

    #[test]
    fn secrets_do_not_print() {
        let c = ApiConfig::development();
        assert!(!format!("{c:?}").contains(DEVELOPMENT_JWT_SECRET));
    }
}

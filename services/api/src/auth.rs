//! Authentication: access tokens (HS256 JWTs), API keys, refresh tokens and password hashes,
//! and the extractors that turn a request into a [`Principal`] and check its permission.
//!
//! - Access tokens are short-lived JWTs signed with HMAC-SHA256; the header must say
//!   `HS256` (no algorithm negotiation), and `iss`, `exp` and `iat` are checked.
//! - API keys are `nlk_<id>_<secret>`: 128-bit id, 256-bit secret. Only the SHA-256 of the
//!   whole key is stored (a high-entropy secret needs no slow hash); it is compared in
//!   constant time.
//! - Refresh tokens are `<id>.<secret>` with the same storage rule, in an httpOnly cookie.
//! - Passwords are argon2id PHC strings, hashed and verified on the blocking pool.
//! - A signature is not enough: every request checks the token against the user's current
//!   state ([`crate::sessions`]: disabled, session version, live session) and every API
//!   key against its row and its creator (revoked, expired, older than the longest key
//!   lifetime, creator disabled or gone: 401). [`principal_ended`] resolves when a caller's
//!   token expires or is revoked, so live-event streams close then.

use std::collections::BTreeSet;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use netledger_domain::event::EventMetadata;
use netledger_domain::identity::Role;
use netledger_domain::{Actor, TenantId};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::authz::{Permission, PermissionMarker, PermissionSet, role_permissions};
use crate::config::PasswordParams;
use crate::error::{ApiError, ProblemKind};
use crate::sessions::SessionFacts;
use crate::state::ApiState;

pub use netledger_domain::identity::{MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS};
/// The prefix of API keys.
pub const API_KEY_PREFIX: &str = "nlk_";

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A signed-in user.
    User {
        /// User id.
        id: Uuid,
        /// Role at the time the access token was issued.
        role: Role,
        /// The session (refresh-token family) the token belongs to.
        session: Uuid,
        /// The user's session version the token was issued at.
        version: i64,
    },
    /// An automation client.
    ApiKey {
        /// Key id.
        id: Uuid,
    },
}

/// An authenticated caller: tenant, subject and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The tenant every read and write of the request is scoped to.
    pub tenant: TenantId,
    /// User or API key.
    pub subject: Subject,
    /// What it may do.
    pub permissions: PermissionSet,
    /// When its credential stops working by itself (access token `exp`, API key expiry).
    pub expires_at: Option<OffsetDateTime>,
}

impl Principal {
    /// The actor recorded on events this caller causes.
    pub fn actor(&self) -> Actor {
        match &self.subject {
            Subject::User { id, .. } => Actor::User { id: *id },
            Subject::ApiKey { id } => Actor::ApiKey { id: *id },
        }
    }

    /// Whether the caller holds `p`.
    pub fn can(&self, p: Permission) -> bool {
        self.permissions.contains(p)
    }

    /// `Ok` if the caller holds `p`, else a 403 problem.
    pub fn require(&self, p: Permission) -> Result<(), ApiError> {
        if self.can(p) {
            Ok(())
        } else {
            Err(ApiError::forbidden(p))
        }
    }

    /// The user id, if a user is calling.
    pub fn user_id(&self) -> Option<Uuid> {
        match &self.subject {
            Subject::User { id, .. } => Some(*id),
            Subject::ApiKey { .. } => None,
        }
    }
}

impl FromRequestParts<ApiState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(p.clone());
        }
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::unauthenticated(
                    "send `Authorization: Bearer <access token or API key>` (log in with POST /api/v1/auth/login)",
                )
            })?
            .to_str()
            .map_err(|_| ApiError::unauthenticated("the Authorization header is not text"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| ApiError::unauthenticated("the Authorization scheme must be Bearer"))?
            .trim();
        let principal = if token.starts_with(API_KEY_PREFIX) {
            let client = crate::ratelimit::client_ip(parts, &state.config().trusted_proxies);
            let principal = state
                .key_cache()
                .authenticate(token, &client, authenticate_api_key(state, token))
                .await?;
            record_key_use(state, &principal, client).await?;
            principal
        } else {
            let claims = state
                .jwt()
                .verify(token, state.now())
                .map_err(|e| ApiError::unauthenticated(e.to_string()))?;
            authenticate_claims(state, &claims, false).await?
        };
        parts.extensions.insert(principal.clone());
        Ok(principal)
    }
}

/// An extractor that authenticates and requires permission `P`. Put it first among a
/// handler's arguments, so a caller without the permission gets 403 before anything else
/// of the request is looked at.
#[derive(Debug, Clone)]
pub struct Require<P: PermissionMarker>(pub Principal, std::marker::PhantomData<P>);

impl<P: PermissionMarker> Require<P> {
    /// The caller.
    pub fn principal(&self) -> &Principal {
        &self.0
    }
}

impl<P: PermissionMarker> FromRequestParts<ApiState> for Require<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let principal = Principal::from_request_parts(parts, state).await?;
        principal.require(P::PERMISSION)?;
        Ok(Self(principal, std::marker::PhantomData))
    }
}

/// An extractor that authenticates and requires permission `A` or permission `B` (routes
/// two roles may call for different reasons, e.g. starting a change request: its author
/// with `changes:write`, or an approver with `changes:approve`). Its OpenAPI security lists
/// both scopes as alternatives.
#[derive(Debug, Clone)]
pub struct RequireAny<A: PermissionMarker, B: PermissionMarker>(
    pub Principal,
    std::marker::PhantomData<(A, B)>,
);

impl<A: PermissionMarker, B: PermissionMarker> RequireAny<A, B> {
    /// The caller.
    pub fn principal(&self) -> &Principal {
        &self.0
    }
}

impl<A: PermissionMarker, B: PermissionMarker> FromRequestParts<ApiState> for RequireAny<A, B> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let principal = Principal::from_request_parts(parts, state).await?;
        if !principal.can(A::PERMISSION) && !principal.can(B::PERMISSION) {
            return Err(ApiError::forbidden_any(A::PERMISSION, B::PERMISSION));
        }
        Ok(Self(principal, std::marker::PhantomData))
    }
}

/// The principal of verified access-token claims, if the token still stands: its user
/// exists in its tenant, is not disabled, has the token's session version, and its session
/// is live. The answer comes from the session cache unless `fresh`.
pub async fn authenticate_claims(
    state: &ApiState,
    claims: &AccessClaims,
    fresh: bool,
) -> Result<Principal, ApiError> {
    let facts = session_facts(state, claims.sub, claims.sid, claims.tid, fresh).await?;
    let role = judge_session(claims, facts.as_ref()).map_err(ApiError::unauthenticated)?;
    Ok(Principal {
        tenant: TenantId::from_uuid(claims.tid),
        subject: Subject::User {
            id: claims.sub,
            role,
            session: claims.sid,
            version: claims.sv,
        },
        permissions: role_permissions(role),
        expires_at: OffsetDateTime::from_unix_timestamp(claims.exp).ok(),
    })
}

/// Whether a token with `claims` stands against its user's and session's `facts` (`None`:
/// no such user); the role it acts with.
pub fn judge_session(
    claims: &AccessClaims,
    facts: Option<&SessionFacts>,
) -> Result<Role, &'static str> {
    const REVOKED: &str =
        "the access token was revoked (log in again, or refresh with POST /api/v1/auth/refresh)";
    let Some(f) = facts else {
        return Err(REVOKED);
    };
    if f.user != claims.sub || f.tenant != claims.tid || f.disabled || !f.live {
        return Err(REVOKED);
    }
    if f.version != claims.sv {
        return Err(REVOKED);
    }
    Ok(f.role)
}

/// The session facts of `user`'s `session` in `tenant`: from the cache, or (on a miss or
/// with `fresh`) from the users and refresh-token tables through the system pool.
pub async fn session_facts(
    state: &ApiState,
    user: Uuid,
    session: Uuid,
    tenant: Uuid,
    fresh: bool,
) -> Result<Option<SessionFacts>, ApiError> {
    if !fresh
        && let Some(f) = state.sessions().get(session)
        && f.user == user
    {
        return Ok(Some(f));
    }
    let row: Option<(Uuid, i64, bool, String, bool)> = sqlx::query_as(
        "SELECT u.tenant_id, u.session_version, u.disabled, u.role, EXISTS (SELECT 1 FROM \
         refresh_tokens r WHERE r.tenant_id = $3 AND r.family_id = $2 AND r.user_id = u.id \
         AND r.revoked_at IS NULL) FROM users u WHERE u.id = $1 AND u.tenant_id = $3",
    )
    .bind(user)
    .bind(session)
    .bind(tenant)
    .fetch_optional(&state.pools().system)
    .await?;
    let Some((tenant, version, disabled, role, live)) = row else {
        return Ok(None);
    };
    let role: Role = role
        .parse()
        .map_err(|e| ApiError::internal(format!("stored role of user {user}: {e}")))?;
    let facts = SessionFacts {
        user,
        tenant,
        version,
        disabled,
        role,
        live,
    };
    state.sessions().put(session, facts);
    Ok(Some(facts))
}

/// Records an API key's first use of the UTC day (once per key, day and API process).
async fn record_key_use(
    state: &ApiState,
    principal: &Principal,
    source: String,
) -> Result<(), ApiError> {
    let Subject::ApiKey { id } = principal.subject else {
        return Ok(());
    };
    let day = state.now().date();
    if !state.key_use_days().is_new(id, day) {
        return Ok(());
    }
    let event = netledger_domain::identity::security::ApiKeyUsed {
        key_id: id,
        day: day.to_string(),
        source,
    };
    let meta = EventMetadata::for_command(principal.actor(), Uuid::now_v7());
    crate::security::record(state, principal.tenant, event.into(), &meta).await?;
    state.key_use_days().recorded(id, day);
    Ok(())
}

async fn authenticate_api_key(state: &ApiState, token: &str) -> Result<Principal, ApiError> {
    let (id, _) = parse_api_key(token).ok_or_else(api_key_invalid)?;
    let row = api_key_row(state, id).await?.ok_or_else(api_key_invalid)?;
    if !constant_time_eq(&row.secret_hash, &sha256(token.as_bytes())) {
        return Err(api_key_invalid());
    }
    api_key_principal(state, id, &row)
}

fn api_key_invalid() -> ApiError {
    ApiError::unauthenticated(
        "the API key is unknown, revoked or expired, or its creator is disabled",
    )
}

/// An API key's row with its creator's state.
#[derive(Debug, Clone)]
pub struct ApiKeyRow {
    /// Tenant.
    pub tenant: Uuid,
    /// SHA-256 of the key.
    pub secret_hash: Vec<u8>,
    /// Stored scopes.
    pub scopes: Vec<String>,
    /// Created at.
    pub created_at: OffsetDateTime,
    /// Expires at (`None` on keys created before expiry was required).
    pub expires_at: Option<OffsetDateTime>,
    /// Revoked at.
    pub revoked_at: Option<OffsetDateTime>,
    /// The creating user, if a user created it.
    pub created_by: Option<Uuid>,
    /// Whether the creator is disabled; `None` when the creator row is gone (or there is
    /// none).
    pub creator_disabled: Option<bool>,
}

async fn api_key_row(state: &ApiState, id: Uuid) -> Result<Option<ApiKeyRow>, ApiError> {
    type Row = (
        Uuid,
        Vec<u8>,
        Vec<String>,
        OffsetDateTime,
        Option<OffsetDateTime>,
        Option<OffsetDateTime>,
        Option<Uuid>,
        Option<bool>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT k.tenant_id, k.secret_hash, k.scopes, k.created_at, k.expires_at, \
         k.revoked_at, k.created_by, u.disabled FROM api_keys k \
         LEFT JOIN users u ON u.id = k.created_by AND u.tenant_id = k.tenant_id \
         WHERE k.id = $1",
    )
    .bind(id)
    .fetch_optional(&state.pools().system)
    .await?;
    Ok(row.map(
        |(tenant, secret_hash, scopes, created_at, expires_at, revoked_at, created_by, d)| {
            ApiKeyRow {
                tenant,
                secret_hash,
                scopes,
                created_at,
                expires_at,
                revoked_at,
                created_by,
                creator_disabled: d,
            }
        },
    ))
}

/// The user behind an API key (its creator), if any.
pub async fn api_key_creator(state: &ApiState, id: Uuid) -> Result<Option<Uuid>, ApiError> {
    Ok(api_key_row(state, id).await?.and_then(|r| r.created_by))
}

/// When a key stops working: its `expires_at`, but never later than its creation plus the
/// longest key lifetime (keys created before expiry was required included).
pub fn api_key_deadline(state: &ApiState, row: &ApiKeyRow) -> OffsetDateTime {
    let max = time::Duration::try_from(state.config().api_key_max_ttl)
        .unwrap_or(time::Duration::days(365));
    let cap = row.created_at.saturating_add(max);
    row.expires_at.map_or(cap, |e| e.min(cap))
}

/// The principal of a key whose secret matched, if it still stands: not revoked, not past
/// [`api_key_deadline`], and its creator (when a user created it) exists and is enabled.
fn api_key_principal(state: &ApiState, id: Uuid, row: &ApiKeyRow) -> Result<Principal, ApiError> {
    let deadline = api_key_deadline(state, row);
    if row.revoked_at.is_some() || deadline <= state.now() {
        return Err(api_key_invalid());
    }
    // A key dies with its creator: disabled or gone.
    if row.created_by.is_some() && row.creator_disabled != Some(false) {
        return Err(api_key_invalid());
    }
    let permissions = crate::authz::parse_scopes(row.scopes.iter().map(String::as_str))
        .map_err(|e| ApiError::internal(format!("stored scopes of API key {id}: {e}")))?;
    Ok(Principal {
        tenant: TenantId::from_uuid(row.tenant),
        subject: Subject::ApiKey { id },
        permissions,
        expires_at: Some(deadline),
    })
}

/// Whether `p`'s credential still stands, checked afresh (no cache).
async fn still_stands(state: &ApiState, p: &Principal) -> Result<bool, ApiError> {
    match &p.subject {
        Subject::User {
            id,
            session,
            role,
            version,
        } => {
            let facts = session_facts(state, *id, *session, *p.tenant.as_uuid(), true).await?;
            Ok(facts.is_some_and(|f| {
                !f.disabled
                    && f.live
                    && f.role == *role
                    && f.version == *version
                    && f.tenant == *p.tenant.as_uuid()
            }))
        }
        Subject::ApiKey { id } => Ok(match api_key_row(state, *id).await? {
            Some(row) => api_key_principal(state, *id, &row).is_ok(),
            None => false,
        }),
    }
}

/// Runs `work` (a live-event stream's producer) until it ends or `p`'s credential expires
/// or is revoked ([`principal_ended`]), whichever comes first; dropping the producer closes
/// the stream.
pub fn until_ended<F>(state: &ApiState, p: &Principal, work: F) -> impl Future<Output = ()> + use<F>
where
    F: Future<Output = ()>,
{
    let ended = principal_ended(state.clone(), p.clone());
    async move {
        tokio::select! {
            _ = work => {}
            why = ended => tracing::info!(?why, "live-event stream closed: its credential ended"),
        }
    }
}

/// Why [`principal_ended`] resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The token or key reached its expiry.
    Expired,
    /// It was revoked (user disabled, role or password changed, logged out, key revoked,
    /// key's creator disabled).
    Revoked,
}

/// Resolves when `p`'s credential stops working: at its expiry (by the state's clock,
/// looked at every cache lifetime), or when a revocation that concerns it is seen (in this
/// process, through NATS, or, without NATS, by re-checking every short cache lifetime).
/// Live-event streams race their output against it and close when it resolves.
///
/// The session version of a user is re-checked against the role the stream was opened
/// with: a role change, disable, password change or logout ends it.
pub async fn principal_ended(state: ApiState, p: Principal) -> Ended {
    use tokio::sync::broadcast::error::RecvError;
    let mut feed = state.sessions().subscribe();
    let concerns = |r: &crate::sessions::Revocation| -> bool {
        use crate::sessions::Revocation as R;
        match (&p.subject, r) {
            (Subject::User { id, .. }, R::User(u)) => u == id,
            (Subject::User { session, .. }, R::Session(s)) => s == session,
            (Subject::ApiKey { id }, R::ApiKey(k)) => k == id,
            // A user revocation may be the key's creator's.
            (Subject::ApiKey { .. }, R::User(_)) => true,
            _ => false,
        }
    };
    loop {
        if p.expires_at.is_some_and(|e| e <= state.now()) {
            return Ended::Expired;
        }
        // The expiry is looked at on the state's clock (tests move it), so wait at most a
        // cache lifetime at a time.
        let wait = state
            .sessions()
            .ttl()
            .max(std::time::Duration::from_millis(200));
        let recheck = tokio::select! {
            r = feed.recv() => match r {
                Ok(r) => concerns(&r),
                Err(RecvError::Lagged(_)) => true,
                Err(RecvError::Closed) => false,
            },
            _ = tokio::time::sleep(wait) => true,
        };
        if recheck {
            match still_stands(&state, &p).await {
                Ok(true) => {}
                Ok(false) => return Ended::Revoked,
                // The database is away: keep the stream (its own reads fail anyway).
                Err(e) => tracing::warn!(error = %e, "cannot re-check a live-event caller"),
            }
        }
    }
}

// ---- tokens and keys ---------------------------------------------------------------------

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

/// Equality that takes the same time wherever the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

/// A new API key for `id`: `nlk_<id hex>_<64 hex>`.
pub fn new_api_key(id: Uuid) -> String {
    format!("{API_KEY_PREFIX}{}_{}", id.simple(), random_hex(32))
}

/// The id and secret part of an API key, if it has the right shape.
pub fn parse_api_key(key: &str) -> Option<(Uuid, &str)> {
    let rest = key.strip_prefix(API_KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    if id.len() != 32 || secret.len() != 64 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((Uuid::parse_str(id).ok()?, secret))
}

/// The part of a key shown in lists (`nlk_` and the first 8 hex digits of its id).
pub fn api_key_prefix(key: &str) -> String {
    key.chars().take(API_KEY_PREFIX.len() + 8).collect()
}

/// A new refresh token for row `id`: `<id hex>.<64 hex>`.
pub fn new_refresh_token(id: Uuid) -> String {
    format!("{}.{}", id.simple(), random_hex(32))
}

// ---- JWT -----------------------------------------------------------------------------------

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// User id.
    pub sub: Uuid,
    /// Tenant id.
    pub tid: Uuid,
    /// Role.
    pub role: Role,
    /// Session (refresh-token family).
    pub sid: Uuid,
    /// The user's session version at issue; the token stops working when it changes
    /// (tokens without it read as 0, which no user has).
    #[serde(default)]
    pub sv: i64,
    /// Issued at (unix seconds).
    pub iat: i64,
    /// Expires at (unix seconds).
    pub exp: i64,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts.
    #[error("the access token is malformed")]
    Malformed,
    /// The header names another algorithm.
    #[error("the access token must be signed with HS256")]
    Algorithm,
    /// Signature mismatch.
    #[error("the access token's signature is invalid")]
    Signature,
    /// Issued by someone else.
    #[error("the access token was issued by another issuer")]
    Issuer,
    /// Expired.
    #[error("the access token has expired; refresh it with POST /api/v1/auth/refresh")]
    Expired,
}

/// Signs and verifies access tokens.
#[derive(Clone)]
pub struct JwtKeys {
    secret: Vec<u8>,
    issuer: String,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

const JWT_HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

impl JwtKeys {
    /// Keys from a secret (any length is accepted by HMAC; production checks the length).
    pub fn new(secret: &[u8], issuer: &str) -> Self {
        Self {
            secret: secret.to_vec(),
            issuer: issuer.to_owned(),
        }
    }

    /// A MAC keyed with the secret (HMAC takes keys of any length, so this does not fail).
    fn mac(&self) -> Option<Hmac<Sha256>> {
        <Hmac<Sha256> as Mac>::new_from_slice(&self.secret).ok()
    }

    /// The issuer name.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// A signed token for `claims`.
    pub fn sign(&self, claims: &AccessClaims) -> Result<String, ApiError> {
        let payload = serde_json::to_vec(claims)
            .map_err(|e| ApiError::internal(format!("encode claims: {e}")))?;
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(JWT_HEADER),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let mut mac = self
            .mac()
            .ok_or_else(|| ApiError::internal("token signing key unusable"))?;
        mac.update(signing_input.as_bytes());
        let sig = mac.finalize().into_bytes();
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }

    /// The claims of a valid, unexpired token of this issuer.
    pub fn verify(&self, token: &str, now: OffsetDateTime) -> Result<AccessClaims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        #[derive(Deserialize)]
        struct Header {
            alg: String,
        }
        let header: Header = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if header.alg != "HS256" {
            return Err(TokenError::Algorithm);
        }
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac().ok_or(TokenError::Signature)?;
        mac.update(h.as_bytes());
        mac.update(b".");
        mac.update(p.as_bytes());
        mac.verify_slice(&sig).map_err(|_| TokenError::Signature)?;
        let claims: AccessClaims = URL_SAFE_NO_PAD
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if claims.iss != self.issuer {
            return Err(TokenError::Issuer);
        }
        if claims.exp <= now.unix_timestamp() {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

// ---- passwords -----------------------------------------------------------------------------

/// Checks the password policy (the domain's: [`MIN_PASSWORD_CHARS`] to
/// [`MAX_PASSWORD_CHARS`] characters); the user aggregate applies it to every new password.
pub fn check_password_policy(password: &str) -> Result<(), ApiError> {
    netledger_domain::identity::check_password_policy(password)
        .map_err(|e| ApiError::validation(e.to_string()))
}

fn argon2(params: PasswordParams) -> Result<Argon2<'static>, ApiError> {
    let p = Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        None,
    )
    .map_err(|e| ApiError::internal(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, p))
}

/// An argon2id PHC string for `password` (on the blocking pool).
pub async fn hash_password(params: PasswordParams, password: String) -> Result<String, ApiError> {
    // Held by the blocking task: it runs to the end even if the request is dropped.
    let permit = crate::ratelimit::password_permit().await?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        argon2(params)?
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ApiError::internal(format!("hash password: {e}")))
    })
    .await
    .map_err(|e| ApiError::internal(format!("password hashing task: {e}")))?
}

/// Whether `password` matches the PHC string `hash` (on the blocking pool; parameters come
/// from the hash).
pub async fn verify_password(hash: String, password: String) -> Result<bool, ApiError> {
    let permit = crate::ratelimit::password_permit().await?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let parsed = PasswordHash::new(&hash)
            .map_err(|e| ApiError::internal(format!("stored password hash unreadable: {e}")))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|e| ApiError::internal(format!("password verification task: {e}")))?
}

/// Scope names of a permission set, for storage.
pub fn scope_names(set: PermissionSet) -> BTreeSet<String> {
    set.iter()
        .filter(|p| *p != Permission::Authenticated)
        .map(|p| p.as_str().to_owned())
        .collect()
}

/// The 401 for a failed login, the same whether the user exists or not.
pub fn invalid_credentials() -> ApiError {
    ApiError::new(
        ProblemKind::InvalidCredentials,
        "the e-mail address or password is wrong, or the user is disabled",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> AccessClaims {
        AccessClaims {
            iss: "netledger".into(),
            sub: Uuid::new_v4(),
            tid: Uuid::new_v4(),
            role: Role::Operator,
            sid: Uuid::new_v4(),
            sv: 1,
            iat: 0,
            exp,
        }
    }

    #[test]
    fn tokens_verify_and_refuse_tampering_expiry_and_other_algorithms() {
        let keys = JwtKeys::new(b"0123456789abcdef0123456789abcdef", "netledger");
        let now = OffsetDateTime::from_unix_timestamp(1_000).unwrap();
        let c = claims(2_000);
        let t = keys.sign(&c).unwrap();
        assert_eq!(keys.verify(&t, now).unwrap(), c);

        let expired = keys.sign(&claims(1_000)).unwrap();
        assert_eq!(keys.verify(&expired, now), Err(TokenError::Expired));

        let other = JwtKeys::new(b"another secret another secret 00", "netledger");
        assert_eq!(other.verify(&t, now), Err(TokenError::Signature));

        let foreign = JwtKeys::new(b"0123456789abcdef0123456789abcdef", "someone-else");
        assert_eq!(foreign.verify(&t, now), Err(TokenError::Issuer));

        // Swap in an elevated payload with the old signature.
        let mut parts: Vec<&str> = t.split('.').collect();
        let mut elevated = c.clone();
        elevated.role = Role::SuperAdmin;
        let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&elevated).unwrap());
        parts[1] = &p;
        assert_eq!(
            keys.verify(&parts.join("."), now),
            Err(TokenError::Signature)
        );

        // alg=none is refused whatever the signature.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
            t.split('.').nth(1).unwrap()
        );
        assert_eq!(keys.verify(&none, now), Err(TokenError::Algorithm));
        assert_eq!(keys.verify("a.b", now), Err(TokenError::Malformed));
    }

    #[test]
    fn api_keys_have_a_fixed_shape() {
        let id = Uuid::new_v4();
        let key = new_api_key(id);
        let (parsed, secret) = parse_api_key(&key).unwrap();
        assert_eq!(parsed, id);
        assert_eq!(secret.len(), 64);
        assert!(parse_api_key("nlk_abc_def").is_none());
        assert!(api_key_prefix(&key).starts_with("nlk_"));
        assert_ne!(new_api_key(id), key);
    }

    #[tokio::test]
    async fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password(PasswordParams::TESTING, "correct horse battery".into())
            .await
            .unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(
            verify_password(h.clone(), "correct horse battery".into())
                .await
                .unwrap()
        );
        assert!(
            !verify_password(h, "wrong horse battery".into())
                .await
                .unwrap()
        );
        assert!(check_password_policy("short").is_err());
        assert!(check_password_policy("long enough password").is_ok());
    }
}

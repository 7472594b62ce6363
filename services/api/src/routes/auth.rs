//! `/api/v1/auth`: login, refresh (rotating, reuse-detecting), logout, who am I, and a
//! self-service password change. Login and token calls are rate limited per client address
//! (and login per account too).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use netledger_domain::identity::Email;
use netledger_domain::identity::security::{LoginFailed, LoginFailure};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::accounts::{self, Issued, RoleName, UserDto};
use crate::auth::{Principal, Require, Subject, invalid_credentials, verify_password};
use crate::authz::perm;
use crate::error::{
    ApiError, ApiResult, BadRequest, InvalidCredentials, PreconditionFailed, RateLimited,
    RefreshTokenInvalid, Validation,
};
use crate::http::{IfMatch, Json, RequestId, Written};
use crate::ratelimit::ClientIp;
use crate::state::ApiState;

/// Name of the refresh-token cookie.
pub const REFRESH_COOKIE: &str = "nl_refresh";
/// Path the refresh cookie is sent to.
pub const REFRESH_COOKIE_PATH: &str = "/api/v1/auth";

pub(crate) fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(logout_all))
        .routes(routes!(me))
        .routes(routes!(change_own_password))
}

/// Credentials.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct LoginRequest {
    /// E-mail address.
    pub email: String,
    /// Password.
    pub password: String,
}

/// A new access token (the refresh token travels in the `nl_refresh` httpOnly cookie).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// The access token: send it as `Authorization: Bearer <token>`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// The user.
    pub user_id: Uuid,
    /// The tenant.
    pub tenant_id: Uuid,
    /// The role the token carries.
    pub role: RoleName,
}

fn refresh_cookie(state: &ApiState, value: &str, max_age: u64) -> Option<HeaderValue> {
    let secure = if state.config().cookie_secure {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{REFRESH_COOKIE}={value}; HttpOnly; SameSite=Strict; Path={REFRESH_COOKIE_PATH}; \
         Max-Age={max_age}{secure}"
    ))
    .ok()
}

fn token_response(state: &ApiState, issued: Issued) -> Response {
    let body = TokenResponse {
        access_token: issued.access_token,
        token_type: "Bearer".to_owned(),
        expires_in: state.config().access_token_ttl.as_secs(),
        user_id: issued.claims.sub,
        tenant_id: issued.claims.tid,
        role: issued.claims.role.into(),
    };
    let mut headers = HeaderMap::new();
    // The cookie lives as long as its token: the refresh lifetime, capped by the session's
    // absolute deadline.
    let max_age =
        u64::try_from((issued.refresh_expires_at - state.now()).whole_seconds()).unwrap_or(0);
    if let Some(c) = refresh_cookie(state, &issued.refresh_token, max_age) {
        headers.insert(header::SET_COOKIE, c);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    (headers, Json(body)).into_response()
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == REFRESH_COOKIE)
        .map(|(_, v)| v.to_owned())
}

fn limit(result: Result<(), u64>) -> ApiResult<()> {
    result.map_err(ApiError::rate_limited)
}

/// Log in with e-mail and password.
///
/// Returns an access token in the body and sets the rotating refresh token as an httpOnly
/// cookie. Limited per client address and per account (429 with `Retry-After`).
#[utoipa::path(
    post,
    path = "/auth/login",
    operation_id = "login",
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in; `Set-Cookie` carries the refresh token.", body = TokenResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = InvalidCredentials),
        (status = 422, response = Validation),
        (status = 429, response = RateLimited),
    )
)]
pub async fn login(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    rid: RequestId,
    Json(body): Json<LoginRequest>,
) -> ApiResult<Response> {
    limit(state.login_ip_limiter().hit(&ip))?;
    // An unparsable address cannot be a user; it still costs a hash below.
    let email = Email::parse(&body.email).ok();
    let account_key = email
        .as_ref()
        .map(|e| e.as_str().to_owned())
        .unwrap_or_else(|| body.email.trim().to_lowercase());
    limit(state.login_account_limiter().hit(&account_key))?;
    let candidate = match &email {
        Some(e) => accounts::find_login(&state, e).await?,
        None => None,
    };
    let hash = match &candidate {
        Some(c) => c.password_hash.clone(),
        None => state.dummy_password_hash().await?,
    };
    let ok = verify_password(hash, body.password).await?;
    let user = match candidate {
        Some(c) if ok && !c.disabled => c,
        Some(c) => {
            // A known account: the refusal is a security event of its tenant.
            let reason = if ok {
                LoginFailure::Disabled
            } else {
                LoginFailure::BadPassword
            };
            tracing::info!(client = %ip, user = %c.id, ?reason, "login refused");
            let failed = LoginFailed {
                user_id: c.id,
                reason,
                source: ip,
            };
            let meta = rid.metadata(netledger_domain::Actor::system("api"));
            crate::security::record(&state, c.tenant, failed.into(), &meta).await?;
            return Err(invalid_credentials());
        }
        None => {
            tracing::info!(client = %ip, "login refused: no such account");
            return Err(invalid_credentials());
        }
    };
    state.login_account_limiter().reset(&account_key);
    let meta = rid.metadata(netledger_domain::Actor::User { id: user.id });
    let issued = accounts::start_session(&state, &user, &ip, &meta).await?;
    Ok(token_response(&state, issued))
}

/// Exchange the refresh cookie for a new access token.
///
/// The refresh token is single-use: the response sets a new one. Presenting a used token
/// again revokes the whole session (both copies stop working) and answers 401 with type
/// `urn:netledger:problem:refresh-token-reused`.
#[utoipa::path(
    post,
    path = "/auth/refresh",
    operation_id = "refresh_token",
    tag = "auth",
    params(("nl_refresh" = String, Cookie, description = "The refresh token set by login or the last refresh.")),
    responses(
        (status = 200, description = "A new access token; `Set-Cookie` carries the next refresh token.", body = TokenResponse),
        (status = 401, response = RefreshTokenInvalid),
        (status = 429, response = RateLimited),
    )
)]
pub async fn refresh(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    rid: RequestId,
    headers: HeaderMap,
) -> ApiResult<Response> {
    limit(state.token_ip_limiter().hit(&ip))?;
    let token = cookie_value(&headers).ok_or_else(|| {
        ApiError::new(
            crate::error::ProblemKind::RefreshTokenInvalid,
            "no refresh cookie; log in with POST /api/v1/auth/login",
        )
    })?;
    let issued = accounts::refresh_session(&state, &token, rid.0).await?;
    Ok(token_response(&state, issued))
}

/// Log out: revoke the session of the refresh cookie and clear it.
#[utoipa::path(
    post,
    path = "/auth/logout",
    operation_id = "logout",
    tag = "auth",
    params(("nl_refresh" = Option<String>, Cookie, description = "The refresh token; without it logout only clears the cookie.")),
    responses(
        (status = 204, description = "The session is revoked and the cookie cleared."),
        (status = 429, response = RateLimited),
    )
)]
pub async fn logout(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    rid: RequestId,
    headers: HeaderMap,
) -> ApiResult<Response> {
    limit(state.token_ip_limiter().hit(&ip))?;
    if let Some(token) = cookie_value(&headers) {
        accounts::end_session(&state, &token, rid.0).await?;
    }
    let mut out = HeaderMap::new();
    if let Some(c) = refresh_cookie(&state, "", 0) {
        out.insert(header::SET_COOKIE, c);
    }
    Ok((StatusCode::NO_CONTENT, out).into_response())
}

/// Log out everywhere: end every session of the calling user and revoke every access token
/// issued to them (other API processes notice through NATS, or within seconds without it).
#[utoipa::path(
    post,
    path = "/auth/logout-all",
    operation_id = "logout_all",
    tag = "auth",
    security(("bearer" = ["authenticated"])),
    responses(
        (status = 204, description = "Every session ended; the cookie is cleared (403 for an API key, which has no sessions)."),
    )
)]
pub async fn logout_all(
    State(state): State<ApiState>,
    auth: Require<perm::Authenticated>,
    rid: RequestId,
) -> ApiResult<Response> {
    let p = auth.principal();
    let Some(user) = p.user_id() else {
        return Err(ApiError::forbidden_because(
            "API keys have no sessions; revoke the key with DELETE /api/v1/api-keys/{key_id}",
        ));
    };
    accounts::logout_all(&state, p.tenant, &rid.metadata(p.actor()), user).await?;
    let mut out = HeaderMap::new();
    if let Some(c) = refresh_cookie(&state, "", 0) {
        out.insert(header::SET_COOKIE, c);
    }
    Ok((StatusCode::NO_CONTENT, out).into_response())
}

/// What kind of principal a caller is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A user (logged in with a token).
    User,
    /// An API key.
    ApiKey,
}

/// The caller: tenant, user or API key, role and permissions.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Me {
    /// Tenant.
    pub tenant_id: Uuid,
    /// `user` or `api_key`.
    pub kind: PrincipalKind,
    /// User id or API key id.
    pub id: Uuid,
    /// The user's role (absent for API keys).
    pub role: Option<RoleName>,
    /// The user (absent for API keys).
    pub user: Option<UserDto>,
    /// Every permission the caller holds.
    pub permissions: Vec<String>,
}

/// Who am I.
#[utoipa::path(
    get,
    path = "/auth/me",
    operation_id = "get_me",
    tag = "auth",
    security(("bearer" = ["authenticated"])),
    responses((status = 200, description = "The caller.", body = Me))
)]
pub async fn me(
    State(state): State<ApiState>,
    auth: Require<perm::Authenticated>,
) -> ApiResult<Json<Me>> {
    let p: &Principal = auth.principal();
    let (kind, id, role, user) = match &p.subject {
        Subject::User { id, role, .. } => (
            PrincipalKind::User,
            *id,
            Some(RoleName::from(*role)),
            Some(accounts::get_user(&state, p.tenant, *id).await?),
        ),
        Subject::ApiKey { id } => (PrincipalKind::ApiKey, *id, None, None),
    };
    Ok(Json(Me {
        tenant_id: *p.tenant.as_uuid(),
        kind,
        id,
        role,
        user,
        permissions: p
            .permissions
            .iter()
            .map(|x| x.as_str().to_owned())
            .collect(),
    }))
}

/// A password change by the user themself.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct PasswordChange {
    /// The current password.
    pub current_password: String,
    /// The new password (12-256 characters).
    #[schema(min_length = 12, max_length = 256)]
    pub new_password: String,
}

/// The user after a write, with the events it produced.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserWritten {
    /// The user.
    pub user: UserDto,
    /// Events appended.
    pub events: Vec<Written>,
}

/// Change your own password (every session of yours ends, log in again).
#[utoipa::path(
    post,
    path = "/auth/password",
    operation_id = "change_own_password",
    tag = "auth",
    security(("bearer" = ["authenticated"])),
    request_body = PasswordChange,
    responses(
        (status = 200, description = "Changed.", body = UserWritten),
        (status = 401, response = InvalidCredentials),
        (status = 412, response = PreconditionFailed),
        (status = 422, response = Validation),
        (status = 429, response = RateLimited),
    )
)]
pub async fn change_own_password(
    State(state): State<ApiState>,
    auth: Require<perm::Authenticated>,
    ClientIp(ip): ClientIp,
    rid: RequestId,
    Json(body): Json<PasswordChange>,
) -> ApiResult<Json<UserWritten>> {
    let p = auth.principal();
    let Some(user) = p.user_id() else {
        return Err(ApiError::forbidden_because(
            "API keys have no password; this route is for signed-in users",
        ));
    };
    limit(state.login_ip_limiter().hit(&ip))?;
    let (hash, version) = accounts::password_hash(&state, p.tenant, user).await?;
    if !verify_password(hash, body.current_password).await? {
        return Err(invalid_credentials());
    }
    let (user, events) = accounts::set_password(
        &state,
        None,
        p.tenant,
        &rid.metadata(p.actor()),
        user,
        IfMatch::Version(version),
        body.new_password,
    )
    .await?;
    Ok(Json(UserWritten { user, events }))
}

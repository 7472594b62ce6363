//! `/api/v1/tenants`, `/api/v1/users`, `/api/v1/api-keys`: the identity resources.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use netledger_domain::TenantId;
use netledger_domain::change::ChangeControl;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::accounts::{self, ApiKeyDto, NewUser, TenantDto, UserDto, UserPatch};
use crate::auth::{Require, Subject};
use crate::authz::{Permission, PermissionSet, parse_scopes, perm};
use crate::error::{
    ApiError, ApiResult, BadRequest, Conflict, NotFound, PreconditionFailed, PreconditionRequired,
    Validation,
};
use crate::http::{
    IfMatch, Json, PageParams, Path, Query, RequestId, Written, decode_cursor, encode_cursor, etag,
};
use crate::routes::auth::UserWritten;
use crate::state::ApiState;

pub(crate) fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_tenants, create_tenant))
        .routes(routes!(get_tenant, rename_tenant))
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user))
        .routes(routes!(set_user_password))
        .routes(routes!(list_api_keys, create_api_key))
        .routes(routes!(revoke_api_key))
}

fn uuid_cursor(p: &PageParams) -> ApiResult<Option<Uuid>> {
    p.cursor
        .as_deref()
        .map(|c| {
            decode_cursor(c).and_then(|v| {
                Uuid::parse_str(&v).map_err(|_| ApiError::bad_request("cursor is not valid"))
            })
        })
        .transpose()
}

fn next_cursor<T>(items: &[T], limit: i64, id: impl Fn(&T) -> Uuid) -> Option<String> {
    if i64::try_from(items.len()).unwrap_or(0) < limit {
        return None;
    }
    items
        .last()
        .map(|last| encode_cursor(&id(last).to_string()))
}

// ---- tenants -------------------------------------------------------------------------------

/// A page of tenants.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantPage {
    /// Tenants, by id.
    pub items: Vec<TenantDto>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// List tenants: every tenant for a super admin, else the caller's own.
#[utoipa::path(
    get,
    path = "/tenants",
    operation_id = "list_tenants",
    tag = "tenants",
    security(("bearer" = ["tenants:read"])),
    params(PageParams),
    responses((status = 200, description = "A page of tenants.", body = TenantPage), (status = 400, response = BadRequest))
)]
pub async fn list_tenants(
    State(state): State<ApiState>,
    auth: Require<perm::TenantsRead>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<TenantPage>> {
    let p = auth.principal();
    let limit = page.limit(state.config().max_page_size)?;
    let after = uuid_cursor(&page)?;
    let items = if p.can(Permission::TenantsAdmin) {
        accounts::list_all_tenants(&state, after, limit).await?
    } else {
        accounts::get_tenant(&state, p.tenant)
            .await?
            .into_iter()
            .filter(|t| after.is_none_or(|a| t.id > a))
            .collect()
    };
    let next_cursor = next_cursor(&items, limit, |t| t.id);
    Ok(Json(TenantPage { items, next_cursor }))
}

/// A tenant to create, optionally with its first administrator.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct NewTenant {
    /// Name.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?$"
    )]
    pub name: String,
    /// Change control: `required` (the default: pushes, upgrades and rollouts only through
    /// change requests) or `optional` (labs).
    #[serde(default = "required")]
    pub change_control: ChangeControl,
    /// The first user (role `tenant_admin` is typical).
    pub admin: Option<NewUser>,
}

fn required() -> ChangeControl {
    ChangeControl::Required
}

/// A created tenant.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantCreatedResponse {
    /// The tenant.
    pub tenant: TenantDto,
    /// Its first user, if one was asked for.
    pub admin: Option<UserDto>,
    /// Events appended.
    pub events: Vec<Written>,
}

/// Create a tenant (super admin).
#[utoipa::path(
    post,
    path = "/tenants",
    operation_id = "create_tenant",
    tag = "tenants",
    security(("bearer" = ["tenants:admin"])),
    request_body = NewTenant,
    responses(
        (status = 201, description = "Created.", body = TenantCreatedResponse),
        (status = 409, response = Conflict),
        (status = 422, response = Validation),
    )
)]
pub async fn create_tenant(
    State(state): State<ApiState>,
    auth: Require<perm::TenantsAdmin>,
    rid: RequestId,
    Json(body): Json<NewTenant>,
) -> ApiResult<Response> {
    let meta = rid.metadata(auth.principal().actor());
    let (tenant, admin, events) =
        accounts::create_tenant(&state, &meta, &body.name, body.change_control, body.admin).await?;
    let headers = etag(tenant.version);
    Ok((
        StatusCode::CREATED,
        headers,
        Json(TenantCreatedResponse {
            tenant,
            admin,
            events,
        }),
    )
        .into_response())
}

async fn visible_tenant(
    state: &ApiState,
    p: &crate::auth::Principal,
    id: Uuid,
) -> ApiResult<TenantDto> {
    let tenant = TenantId::from_uuid(id);
    if tenant != p.tenant && !p.can(Permission::TenantsAdmin) {
        return Err(ApiError::not_found(format!("tenant {id}")));
    }
    accounts::get_tenant(state, tenant)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("tenant {id}")))
}

/// Read a tenant (your own; any for a super admin).
#[utoipa::path(
    get,
    path = "/tenants/{tenant_id}",
    operation_id = "get_tenant",
    tag = "tenants",
    security(("bearer" = ["tenants:read"])),
    params(("tenant_id" = Uuid, Path, description = "Tenant id.")),
    responses(
        (status = 200, description = "The tenant; `ETag` is its version.", body = TenantDto),
        (status = 404, response = NotFound),
    )
)]
pub async fn get_tenant(
    State(state): State<ApiState>,
    auth: Require<perm::TenantsRead>,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    let t = visible_tenant(&state, auth.principal(), id).await?;
    Ok((etag(t.version), Json(t)).into_response())
}

/// New values for a tenant.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct TenantPatch {
    /// New name.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?$"
    )]
    pub name: String,
}

/// A tenant after a write.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantWritten {
    /// The tenant.
    pub tenant: TenantDto,
    /// Events appended.
    pub events: Vec<Written>,
}

/// Rename a tenant (If-Match).
#[utoipa::path(
    patch,
    path = "/tenants/{tenant_id}",
    operation_id = "rename_tenant",
    tag = "tenants",
    security(("bearer" = ["tenants:write"])),
    params(
        ("tenant_id" = Uuid, Path, description = "Tenant id."),
        ("If-Match" = String, Header, description = "The tenant's ETag, or `*`."),
    ),
    request_body = TenantPatch,
    responses(
        (status = 200, description = "Renamed.", body = TenantWritten),
        (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed),
        (status = 422, response = Validation),
        (status = 428, response = PreconditionRequired),
    )
)]
pub async fn rename_tenant(
    State(state): State<ApiState>,
    auth: Require<perm::TenantsWrite>,
    rid: RequestId,
    Path(id): Path<Uuid>,
    if_match: IfMatch,
    Json(body): Json<TenantPatch>,
) -> ApiResult<Response> {
    let p = auth.principal();
    visible_tenant(&state, p, id).await?;
    let (tenant, events) = accounts::rename_tenant(
        &state,
        &rid.metadata(p.actor()),
        TenantId::from_uuid(id),
        if_match,
        &body.name,
    )
    .await?;
    Ok((etag(tenant.version), Json(TenantWritten { tenant, events })).into_response())
}

// ---- users ---------------------------------------------------------------------------------

/// A page of users.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserPage {
    /// Users, by id.
    pub items: Vec<UserDto>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// List the tenant's users.
#[utoipa::path(
    get,
    path = "/users",
    operation_id = "list_users",
    tag = "users",
    security(("bearer" = ["users:read"])),
    params(PageParams),
    responses((status = 200, description = "A page of users.", body = UserPage), (status = 400, response = BadRequest))
)]
pub async fn list_users(
    State(state): State<ApiState>,
    auth: Require<perm::UsersRead>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<UserPage>> {
    let limit = page.limit(state.config().max_page_size)?;
    let items =
        accounts::list_users(&state, auth.principal().tenant, uuid_cursor(&page)?, limit).await?;
    let next_cursor = next_cursor(&items, limit, |u| u.id);
    Ok(Json(UserPage { items, next_cursor }))
}

/// Create a user in your tenant. You can only grant roles whose permissions you hold.
#[utoipa::path(
    post,
    path = "/users",
    operation_id = "create_user",
    tag = "users",
    security(("bearer" = ["users:write"])),
    request_body = NewUser,
    responses(
        (status = 201, description = "Created; `ETag` is the user's version.", body = UserWritten),
        (status = 409, response = Conflict),
        (status = 422, response = Validation),
    )
)]
pub async fn create_user(
    State(state): State<ApiState>,
    auth: Require<perm::UsersWrite>,
    rid: RequestId,
    Json(body): Json<NewUser>,
) -> ApiResult<Response> {
    let p = auth.principal();
    let (user, w) = accounts::create_user(
        &state,
        p.permissions,
        p.tenant,
        &rid.metadata(p.actor()),
        body,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        etag(user.version),
        Json(UserWritten {
            user,
            events: vec![w],
        }),
    )
        .into_response())
}

/// Read a user.
#[utoipa::path(
    get,
    path = "/users/{user_id}",
    operation_id = "get_user",
    tag = "users",
    security(("bearer" = ["users:read"])),
    params(("user_id" = Uuid, Path, description = "User id.")),
    responses(
        (status = 200, description = "The user; `ETag` is its version.", body = UserDto),
        (status = 404, response = NotFound),
    )
)]
pub async fn get_user(
    State(state): State<ApiState>,
    auth: Require<perm::UsersRead>,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    let u = accounts::get_user(&state, auth.principal().tenant, id).await?;
    Ok((etag(u.version), Json(u)).into_response())
}

/// Change a user's display name, role or disabled flag (If-Match). Disabling ends their
/// sessions at once; a role change applies from their next token refresh.
#[utoipa::path(
    patch,
    path = "/users/{user_id}",
    operation_id = "update_user",
    tag = "users",
    security(("bearer" = ["users:write"])),
    params(
        ("user_id" = Uuid, Path, description = "User id."),
        ("If-Match" = String, Header, description = "The user's ETag, or `*`."),
    ),
    request_body = UserPatch,
    responses(
        (status = 200, description = "Updated (no events when nothing changed).", body = UserWritten),
        (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed),
        (status = 422, response = Validation),
        (status = 428, response = PreconditionRequired),
    )
)]
pub async fn update_user(
    State(state): State<ApiState>,
    auth: Require<perm::UsersWrite>,
    rid: RequestId,
    Path(id): Path<Uuid>,
    if_match: IfMatch,
    Json(body): Json<UserPatch>,
) -> ApiResult<Response> {
    let p = auth.principal();
    let (user, events) = accounts::update_user(
        &state,
        p.permissions,
        p.tenant,
        &rid.metadata(p.actor()),
        id,
        if_match,
        body,
    )
    .await?;
    Ok((etag(user.version), Json(UserWritten { user, events })).into_response())
}

/// A new password set by an administrator.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct PasswordReset {
    /// The new password (12-256 characters).
    #[schema(min_length = 12, max_length = 256)]
    pub password: String,
}

/// Set a user's password (If-Match); every session of theirs ends.
#[utoipa::path(
    put,
    path = "/users/{user_id}/password",
    operation_id = "set_user_password",
    tag = "users",
    security(("bearer" = ["users:write"])),
    params(
        ("user_id" = Uuid, Path, description = "User id."),
        ("If-Match" = String, Header, description = "The user's ETag, or `*`."),
    ),
    request_body = PasswordReset,
    responses(
        (status = 200, description = "Set.", body = UserWritten),
        (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed),
        (status = 422, response = Validation),
        (status = 428, response = PreconditionRequired),
    )
)]
pub async fn set_user_password(
    State(state): State<ApiState>,
    auth: Require<perm::UsersWrite>,
    rid: RequestId,
    Path(id): Path<Uuid>,
    if_match: IfMatch,
    Json(body): Json<PasswordReset>,
) -> ApiResult<Response> {
    let p = auth.principal();
    let (user, events) = accounts::set_password(
        &state,
        Some(p.permissions),
        p.tenant,
        &rid.metadata(p.actor()),
        id,
        if_match,
        body.password,
    )
    .await?;
    Ok((etag(user.version), Json(UserWritten { user, events })).into_response())
}

// ---- API keys ------------------------------------------------------------------------------

/// A page of API keys.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyPage {
    /// Keys, by id (never their secrets).
    pub items: Vec<ApiKeyDto>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// List the tenant's API keys.
#[utoipa::path(
    get,
    path = "/api-keys",
    operation_id = "list_api_keys",
    tag = "api-keys",
    security(("bearer" = ["apikeys:read"])),
    params(PageParams),
    responses((status = 200, description = "A page of keys.", body = ApiKeyPage), (status = 400, response = BadRequest))
)]
pub async fn list_api_keys(
    State(state): State<ApiState>,
    auth: Require<perm::ApiKeysRead>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<ApiKeyPage>> {
    let limit = page.limit(state.config().max_page_size)?;
    let items =
        accounts::list_api_keys(&state, auth.principal().tenant, uuid_cursor(&page)?, limit)
            .await?;
    let next_cursor = next_cursor(&items, limit, |k| k.id);
    Ok(Json(ApiKeyPage { items, next_cursor }))
}

/// An API key to issue.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct NewApiKey {
    /// What it is for.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?$"
    )]
    pub name: String,
    /// Permissions (e.g. `devices:read`, `workflows:run`); each must be one you hold.
    pub scopes: Vec<String>,
    /// When it stops working (RFC 3339); absent, `api_key_default_ttl` (default 90 days) from
    /// now. Never later than `api_key_max_ttl` (default 365 days) from now: a later time is
    /// shortened to that maximum, and the response's `key.expires_at` is the expiry granted.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

/// An issued API key with its secret. The secret is shown only here, once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedApiKey {
    /// The key's record.
    pub key: ApiKeyDto,
    /// The secret: send it as `Authorization: Bearer <secret>`. Not retrievable later.
    pub secret: String,
    /// Events appended.
    pub events: Vec<Written>,
}

/// Issue an API key (its secret is in this response only).
#[utoipa::path(
    post,
    path = "/api-keys",
    operation_id = "create_api_key",
    tag = "api-keys",
    security(("bearer" = ["apikeys:write"])),
    request_body = NewApiKey,
    responses(
        (status = 201, description = "Issued.", body = CreatedApiKey),
        (status = 422, response = Validation),
    )
)]
pub async fn create_api_key(
    State(state): State<ApiState>,
    auth: Require<perm::ApiKeysWrite>,
    rid: RequestId,
    Json(body): Json<NewApiKey>,
) -> ApiResult<Response> {
    let p = auth.principal();
    let scopes: PermissionSet =
        parse_scopes(body.scopes.iter().map(String::as_str)).map_err(ApiError::validation)?;
    // The key dies with the user behind it: the caller, or the user who created the key
    // that calls.
    let creator = match &p.subject {
        Subject::User { id, .. } => Some(*id),
        Subject::ApiKey { id } => crate::auth::api_key_creator(&state, *id).await?,
    };
    let (key, secret, w) = accounts::create_api_key(
        &state,
        p.tenant,
        &rid.metadata(p.actor()),
        creator,
        p.permissions,
        &body.name,
        scopes,
        body.expires_at,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(CreatedApiKey {
            key,
            secret,
            events: vec![w],
        }),
    )
        .into_response())
}

/// A revoked key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyWritten {
    /// The key.
    pub key: ApiKeyDto,
    /// Events appended.
    pub events: Vec<Written>,
}

/// Revoke an API key (it stops working at once).
#[utoipa::path(
    delete,
    path = "/api-keys/{key_id}",
    operation_id = "revoke_api_key",
    tag = "api-keys",
    security(("bearer" = ["apikeys:write"])),
    params(("key_id" = Uuid, Path, description = "API key id.")),
    responses(
        (status = 200, description = "Revoked.", body = ApiKeyWritten),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    )
)]
pub async fn revoke_api_key(
    State(state): State<ApiState>,
    auth: Require<perm::ApiKeysWrite>,
    rid: RequestId,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<ApiKeyWritten>> {
    let p = auth.principal();
    let (key, w) = accounts::revoke_api_key(&state, p.tenant, &rid.metadata(p.actor()), id).await?;
    state.key_cache().forget_key(id);
    Ok(Json(ApiKeyWritten {
        key,
        events: vec![w],
    }))
}

//! The command side of identity: tenants, users, API keys and sessions. Each command writes
//! its lookup-table rows and appends its events in one transaction
//! ([`append_in_transaction`]), so the tables and the streams never disagree. Secrets
//! (password, key and refresh-token hashes) stay in the tables; events carry none.

use std::collections::BTreeSet;

use netledger_domain::identity::{
    ApiKeyCreated, ApiKeyRevoked, DisplayName, Email, Role, SessionEndReason, TenantCreated,
    TenantRenamed, UserCreated, UserLoggedIn, UserPasswordChanged, UserSessionRevoked, UserUpdated,
    session_stream, tenant_stream, user_stream,
};
use netledger_domain::{EventMetadata, EventType, ExpectedVersion, NewEvent, StreamName, TenantId};
use netledger_store::append::append_in_transaction;
use netledger_store::{AppendRequest, StoreError, begin_tenant};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{
    AccessClaims, api_key_prefix, hash_password, new_api_key, new_refresh_token, sha256,
};
use crate::authz::PermissionSet;
use crate::error::{ApiError, ApiResult};
use crate::http::Written;
use crate::state::ApiState;

/// A role, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleName {
    /// Read-only access to devices, configs, workflows, rollouts, firmware and events.
    Viewer,
    /// Viewer plus device changes, workflows and rollouts.
    Operator,
    /// Viewer plus approving (resuming), pausing and cancelling rollouts, cancelling workflows.
    Approver,
    /// Read-only including users, API keys, identity events and audit verification.
    Auditor,
    /// Everything within the tenant.
    TenantAdmin,
    /// Tenant admin plus listing and creating tenants.
    SuperAdmin,
}

impl From<Role> for RoleName {
    fn from(r: Role) -> Self {
        match r {
            Role::Viewer => Self::Viewer,
            Role::Operator => Self::Operator,
            Role::Approver => Self::Approver,
            Role::Auditor => Self::Auditor,
            Role::TenantAdmin => Self::TenantAdmin,
            Role::SuperAdmin => Self::SuperAdmin,
        }
    }
}

impl From<RoleName> for Role {
    fn from(r: RoleName) -> Self {
        match r {
            RoleName::Viewer => Self::Viewer,
            RoleName::Operator => Self::Operator,
            RoleName::Approver => Self::Approver,
            RoleName::Auditor => Self::Auditor,
            RoleName::TenantAdmin => Self::TenantAdmin,
            RoleName::SuperAdmin => Self::SuperAdmin,
        }
    }
}

/// A tenant.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantDto {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Version of the stream `tenant-<id>` (the `ETag`).
    pub version: u64,
    /// Created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A user (never the password hash).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserDto {
    /// Id.
    pub id: Uuid,
    /// Tenant.
    pub tenant_id: Uuid,
    /// Login e-mail address (lowercase).
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// Role.
    pub role: RoleName,
    /// Disabled users cannot log in or refresh.
    pub disabled: bool,
    /// Version of the stream `user-<id>` (the `ETag`).
    pub version: u64,
    /// Created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// An API key as listed (never the secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyDto {
    /// Id.
    pub id: Uuid,
    /// What it is for.
    pub name: String,
    /// The key's first characters, to recognise it.
    pub prefix: String,
    /// Its permissions.
    pub scopes: Vec<String>,
    /// Created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Stops working at.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Revoked at.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// A user to create.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct NewUser {
    /// Login e-mail address (unique across tenants).
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// Role.
    pub role: RoleName,
    /// Initial password (at least 12 characters).
    pub password: String,
}

pub(crate) fn metadata_event<E: EventType>(e: &E, meta: &EventMetadata) -> ApiResult<NewEvent> {
    NewEvent::from_typed(e, meta.clone())
        .map_err(|err| ApiError::internal(format!("build {} event: {err}", E::TYPE)))
}

fn stream_or_500(s: Result<StreamName, netledger_domain::IdError>) -> ApiResult<StreamName> {
    s.map_err(|e| ApiError::internal(format!("stream name: {e}")))
}

/// Appends `events` to `stream` inside `conn`'s transaction. A version conflict on a create
/// (`NoStream`) is 409; on an update it is 412 with the current version.
pub(crate) async fn append_tx(
    conn: &mut PgConnection,
    tenant: TenantId,
    stream: &StreamName,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> ApiResult<Written> {
    let request = AppendRequest {
        tenant,
        stream: stream.clone(),
        expected,
        events,
    };
    match append_in_transaction(conn, &request).await {
        Ok(outcome) => Ok(Written::new(stream, outcome)),
        Err(StoreError::Conflict { .. }) if expected == ExpectedVersion::NoStream => {
            Err(ApiError::conflict(format!("{stream} already exists")))
        }
        Err(e) => Err(e.into()),
    }
}

fn is_unique_violation(e: &sqlx::Error, constraint: &str) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.code().as_deref() == Some("23505") && d.constraint() == Some(constraint))
}

fn parse_email(s: &str) -> ApiResult<Email> {
    Email::parse(s).map_err(|e| ApiError::validation(e.to_string()))
}

fn parse_name(field: &str, s: &str) -> ApiResult<DisplayName> {
    DisplayName::parse(s).map_err(|e| ApiError::validation(format!("{field}: {e}")))
}

/// Refuses to grant a role with permissions the granter lacks (no escalation).
pub(crate) fn check_grantable(granter: PermissionSet, role: Role) -> ApiResult<()> {
    if granter.is_superset(crate::authz::role_permissions(role)) {
        Ok(())
    } else {
        Err(ApiError::new(
            crate::error::ProblemKind::Forbidden,
            format!("you cannot grant the role `{role}`: it has permissions you lack"),
        ))
    }
}

// ---- tenants -------------------------------------------------------------------------------

type TenantRow = (Uuid, String, i64, OffsetDateTime);

fn tenant_dto(r: TenantRow) -> TenantDto {
    TenantDto {
        id: r.0,
        name: r.1,
        version: u64::try_from(r.2).unwrap_or(0),
        created_at: r.3,
    }
}

/// One tenant, read with the app pool under its own tenant scope.
pub async fn get_tenant(state: &ApiState, tenant: TenantId) -> ApiResult<Option<TenantDto>> {
    let mut tx = begin_tenant(&state.pools().app, tenant).await?;
    let row: Option<TenantRow> =
        sqlx::query_as("SELECT id, name, version, created_at FROM tenants WHERE id = $1")
            .bind(tenant.as_uuid())
            .fetch_optional(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(row.map(tenant_dto))
}

/// Every tenant after `after` (system pool: platform administration only).
pub async fn list_all_tenants(
    state: &ApiState,
    after: Option<Uuid>,
    limit: i64,
) -> ApiResult<Vec<TenantDto>> {
    let rows: Vec<TenantRow> = sqlx::query_as(
        "SELECT id, name, version, created_at FROM tenants \
         WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(&state.pools().system)
    .await?;
    Ok(rows.into_iter().map(tenant_dto).collect())
}

/// Creates a tenant and, if given, its first user, in one transaction.
pub async fn create_tenant(
    state: &ApiState,
    meta: &EventMetadata,
    name: &str,
    admin: Option<NewUser>,
) -> ApiResult<(TenantDto, Option<UserDto>, Vec<Written>)> {
    let name = parse_name("name", name)?;
    let tenant = TenantId::from_uuid(Uuid::now_v7());
    let now = state.now();
    let admin = match admin {
        Some(u) => Some(prepare_user(state, u).await?),
        None => None,
    };
    let mut tx = begin_tenant(&state.pools().app, tenant).await?;
    sqlx::query(
        "INSERT INTO tenants (id, name, version, created_at, updated_at) VALUES ($1, $2, 1, $3, $3)",
    )
    .bind(tenant.as_uuid())
    .bind(name.as_str())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let stream = stream_or_500(tenant_stream(tenant))?;
    let event = metadata_event(
        &TenantCreated {
            tenant_id: tenant,
            name: name.clone(),
        },
        meta,
    )?;
    let mut written = vec![
        append_tx(
            &mut tx,
            tenant,
            &stream,
            ExpectedVersion::NoStream,
            vec![event],
        )
        .await?,
    ];
    let user = match admin {
        Some(p) => {
            let (user, w) = insert_user(&mut tx, tenant, meta, p, now).await?;
            written.push(w);
            Some(user)
        }
        None => None,
    };
    tx.commit().await?;
    let dto = TenantDto {
        id: *tenant.as_uuid(),
        name: name.as_str().to_owned(),
        version: written[0].stream_version,
        created_at: now,
    };
    Ok((dto, user, written))
}

/// Renames a tenant (If-Match on the tenant stream's version).
pub async fn rename_tenant(
    state: &ApiState,
    meta: &EventMetadata,
    tenant: TenantId,
    if_match: crate::http::IfMatch,
    name: &str,
) -> ApiResult<(TenantDto, Vec<Written>)> {
    let name = parse_name("name", name)?;
    let mut tx = begin_tenant(&state.pools().app, tenant).await?;
    let row: Option<TenantRow> = sqlx::query_as(
        "SELECT id, name, version, created_at FROM tenants WHERE id = $1 FOR UPDATE",
    )
    .bind(tenant.as_uuid())
    .fetch_optional(&mut *tx)
    .await?;
    let row = row.ok_or_else(|| ApiError::not_found(format!("tenant {tenant}")))?;
    let current = u64::try_from(row.2).unwrap_or(0);
    if_match.check(current)?;
    let stream = stream_or_500(tenant_stream(tenant))?;
    let event = metadata_event(&TenantRenamed { name: name.clone() }, meta)?;
    let w = append_tx(
        &mut tx,
        tenant,
        &stream,
        ExpectedVersion::Exact(current),
        vec![event],
    )
    .await?;
    sqlx::query("UPDATE tenants SET name = $2, version = $3, updated_at = $4 WHERE id = $1")
        .bind(tenant.as_uuid())
        .bind(name.as_str())
        .bind(i64::try_from(w.stream_version).unwrap_or(i64::MAX))
        .bind(state.now())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let dto = TenantDto {
        id: row.0,
        name: name.as_str().to_owned(),
        version: w.stream_version,
        created_at: row.3,
    };
    Ok((dto, vec![w]))
}

/// Bumps the tenant row's version after an event on the tenant stream (API keys).
async fn sync_tenant_version(
    conn: &mut PgConnection,
    tenant: TenantId,
    w: &Written,
) -> ApiResult<()> {
    sqlx::query("UPDATE tenants SET version = $2 WHERE id = $1")
        .bind(tenant.as_uuid())
        .bind(i64::try_from(w.stream_version).unwrap_or(i64::MAX))
        .execute(conn)
        .await?;
    Ok(())
}

// ---- users ---------------------------------------------------------------------------------

/// A user with its hash computed, ready to insert.
pub(crate) struct PreparedUser {
    email: Email,
    display_name: DisplayName,
    role: Role,
    hash: String,
}

pub(crate) async fn prepare_user(state: &ApiState, u: NewUser) -> ApiResult<PreparedUser> {
    let email = parse_email(&u.email)?;
    let display_name = parse_name("display_name", &u.display_name)?;
    crate::auth::check_password_policy(&u.password)?;
    let hash = hash_password(state.config().password, u.password).await?;
    Ok(PreparedUser {
        email,
        display_name,
        role: u.role.into(),
        hash,
    })
}

pub(crate) async fn insert_user(
    conn: &mut PgConnection,
    tenant: TenantId,
    meta: &EventMetadata,
    p: PreparedUser,
    now: OffsetDateTime,
) -> ApiResult<(UserDto, Written)> {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO users (id, tenant_id, email, display_name, role, password_hash, disabled, \
         version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, false, 1, $7, $7)",
    )
    .bind(id)
    .bind(tenant.as_uuid())
    .bind(p.email.as_str())
    .bind(p.display_name.as_str())
    .bind(p.role.as_str())
    .bind(&p.hash)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(|e| {
        if is_unique_violation(&e, "users_email") {
            ApiError::conflict(format!("a user with the e-mail address {} exists", p.email))
        } else {
            e.into()
        }
    })?;
    let stream = stream_or_500(user_stream(id))?;
    let event = metadata_event(
        &UserCreated {
            user_id: id,
            email: p.email.clone(),
            display_name: p.display_name.clone(),
            role: p.role,
        },
        meta,
    )?;
    let w = append_tx(
        conn,
        tenant,
        &stream,
        ExpectedVersion::NoStream,
        vec![event],
    )
    .await?;
    let dto = UserDto {
        id,
        tenant_id: *tenant.as_uuid(),
        email: p.email.as_str().to_owned(),
        display_name: p.display_name.as_str().to_owned(),
        role: p.role.into(),
        disabled: false,
        version: w.stream_version,
        created_at: now,
    };
    Ok((dto, w))
}

/// Creates a user in `tenant`.
pub async fn create_user(
    state: &ApiState,
    tenant: TenantId,
    meta: &EventMetadata,
    u: NewUser,
) -> ApiResult<(UserDto, Written)> {
    let p = prepare_user(state, u).await?;
    let mut tx = begin_tenant(&state.pools().app, tenant).await?;
    let out = insert_user(&mut tx, tenant, meta, p, state.now()).await?;
    tx.commit().await?;
    Ok(out)
}

type UserRow = (
    Uuid,
    Uuid,
    String,
    String,
    String,
    bool,
    i64,
    OffsetDateTime,
);

const USER_COLUMNS: &str =
    "id, tenant_id, email, display_name, role, disabled, version, created_at";

fn user_dto(r: UserRow) -> ApiResult<UserDto> {
    let role: Role =
        r.4.parse()
            .map_err(|e| ApiError::internal(format!("stored role of user {}: {e}", r.0)))?;
    Ok(UserDto {
        id: r.0,
        tenant_id: r.1,
        email: r.2,
        display_name: r.3,
        role: role.into(),
        disabled: r.5,
        version: u64::try_from(r.6).unwrap_or(0),
        created_at: r.7,
    })
}

/// The tenant's users after `after`, by id.
pub async fn list_users(
    state: &ApiState,
    tenant: TenantId,
    after: Option<Uuid>,
    limit: i64,
) -> ApiResult<Vec<UserDto>> {
    let mut tx = begin_tenant(&state.pools().app, tenant).await?;
    let rows: Vec<UserRow> = sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2"
    ))
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.into_iter().map(user_dto).collect()
}

/// One user of the tenant.
pub async fn get_user(state: &ApiState, tenant: TenantId, id: Uuid) -> ApiResult<UserDto> {
    let mut tx = begin_tenant(&state.pools().app, tenant).await?;
    let row: Option<UserRow> =
        sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    tx.commit().await?;
    user_dto(row.ok_or_else(|| ApiError::not_found(format!("user {id}")))?)
}

/// Changes to a user; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct UserPatch {
    /// New display name.
    pub display_name: Option<String>,
    /// New role.
    pub role: Option<RoleName>,
    /// Disable (true) or enable (false); disabling revokes every session.
    pub disabled: Option<bool>,
}

/// Applies a patch under If-Match; returns the user and the events written (none when the
/// patch changes nothing).
pub async fn update_user(
    state: &ApiState,
    granter: PermissionSet,
    tenant: TenantId,
    meta: &EventMetadata,
    id: Uuid,
    if_match: crate::http::IfMatch,
    patch: UserPatch,
) -> ApiResult<(UserDto, Vec<Written>)> {
    let display_name = patch
        .display_name
        .as_deref()
        .map(|n| parse_name("display_name", n))
        .transpose()?;
    let mut tx = begin_tenant(&state.pools().app, tenant).await?;
    let row: Option<UserRow> = sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let mut user = user_dto(row.ok_or_else(|| ApiError::not_found(format!("user {id}")))?)?;
    if_match.check(user.version)?;
    // Changing someone who holds more than you, or granting more than you hold, is refused.
    check_grantable(granter, user.role.into())?;
    let role = patch.role.map(Role::from);
    if let Some(r) = role {
        check_grantable(granter, r)?;
    }
    let event = UserUpdated {
        display_name: display_name.filter(|n| n.as_str() != user.display_name),
        role: role.filter(|r| RoleName::from(*r) != user.role),
        disabled: patch.disabled.filter(|d| *d != user.disabled),
    };
    if event.display_name.is_none() && event.role.is_none() && event.disabled.is_none() {
        tx.commit().await?;
        return Ok((user, Vec::new()));
    }
    let stream = stream_or_500(user_stream(id))?;
    let w = append_tx(
        &mut tx,
        tenant,
        &stream,
        ExpectedVersion::Exact(user.version),
        vec![metadata_event(&event, meta)?],
    )
    .await?;
    if let Some(n) = &event.display_name {
        user.display_name = n.as_str().to_owned();
    }
    if let Some(r) = event.role {
        user.role = r.into();
    }
    if let Some(d) = event.disabled {
        user.disabled = d;
    }
    user.version = w.stream_version;
    sqlx::query(
        "UPDATE users SET display_name = $2, role = $3, disabled = $4, version = $5, \
         updated_at = $6 WHERE id = $1",
    )
    .bind(id)
    .bind(&user.display_name)
    .bind(Role::from(user.role).as_str())
    .bind(user.disabled)
    .bind(i64::try_from(user.version).unwrap_or(i64::MAX))
    .bind(state.now())
    .execute(&mut *tx)
    .await?;
    let mut written = vec![w];
    if event.disabled == Some(true) {
        // A disabled user's sessions end at once; a role change applies at the next refresh.
        written.extend(
            revoke_user_sessions(
                &mut tx,
                state,
                tenant,
                meta,
                id,
                SessionEndReason::UserDisabled,
            )
            .await?,
        );
    }
    tx.commit().await?;
    Ok((user, written))
}

/// Sets a user's password (If-Match on the user) and revokes every session of theirs.
pub async fn set_password(
    state: &ApiState,
    tenant: TenantId,
    meta: &EventMetadata,
    id: Uuid,
    if_match: crate::http::IfMatch,
    password: String,
) -> ApiResult<(UserDto, Vec<Written>)> {
    crate::auth::check_password_policy(&password)?;
    let hash = hash_password(state.config().password, password).await?;
    let mut tx = begin_tenant(&state.pools().app, tenant).await?;
    let row: Option<UserRow> = sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let mut user = user_dto(row.ok_or_else(|| ApiError::not_found(format!("user {id}")))?)?;
    if_match.check(user.version)?;
    let stream = stream_or_500(user_stream(id))?;
    let w = append_tx(
        &mut tx,
        tenant,
        &stream,
        ExpectedVersion::Exact(user.version),
        vec![metadata_event(&UserPasswordChanged {}, meta)?],
    )
    .await?;
    user.version = w.stream_version;
    sqlx::query("UPDATE users SET password_hash = $2, version = $3, updated_at = $4 WHERE id = $1")
        .bind(id)
        .bind(&hash)
        .bind(i64::try_from(user.version).unwrap_or(i64::MAX))
        .bind(state.now())
        .execute(&mut *tx)
        .await?;
    let mut written = vec![w];
    written.extend(
        revoke_user_sessions(
            &mut tx,
            state,
            tenant,
            meta,
            id,
            SessionEndReason::PasswordChanged,
        )
        .await?,
    );
    tx.commit().await?;
    Ok((user, written))
}

/// The password hash and version of a user, for a self-service password change.
pub async fn password_hash(
    state: &ApiState,
    tenant: TenantId,
    id: Uuid,
) -> ApiResult<(String, u64)> {
    let mut tx = begin_tenant(&state.pools().app, tenant).await?;
    let row: Option<(String, i64)> =
        sqlx::query_as("SELECT password_hash, version FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    tx.commit().await?;
    let (h, v) = row.ok_or_else(|| ApiError::not_found(format!("user {id}")))?;
    Ok((h, u64::try_from(v).unwrap_or(0)))
}

async fn revoke_user_sessions(
    tx: &mut PgConnection,
    state: &ApiState,
    tenant: TenantId,
    meta: &EventMetadata,
    user: Uuid,
    reason: SessionEndReason,
) -> ApiResult<Vec<Written>> {
    let families: Vec<(Uuid,)> = sqlx::query_as(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL \
         RETURNING family_id",
    )
    .bind(user)
    .bind(state.now())
    .fetch_all(&mut *tx)
    .await?;
    let families: BTreeSet<Uuid> = families.into_iter().map(|f| f.0).collect();
    let mut written = Vec::new();
    for family in families {
        let stream = stream_or_500(session_stream(family))?;
        let event = metadata_event(
            &UserSessionRevoked {
                user_id: user,
                session_id: family,
                reason,
            },
            meta,
        )?;
        written.push(append_tx(tx, tenant, &stream, ExpectedVersion::Any, vec![event]).await?);
    }
    Ok(written)
}

// ---- API keys ------------------------------------------------------------------------------

type ApiKeyRow = (
    Uuid,
    String,
    String,
    Vec<String>,
    OffsetDateTime,
    Option<OffsetDateTime>,
    Option<OffsetDateTime>,
);

fn api_key_dto(r: ApiKeyRow) -> ApiKeyDto {
    ApiKeyDto {
        id: r.0,
        name: r.1,
        prefix: r.2,
        scopes: r.3,
        created_at: r.4,
        expires_at: r.5,
        revoked_at: r.6,
    }
}

/// The tenant's API keys after `after`, by id.
pub async fn list_api_keys(
    state: &ApiState,
    tenant: TenantId,
    after: Option<Uuid>,
    limit: i64,
) -> ApiResult<Vec<ApiKeyDto>> {
    let mut tx = begin_tenant(&state.pools().app, tenant).await?;
    let rows: Vec<ApiKeyRow> = sqlx::query_as(
        "SELECT id, name, prefix, scopes, created_at, expires_at, revoked_at FROM api_keys \
         WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows.into_iter().map(api_key_dto).collect())
}

/// Issues an API key; returns it with its secret (shown once).
pub async fn create_api_key(
    state: &ApiState,
    tenant: TenantId,
    meta: &EventMetadata,
    created_by: Option<Uuid>,
    name: &str,
    scopes: PermissionSet,
    expires_at: Option<OffsetDateTime>,
) -> ApiResult<(ApiKeyDto, String, Written)> {
    let name = parse_name("name", name)?;
    let now = state.now();
    if expires_at.is_some_and(|e| e <= now) {
        return Err(ApiError::validation("expires_at must be in the future"));
    }
    let id = Uuid::now_v7();
    let secret = new_api_key(id);
    let prefix = api_key_prefix(&secret);
    let scope_names = crate::auth::scope_names(scopes);
    let mut tx = begin_tenant(&state.pools().app, tenant).await?;
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, name, prefix, secret_hash, scopes, created_by, \
         created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(id)
    .bind(tenant.as_uuid())
    .bind(name.as_str())
    .bind(&prefix)
    .bind(sha256(secret.as_bytes()))
    .bind(scope_names.iter().cloned().collect::<Vec<_>>())
    .bind(created_by)
    .bind(now)
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    let stream = stream_or_500(tenant_stream(tenant))?;
    let event = metadata_event(
        &ApiKeyCreated {
            key_id: id,
            name: name.clone(),
            scopes: scope_names.clone(),
            prefix: prefix.clone(),
            expires_at,
        },
        meta,
    )?;
    let w = append_tx(&mut tx, tenant, &stream, ExpectedVersion::Any, vec![event]).await?;
    sync_tenant_version(&mut tx, tenant, &w).await?;
    tx.commit().await?;
    let dto = ApiKeyDto {
        id,
        name: name.as_str().to_owned(),
        prefix,
        scopes: scope_names.into_iter().collect(),
        created_at: now,
        expires_at,
        revoked_at: None,
    };
    Ok((dto, secret, w))
}

/// Revokes an API key at once.
pub async fn revoke_api_key(
    state: &ApiState,
    tenant: TenantId,
    meta: &EventMetadata,
    id: Uuid,
) -> ApiResult<(ApiKeyDto, Written)> {
    let now = state.now();
    let mut tx = begin_tenant(&state.pools().app, tenant).await?;
    let row: Option<ApiKeyRow> = sqlx::query_as(
        "SELECT id, name, prefix, scopes, created_at, expires_at, revoked_at FROM api_keys \
         WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let mut key = api_key_dto(row.ok_or_else(|| ApiError::not_found(format!("API key {id}")))?);
    if key.revoked_at.is_some() {
        return Err(ApiError::conflict(format!(
            "API key {id} is already revoked"
        )));
    }
    sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let stream = stream_or_500(tenant_stream(tenant))?;
    let event = metadata_event(&ApiKeyRevoked { key_id: id }, meta)?;
    let w = append_tx(&mut tx, tenant, &stream, ExpectedVersion::Any, vec![event]).await?;
    sync_tenant_version(&mut tx, tenant, &w).await?;
    tx.commit().await?;
    key.revoked_at = Some(now);
    Ok((key, w))
}

// ---- sessions ------------------------------------------------------------------------------

/// A user found by e-mail for login (system pool: the tenant is not known yet).
pub struct LoginCandidate {
    /// User id.
    pub id: Uuid,
    /// Tenant.
    pub tenant: TenantId,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Role.
    pub role: Role,
    /// Disabled.
    pub disabled: bool,
}

/// Looks a user up by e-mail across tenants.
pub async fn find_login(state: &ApiState, email: &Email) -> ApiResult<Option<LoginCandidate>> {
    let row: Option<(Uuid, Uuid, String, String, bool)> = sqlx::query_as(
        "SELECT id, tenant_id, password_hash, role, disabled FROM users WHERE email = $1",
    )
    .bind(email.as_str())
    .fetch_optional(&state.pools().system)
    .await?;
    row.map(|(id, tenant, hash, role, disabled)| {
        Ok(LoginCandidate {
            id,
            tenant: TenantId::from_uuid(tenant),
            password_hash: hash,
            role: role
                .parse()
                .map_err(|e| ApiError::internal(format!("stored role of user {id}: {e}")))?,
            disabled,
        })
    })
    .transpose()
}

/// A new access token and refresh token.
pub struct Issued {
    /// The signed access token.
    pub access_token: String,
    /// Its claims.
    pub claims: AccessClaims,
    /// The refresh token for the cookie.
    pub refresh_token: String,
}

fn access_claims(
    state: &ApiState,
    user: Uuid,
    tenant: TenantId,
    role: Role,
    session: Uuid,
) -> AccessClaims {
    let now = state.now().unix_timestamp();
    let ttl = i64::try_from(state.config().access_token_ttl.as_secs()).unwrap_or(i64::MAX);
    AccessClaims {
        iss: state.jwt().issuer().to_owned(),
        sub: user,
        tid: *tenant.as_uuid(),
        role,
        sid: session,
        iat: now,
        exp: now.saturating_add(ttl),
    }
}

async fn insert_refresh_token(
    conn: &mut PgConnection,
    state: &ApiState,
    tenant: TenantId,
    user: Uuid,
    family: Uuid,
) -> ApiResult<String> {
    let id = Uuid::now_v7();
    let token = new_refresh_token(id);
    let now = state.now();
    let ttl = time::Duration::try_from(state.config().refresh_token_ttl)
        .unwrap_or(time::Duration::days(14));
    sqlx::query(
        "INSERT INTO refresh_tokens (id, tenant_id, user_id, family_id, token_hash, issued_at, \
         expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(tenant.as_uuid())
    .bind(user)
    .bind(family)
    .bind(sha256(token.as_bytes()))
    .bind(now)
    .bind(now + ttl)
    .execute(conn)
    .await?;
    Ok(token)
}

/// Starts a session for a verified user: a refresh-token family, `UserLoggedIn`, tokens.
pub async fn start_session(
    state: &ApiState,
    user: &LoginCandidate,
    meta: &EventMetadata,
) -> ApiResult<Issued> {
    let family = Uuid::now_v7();
    let mut tx = begin_tenant(&state.pools().app, user.tenant).await?;
    let refresh_token = insert_refresh_token(&mut tx, state, user.tenant, user.id, family).await?;
    let stream = stream_or_500(session_stream(family))?;
    let event = metadata_event(
        &UserLoggedIn {
            user_id: user.id,
            session_id: family,
        },
        meta,
    )?;
    append_tx(
        &mut tx,
        user.tenant,
        &stream,
        ExpectedVersion::NoStream,
        vec![event],
    )
    .await?;
    tx.commit().await?;
    let claims = access_claims(state, user.id, user.tenant, user.role, family);
    Ok(Issued {
        access_token: state.jwt().sign(&claims)?,
        claims,
        refresh_token,
    })
}

type RefreshRow = (
    Uuid,
    Uuid,
    Uuid,
    Uuid,
    OffsetDateTime,
    Option<OffsetDateTime>,
    Option<OffsetDateTime>,
);

async fn find_refresh(state: &ApiState, token: &str) -> ApiResult<Option<RefreshRow>> {
    Ok(sqlx::query_as(
        "SELECT id, tenant_id, user_id, family_id, expires_at, used_at, revoked_at \
         FROM refresh_tokens WHERE token_hash = $1",
    )
    .bind(sha256(token.as_bytes()))
    .fetch_optional(&state.pools().system)
    .await?)
}

fn refresh_invalid() -> ApiError {
    ApiError::new(
        crate::error::ProblemKind::RefreshTokenInvalid,
        "the refresh token is missing, expired or revoked; log in again",
    )
}

/// Rotates a refresh token: marks it used and issues a new one in the same family. A token
/// used before revokes its whole family (reuse detection) and fails.
pub async fn refresh_session(state: &ApiState, token: &str, meta_id: Uuid) -> ApiResult<Issued> {
    let (id, tenant, user, family, expires_at, _, _) = find_refresh(state, token)
        .await?
        .ok_or_else(refresh_invalid)?;
    let tenant = TenantId::from_uuid(tenant);
    let now = state.now();
    let mut tx = begin_tenant(&state.pools().app, tenant).await?;
    let taken: Option<(Uuid,)> = sqlx::query_as(
        "UPDATE refresh_tokens SET used_at = $2 WHERE id = $1 AND used_at IS NULL \
         AND revoked_at IS NULL RETURNING id",
    )
    .bind(id)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    if taken.is_none() {
        // Used or revoked before. A used token presented again means a copy exists: end the
        // whole family (if it is not ended already) so neither copy works any more.
        let state_row: Option<(Option<OffsetDateTime>, Option<OffsetDateTime>)> =
            sqlx::query_as("SELECT used_at, revoked_at FROM refresh_tokens WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some((Some(_), None)) = state_row {
            revoke_family(
                &mut tx,
                state,
                tenant,
                user,
                family,
                meta_id,
                SessionEndReason::RefreshTokenReused,
            )
            .await?;
            tx.commit().await?;
            tracing::warn!(%tenant, %user, session = %family, "refresh token reused; session revoked");
            return Err(ApiError::new(
                crate::error::ProblemKind::RefreshTokenReused,
                "this refresh token was already used; the session was revoked. Log in again",
            ));
        }
        tx.commit().await?;
        return Err(refresh_invalid());
    }
    if expires_at <= now {
        tx.rollback().await?;
        return Err(refresh_invalid());
    }
    let row: Option<(String, bool)> =
        sqlx::query_as("SELECT role, disabled FROM users WHERE id = $1")
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?;
    let (role, disabled) = row.ok_or_else(refresh_invalid)?;
    if disabled {
        tx.rollback().await?;
        return Err(refresh_invalid());
    }
    let role: Role = role
        .parse()
        .map_err(|e| ApiError::internal(format!("stored role of user {user}: {e}")))?;
    let refresh_token = insert_refresh_token(&mut tx, state, tenant, user, family).await?;
    tx.commit().await?;
    let claims = access_claims(state, user, tenant, role, family);
    Ok(Issued {
        access_token: state.jwt().sign(&claims)?,
        claims,
        refresh_token,
    })
}

async fn revoke_family(
    tx: &mut PgConnection,
    state: &ApiState,
    tenant: TenantId,
    user: Uuid,
    family: Uuid,
    meta_id: Uuid,
    reason: SessionEndReason,
) -> ApiResult<Option<Written>> {
    let revoked = sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
    )
    .bind(family)
    .bind(state.now())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if revoked == 0 {
        return Ok(None);
    }
    let stream = stream_or_500(session_stream(family))?;
    let meta = EventMetadata::for_command(netledger_domain::Actor::User { id: user }, meta_id);
    let event = metadata_event(
        &UserSessionRevoked {
            user_id: user,
            session_id: family,
            reason,
        },
        &meta,
    )?;
    Ok(Some(
        append_tx(tx, tenant, &stream, ExpectedVersion::Any, vec![event]).await?,
    ))
}

/// Ends the session of a refresh token (logout). Unknown tokens are ignored.
pub async fn end_session(
    state: &ApiState,
    token: &str,
    meta_id: Uuid,
) -> ApiResult<Option<Written>> {
    let Some((_, tenant, user, family, _, _, _)) = find_refresh(state, token).await? else {
        return Ok(None);
    };
    let tenant = TenantId::from_uuid(tenant);
    let mut tx = begin_tenant(&state.pools().app, tenant).await?;
    let w = revoke_family(
        &mut tx,
        state,
        tenant,
        user,
        family,
        meta_id,
        SessionEndReason::Logout,
    )
    .await?;
    tx.commit().await?;
    Ok(w)
}

// ---- bootstrap -----------------------------------------------------------------------------

/// What [`bootstrap_admin`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapOutcome {
    /// Users exist already; nothing was created.
    AlreadyInitialised,
    /// The first tenant and its super admin were created.
    Created {
        /// The new tenant.
        tenant_id: Uuid,
        /// The new super admin.
        user_id: Uuid,
    },
}

const BOOTSTRAP_LOCK: i64 = 0x6e6c_626f_6f74_0000; // "nlboot"

/// Creates the first tenant (`Default`) and a super admin with `email` and `password` when
/// no user exists yet; does nothing otherwise. Safe to call from several processes at once
/// (an advisory lock serialises them). The binary passes
/// `NETLEDGER_BOOTSTRAP_ADMIN_EMAIL`/`NETLEDGER_BOOTSTRAP_ADMIN_PASSWORD`.
pub async fn bootstrap_admin(
    state: &ApiState,
    email: &str,
    password: &str,
) -> ApiResult<BootstrapOutcome> {
    let prepared = prepare_user(
        state,
        NewUser {
            email: email.to_owned(),
            display_name: "Administrator".to_owned(),
            role: RoleName::SuperAdmin,
            password: password.to_owned(),
        },
    )
    .await?;
    let mut lock = state.pools().app.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(BOOTSTRAP_LOCK)
        .execute(&mut *lock)
        .await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users)")
        .fetch_one(&state.pools().system)
        .await?;
    if exists {
        lock.commit().await?;
        return Ok(BootstrapOutcome::AlreadyInitialised);
    }
    let tenant = TenantId::from_uuid(Uuid::now_v7());
    netledger_store::db::set_tenant(&mut lock, tenant).await?;
    let now = state.now();
    let meta =
        EventMetadata::for_command(netledger_domain::Actor::system("bootstrap"), Uuid::new_v4());
    sqlx::query(
        "INSERT INTO tenants (id, name, version, created_at, updated_at) VALUES ($1, 'Default', 1, $2, $2)",
    )
    .bind(tenant.as_uuid())
    .bind(now)
    .execute(&mut *lock)
    .await?;
    let stream = stream_or_500(tenant_stream(tenant))?;
    let event = metadata_event(
        &TenantCreated {
            tenant_id: tenant,
            name: parse_name("name", "Default")?,
        },
        &meta,
    )?;
    append_tx(
        &mut lock,
        tenant,
        &stream,
        ExpectedVersion::NoStream,
        vec![event],
    )
    .await?;
    let (user, _) = insert_user(&mut lock, tenant, &meta, prepared, now).await?;
    lock.commit().await?;
    tracing::info!(tenant = %tenant, user = %user.id, email = %user.email, "created the first tenant and its super admin");
    Ok(BootstrapOutcome::Created {
        tenant_id: *tenant.as_uuid(),
        user_id: user.id,
    })
}

//! The command side of identity, an adapter over the domain's identity aggregates
//! ([`netledger_domain::identity`]): tenants and their API keys, users, sessions. Each
//! command loads the aggregate's state from its lookup-table rows (locked `FOR UPDATE`),
//! asks the aggregate's pure `decide`, and writes the rows and appends the decided events in
//! one transaction ([`append_in_transaction`]), so the tables and the streams never
//! disagree. A refusal becomes the problem the API has always answered with
//! ([`tenant_refused`], [`user_refused`]). What is not the aggregates' to decide stays here:
//! ids, secrets and time are made here and passed in; passwords are hashed (argon2) after
//! the decision; an e-mail address taken in any tenant is refused by a unique index;
//! refresh-token rotation lives in the token table. Secrets (password, key and
//! refresh-token hashes) stay in the tables; events carry none.

use std::collections::BTreeSet;

use netledger_domain::change::ChangeControl;
use netledger_domain::identity::session::{
    PresentedToken, RefreshVerdict, Session, SessionCommand, SessionEvent, SessionOwner,
    judge_refresh,
};
use netledger_domain::identity::tenant::{
    ApiKey, IssueApiKey, Tenant, TenantCommand, TenantEvent, TenantProfile, TenantRefusal,
};
use netledger_domain::identity::user::{
    CreateUser, UpdateUser, User, UserCommand, UserEvent, UserProfile, UserRefusal, sessions_to_end,
};
use netledger_domain::identity::{
    DisplayName, Email, Grants, NewPassword, Role, SessionEndReason, TenantChangePolicySet,
    session_stream, tenant_stream, user_stream,
};
use netledger_domain::{
    Aggregate, EventEnum, EventId, EventMetadata, ExpectedVersion, NewEvent, StreamName, TenantId,
};
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
use crate::authz::{Permission, PermissionSet};
use crate::error::{ApiError, ApiResult, ProblemKind};
use crate::http::{IfMatch, Written};
use crate::sessions::Revocation;
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
    #[schema(
        max_length = 254,
        pattern = r"^[!-?A-~]+@[!-\-/-?A-~]([!-?A-~]*\.[!-?A-~]*)?\.[!-\-/-?A-~]+$"
    )]
    pub email: String,
    /// Display name.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?$"
    )]
    pub display_name: String,
    /// Role.
    pub role: RoleName,
    /// Initial password (12-256 characters).
    #[schema(min_length = 12, max_length = 256)]
    pub password: String,
}

/// Decides `command` on `state` and folds the decided events into it.
fn decided<A: Aggregate>(
    mut state: A,
    command: &A::Command,
) -> Result<(A, Vec<A::Event>), A::Refusal> {
    let events = state.decide(command)?;
    for e in &events {
        state.evolve(e);
    }
    Ok((state, events))
}

/// The decided events as appends, each with a new id and the command's metadata.
fn encode<E: EventEnum>(events: &[E], meta: &EventMetadata) -> ApiResult<Vec<NewEvent>> {
    events
        .iter()
        .map(|e| {
            e.to_new_event(EventId::new_random(), meta.clone())
                .map_err(|err| ApiError::internal(format!("build {} event: {err}", e.event_type())))
        })
        .collect()
}

pub(crate) fn stream_or_500(
    s: Result<StreamName, netledger_domain::IdError>,
) -> ApiResult<StreamName> {
    s.map_err(|e| ApiError::internal(format!("stream name: {e}")))
}

/// Appends `events` to `stream` inside `conn`'s transaction. A version conflict on a create
/// (`NoStream`) is 409; on an update it is 412 with the current version.
pub(crate) async fn append_tx<E: EventEnum>(
    conn: &mut PgConnection,
    tenant: TenantId,
    stream: &StreamName,
    expected: ExpectedVersion,
    events: &[E],
    meta: &EventMetadata,
) -> ApiResult<Written> {
    let request = AppendRequest {
        tenant,
        stream: stream.clone(),
        expected,
        events: encode(events, meta)?,
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

/// The roles `granter` may grant: those whose permissions it holds all of (no escalation).
pub(crate) fn grants_of(granter: PermissionSet) -> Grants {
    Grants::of(|role| granter.is_superset(crate::authz::role_permissions(role)))
}

fn version_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn stored_name(what: &str, id: Uuid, s: &str) -> ApiResult<DisplayName> {
    DisplayName::parse(s).map_err(|e| ApiError::internal(format!("stored {what} of {id}: {e}")))
}

/// The problem a tenant refusal answers with (`tenant` is the tenant commanded).
pub(crate) fn tenant_refused(tenant: TenantId, r: TenantRefusal) -> ApiError {
    match r {
        TenantRefusal::InvalidName(_)
        | TenantRefusal::ScopesNotHeld(_)
        | TenantRefusal::ExpiryNotInFuture
        | TenantRefusal::InvalidChangePolicy(_)
        | TenantRefusal::InvalidDeviceSettings(_) => ApiError::validation(r.to_string()),
        TenantRefusal::AlreadyExists => match tenant_stream(tenant) {
            Ok(stream) => ApiError::conflict(format!("{stream} already exists")),
            Err(e) => ApiError::internal(format!("stream name: {e}")),
        },
        TenantRefusal::NotFound => ApiError::not_found(format!("tenant {tenant}")),
        TenantRefusal::VersionMismatch { current } => ApiError::precondition_failed(current),
        TenantRefusal::ApiKeyExists(_) | TenantRefusal::ApiKeyAlreadyRevoked(_) => {
            ApiError::conflict(r.to_string())
        }
        TenantRefusal::ApiKeyNotFound(id) => ApiError::not_found(format!("API key {id}")),
    }
}

/// The problem a user refusal answers with (`user` is the user commanded).
pub(crate) fn user_refused(user: Uuid, r: UserRefusal) -> ApiError {
    match r {
        UserRefusal::InvalidEmail(_)
        | UserRefusal::InvalidDisplayName(_)
        | UserRefusal::WeakPassword(_) => ApiError::validation(r.to_string()),
        UserRefusal::RoleNotGrantable(_) => ApiError::new(ProblemKind::Forbidden, r.to_string()),
        UserRefusal::AlreadyExists => match user_stream(user) {
            Ok(stream) => ApiError::conflict(format!("{stream} already exists")),
            Err(e) => ApiError::internal(format!("stream name: {e}")),
        },
        UserRefusal::NotFound => ApiError::not_found(format!("user {user}")),
        UserRefusal::VersionMismatch { current } => ApiError::precondition_failed(current),
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

/// Locks the tenant's row and builds its state (without API keys; a key command adds the
/// key it names). `None` when there is no row.
async fn load_tenant(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> ApiResult<Option<(Tenant, TenantRow)>> {
    let row: Option<TenantRow> = sqlx::query_as(
        "SELECT id, name, version, created_at FROM tenants WHERE id = $1 FOR UPDATE",
    )
    .bind(tenant.as_uuid())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let change_policy = stored_change_policy(conn, tenant).await?;
    let state = Tenant {
        profile: Some(TenantProfile {
            id: tenant,
            name: stored_name("name", row.0, &row.1)?,
        }),
        version: u64::try_from(row.2).unwrap_or(0),
        api_keys: Default::default(),
        change_policy,
        device_settings: Default::default(),
    };
    Ok(Some((state, row)))
}

/// The tenant's last `TenantChangePolicySet` from its stream (`None`: it never had one,
/// so it is `optional`, see [`Tenant::change_policy`]).
async fn stored_change_policy(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> ApiResult<Option<TenantChangePolicySet>> {
    let stream = stream_or_500(tenant_stream(tenant))?;
    let payload: Option<(serde_json::Value,)> = sqlx::query_as(
        "SELECT payload FROM events WHERE tenant_id = $1 AND stream = $2 AND event_type = $3 \
         ORDER BY version DESC LIMIT 1",
    )
    .bind(tenant.as_uuid())
    .bind(stream.as_str())
    .bind(<TenantChangePolicySet as netledger_domain::EventType>::TYPE)
    .fetch_optional(&mut *conn)
    .await?;
    payload
        .map(|(p,)| {
            serde_json::from_value(p).map_err(|e| {
                ApiError::internal(format!("stored change policy of tenant {tenant}: {e}"))
            })
        })
        .transpose()
}

/// The tenant's change policy now (`optional` with default approvals when it never had one).
pub async fn change_policy(
    state: &ApiState,
    tenant: TenantId,
) -> ApiResult<(TenantChangePolicySet, u64)> {
    let mut tx = begin_tenant(&state.pools().app, tenant).await?;
    let version: Option<(i64,)> = sqlx::query_as("SELECT version FROM tenants WHERE id = $1")
        .bind(tenant.as_uuid())
        .fetch_optional(&mut *tx)
        .await?;
    let Some((version,)) = version else {
        tx.commit().await?;
        return Err(ApiError::not_found(format!("tenant {tenant}")));
    };
    let stored = stored_change_policy(&mut tx, tenant).await?;
    tx.commit().await?;
    let t = Tenant {
        change_policy: stored,
        ..Tenant::default()
    };
    Ok((t.change_policy(), u64::try_from(version).unwrap_or(0)))
}

/// Sets the tenant's change policy (If-Match optional, on the tenant stream's version).
pub async fn set_change_policy(
    state: &ApiState,
    meta: &EventMetadata,
    tenant: TenantId,
    if_match: Option<IfMatch>,
    policy: TenantChangePolicySet,
) -> ApiResult<(TenantChangePolicySet, u64, Vec<Written>)> {
    let mut tx = begin_tenant(&state.pools().app, tenant).await?;
    let (current, _) = load_tenant(&mut tx, tenant)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("tenant {tenant}")))?;
    if let Some(m) = if_match {
        m.check(current.version)?;
    }
    let expected = current.version;
    let (after, events) = decided(current, &TenantCommand::SetChangePolicy(policy))
        .map_err(|r| tenant_refused(tenant, r))?;
    if events.is_empty() {
        tx.commit().await?;
        return Ok((after.change_policy(), after.version, Vec::new()));
    }
    let stream = stream_or_500(tenant_stream(tenant))?;
    let w = append_tx(
        &mut tx,
        tenant,
        &stream,
        ExpectedVersion::Exact(expected),
        &events,
        meta,
    )
    .await?;
    sync_tenant_version(&mut tx, tenant, &w).await?;
    tx.commit().await?;
    Ok((after.change_policy(), w.stream_version, vec![w]))
}

/// Inserts a created tenant's row and appends its events.
async fn insert_tenant(
    conn: &mut PgConnection,
    tenant: TenantId,
    meta: &EventMetadata,
    state: &Tenant,
    events: &[TenantEvent],
    now: OffsetDateTime,
) -> ApiResult<Written> {
    let name = state
        .profile
        .as_ref()
        .map(|p| p.name.as_str())
        .ok_or_else(|| ApiError::internal("a created tenant has no name"))?;
    sqlx::query(
        "INSERT INTO tenants (id, name, version, created_at, updated_at) VALUES ($1, $2, 1, $3, $3)",
    )
    .bind(tenant.as_uuid())
    .bind(name)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let stream = stream_or_500(tenant_stream(tenant))?;
    let w = append_tx(
        conn,
        tenant,
        &stream,
        ExpectedVersion::NoStream,
        events,
        meta,
    )
    .await?;
    // A tenant is created with more than one event (its change policy too): the row's
    // version is the stream's.
    sync_tenant_version(conn, tenant, &w).await?;
    Ok(w)
}

/// Creates a tenant and, if given, its first user, in one transaction.
pub async fn create_tenant(
    state: &ApiState,
    meta: &EventMetadata,
    name: &str,
    change_control: ChangeControl,
    admin: Option<NewUser>,
) -> ApiResult<(TenantDto, Option<UserDto>, Vec<Written>)> {
    let tenant = TenantId::from_uuid(Uuid::now_v7());
    let (created, events) = decided(
        Tenant::default(),
        &TenantCommand::Create {
            tenant_id: tenant,
            name: name.to_owned(),
            change_control,
        },
    )
    .map_err(|r| tenant_refused(tenant, r))?;
    let now = state.now();
    // A super admin creates the tenant; its first user may hold any role.
    let admin = match admin {
        Some(u) => Some(prepare_user(state, u, Grants::ALL).await?),
        None => None,
    };
    let mut tx = begin_tenant(&state.pools().app, tenant).await?;
    let mut written = vec![insert_tenant(&mut tx, tenant, meta, &created, &events, now).await?];
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
        name: created
            .profile
            .map(|p| String::from(p.name))
            .unwrap_or_default(),
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
    if_match: IfMatch,
    name: &str,
) -> ApiResult<(TenantDto, Vec<Written>)> {
    let mut tx = begin_tenant(&state.pools().app, tenant).await?;
    let loaded = load_tenant(&mut tx, tenant).await?;
    let (current, row) = match loaded {
        Some((s, row)) => (s, Some(row)),
        None => (Tenant::default(), None),
    };
    let expected = current.version;
    let (renamed, events) = decided(
        current,
        &TenantCommand::Rename {
            name: name.to_owned(),
            if_version: if_match.version(),
        },
    )
    .map_err(|r| tenant_refused(tenant, r))?;
    let row = row.ok_or_else(|| ApiError::not_found(format!("tenant {tenant}")))?;
    let stream = stream_or_500(tenant_stream(tenant))?;
    let w = append_tx(
        &mut tx,
        tenant,
        &stream,
        ExpectedVersion::Exact(expected),
        &events,
        meta,
    )
    .await?;
    let name = renamed
        .profile
        .map(|p| String::from(p.name))
        .unwrap_or_default();
    sqlx::query("UPDATE tenants SET name = $2, version = $3, updated_at = $4 WHERE id = $1")
        .bind(tenant.as_uuid())
        .bind(&name)
        .bind(version_i64(w.stream_version))
        .bind(state.now())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let dto = TenantDto {
        id: row.0,
        name,
        version: w.stream_version,
        created_at: row.3,
    };
    Ok((dto, vec![w]))
}

/// Bumps the tenant row's version after an event on the tenant stream (API keys).
pub(crate) async fn sync_tenant_version(
    conn: &mut PgConnection,
    tenant: TenantId,
    w: &Written,
) -> ApiResult<()> {
    sqlx::query("UPDATE tenants SET version = $2 WHERE id = $1")
        .bind(tenant.as_uuid())
        .bind(version_i64(w.stream_version))
        .execute(conn)
        .await?;
    Ok(())
}

// ---- users ---------------------------------------------------------------------------------

/// A user decided and with its hash computed, ready to insert.
pub(crate) struct PreparedUser {
    user: User,
    events: Vec<UserEvent>,
    hash: String,
}

/// Decides the creation of `u` (the roles `grants` allows, its address, name and password)
/// and hashes its password.
pub(crate) async fn prepare_user(
    state: &ApiState,
    u: NewUser,
    grants: Grants,
) -> ApiResult<PreparedUser> {
    let id = Uuid::now_v7();
    let command = UserCommand::Create(CreateUser {
        user_id: id,
        email: u.email,
        display_name: u.display_name,
        role: u.role.into(),
        password: NewPassword::new(u.password.clone()),
        grants,
    });
    let (user, events) = decided(User::default(), &command).map_err(|r| user_refused(id, r))?;
    let hash = hash_password(state.config().password, u.password).await?;
    Ok(PreparedUser { user, events, hash })
}

pub(crate) async fn insert_user(
    conn: &mut PgConnection,
    tenant: TenantId,
    meta: &EventMetadata,
    p: PreparedUser,
    now: OffsetDateTime,
) -> ApiResult<(UserDto, Written)> {
    let u = p
        .user
        .profile
        .ok_or_else(|| ApiError::internal("a created user has no profile"))?;
    sqlx::query(
        "INSERT INTO users (id, tenant_id, email, display_name, role, password_hash, disabled, \
         version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, false, 1, $7, $7)",
    )
    .bind(u.id)
    .bind(tenant.as_uuid())
    .bind(u.email.as_str())
    .bind(u.display_name.as_str())
    .bind(u.role.as_str())
    .bind(&p.hash)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(|e| {
        if is_unique_violation(&e, "users_email") {
            ApiError::conflict(format!("a user with the e-mail address {} exists", u.email))
        } else {
            e.into()
        }
    })?;
    let stream = stream_or_500(user_stream(u.id))?;
    let w = append_tx(
        conn,
        tenant,
        &stream,
        ExpectedVersion::NoStream,
        &p.events,
        meta,
    )
    .await?;
    let dto = user_dto_of(&u, *tenant.as_uuid(), w.stream_version, now);
    Ok((dto, w))
}

fn user_dto_of(
    u: &UserProfile,
    tenant_id: Uuid,
    version: u64,
    created_at: OffsetDateTime,
) -> UserDto {
    UserDto {
        id: u.id,
        tenant_id,
        email: u.email.as_str().to_owned(),
        display_name: u.display_name.as_str().to_owned(),
        role: u.role.into(),
        disabled: u.disabled,
        version,
        created_at,
    }
}

/// Creates a user in `tenant`; `granter` may grant only roles whose permissions it holds.
pub async fn create_user(
    state: &ApiState,
    granter: PermissionSet,
    tenant: TenantId,
    meta: &EventMetadata,
    u: NewUser,
) -> ApiResult<(UserDto, Written)> {
    let p = prepare_user(state, u, grants_of(granter)).await?;
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

fn stored_role(id: Uuid, role: &str) -> ApiResult<Role> {
    role.parse()
        .map_err(|e| ApiError::internal(format!("stored role of user {id}: {e}")))
}

fn user_dto(r: UserRow) -> ApiResult<UserDto> {
    let role = stored_role(r.0, &r.4)?;
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

/// The user aggregate's state from its row.
fn user_state(r: &UserRow) -> ApiResult<User> {
    Ok(User {
        profile: Some(UserProfile {
            id: r.0,
            email: Email::parse(&r.2).map_err(|e| {
                ApiError::internal(format!("stored e-mail address of user {}: {e}", r.0))
            })?,
            display_name: stored_name("display name", r.0, &r.3)?,
            role: stored_role(r.0, &r.4)?,
            disabled: r.5,
        }),
        version: u64::try_from(r.6).unwrap_or(0),
    })
}

/// Locks a user's row and builds their state (the default when there is no row).
async fn load_user(conn: &mut PgConnection, id: Uuid) -> ApiResult<(User, Option<UserRow>)> {
    let row: Option<UserRow> = sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let state = match &row {
        Some(r) => user_state(r)?,
        None => User::default(),
    };
    Ok((state, row))
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
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?$"
    )]
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
    if_match: IfMatch,
    patch: UserPatch,
) -> ApiResult<(UserDto, Vec<Written>)> {
    let mut tx = begin_tenant(&state.pools().app, tenant).await?;
    let (current, row) = load_user(&mut tx, id).await?;
    let expected = current.version;
    let command = UserCommand::Update(UpdateUser {
        display_name: patch.display_name,
        role: patch.role.map(Role::from),
        disabled: patch.disabled,
        if_version: if_match.version(),
        grants: grants_of(granter),
    });
    let before = current.profile.clone();
    let (after, events) = decided(current, &command).map_err(|r| user_refused(id, r))?;
    let row = row.ok_or_else(|| ApiError::not_found(format!("user {id}")))?;
    if events.is_empty() {
        tx.commit().await?;
        return Ok((user_dto(row)?, Vec::new()));
    }
    let stream = stream_or_500(user_stream(id))?;
    let w = append_tx(
        &mut tx,
        tenant,
        &stream,
        ExpectedVersion::Exact(expected),
        &events,
        meta,
    )
    .await?;
    let u = after
        .profile
        .ok_or_else(|| ApiError::internal("an updated user has no profile"))?;
    sqlx::query(
        "UPDATE users SET display_name = $2, role = $3, disabled = $4, version = $5, \
         updated_at = $6 WHERE id = $1",
    )
    .bind(id)
    .bind(u.display_name.as_str())
    .bind(u.role.as_str())
    .bind(u.disabled)
    .bind(version_i64(w.stream_version))
    .bind(state.now())
    .execute(&mut *tx)
    .await?;
    let user = user_dto_of(&u, row.1, w.stream_version, row.7);
    let mut written = vec![w];
    for reason in events.iter().filter_map(sessions_to_end) {
        written.extend(end_user_sessions(&mut tx, state, tenant, meta, id, reason).await?);
    }
    // A role change or a disable takes effect on the user's access tokens at once.
    let revoke = before
        .as_ref()
        .is_some_and(|b| b.role != u.role || (!b.disabled && u.disabled));
    if revoke {
        bump_session_version(&mut tx, id).await?;
    }
    tx.commit().await?;
    if revoke {
        state.revoke(Revocation::User(id)).await;
    }
    // Re-enabled: the keys this user created work again, here at once (other API processes
    // refuse them until their cached refusal expires, `api_key_cache_ttl`).
    if before.is_some_and(|b| b.disabled && !u.disabled) {
        state.key_cache().clear();
    }
    Ok((user, written))
}

/// Sets a user's password (If-Match on the user) and ends every session of theirs. With
/// `granter`, an administrator sets it and may do so only for roles they may grant; without,
/// the user changes their own (the caller verified the current password).
pub async fn set_password(
    state: &ApiState,
    granter: Option<PermissionSet>,
    tenant: TenantId,
    meta: &EventMetadata,
    id: Uuid,
    if_match: IfMatch,
    password: String,
) -> ApiResult<(UserDto, Vec<Written>)> {
    let mut tx = begin_tenant(&state.pools().app, tenant).await?;
    let (current, row) = load_user(&mut tx, id).await?;
    let expected = current.version;
    let new_password = NewPassword::new(password.clone());
    let command = match granter {
        Some(g) => UserCommand::ResetPassword {
            password: new_password,
            if_version: if_match.version(),
            grants: grants_of(g),
        },
        None => UserCommand::ChangeOwnPassword {
            password: new_password,
            if_version: if_match.version(),
        },
    };
    let (_, events) = decided(current, &command).map_err(|r| user_refused(id, r))?;
    let row = row.ok_or_else(|| ApiError::not_found(format!("user {id}")))?;
    let hash = hash_password(state.config().password, password).await?;
    let stream = stream_or_500(user_stream(id))?;
    let w = append_tx(
        &mut tx,
        tenant,
        &stream,
        ExpectedVersion::Exact(expected),
        &events,
        meta,
    )
    .await?;
    sqlx::query("UPDATE users SET password_hash = $2, version = $3, updated_at = $4 WHERE id = $1")
        .bind(id)
        .bind(&hash)
        .bind(version_i64(w.stream_version))
        .bind(state.now())
        .execute(&mut *tx)
        .await?;
    let mut user = user_dto(row)?;
    user.version = w.stream_version;
    let mut written = vec![w];
    for reason in events.iter().filter_map(sessions_to_end) {
        written.extend(end_user_sessions(&mut tx, state, tenant, meta, id, reason).await?);
    }
    bump_session_version(&mut tx, id).await?;
    tx.commit().await?;
    state.revoke(Revocation::User(id)).await;
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

/// Bumps `user`'s session version: every access token issued before stops working (the API
/// checks the version on every request). Call [`ApiState::revoke`] after the commit.
async fn bump_session_version(conn: &mut PgConnection, user: Uuid) -> ApiResult<()> {
    sqlx::query("UPDATE users SET session_version = session_version + 1 WHERE id = $1")
        .bind(user)
        .execute(conn)
        .await?;
    Ok(())
}

/// Logs `user` out everywhere: every session ends (`UserSessionRevoked`, reason `logout`)
/// and every access token stops working (the session version is bumped).
pub async fn logout_all(
    state: &ApiState,
    tenant: TenantId,
    meta: &EventMetadata,
    user: Uuid,
) -> ApiResult<Vec<Written>> {
    let mut tx = begin_tenant(&state.pools().app, tenant).await?;
    let written =
        end_user_sessions(&mut tx, state, tenant, meta, user, SessionEndReason::Logout).await?;
    bump_session_version(&mut tx, user).await?;
    tx.commit().await?;
    state.revoke(Revocation::User(user)).await;
    Ok(written)
}

/// Ends every live session of `user` (a session is live while its family has an unrevoked
/// refresh token): each one's `End` decision, then the tokens revoked, then the events.
async fn end_user_sessions(
    tx: &mut PgConnection,
    state: &ApiState,
    tenant: TenantId,
    meta: &EventMetadata,
    user: Uuid,
    reason: SessionEndReason,
) -> ApiResult<Vec<Written>> {
    let rows: Vec<(Uuid,)> = sqlx::query_as(
        "SELECT family_id FROM refresh_tokens WHERE user_id = $1 AND revoked_at IS NULL \
         FOR UPDATE",
    )
    .bind(user)
    .fetch_all(&mut *tx)
    .await?;
    let families: BTreeSet<Uuid> = rows.into_iter().map(|f| f.0).collect();
    let mut decisions = Vec::new();
    for family in &families {
        let events = end_session_events(user, *family, true, reason)?;
        decisions.push((*family, events));
    }
    if families.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = ANY($1) \
         AND revoked_at IS NULL",
    )
    .bind(families.iter().copied().collect::<Vec<_>>())
    .bind(state.now())
    .execute(&mut *tx)
    .await?;
    let mut written = Vec::new();
    for (family, events) in decisions {
        if events.is_empty() {
            continue;
        }
        let stream = stream_or_500(session_stream(family))?;
        written.push(append_tx(tx, tenant, &stream, ExpectedVersion::Any, &events, meta).await?);
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

/// The expiry of a new API key: the requested one, or now plus the default lifetime; never
/// later than now plus the longest lifetime (a later request is shortened to it, as
/// [`crate::auth::api_key_deadline`] would cut the key off there anyway, and the response
/// states the expiry granted).
fn api_key_expiry(
    state: &ApiState,
    now: OffsetDateTime,
    requested: Option<OffsetDateTime>,
) -> OffsetDateTime {
    let c = state.config();
    let max = time::Duration::try_from(c.api_key_max_ttl).unwrap_or(time::Duration::days(365));
    let default =
        time::Duration::try_from(c.api_key_default_ttl).unwrap_or(time::Duration::days(90));
    let latest = now.saturating_add(max);
    requested
        .unwrap_or_else(|| now.saturating_add(default))
        .min(latest)
}

/// Issues an API key with `scopes`, each of which `issuer` must hold; returns it with its
/// secret (shown once).
#[allow(clippy::too_many_arguments)]
pub async fn create_api_key(
    state: &ApiState,
    tenant: TenantId,
    meta: &EventMetadata,
    created_by: Option<Uuid>,
    issuer: PermissionSet,
    name: &str,
    scopes: PermissionSet,
    expires_at: Option<OffsetDateTime>,
) -> ApiResult<(ApiKeyDto, String, Written)> {
    let now = state.now();
    let expires_at = Some(api_key_expiry(state, now, expires_at));
    let id = Uuid::now_v7();
    let secret = new_api_key(id);
    let command = TenantCommand::IssueApiKey(IssueApiKey {
        key_id: id,
        name: name.to_owned(),
        // In declaration order (the order missing scopes are reported in); every caller
        // holds `authenticated`, and a key's stored scopes leave it out.
        scopes: scopes
            .iter()
            .filter(|p| *p != Permission::Authenticated)
            .map(|p| p.as_str().to_owned())
            .collect(),
        held: issuer.iter().map(|s| s.as_str().to_owned()).collect(),
        prefix: api_key_prefix(&secret),
        expires_at,
        now,
    });
    let mut tx = begin_tenant(&state.pools().app, tenant).await?;
    let current = load_tenant(&mut tx, tenant)
        .await?
        .map(|(s, _)| s)
        .unwrap_or_default();
    let (after, events) = decided(current, &command).map_err(|r| tenant_refused(tenant, r))?;
    let key = after
        .api_keys
        .get(&id)
        .ok_or_else(|| ApiError::internal("an issued API key is not in the tenant"))?;
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, name, prefix, secret_hash, scopes, created_by, \
         created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(id)
    .bind(tenant.as_uuid())
    .bind(key.name.as_str())
    .bind(&key.prefix)
    .bind(sha256(secret.as_bytes()))
    .bind(key.scopes.iter().cloned().collect::<Vec<_>>())
    .bind(created_by)
    .bind(now)
    .bind(key.expires_at)
    .execute(&mut *tx)
    .await?;
    let stream = stream_or_500(tenant_stream(tenant))?;
    let w = append_tx(
        &mut tx,
        tenant,
        &stream,
        ExpectedVersion::Any,
        &events,
        meta,
    )
    .await?;
    sync_tenant_version(&mut tx, tenant, &w).await?;
    tx.commit().await?;
    let dto = ApiKeyDto {
        id,
        name: key.name.as_str().to_owned(),
        prefix: key.prefix.clone(),
        scopes: key.scopes.iter().cloned().collect(),
        created_at: now,
        expires_at: key.expires_at,
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
    let mut current = load_tenant(&mut tx, tenant)
        .await?
        .map(|(s, _)| s)
        .unwrap_or_default();
    let row: Option<ApiKeyRow> = sqlx::query_as(
        "SELECT id, name, prefix, scopes, created_at, expires_at, revoked_at FROM api_keys \
         WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(r) = &row {
        current.api_keys.insert(
            id,
            ApiKey {
                name: stored_name("name", id, &r.1)?,
                scopes: r.3.iter().cloned().collect(),
                prefix: r.2.clone(),
                expires_at: r.5,
                revoked: r.6.is_some(),
            },
        );
    }
    let (_, events) = decided(current, &TenantCommand::RevokeApiKey { key_id: id })
        .map_err(|r| tenant_refused(tenant, r))?;
    let mut key = api_key_dto(row.ok_or_else(|| ApiError::not_found(format!("API key {id}")))?);
    sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let stream = stream_or_500(tenant_stream(tenant))?;
    let w = append_tx(
        &mut tx,
        tenant,
        &stream,
        ExpectedVersion::Any,
        &events,
        meta,
    )
    .await?;
    sync_tenant_version(&mut tx, tenant, &w).await?;
    tx.commit().await?;
    state.revoke(Revocation::ApiKey(id)).await;
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
    /// The session version new access tokens carry.
    pub session_version: i64,
}

/// Looks a user up by e-mail across tenants.
pub async fn find_login(state: &ApiState, email: &Email) -> ApiResult<Option<LoginCandidate>> {
    let row: Option<(Uuid, Uuid, String, String, bool, i64)> = sqlx::query_as(
        "SELECT id, tenant_id, password_hash, role, disabled, session_version FROM users \
         WHERE email = $1",
    )
    .bind(email.as_str())
    .fetch_optional(&state.pools().system)
    .await?;
    row.map(|(id, tenant, hash, role, disabled, session_version)| {
        Ok(LoginCandidate {
            id,
            tenant: TenantId::from_uuid(tenant),
            password_hash: hash,
            role: role
                .parse()
                .map_err(|e| ApiError::internal(format!("stored role of user {id}: {e}")))?,
            disabled,
            session_version,
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
    /// When the refresh token (and with it the session, at the latest) expires.
    pub refresh_expires_at: OffsetDateTime,
}

fn access_claims(
    state: &ApiState,
    user: Uuid,
    tenant: TenantId,
    role: Role,
    session: Uuid,
    version: i64,
) -> AccessClaims {
    let now = state.now().unix_timestamp();
    let ttl = i64::try_from(state.config().access_token_ttl.as_secs()).unwrap_or(i64::MAX);
    AccessClaims {
        iss: state.jwt().issuer().to_owned(),
        sub: user,
        tid: *tenant.as_uuid(),
        role,
        sid: session,
        sv: version,
        iat: now,
        exp: now.saturating_add(ttl),
    }
}

/// When a session that began at `started` ends however often it is refreshed.
fn session_deadline(state: &ApiState, started: OffsetDateTime) -> OffsetDateTime {
    let max = time::Duration::try_from(state.config().session_max_lifetime)
        .unwrap_or(time::Duration::hours(12));
    started.saturating_add(max)
}

/// Inserts the next refresh token of `family` (a session that began at `started`); it
/// expires after the refresh lifetime, but never after the session's absolute deadline.
async fn insert_refresh_token(
    conn: &mut PgConnection,
    state: &ApiState,
    tenant: TenantId,
    user: Uuid,
    family: Uuid,
    started: OffsetDateTime,
) -> ApiResult<(String, OffsetDateTime)> {
    let id = Uuid::now_v7();
    let token = new_refresh_token(id);
    let now = state.now();
    let ttl = time::Duration::try_from(state.config().refresh_token_ttl)
        .unwrap_or(time::Duration::days(14));
    let expires_at = now
        .saturating_add(ttl)
        .min(session_deadline(state, started));
    sqlx::query(
        "INSERT INTO refresh_tokens (id, tenant_id, user_id, family_id, token_hash, issued_at, \
         expires_at, session_started_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(tenant.as_uuid())
    .bind(user)
    .bind(family)
    .bind(sha256(token.as_bytes()))
    .bind(now)
    .bind(expires_at)
    .bind(started)
    .execute(conn)
    .await?;
    Ok((token, expires_at))
}

/// Starts a session for a verified user: a refresh-token family, `UserLoggedIn`, tokens.
pub async fn start_session(
    state: &ApiState,
    user: &LoginCandidate,
    source: &str,
    meta: &EventMetadata,
) -> ApiResult<Issued> {
    let family = Uuid::now_v7();
    let stream = stream_or_500(session_stream(family))?;
    let events = Session::default()
        .decide(&SessionCommand::Start(
            SessionOwner {
                user_id: user.id,
                session_id: family,
            },
            Some(source.to_owned()),
        ))
        .map_err(|_| ApiError::conflict(format!("{stream} already exists")))?;
    let mut tx = begin_tenant(&state.pools().app, user.tenant).await?;
    let (refresh_token, refresh_expires_at) =
        insert_refresh_token(&mut tx, state, user.tenant, user.id, family, state.now()).await?;
    append_tx(
        &mut tx,
        user.tenant,
        &stream,
        ExpectedVersion::NoStream,
        &events,
        meta,
    )
    .await?;
    tx.commit().await?;
    let claims = access_claims(
        state,
        user.id,
        user.tenant,
        user.role,
        family,
        user.session_version,
    );
    Ok(Issued {
        access_token: state.jwt().sign(&claims)?,
        claims,
        refresh_token,
        refresh_expires_at,
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
    OffsetDateTime,
);

async fn find_refresh(state: &ApiState, token: &str) -> ApiResult<Option<RefreshRow>> {
    Ok(sqlx::query_as(
        "SELECT id, tenant_id, user_id, family_id, expires_at, used_at, revoked_at, \
         COALESCE(session_started_at, issued_at) FROM refresh_tokens WHERE token_hash = $1",
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
    let (id, tenant, user, family, expires_at, _, _, started) = find_refresh(state, token)
        .await?
        .ok_or_else(refresh_invalid)?;
    let tenant = TenantId::from_uuid(tenant);
    let now = state.now();
    let mut tx = begin_tenant(&state.pools().app, tenant).await?;
    // The token's row, locked: a second exchange of it waits for this one and then sees it
    // used.
    let token_row: Option<(Option<OffsetDateTime>, Option<OffsetDateTime>)> =
        sqlx::query_as("SELECT used_at, revoked_at FROM refresh_tokens WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((used_at, revoked_at)) = token_row else {
        tx.commit().await?;
        return Err(refresh_invalid());
    };
    let user_row: Option<(String, bool, i64)> =
        sqlx::query_as("SELECT role, disabled, session_version FROM users WHERE id = $1")
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?;
    let verdict = judge_refresh(PresentedToken {
        used: used_at.is_some(),
        revoked: revoked_at.is_some(),
        // The token's own lifetime, and the session's absolute one however it slid.
        expired: expires_at <= now || session_deadline(state, started) <= now,
        user_disabled: user_row.as_ref().map(|(_, disabled, _)| *disabled),
    });
    let (role, session_version) = match (verdict, user_row) {
        (RefreshVerdict::Rotate, Some((role, _, v))) => (role, v),
        (RefreshVerdict::ReuseDetected, _) => {
            // A used token presented again means a copy exists: end the whole session (if
            // it is not ended already) so neither copy works any more.
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
            state.revoke(Revocation::Session(family)).await;
            tracing::warn!(%tenant, %user, session = %family, "refresh token reused; session revoked");
            return Err(ApiError::new(
                crate::error::ProblemKind::RefreshTokenReused,
                "this refresh token was already used; the session was revoked. Log in again",
            ));
        }
        _ => {
            tx.rollback().await?;
            return Err(refresh_invalid());
        }
    };
    let role: Role = role
        .parse()
        .map_err(|e| ApiError::internal(format!("stored role of user {user}: {e}")))?;
    sqlx::query("UPDATE refresh_tokens SET used_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let (refresh_token, refresh_expires_at) =
        insert_refresh_token(&mut tx, state, tenant, user, family, started).await?;
    tx.commit().await?;
    let claims = access_claims(state, user, tenant, role, family, session_version);
    Ok(Issued {
        access_token: state.jwt().sign(&claims)?,
        claims,
        refresh_token,
        refresh_expires_at,
    })
}

/// What ending the session `family` of `user` writes: one event while it is `live`, none
/// once it has ended.
fn end_session_events(
    user: Uuid,
    family: Uuid,
    live: bool,
    reason: SessionEndReason,
) -> ApiResult<Vec<SessionEvent>> {
    let session = Session {
        started: Some(SessionOwner {
            user_id: user,
            session_id: family,
        }),
        ended: !live,
    };
    session
        .decide(&SessionCommand::End { reason })
        .map_err(|r| ApiError::internal(format!("end session {family}: {r}")))
}

/// Ends the session `family` (live while it has an unrevoked refresh token): revokes its
/// tokens and appends `UserSessionRevoked`; `None` when it had ended already.
async fn revoke_family(
    tx: &mut PgConnection,
    state: &ApiState,
    tenant: TenantId,
    user: Uuid,
    family: Uuid,
    meta_id: Uuid,
    reason: SessionEndReason,
) -> ApiResult<Option<Written>> {
    let live: Vec<(Uuid,)> = sqlx::query_as(
        "SELECT id FROM refresh_tokens WHERE family_id = $1 AND revoked_at IS NULL FOR UPDATE",
    )
    .bind(family)
    .fetch_all(&mut *tx)
    .await?;
    let events = end_session_events(user, family, !live.is_empty(), reason)?;
    if events.is_empty() {
        return Ok(None);
    }
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
    )
    .bind(family)
    .bind(state.now())
    .execute(&mut *tx)
    .await?;
    let stream = stream_or_500(session_stream(family))?;
    let meta = EventMetadata::for_command(netledger_domain::Actor::User { id: user }, meta_id);
    Ok(Some(
        append_tx(tx, tenant, &stream, ExpectedVersion::Any, &events, &meta).await?,
    ))
}

/// Ends the session of a refresh token (logout). Unknown tokens are ignored.
pub async fn end_session(
    state: &ApiState,
    token: &str,
    meta_id: Uuid,
) -> ApiResult<Option<Written>> {
    let Some((_, tenant, user, family, _, _, _, _)) = find_refresh(state, token).await? else {
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
    state.revoke(Revocation::Session(family)).await;
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
    // The first user of the first tenant: the system grants any role.
    let prepared = prepare_user(
        state,
        NewUser {
            email: email.to_owned(),
            display_name: "Administrator".to_owned(),
            role: RoleName::SuperAdmin,
            password: password.to_owned(),
        },
        Grants::ALL,
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
    let (created, events) = decided(
        Tenant::default(),
        &TenantCommand::Create {
            tenant_id: tenant,
            name: "Default".to_owned(),
            change_control: ChangeControl::Required,
        },
    )
    .map_err(|r| tenant_refused(tenant, r))?;
    netledger_store::db::set_tenant(&mut lock, tenant).await?;
    let now = state.now();
    let meta =
        EventMetadata::for_command(netledger_domain::Actor::system("bootstrap"), Uuid::new_v4());
    insert_tenant(&mut lock, tenant, &meta, &created, &events, now).await?;
    let (user, _) = insert_user(&mut lock, tenant, &meta, prepared, now).await?;
    lock.commit().await?;
    tracing::info!(tenant = %tenant, user = %user.id, email = %user.email, "created the first tenant and its super admin");
    Ok(BootstrapOutcome::Created {
        tenant_id: *tenant.as_uuid(),
        user_id: user.id,
    })
}

/// What [`bootstrap_demo_user`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DemoUserOutcome {
    /// A user with that address exists already; nothing was created.
    AlreadyExists,
    /// No first tenant yet (the bootstrap admin creates it); nothing was created.
    NoTenant,
    /// The user was created in the first tenant.
    Created {
        /// The first tenant.
        tenant_id: Uuid,
        /// The new user.
        user_id: Uuid,
    },
}

/// Creates a demo user with `role` in the first tenant (the bootstrap super admin's), only
/// when no user has that address yet: the demo's second account (an approver), so one person
/// can walk the whole change-control flow. The binary refuses it in production.
pub async fn bootstrap_demo_user(
    state: &ApiState,
    email: &str,
    display_name: &str,
    role: Role,
    password: &str,
) -> ApiResult<DemoUserOutcome> {
    let tenant: Option<(Uuid,)> = sqlx::query_as(
        "SELECT tenant_id FROM users WHERE role = 'super_admin' ORDER BY created_at, id LIMIT 1",
    )
    .fetch_optional(&state.pools().system)
    .await?;
    let Some((tenant,)) = tenant else {
        return Ok(DemoUserOutcome::NoTenant);
    };
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE email = $1)")
        .bind(email.trim().to_lowercase())
        .fetch_one(&state.pools().system)
        .await?;
    if exists {
        return Ok(DemoUserOutcome::AlreadyExists);
    }
    let prepared = prepare_user(
        state,
        NewUser {
            email: email.to_owned(),
            display_name: display_name.to_owned(),
            role: role.into(),
            password: password.to_owned(),
        },
        Grants::ALL,
    )
    .await?;
    let tenant = TenantId::from_uuid(tenant);
    let meta =
        EventMetadata::for_command(netledger_domain::Actor::system("bootstrap"), Uuid::new_v4());
    let mut tx = begin_tenant(&state.pools().app, tenant).await?;
    match insert_user(&mut tx, tenant, &meta, prepared, state.now()).await {
        Ok((user, _)) => {
            tx.commit().await?;
            Ok(DemoUserOutcome::Created {
                tenant_id: *tenant.as_uuid(),
                user_id: user.id,
            })
        }
        // Another process created it a moment ago.
        Err(e) if e.kind() == ProblemKind::Conflict => Ok(DemoUserOutcome::AlreadyExists),
        Err(e) => Err(e),
    }
}

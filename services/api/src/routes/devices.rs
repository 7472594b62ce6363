//! `/api/v1/devices`: the device list and detail (read models), config versions, the config
//! text of a version, diffs and the config as of a time (the git config history).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use netledger_domain::{DeviceId, TenantId};
use netledger_projections::query;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Require;
use crate::authz::perm;
use crate::error::{ApiError, ApiResult, BadRequest, NotFound, Unavailable};
use crate::http::{Json, Path, Query, decode_cursor, encode_cursor, etag};
use crate::state::ApiState;

pub(crate) fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_devices))
        .routes(routes!(get_device))
        .routes(routes!(list_config_versions))
        .routes(routes!(get_config_version))
        .routes(routes!(diff_configs))
        .routes(routes!(config_as_of))
}

/// The text of a serde enum (`online`), for DTO fields.
pub(crate) fn enum_text<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

pub(crate) fn wrap_cursor(c: Option<String>) -> Option<String> {
    c.map(|c| encode_cursor(&c))
}

pub(crate) fn unwrap_cursor(c: &Option<String>) -> ApiResult<Option<String>> {
    c.as_deref().map(decode_cursor).transpose()
}

/// A device in the list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceSummaryDto {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Management host.
    pub host: String,
    /// API port.
    pub port: u16,
    /// `unknown`, `online` or `offline`.
    pub status: String,
    /// Why it is offline.
    pub offline_reason: Option<String>,
    /// RouterOS version it reported.
    pub routeros_version: Option<String>,
    /// `/system identity`.
    pub identity: Option<String>,
    /// Board name.
    pub board_name: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Poller circuit breaker: `closed` or `open`.
    pub breaker: String,
    /// Last proof the device answered.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_seen_at: Option<OffsetDateTime>,
    /// Latest event on its stream.
    #[serde(with = "time::serde::rfc3339")]
    pub last_event_at: OffsetDateTime,
    /// Removed at.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub removed_at: Option<OffsetDateTime>,
}

impl From<query::DeviceSummary> for DeviceSummaryDto {
    fn from(d: query::DeviceSummary) -> Self {
        Self {
            id: *d.id.as_uuid(),
            name: d.name,
            host: d.host,
            port: d.port,
            status: enum_text(&d.status),
            offline_reason: d.offline_reason,
            routeros_version: d.routeros_version,
            identity: d.identity,
            board_name: d.board_name,
            tags: d.tags,
            breaker: enum_text(&d.breaker),
            last_seen_at: d.last_seen_at,
            last_event_at: d.last_event_at,
            removed_at: d.removed_at,
        }
    }
}

/// A page of devices.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DevicePage {
    /// Devices by name.
    pub items: Vec<DeviceSummaryDto>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Filters of the device list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeviceListQuery {
    /// `unknown`, `online` or `offline`.
    pub status: Option<String>,
    /// Only devices with this tag.
    pub tag: Option<String>,
    /// Name, host or identity contains this (case-insensitive).
    pub search: Option<String>,
    /// Include removed devices.
    #[serde(default)]
    pub include_removed: bool,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Devices per page (default 50, at most 500).
    pub limit: Option<u32>,
}

/// List devices, by name (cursor-paginated).
#[utoipa::path(
    get,
    path = "/devices",
    operation_id = "list_devices",
    tag = "devices",
    security(("bearer" = ["devices:read"])),
    params(DeviceListQuery),
    responses((status = 200, description = "A page of devices.", body = DevicePage), (status = 400, response = BadRequest))
)]
pub async fn list_devices(
    State(state): State<ApiState>,
    auth: Require<perm::DevicesRead>,
    Query(q): Query<DeviceListQuery>,
) -> ApiResult<Json<DevicePage>> {
    let status = q
        .status
        .as_deref()
        .map(|s| {
            serde_json::from_value::<query::DeviceStatus>(serde_json::Value::String(s.to_owned()))
                .map_err(|_| {
                    ApiError::bad_request(format!(
                        "status `{s}` is unknown: use unknown, online or offline"
                    ))
                })
        })
        .transpose()?;
    let page = query::list_devices(
        &state.pools().app,
        auth.principal().tenant,
        &query::DeviceQuery {
            status,
            tag: q.tag,
            search: q.search,
            include_removed: q.include_removed,
            cursor: unwrap_cursor(&q.cursor)?,
            limit: q.limit.map(i64::from),
        },
    )
    .await?;
    Ok(Json(DevicePage {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: wrap_cursor(page.next_cursor),
    }))
}

/// How the platform connects to a device.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EndpointDto {
    /// Hostname or IP address.
    pub host: String,
    /// API port.
    pub port: u16,
    /// `plain`, `tls_pinned` or `tls_verified`.
    pub transport: String,
    /// Pinned certificate SHA-256 (hex), for `tls_pinned`.
    pub tls_fingerprint: Option<String>,
}

/// A device's detail (credentials are never returned, only the login name).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceDto {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Endpoint.
    pub endpoint: EndpointDto,
    /// API login name.
    pub username: String,
    /// Key id that encrypts its credentials.
    pub credentials_key_id: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Poll interval.
    pub poll_interval_secs: u32,
    /// `unknown`, `online` or `offline`.
    pub status: String,
    /// Why it is offline.
    pub offline_reason: Option<String>,
    /// `/system identity`.
    pub identity: Option<String>,
    /// RouterOS version.
    pub routeros_version: Option<String>,
    /// Board name.
    pub board_name: Option<String>,
    /// Architecture.
    pub architecture: Option<String>,
    /// RouterBOARD firmware.
    pub routerboard_firmware: Option<String>,
    /// Poller circuit breaker: `closed` or `open`.
    pub breaker: String,
    /// Failures that opened the breaker.
    pub breaker_failures: Option<u32>,
    /// When polling resumes.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub breaker_retry_at: Option<OffsetDateTime>,
    /// The poller's last error.
    pub breaker_last_error: Option<String>,
    /// Last config snapshot's commit.
    pub last_snapshot_commit: Option<String>,
    /// Last config snapshot's SHA-256.
    pub last_snapshot_sha256: Option<String>,
    /// Last config snapshot's time.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_snapshot_at: Option<OffsetDateTime>,
    /// Last drift.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_drift_at: Option<OffsetDateTime>,
    /// Registered at.
    #[serde(with = "time::serde::rfc3339")]
    pub registered_at: OffsetDateTime,
    /// Removed at.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub removed_at: Option<OffsetDateTime>,
    /// Why it was removed.
    pub removed_reason: Option<String>,
    /// Last proof the device answered.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_seen_at: Option<OffsetDateTime>,
    /// Latest event on its stream.
    #[serde(with = "time::serde::rfc3339")]
    pub last_event_at: OffsetDateTime,
    /// The stream version the read model reflects (the `ETag`).
    pub version: u64,
}

impl From<query::DeviceDetail> for DeviceDto {
    fn from(d: query::DeviceDetail) -> Self {
        let facts = d.facts.unwrap_or(query::FactsView {
            identity: None,
            routeros_version: None,
            board_name: None,
            architecture: None,
            routerboard_firmware: None,
        });
        Self {
            id: *d.id.as_uuid(),
            name: d.name,
            endpoint: EndpointDto {
                host: d.endpoint.host,
                port: d.endpoint.port,
                transport: enum_text(&d.endpoint.transport),
                tls_fingerprint: d.endpoint.tls_fingerprint,
            },
            username: d.username,
            credentials_key_id: d.credentials_key_id,
            tags: d.tags,
            poll_interval_secs: d.poll_interval_secs,
            status: enum_text(&d.status),
            offline_reason: d.offline_reason,
            identity: facts.identity,
            routeros_version: facts.routeros_version,
            board_name: facts.board_name,
            architecture: facts.architecture,
            routerboard_firmware: facts.routerboard_firmware,
            breaker: enum_text(&d.breaker.state),
            breaker_failures: d.breaker.consecutive_failures,
            breaker_retry_at: d.breaker.retry_at,
            breaker_last_error: d.breaker.last_error,
            last_snapshot_commit: d.last_snapshot.as_ref().map(|s| s.commit.clone()),
            last_snapshot_sha256: d.last_snapshot.as_ref().map(|s| s.sha256.clone()),
            last_snapshot_at: d.last_snapshot.as_ref().map(|s| s.recorded_at),
            last_drift_at: d.last_drift_at,
            registered_at: d.registered_at,
            removed_at: d.removed_at,
            removed_reason: d.removed_reason,
            last_seen_at: d.last_seen_at,
            last_event_at: d.last_event_at,
            version: u64::try_from(d.stream_version).unwrap_or(0),
        }
    }
}

/// The device's read model, or 404 in this tenant.
pub(crate) async fn device_or_404(
    state: &ApiState,
    tenant: TenantId,
    id: Uuid,
) -> ApiResult<query::DeviceDetail> {
    query::device_detail(&state.pools().app, tenant, DeviceId::from_uuid(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("device {id}")))
}

/// Read a device: registration, state and last snapshot (`ETag`: its stream version).
#[utoipa::path(
    get,
    path = "/devices/{device_id}",
    operation_id = "get_device",
    tag = "devices",
    security(("bearer" = ["devices:read"])),
    params(("device_id" = Uuid, Path, description = "Device id.")),
    responses(
        (status = 200, description = "The device.", body = DeviceDto),
        (status = 404, response = NotFound),
    )
)]
pub async fn get_device(
    State(state): State<ApiState>,
    auth: Require<perm::DevicesRead>,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    let d: DeviceDto = device_or_404(&state, auth.principal().tenant, id)
        .await?
        .into();
    Ok((etag(d.version), Json(d)).into_response())
}

/// One recorded config version (snapshot or drift).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConfigVersionDto {
    /// Version of the device stream that recorded it.
    pub stream_version: i64,
    /// Global position of that event.
    pub position: i64,
    /// `snapshot` or `drift`.
    pub kind: String,
    /// Git commit holding the config.
    pub commit: String,
    /// SHA-256 of the stored file.
    pub sha256: String,
    /// Whether the content differs from the previous snapshot.
    pub changed: bool,
    /// Why it was taken.
    pub reason: String,
    /// RouterOS version it came from.
    pub routeros_version: Option<String>,
    /// The workflow that took it.
    pub workflow_id: Option<Uuid>,
    /// For drift: the SHA-256 expected.
    pub expected_sha256: Option<String>,
    /// When it was recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
}

impl From<query::ConfigVersion> for ConfigVersionDto {
    fn from(v: query::ConfigVersion) -> Self {
        Self {
            stream_version: v.stream_version,
            position: v.position,
            kind: enum_text(&v.kind),
            commit: v.commit,
            sha256: v.sha256,
            changed: v.changed,
            reason: v.reason,
            routeros_version: v.routeros_version,
            workflow_id: v.workflow_id.map(|w| *w.as_uuid()),
            expected_sha256: v.expected_sha256,
            recorded_at: v.recorded_at,
        }
    }
}

/// A page of config versions.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConfigVersionPage {
    /// Versions, newest first.
    pub items: Vec<ConfigVersionDto>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Parameters of the config version list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConfigVersionParams {
    /// Only snapshots that changed the config (and drift).
    #[serde(default)]
    pub changed_only: bool,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Versions per page (default 50, at most 500).
    pub limit: Option<u32>,
}

/// List a device's config versions, newest first.
#[utoipa::path(
    get,
    path = "/devices/{device_id}/configs",
    operation_id = "list_config_versions",
    tag = "configs",
    security(("bearer" = ["configs:read"])),
    params(("device_id" = Uuid, Path, description = "Device id."), ConfigVersionParams),
    responses(
        (status = 200, description = "A page of versions.", body = ConfigVersionPage),
        (status = 404, response = NotFound),
    )
)]
pub async fn list_config_versions(
    State(state): State<ApiState>,
    auth: Require<perm::ConfigsRead>,
    Path(id): Path<Uuid>,
    Query(q): Query<ConfigVersionParams>,
) -> ApiResult<Json<ConfigVersionPage>> {
    let tenant = auth.principal().tenant;
    device_or_404(&state, tenant, id).await?;
    let page = query::config_versions(
        &state.pools().app,
        tenant,
        DeviceId::from_uuid(id),
        &query::ConfigVersionQuery {
            changed_only: q.changed_only,
            cursor: unwrap_cursor(&q.cursor)?,
            limit: q.limit.map(i64::from),
        },
    )
    .await?;
    Ok(Json(ConfigVersionPage {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: wrap_cursor(page.next_cursor),
    }))
}

/// A device's stored configuration (normalised, secrets masked).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConfigText {
    /// The commit it was read from.
    pub commit: String,
    /// When that version was recorded.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub recorded_at: Option<OffsetDateTime>,
    /// SHA-256 of the text.
    pub sha256: Option<String>,
    /// The export text.
    pub text: String,
}

async fn archive_call<T: Send + 'static>(
    state: &ApiState,
    f: impl FnOnce(netledger_archive::Archive) -> Result<T, netledger_archive::ArchiveError>
    + Send
    + 'static,
) -> ApiResult<T> {
    let archive = state
        .archive()
        .cloned()
        .ok_or_else(|| ApiError::unavailable("the config history (archive) is not configured"))?;
    tokio::task::spawn_blocking(move || f(archive))
        .await
        .map_err(|e| ApiError::internal(format!("archive task: {e}")))?
        .map_err(Into::into)
}

fn check_commit(c: &str) -> ApiResult<()> {
    if (4..=40).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "`{c}` is not a commit id: give 4 to 40 hexadecimal digits"
        )))
    }
}

/// The config text of one version (a commit from the version list).
#[utoipa::path(
    get,
    path = "/devices/{device_id}/configs/{commit}",
    operation_id = "get_config_version",
    tag = "configs",
    security(("bearer" = ["configs:read"])),
    params(
        ("device_id" = Uuid, Path, description = "Device id."),
        ("commit" = String, Path, description = "Commit id (4-40 hex digits)."),
    ),
    responses(
        (status = 200, description = "The config.", body = ConfigText),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub async fn get_config_version(
    State(state): State<ApiState>,
    auth: Require<perm::ConfigsRead>,
    Path((id, commit)): Path<(Uuid, String)>,
) -> ApiResult<Json<ConfigText>> {
    let tenant = auth.principal().tenant;
    check_commit(&commit)?;
    device_or_404(&state, tenant, id).await?;
    let device = DeviceId::from_uuid(id);
    let c = commit.clone();
    let text = archive_call(&state, move |a| a.read(tenant, device, &c)).await?;
    Ok(Json(ConfigText {
        commit,
        recorded_at: None,
        sha256: Some(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            text.as_bytes(),
        ))),
        text,
    }))
}

/// Parameters of a diff.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DiffParams {
    /// The older commit.
    pub from: String,
    /// The newer commit.
    pub to: String,
}

/// The difference between two config versions.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConfigDiffDto {
    /// Older commit.
    pub from: String,
    /// Newer commit.
    pub to: String,
    /// Unified diff (empty when equal).
    pub unified: String,
    /// Per-menu changes: `sections[]` of `{path, changes[]}`, each change with a `kind`
    /// (`entry_added`, `entry_removed`, `entry_changed`, `set_changed`, `remove_added`,
    /// `remove_dropped`).
    #[schema(value_type = Object)]
    pub semantic: serde_json::Value,
}

/// Diff two config versions of a device (unified and per menu).
#[utoipa::path(
    get,
    path = "/devices/{device_id}/configs/diff",
    operation_id = "diff_configs",
    tag = "configs",
    security(("bearer" = ["configs:read"])),
    params(("device_id" = Uuid, Path, description = "Device id."), DiffParams),
    responses(
        (status = 200, description = "The diff.", body = ConfigDiffDto),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub async fn diff_configs(
    State(state): State<ApiState>,
    auth: Require<perm::ConfigsRead>,
    Path(id): Path<Uuid>,
    Query(q): Query<DiffParams>,
) -> ApiResult<Json<ConfigDiffDto>> {
    let tenant = auth.principal().tenant;
    check_commit(&q.from)?;
    check_commit(&q.to)?;
    device_or_404(&state, tenant, id).await?;
    let device = DeviceId::from_uuid(id);
    let (from, to) = (q.from.clone(), q.to.clone());
    let diff = archive_call(&state, move |a| a.diff(tenant, device, &from, &to)).await?;
    Ok(Json(ConfigDiffDto {
        from: q.from,
        to: q.to,
        unified: diff.unified,
        semantic: serde_json::to_value(&diff.semantic)
            .map_err(|e| ApiError::internal(format!("encode diff: {e}")))?,
    }))
}

/// The time of an as-of read.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AsOfParams {
    /// RFC 3339 time.
    #[serde(with = "time::serde::rfc3339")]
    #[param(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
}

/// A device's config as it was at a time (the latest version recorded at or before it).
#[utoipa::path(
    get,
    path = "/devices/{device_id}/config",
    operation_id = "config_as_of",
    tag = "configs",
    security(("bearer" = ["configs:read"])),
    params(("device_id" = Uuid, Path, description = "Device id."), AsOfParams),
    responses(
        (status = 200, description = "The config then.", body = ConfigText),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub async fn config_as_of(
    State(state): State<ApiState>,
    auth: Require<perm::ConfigsRead>,
    Path(id): Path<Uuid>,
    Query(q): Query<AsOfParams>,
) -> ApiResult<Json<ConfigText>> {
    let tenant = auth.principal().tenant;
    device_or_404(&state, tenant, id).await?;
    let device = DeviceId::from_uuid(id);
    let at = q.at;
    let found = archive_call(&state, move |a| {
        let Some(v) = a.as_of(tenant, device, at)? else {
            return Ok(None);
        };
        let text = a.read(tenant, device, &v.commit)?;
        Ok(Some((v, text)))
    })
    .await?;
    let (v, text) = found.ok_or_else(|| {
        ApiError::not_found(format!(
            "a config of device {id} recorded at or before {at}"
        ))
    })?;
    Ok(Json(ConfigText {
        commit: v.commit,
        recorded_at: Some(v.at),
        sha256: Some(v.sha256),
        text,
    }))
}

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
use crate::error::{
    ApiError, ApiResult, BadRequest, Conflict, NotFound, PreconditionFailed, PreconditionRequired,
    Unavailable, Validation,
};
use crate::http::{
    IdempotencyKey, IfMatch, Json, Path, Query, RequestId, Written, decode_cursor, encode_cursor,
    etag,
};
use crate::idempotency::{self, Stored};
use crate::state::ApiState;

pub(crate) fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_devices, register_device))
        .routes(routes!(get_device, update_device, remove_device))
        .routes(routes!(set_device_tags))
        .routes(routes!(set_device_credentials))
        .routes(routes!(get_device_state))
        .routes(routes!(get_device_metrics))
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

// ---- device commands -----------------------------------------------------------------------

/// How the platform talks to a device.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TransportInput {
    /// `plain` (API, port 8728), `tls_pinned` (API-SSL accepting one certificate) or
    /// `tls_verified` (API-SSL verified against the platform's trust roots).
    pub mode: String,
    /// For `tls_pinned`: lowercase hex SHA-256 of the device certificate (DER).
    pub fingerprint_sha256: Option<String>,
}

impl TransportInput {
    fn parse(&self) -> ApiResult<netledger_domain::device::Transport> {
        use netledger_domain::device::Transport;
        match (self.mode.as_str(), &self.fingerprint_sha256) {
            ("plain", None) => Ok(Transport::Plain),
            ("tls_verified", None) => Ok(Transport::TlsVerified),
            ("tls_pinned", Some(f))
                if f.len() == 64 && f.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                Ok(Transport::TlsPinned {
                    fingerprint_sha256: f.to_ascii_lowercase(),
                })
            }
            ("tls_pinned", _) => Err(ApiError::validation(
                "tls_pinned needs fingerprint_sha256: 64 hex digits (SHA-256 of the certificate)",
            )),
            ("plain" | "tls_verified", Some(_)) => Err(ApiError::validation(
                "fingerprint_sha256 is only for mode tls_pinned",
            )),
            (other, _) => Err(ApiError::validation(format!(
                "transport mode `{other}` is unknown: use plain, tls_pinned or tls_verified"
            ))),
        }
    }
}

/// A device to register. The password is stored encrypted and never returned.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewDevice {
    /// Name: 1-64 of letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// Hostname or IP address.
    pub host: String,
    /// API port (default 8728 for `plain`, 8729 for TLS).
    pub port: Option<u16>,
    /// Transport (default `plain`).
    pub transport: Option<TransportInput>,
    /// API login name.
    pub username: String,
    /// API password (write-only).
    pub password: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Poll interval in seconds, 5-86400 (default 60).
    pub poll_interval_secs: Option<u32>,
}

/// A device after a write (read the device for its full state).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceWritten {
    /// The device.
    pub device_id: Uuid,
    /// Its stream version after the write (the new `ETag`).
    pub version: u64,
    /// Events appended (none when nothing changed).
    pub events: Vec<Written>,
}

fn parse_tags(
    tags: &[String],
) -> ApiResult<std::collections::BTreeSet<netledger_domain::device::Tag>> {
    tags.iter()
        .map(|t| {
            netledger_domain::device::Tag::parse(t).map_err(|e| ApiError::validation(e.to_string()))
        })
        .collect()
}

fn endpoint(
    host: &str,
    port: Option<u16>,
    transport: Option<&TransportInput>,
) -> ApiResult<netledger_domain::device::Endpoint> {
    use netledger_domain::device::{Endpoint, Host, Transport};
    let transport = match transport {
        Some(t) => t.parse()?,
        None => Transport::Plain,
    };
    let default_port = if transport == Transport::Plain {
        8728
    } else {
        8729
    };
    Ok(Endpoint {
        host: Host::parse(host).map_err(|e| ApiError::validation(e.to_string()))?,
        port: port.unwrap_or(default_port),
        transport,
    })
}

fn device_written(
    id: Uuid,
    outcome: Option<netledger_store::AppendOutcome>,
    version: u64,
) -> DeviceWritten {
    let stream = DeviceId::from_uuid(id).stream();
    DeviceWritten {
        device_id: id,
        version: outcome.map(|o| o.stream_version).unwrap_or(version),
        events: outcome
            .map(|o| vec![Written::new(&stream, o)])
            .into_iter()
            .flatten()
            .collect(),
    }
}

/// Register a device (accepts `Idempotency-Key`).
#[utoipa::path(
    post,
    path = "/devices",
    operation_id = "register_device",
    tag = "devices",
    security(("bearer" = ["devices:write"])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key and body return the first result.")),
    request_body = NewDevice,
    responses(
        (status = 201, description = "Registered; `ETag` is its stream version.", body = DeviceWritten),
        (status = 409, response = Conflict),
        (status = 422, response = Validation),
        (status = 503, response = Unavailable),
    )
)]
/// With `Idempotency-Key`, a retry with the same body answers with the first result
/// (`idempotency-replayed: true`); another body under the key is 422
/// `idempotency-key-reused`; a retry while the first runs is 409 `idempotency-in-progress`.
pub async fn register_device(
    State(state): State<ApiState>,
    auth: Require<perm::DevicesWrite>,
    rid: RequestId,
    key: IdempotencyKey,
    Json(body): Json<NewDevice>,
) -> ApiResult<Response> {
    let p = auth.principal().clone();
    let st = state.clone();
    let request = body.clone();
    idempotency::run(
        &state,
        p.tenant,
        key.0,
        "register_device",
        &request,
        || async move {
            let cmd = netledger_store::devices::RegisterDevice {
                device_id: DeviceId::from_uuid(Uuid::now_v7()),
                name: netledger_domain::device::DeviceName::parse(&body.name)
                    .map_err(|e| ApiError::validation(e.to_string()))?,
                endpoint: endpoint(&body.host, body.port, body.transport.as_ref())?,
                username: body.username.clone(),
                password: netledger_store::credentials::DevicePassword::new(body.password.clone()),
                tags: parse_tags(&body.tags)?,
                poll_interval_secs: body.poll_interval_secs.unwrap_or(60),
            };
            let id = *cmd.device_id.as_uuid();
            let outcome = st
                .devices()?
                .register(p.tenant, cmd, rid.metadata(p.actor()))
                .await?;
            let w = device_written(id, Some(outcome), 0);
            Stored::json(axum::http::StatusCode::CREATED, Some(w.version), &w)
        },
    )
    .await
}

/// The device's folded state from its event stream, or 404.
async fn live_state(
    state: &ApiState,
    tenant: TenantId,
    id: Uuid,
) -> ApiResult<netledger_domain::device::DeviceState> {
    let s = state
        .devices()?
        .load(tenant, DeviceId::from_uuid(id))
        .await?;
    if s.registration.is_none() || s.removed {
        return Err(ApiError::not_found(format!("device {id}")));
    }
    Ok(s)
}

/// Changes to a device; absent fields stay.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct DevicePatch {
    /// New name.
    pub name: Option<String>,
    /// New host.
    pub host: Option<String>,
    /// New port.
    pub port: Option<u16>,
    /// New transport.
    pub transport: Option<TransportInput>,
    /// New poll interval.
    pub poll_interval_secs: Option<u32>,
}

/// Update a device's name, endpoint or poll interval (If-Match).
#[utoipa::path(
    patch,
    path = "/devices/{device_id}",
    operation_id = "update_device",
    tag = "devices",
    security(("bearer" = ["devices:write"])),
    params(
        ("device_id" = Uuid, Path, description = "Device id."),
        ("If-Match" = String, Header, description = "The device's ETag, or `*`."),
    ),
    request_body = DevicePatch,
    responses(
        (status = 200, description = "Updated (no events when nothing changed).", body = DeviceWritten),
        (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed),
        (status = 422, response = Validation),
        (status = 428, response = PreconditionRequired),
        (status = 503, response = Unavailable),
    )
)]
pub async fn update_device(
    State(state): State<ApiState>,
    auth: Require<perm::DevicesWrite>,
    rid: RequestId,
    Path(id): Path<Uuid>,
    if_match: IfMatch,
    Json(body): Json<DevicePatch>,
) -> ApiResult<Response> {
    let p = auth.principal();
    let current = live_state(&state, p.tenant, id).await?;
    let reg = current
        .registration
        .as_ref()
        .ok_or_else(|| ApiError::not_found(format!("device {id}")))?;
    let endpoint_changed = body.host.is_some() || body.port.is_some() || body.transport.is_some();
    let new_endpoint = if endpoint_changed {
        let host = body
            .host
            .clone()
            .unwrap_or_else(|| reg.endpoint.host.as_str().to_owned());
        let mut e = endpoint(
            &host,
            body.port.or(Some(reg.endpoint.port)),
            body.transport.as_ref(),
        )?;
        if body.transport.is_none() {
            e.transport = reg.endpoint.transport.clone();
        }
        Some(e)
    } else {
        None
    };
    let changes = netledger_store::devices::UpdateDevice {
        name: body
            .name
            .as_deref()
            .map(netledger_domain::device::DeviceName::parse)
            .transpose()
            .map_err(|e| ApiError::validation(e.to_string()))?,
        endpoint: new_endpoint,
        poll_interval_secs: body.poll_interval_secs,
    };
    let outcome = state
        .devices()?
        .update(
            p.tenant,
            DeviceId::from_uuid(id),
            changes,
            if_match.version(),
            rid.metadata(p.actor()),
        )
        .await?;
    let w = device_written(id, outcome, current.version);
    Ok((etag(w.version), Json(w)).into_response())
}

/// A device's tags.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TagsInput {
    /// The whole new tag set.
    pub tags: Vec<String>,
}

/// Replace a device's tags (If-Match).
#[utoipa::path(
    put,
    path = "/devices/{device_id}/tags",
    operation_id = "set_device_tags",
    tag = "devices",
    security(("bearer" = ["devices:write"])),
    params(
        ("device_id" = Uuid, Path, description = "Device id."),
        ("If-Match" = String, Header, description = "The device's ETag, or `*`."),
    ),
    request_body = TagsInput,
    responses(
        (status = 200, description = "Set (no events when unchanged).", body = DeviceWritten),
        (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed),
        (status = 422, response = Validation),
        (status = 428, response = PreconditionRequired),
        (status = 503, response = Unavailable),
    )
)]
pub async fn set_device_tags(
    State(state): State<ApiState>,
    auth: Require<perm::DevicesWrite>,
    rid: RequestId,
    Path(id): Path<Uuid>,
    if_match: IfMatch,
    Json(body): Json<TagsInput>,
) -> ApiResult<Response> {
    let p = auth.principal();
    let tags = parse_tags(&body.tags)?;
    let current = live_state(&state, p.tenant, id).await?;
    let outcome = state
        .devices()?
        .set_tags(
            p.tenant,
            DeviceId::from_uuid(id),
            tags,
            if_match.version(),
            rid.metadata(p.actor()),
        )
        .await?;
    let w = device_written(id, outcome, current.version);
    Ok((etag(w.version), Json(w)).into_response())
}

/// New device credentials (write-only: never returned).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CredentialsInput {
    /// API login name.
    pub username: String,
    /// API password.
    pub password: String,
}

/// Replace a device's login credentials (If-Match; write-only).
#[utoipa::path(
    put,
    path = "/devices/{device_id}/credentials",
    operation_id = "set_device_credentials",
    tag = "devices",
    security(("bearer" = ["devices:credentials"])),
    params(
        ("device_id" = Uuid, Path, description = "Device id."),
        ("If-Match" = String, Header, description = "The device's ETag, or `*`."),
    ),
    request_body = CredentialsInput,
    responses(
        (status = 200, description = "Stored encrypted.", body = DeviceWritten),
        (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed),
        (status = 422, response = Validation),
        (status = 428, response = PreconditionRequired),
        (status = 503, response = Unavailable),
    )
)]
pub async fn set_device_credentials(
    State(state): State<ApiState>,
    auth: Require<perm::DevicesCredentials>,
    rid: RequestId,
    Path(id): Path<Uuid>,
    if_match: IfMatch,
    Json(body): Json<CredentialsInput>,
) -> ApiResult<Response> {
    let p = auth.principal();
    let current = live_state(&state, p.tenant, id).await?;
    let outcome = state
        .devices()?
        .change_credentials(
            p.tenant,
            DeviceId::from_uuid(id),
            &body.username,
            &netledger_store::credentials::DevicePassword::new(body.password),
            if_match.version(),
            rid.metadata(p.actor()),
        )
        .await?;
    let w = device_written(id, Some(outcome), current.version);
    Ok((etag(w.version), Json(w)).into_response())
}

/// Why a device is removed.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemoveParams {
    /// Recorded on the `DeviceRemoved` event.
    pub reason: Option<String>,
}

/// Remove a device from management; its credentials are deleted (If-Match).
#[utoipa::path(
    delete,
    path = "/devices/{device_id}",
    operation_id = "remove_device",
    tag = "devices",
    security(("bearer" = ["devices:write"])),
    params(
        ("device_id" = Uuid, Path, description = "Device id."),
        ("If-Match" = String, Header, description = "The device's ETag, or `*`."),
        RemoveParams,
    ),
    responses(
        (status = 200, description = "Removed.", body = DeviceWritten),
        (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed),
        (status = 428, response = PreconditionRequired),
        (status = 503, response = Unavailable),
    )
)]
pub async fn remove_device(
    State(state): State<ApiState>,
    auth: Require<perm::DevicesWrite>,
    rid: RequestId,
    Path(id): Path<Uuid>,
    if_match: IfMatch,
    Query(q): Query<RemoveParams>,
) -> ApiResult<Response> {
    let p = auth.principal();
    let current = live_state(&state, p.tenant, id).await?;
    let reason = q
        .reason
        .unwrap_or_else(|| "removed through the API".to_owned());
    let outcome = state
        .devices()?
        .remove(
            p.tenant,
            DeviceId::from_uuid(id),
            &reason,
            if_match.version(),
            rid.metadata(p.actor()),
        )
        .await?;
    let w = device_written(id, Some(outcome), current.version);
    Ok((etag(w.version), Json(w)).into_response())
}

/// A device's state folded from its event stream right now (never behind, unlike the
/// list's read model).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceStateDto {
    /// Device.
    pub device_id: Uuid,
    /// Stream version (the `ETag`).
    pub version: u64,
    /// `unknown`, `online` or `offline`.
    pub status: String,
    /// Why it went offline last.
    pub offline_reason: Option<String>,
    /// `/system identity`.
    pub identity: Option<String>,
    /// RouterOS version.
    pub routeros_version: Option<String>,
    /// Board name.
    pub board_name: Option<String>,
    /// Whether the poller's breaker suspended polling.
    pub polling_suspended: bool,
    /// Last snapshot commit.
    pub last_snapshot_commit: Option<String>,
    /// Last snapshot SHA-256.
    pub last_snapshot_sha256: Option<String>,
}

/// A device's current state from its event stream.
#[utoipa::path(
    get,
    path = "/devices/{device_id}/state",
    operation_id = "get_device_state",
    tag = "devices",
    security(("bearer" = ["devices:read"])),
    params(("device_id" = Uuid, Path, description = "Device id.")),
    responses(
        (status = 200, description = "The state; `ETag` is its version.", body = DeviceStateDto),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub async fn get_device_state(
    State(state): State<ApiState>,
    auth: Require<perm::DevicesRead>,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    let s = live_state(&state, auth.principal().tenant, id).await?;
    let facts = s.facts.clone().unwrap_or_default();
    let dto = DeviceStateDto {
        device_id: id,
        version: s.version,
        status: enum_text(&s.status),
        offline_reason: s.offline_reason.clone(),
        identity: s.facts.as_ref().map(|_| facts.identity.clone()),
        routeros_version: s.facts.as_ref().map(|_| facts.version.clone()),
        board_name: s.facts.as_ref().map(|_| facts.board_name.clone()),
        polling_suspended: s.polling_suspended,
        last_snapshot_commit: s.last_snapshot.as_ref().map(|x| x.0.clone()),
        last_snapshot_sha256: s.last_snapshot.as_ref().map(|x| x.1.clone()),
    };
    Ok((etag(dto.version), Json(dto)).into_response())
}

/// A time range of telemetry.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MetricsParams {
    /// Start (inclusive, RFC 3339).
    #[param(format = DateTime)]
    pub from: String,
    /// End (exclusive, RFC 3339).
    #[param(format = DateTime)]
    pub to: String,
    /// `auto` (raw up to 6 hours, 5-minute rollups beyond), `raw` or `rollup`.
    pub resolution: Option<String>,
}

/// Device telemetry over a range.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MetricsDto {
    /// Device.
    pub device_id: Uuid,
    /// `raw` or `rollup` (what was used).
    pub resolution: String,
    /// Device gauges, oldest first: `{at, samples, cpu_load: {min, avg, max}, memory_used:
    /// {…}, memory_total, hdd_free: {…}, hdd_total, uptime_secs}`.
    #[schema(value_type = Vec<Object>)]
    pub device: serde_json::Value,
    /// Interface counters, oldest first: `{at, interface, samples, rx_bytes, tx_bytes,
    /// rx_errors, tx_errors, rx_bps: {min, avg, max}, tx_bps: {…}}`.
    #[schema(value_type = Vec<Object>)]
    pub interfaces: serde_json::Value,
}

/// A device's metrics over a time range (raw samples or 5-minute rollups).
#[utoipa::path(
    get,
    path = "/devices/{device_id}/metrics",
    operation_id = "get_device_metrics",
    tag = "devices",
    security(("bearer" = ["devices:read"])),
    params(("device_id" = Uuid, Path, description = "Device id."), MetricsParams),
    responses(
        (status = 200, description = "The samples.", body = MetricsDto),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    )
)]
pub async fn get_device_metrics(
    State(state): State<ApiState>,
    auth: Require<perm::DevicesRead>,
    Path(id): Path<Uuid>,
    Query(q): Query<MetricsParams>,
) -> ApiResult<Json<MetricsDto>> {
    use netledger_store::devices::metrics::{Resolution, samples};
    let tenant = auth.principal().tenant;
    let resolution = match q.resolution.as_deref().unwrap_or("auto") {
        "auto" => Resolution::Auto,
        "raw" => Resolution::Raw,
        "rollup" => Resolution::Rollup,
        other => {
            return Err(ApiError::bad_request(format!(
                "resolution `{other}` is unknown: use auto, raw or rollup"
            )));
        }
    };
    // The device first: another tenant's id is 404 whatever the parameters.
    device_or_404(&state, tenant, id).await?;
    let parse = |name: &str, v: &str| {
        OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
            .map_err(|_| ApiError::bad_request(format!("{name} `{v}` is not an RFC 3339 time")))
    };
    let (from, to) = (parse("from", &q.from)?, parse("to", &q.to)?);
    if to <= from {
        return Err(ApiError::bad_request("`to` must be after `from`"));
    }
    let s = samples(
        &state.pools().app,
        tenant,
        DeviceId::from_uuid(id),
        from,
        to,
        resolution,
    )
    .await?;
    Ok(Json(MetricsDto {
        device_id: id,
        resolution: enum_text(&s.resolution),
        device: to_json(&s.device)?,
        interfaces: to_json(&s.interfaces)?,
    }))
}

fn to_json<T: Serialize>(v: &T) -> ApiResult<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| ApiError::internal(format!("encode metrics: {e}")))
}

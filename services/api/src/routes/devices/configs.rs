//! A device's config history: its versions (read model), the config text of a version,
//! diffs and the config as of a time (the git archive).

use axum::extract::State;
use netledger_domain::DeviceId;
use netledger_projections::query;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Require;
use crate::authz::perm;
use crate::error::{ApiError, ApiResult, BadRequest, NotFound, Unavailable};
use crate::http::{Json, Path, Query};
use crate::state::ApiState;

use super::{device_or_404, unwrap_cursor, wrap_cursor};

/// One recorded config version (snapshot or drift).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConfigVersionDto {
    /// Version of the device stream that recorded it.
    pub stream_version: i64,
    /// Global position of that event.
    pub position: i64,
    /// `snapshot` or `drift`.
    pub kind: query::ConfigVersionKind,
    /// Git commit holding the config.
    pub commit: String,
    /// SHA-256 of the stored file.
    pub sha256: String,
    /// Whether the content differs from the previous snapshot.
    pub changed: bool,
    /// Why it was taken.
    pub reason: netledger_domain::device::SnapshotReason,
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
            kind: v.kind,
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
    #[param(pattern = r"^[0-9]{1,18}$")]
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
    params(
        ("device_id" = Uuid, Path, description = "Device id."),
        ConfigVersionParams,
        crate::http::MinPosition
    ),
    responses(
        (status = 200, description = "A page of versions (`Netledger-Projection-Behind: true` when `min_position` was not reached in time).", body = ConfigVersionPage),
        (status = 404, response = NotFound),
    )
)]
pub async fn list_config_versions(
    State(state): State<ApiState>,
    auth: Require<perm::ConfigsRead>,
    Path(id): Path<Uuid>,
    Query(q): Query<ConfigVersionParams>,
    Query(mp): Query<crate::http::MinPosition>,
) -> ApiResult<(axum::http::HeaderMap, Json<ConfigVersionPage>)> {
    let behind = crate::http::read_your_writes(
        &state,
        &[netledger_projections::projector::CONFIG_VERSIONS],
        mp.min_position,
    )
    .await?;
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
    Ok((
        behind,
        Json(ConfigVersionPage {
            items: page.items.into_iter().map(Into::into).collect(),
            next_cursor: wrap_cursor(page.next_cursor),
        }),
    ))
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
        ("commit" = String, Path, description = "Commit id (4-40 hex digits).", pattern = r"^[0-9a-fA-F]{4,40}$"),
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
    #[param(pattern = r"^[0-9a-fA-F]{4,40}$")]
    pub from: String,
    /// The newer commit.
    #[param(pattern = r"^[0-9a-fA-F]{4,40}$")]
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

//! Time travel: a device and the fleet as they were at an instant (`docs/auditing.md`,
//! `netledger_audit::as_of`): registration, state and config folded from the event store up
//! to the instant, the config text from git checked against the event's SHA-256, and the
//! event position and commit behind each part.

use axum::extract::State;
use netledger_audit::as_of::{self, AsOfError, ConfigRef};
use netledger_domain::DeviceId;
use netledger_store::EventReader;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Require;
use crate::authz::perm;
use crate::error::{ApiError, ApiResult, BadRequest, NotFound, Unavailable};
use crate::http::{Json, Path, Query};
use crate::state::ApiState;

use super::configs::AsOfParams;

/// A config version as the events know it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConfigRefDto {
    /// Git commit holding the text.
    pub commit: String,
    /// SHA-256 of the text (the event's; the text from git matches it).
    pub sha256: String,
    /// When the event was recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    /// The event's global position.
    pub position: i64,
    /// `ConfigSnapshotRecorded` or `ConfigDriftDetected`.
    pub event_type: String,
}

impl From<ConfigRef> for ConfigRefDto {
    fn from(c: ConfigRef) -> Self {
        Self {
            commit: c.commit,
            sha256: c.sha256,
            recorded_at: c.recorded_at,
            position: c.position,
            event_type: c.event_type,
        }
    }
}

/// A device as it was at an instant.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceAsOfDto {
    /// The device.
    pub device_id: Uuid,
    /// The instant asked for.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Position of the device's last event at or before `at` (what the state is folded to).
    pub position: i64,
    /// Its stream version then.
    pub stream_version: u64,
    /// Registered (and not removed) then.
    pub registered: bool,
    /// Removed by then.
    pub removed: bool,
    /// Name then.
    pub name: Option<String>,
    /// Management address then.
    pub host: Option<String>,
    /// API port then.
    pub port: Option<u16>,
    /// Tags then.
    pub tags: Vec<String>,
    /// `online`, `offline` or `unknown`.
    pub status: String,
    /// Why it was offline.
    pub offline_reason: Option<String>,
    /// RouterOS identity then.
    pub identity: Option<String>,
    /// RouterOS version then.
    pub routeros_version: Option<String>,
    /// Board then.
    pub board_name: Option<String>,
    /// Whether the breaker had suspended polling.
    pub polling_suspended: bool,
    /// The config then (the last config event at or before `at`).
    pub config: Option<ConfigRefDto>,
    /// Its text, from git at `config.commit`.
    pub config_text: Option<String>,
    /// Every config version known by then, newest first.
    pub versions: Vec<ConfigRefDto>,
}

fn as_of_error(e: AsOfError) -> ApiError {
    match e {
        AsOfError::Store(e) => e.into(),
        AsOfError::Archive(e) => e.into(),
        // Tampering or a bug: never served as if it were the history.
        other => ApiError::internal(other.to_string()),
    }
}

fn archive(state: &ApiState) -> ApiResult<netledger_archive::Archive> {
    state
        .archive()
        .cloned()
        .ok_or_else(|| ApiError::unavailable("the config history (archive) is not configured"))
}

/// A device as it was at a time: registration, state (from its events up to then) and
/// config (the text from git, checked against the event), with the position and commit
/// behind each part and the versions known by then. Also for removed devices.
#[utoipa::path(
    get,
    path = "/devices/{device_id}/as-of",
    operation_id = "device_as_of",
    tag = "devices",
    security(("bearer" = ["configs:read"])),
    params(("device_id" = Uuid, Path, description = "Device id."), AsOfParams),
    responses(
        (status = 200, description = "The device then.", body = DeviceAsOfDto),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub async fn device_as_of(
    State(state): State<ApiState>,
    auth: Require<perm::ConfigsRead>,
    Path(id): Path<Uuid>,
    Query(q): Query<AsOfParams>,
) -> ApiResult<Json<DeviceAsOfDto>> {
    let tenant = auth.principal().tenant;
    let reader = EventReader::tenant(state.pools().app.clone(), tenant);
    let archive = archive(&state)?;
    let d = as_of::device_as_of(&reader, &archive, tenant, DeviceId::from_uuid(id), q.at)
        .await
        .map_err(as_of_error)?
        .ok_or_else(|| ApiError::not_found(format!("device {id} at or before {}", q.at)))?;
    Ok(Json(DeviceAsOfDto {
        device_id: id,
        at: d.at,
        position: d.position,
        stream_version: d.stream_version,
        registered: d.registered,
        removed: d.removed,
        name: d.name,
        host: d.host,
        port: d.port,
        tags: d.tags,
        status: d.status.to_owned(),
        offline_reason: d.offline_reason,
        identity: d.identity,
        routeros_version: d.routeros_version,
        board_name: d.board_name,
        polling_suspended: d.polling_suspended,
        config: d.config.map(Into::into),
        config_text: d.config_text,
        versions: d.versions.into_iter().map(Into::into).collect(),
    }))
}

/// The query of the fleet as of a time.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FleetAsOfParams {
    /// RFC 3339 time.
    #[serde(with = "time::serde::rfc3339")]
    #[param(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    /// The `next_cursor` of the previous page (a device id: the page starts after it).
    pub cursor: Option<Uuid>,
    /// Devices per page (default 50, at most 200).
    pub limit: Option<u32>,
}

/// One device of the fleet then.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FleetAsOfEntry {
    /// The device.
    pub device_id: Uuid,
    /// Its name then.
    pub name: String,
    /// `online`, `offline` or `unknown`.
    pub status: String,
    /// RouterOS version then.
    pub routeros_version: Option<String>,
    /// Its config then (commit).
    pub config_commit: Option<String>,
    /// Position of its last event at or before the instant.
    pub position: i64,
}

/// A page of the fleet as it was.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FleetAsOfPage {
    /// The instant.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The tenant's last event position at or before it.
    pub position: i64,
    /// Devices registered (and not removed) then, by id.
    pub items: Vec<FleetAsOfEntry>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The fleet as it was at a time: the devices registered then (from the events), by id,
/// paginated.
#[utoipa::path(
    get,
    path = "/fleet/as-of",
    operation_id = "fleet_as_of",
    tag = "devices",
    security(("bearer" = ["configs:read"])),
    params(FleetAsOfParams),
    responses(
        (status = 200, description = "A page of the fleet then.", body = FleetAsOfPage),
        (status = 400, response = BadRequest),
        (status = 503, response = Unavailable),
    )
)]
pub async fn fleet_as_of(
    State(state): State<ApiState>,
    auth: Require<perm::ConfigsRead>,
    Query(q): Query<FleetAsOfParams>,
) -> ApiResult<Json<FleetAsOfPage>> {
    let tenant = auth.principal().tenant;
    let after = q.cursor.map(DeviceId::from_uuid);
    let limit = q.limit.unwrap_or(50).clamp(1, 200) as usize;
    let reader = EventReader::tenant(state.pools().app.clone(), tenant);
    let archive = archive(&state)?;
    let position = reader.position_as_of(q.at).await?;
    let (items, next) = as_of::fleet_as_of(&reader, &archive, tenant, q.at, after, limit)
        .await
        .map_err(as_of_error)?;
    Ok(Json(FleetAsOfPage {
        at: q.at,
        position,
        items: items
            .into_iter()
            .map(|e| FleetAsOfEntry {
                device_id: *e.device_id.as_uuid(),
                name: e.name,
                status: e.status.to_owned(),
                routeros_version: e.routeros_version,
                config_commit: e.config_commit,
                position: e.position,
            })
            .collect(),
        next_cursor: next.map(|d| d.to_string()),
    }))
}

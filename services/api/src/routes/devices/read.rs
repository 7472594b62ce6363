//! The device list and detail (read models) and a device's state folded from its event
//! stream right now.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use netledger_projections::query;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Require;
use crate::authz::perm;
use crate::error::{ApiError, ApiResult, BadRequest, NotFound, Unavailable};
use crate::http::{Json, Path, Query, etag};
use crate::state::ApiState;

use super::{device_or_404, live_state, unwrap_cursor, wrap_cursor};

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
    pub status: query::DeviceStatus,
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
    pub breaker: query::BreakerState,
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
            status: d.status,
            offline_reason: d.offline_reason,
            routeros_version: d.routeros_version,
            identity: d.identity,
            board_name: d.board_name,
            tags: d.tags,
            breaker: d.breaker,
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
    #[param(value_type = Option<query::DeviceStatus>)]
    pub status: Option<String>,
    /// Only devices with this tag.
    pub tag: Option<String>,
    /// Name, host or identity contains this (case-insensitive).
    pub search: Option<String>,
    /// Include removed devices.
    #[serde(default)]
    pub include_removed: bool,
    /// The `next_cursor` of the previous page.
    #[param(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}:"
    )]
    pub cursor: Option<String>,
    /// Devices per page (default 50, at most 500).
    pub limit: Option<u32>,
    /// Read-your-writes: wait (bounded) until the device read model has passed this global
    /// position (a write's `last_position`).
    pub min_position: Option<i64>,
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
) -> ApiResult<(axum::http::HeaderMap, Json<DevicePage>)> {
    let behind = crate::http::read_your_writes(
        &state,
        &[netledger_projections::projector::DEVICES],
        q.min_position,
    )
    .await?;
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
    Ok((
        behind,
        Json(DevicePage {
            items: page.items.into_iter().map(Into::into).collect(),
            next_cursor: wrap_cursor(page.next_cursor),
        }),
    ))
}

/// How the platform connects to a device.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EndpointDto {
    /// Hostname or IP address.
    pub host: String,
    /// API port.
    pub port: u16,
    /// `plain`, `tls_pinned` or `tls_verified`.
    pub transport: query::TransportKind,
    /// Pinned certificate SHA-256 (hex), for `tls_pinned`.
    pub tls_fingerprint: Option<String>,
    /// SSH access, when registered (`null`: API only).
    pub ssh: Option<SshAccessDto>,
}

/// A device's SSH access as registered.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SshAccessDto {
    /// SSH port.
    pub port: u16,
    /// `pinned` (only `host_key_sha256` is accepted) or `first_use` (the first connection's
    /// key will be recorded and pinned).
    #[schema(value_type = String, example = "pinned")]
    pub trust: String,
    /// Lowercase hex SHA-256 of the pinned host key (`null` while awaiting first use).
    pub host_key_sha256: Option<String>,
}

/// The public half of the SSH key a device's credentials hold (the private half is never
/// returned): import `public_key` for the user on the device (`/user ssh-keys import`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SshClientKeyDto {
    /// Key algorithm (`ssh-ed25519`, `ssh-rsa`, `ecdsa-sha2-nistp256`).
    pub algorithm: String,
    /// Lowercase hex SHA-256 of the public key (SSH wire encoding).
    pub fingerprint_sha256: String,
    /// The same fingerprint as `ssh-keygen -l` prints it (`SHA256:` and base64).
    pub fingerprint: String,
    /// The public key as one OpenSSH line.
    pub public_key: String,
}

impl From<netledger_domain::device::SshClientKey> for SshClientKeyDto {
    fn from(k: netledger_domain::device::SshClientKey) -> Self {
        // the domain checked the hex form; its OpenSSH form is `Fingerprint`'s Display
        let fingerprint = k
            .fingerprint_sha256
            .parse::<routeros_ssh::Fingerprint>()
            .map(|f| f.to_string())
            .unwrap_or_default();
        Self {
            algorithm: k.algorithm,
            fingerprint_sha256: k.fingerprint_sha256,
            fingerprint,
            public_key: k.public_key,
        }
    }
}

impl From<netledger_domain::device::SshAccess> for SshAccessDto {
    fn from(s: netledger_domain::device::SshAccess) -> Self {
        use netledger_domain::device::SshHostKey;
        let (trust, host_key_sha256) = match s.host_key {
            SshHostKey::Pinned { fingerprint_sha256 } => ("pinned", Some(fingerprint_sha256)),
            SshHostKey::FirstUse => ("first_use", None),
        };
        Self {
            port: s.port,
            trust: trust.to_owned(),
            host_key_sha256,
        }
    }
}

/// Which path each file job takes on this device (`api`, `ssh` or `unavailable`), decided
/// from its RouterOS version and its SSH access (docs/devices.md): the binary API wherever
/// it does the job, SSH/SFTP where it cannot.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FileAccessDto {
    /// Reading exports back (RouterOS 6 caps the API's file `contents` near 4 KB).
    pub export: netledger_domain::device::Via,
    /// Uploading change scripts and firmware packages (`/file add` from 7.9).
    pub upload: netledger_domain::device::Via,
    /// Downloading backups (`/file/read` from 7.13).
    pub download: netledger_domain::device::Via,
}

/// `(major, minor)` of a RouterOS version text (`7.16.2 (stable)`, `6.49.7`).
fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// A device condition an operator resolves (issue #15 item 3, docs/push.md step 1b):
/// Netledger rollback timers (`netledger-rollback-*` scheduler entries) are, or may still be,
/// on the device. Such a timer can fire later and revert whatever was changed since, so
/// config pushes refuse to arm while it stands. Resolve it by finishing or rolling back the
/// push that armed the timer, or by removing the entry after checking the device; the next
/// push that finds no timer clears the condition.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RollbackTimersDto {
    /// The scheduler entries found (or not confirmed gone).
    pub timers: Vec<String>,
    /// `refused_arm` (a push found them and refused to arm) or `rollback_unconfirmed` (a
    /// rollback could not confirm its own timer gone; that push keeps the device and retries).
    pub source: String,
    /// What happened, for the operator.
    pub detail: String,
    /// The workflow that found them.
    pub workflow_id: Uuid,
    /// When the condition was first recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
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
    /// The public half of the SSH key it logs in with over SSH instead of the password,
    /// when its credentials hold one.
    pub ssh_client_key: Option<SshClientKeyDto>,
    /// Tags.
    pub tags: Vec<String>,
    /// Poll interval.
    pub poll_interval_secs: u32,
    /// `unknown`, `online` or `offline`.
    pub status: query::DeviceStatus,
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
    pub breaker: query::BreakerState,
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
    /// The rollback-timer condition, while the device has it (`null` otherwise).
    pub rollback_timers: Option<RollbackTimersDto>,
    /// How file jobs reach the device, once its version is known (`null` before the first
    /// poll).
    pub file_access: Option<FileAccessDto>,
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
        let file_access =
            facts
                .routeros_version
                .as_deref()
                .and_then(major_minor)
                .map(|(major, minor)| {
                    let a = netledger_domain::device::file_access(
                        major,
                        minor,
                        d.endpoint.ssh.is_some(),
                    );
                    FileAccessDto {
                        export: a.export,
                        upload: a.upload,
                        download: a.download,
                    }
                });
        Self {
            id: *d.id.as_uuid(),
            name: d.name,
            endpoint: EndpointDto {
                host: d.endpoint.host,
                port: d.endpoint.port,
                transport: d.endpoint.transport,
                tls_fingerprint: d.endpoint.tls_fingerprint,
                ssh: d.endpoint.ssh.clone().map(Into::into),
            },
            username: d.username,
            credentials_key_id: d.credentials_key_id,
            ssh_client_key: d.ssh_client_key.map(Into::into),
            tags: d.tags,
            poll_interval_secs: d.poll_interval_secs,
            status: d.status,
            offline_reason: d.offline_reason,
            identity: facts.identity,
            routeros_version: facts.routeros_version,
            board_name: facts.board_name,
            architecture: facts.architecture,
            routerboard_firmware: facts.routerboard_firmware,
            breaker: d.breaker.state,
            breaker_failures: d.breaker.consecutive_failures,
            breaker_retry_at: d.breaker.retry_at,
            breaker_last_error: d.breaker.last_error,
            last_snapshot_commit: d.last_snapshot.as_ref().map(|s| s.commit.clone()),
            last_snapshot_sha256: d.last_snapshot.as_ref().map(|s| s.sha256.clone()),
            last_snapshot_at: d.last_snapshot.as_ref().map(|s| s.recorded_at),
            last_drift_at: d.last_drift_at,
            rollback_timers: d.rollback_timers.map(|c| RollbackTimersDto {
                timers: c.timers,
                source: c.source,
                detail: c.detail,
                workflow_id: c.workflow_id,
                since: c.since,
            }),
            file_access,
            registered_at: d.registered_at,
            removed_at: d.removed_at,
            removed_reason: d.removed_reason,
            last_seen_at: d.last_seen_at,
            last_event_at: d.last_event_at,
            version: u64::try_from(d.stream_version).unwrap_or(0),
        }
    }
}

/// Read a device: registration, state and last snapshot (`ETag`: its stream version).
#[utoipa::path(
    get,
    path = "/devices/{device_id}",
    operation_id = "get_device",
    tag = "devices",
    security(("bearer" = ["devices:read"])),
    params(("device_id" = Uuid, Path, description = "Device id."), crate::http::MinPosition),
    responses(
        (status = 200, description = "The device.", body = DeviceDto),
        (status = 404, response = NotFound),
    )
)]
pub async fn get_device(
    State(state): State<ApiState>,
    auth: Require<perm::DevicesRead>,
    Path(id): Path<Uuid>,
    Query(mp): Query<crate::http::MinPosition>,
) -> ApiResult<Response> {
    let behind = crate::http::read_your_writes(
        &state,
        &[netledger_projections::projector::DEVICES],
        mp.min_position,
    )
    .await?;
    let d: DeviceDto = device_or_404(&state, auth.principal().tenant, id)
        .await?
        .into();
    Ok((behind, etag(d.version), Json(d)).into_response())
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
    pub status: query::DeviceStatus,
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
        status: s.status.into(),
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

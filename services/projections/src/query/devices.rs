//! The device list and one device's detail (`rm_devices`, `rm_device_tags`).

use netledger_domain::{DeviceId, TenantId};
use netledger_store::begin_tenant;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Page, decode_err, like_escape, limit_of, next_page, text_enum};
use crate::error::ProjectionError;

/// Reachability of a device as last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum DeviceStatus {
    /// Never polled yet.
    Unknown,
    /// Answering.
    Online,
    /// Not answering.
    Offline,
}

impl From<netledger_domain::device::Status> for DeviceStatus {
    fn from(s: netledger_domain::device::Status) -> Self {
        use netledger_domain::device::Status;
        match s {
            Status::Unknown => Self::Unknown,
            Status::Online => Self::Online,
            Status::Offline => Self::Offline,
        }
    }
}

/// The poller's circuit breaker for a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum BreakerState {
    /// Polling normally.
    Closed,
    /// Polling suspended until `retry_at`.
    Open,
}

/// How the platform connects to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum TransportKind {
    /// Plain API.
    Plain,
    /// API-SSL with a pinned certificate fingerprint.
    TlsPinned,
    /// API-SSL verified against the trust roots.
    TlsVerified,
}

/// Filters and page of the device list. Order: by name, then id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceQuery {
    /// Only devices with this status.
    pub status: Option<DeviceStatus>,
    /// Only devices carrying this tag.
    pub tag: Option<String>,
    /// Only devices whose name, host or identity contains this text (case-insensitive).
    pub search: Option<String>,
    /// Include removed devices (left out by default).
    #[serde(default)]
    pub include_removed: bool,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: Option<i64>,
}

/// A device in the list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceSummary {
    /// Device id.
    pub id: DeviceId,
    /// Display name.
    pub name: String,
    /// Management host.
    pub host: String,
    /// API port.
    pub port: u16,
    /// Reachability.
    pub status: DeviceStatus,
    /// Why it is offline, when it is.
    pub offline_reason: Option<String>,
    /// RouterOS version it reported.
    pub routeros_version: Option<String>,
    /// `/system identity`.
    pub identity: Option<String>,
    /// Board name.
    pub board_name: Option<String>,
    /// Tags, sorted.
    pub tags: Vec<String>,
    /// Poller circuit breaker.
    pub breaker: BreakerState,
    /// Time of the latest event proving the device answered (see docs/projections.md).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_seen_at: Option<OffsetDateTime>,
    /// Time of the latest event on its stream.
    #[serde(with = "time::serde::rfc3339")]
    pub last_event_at: OffsetDateTime,
    /// When it was removed, if it was.
    #[serde(with = "time::serde::rfc3339::option")]
    pub removed_at: Option<OffsetDateTime>,
}

/// Endpoint of a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointView {
    /// Hostname or IP address.
    pub host: String,
    /// API port.
    pub port: u16,
    /// Transport.
    pub transport: TransportKind,
    /// Pinned certificate fingerprint (SHA-256, hex) for `tls_pinned`.
    pub tls_fingerprint: Option<String>,
    /// SSH access, when registered (host key pinned or awaited on first use).
    pub ssh: Option<netledger_domain::device::SshAccess>,
}

/// Facts the device reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactsView {
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
}

/// The poller's circuit breaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerView {
    /// Open or closed.
    pub state: BreakerState,
    /// Consecutive failures that opened it.
    pub consecutive_failures: Option<u32>,
    /// When the next attempt is due.
    #[serde(with = "time::serde::rfc3339::option")]
    pub retry_at: Option<OffsetDateTime>,
    /// The last error.
    pub last_error: Option<String>,
}

/// The last config snapshot of a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotView {
    /// Git commit holding it.
    pub commit: String,
    /// SHA-256 of the stored file.
    pub sha256: String,
    /// When it was recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
}

/// The rollback-timer condition of a device (issue #15 item 3, `docs/push.md` step 1b):
/// Netledger rollback timers are, or may still be, on it, and pushes refuse to arm until
/// an operator resolves it and a workflow sees none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackTimersView {
    /// The scheduler entries found (or not confirmed gone).
    pub timers: Vec<String>,
    /// `refused_arm` (a push found them) or `rollback_unconfirmed` (a rollback could not
    /// confirm its own timer gone).
    pub source: String,
    /// What happened, for the operator.
    pub detail: String,
    /// The workflow that found them.
    pub workflow_id: uuid::Uuid,
    /// When the condition was first recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
}

/// Everything the read model knows about one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceDetail {
    /// Device id.
    pub id: DeviceId,
    /// Display name.
    pub name: String,
    /// How to reach it.
    pub endpoint: EndpointView,
    /// Login name (the password is never exposed).
    pub username: String,
    /// Id of the key that encrypted its credentials.
    pub credentials_key_id: String,
    /// The public half of the SSH key it logs in with over SSH, when its credentials hold
    /// one (the private half is never exposed).
    pub ssh_client_key: Option<netledger_domain::device::SshClientKey>,
    /// Tags, sorted.
    pub tags: Vec<String>,
    /// Poll interval.
    pub poll_interval_secs: u32,
    /// Reachability.
    pub status: DeviceStatus,
    /// Why it is offline, when it is.
    pub offline_reason: Option<String>,
    /// What it reported, once it was reached.
    pub facts: Option<FactsView>,
    /// Poller circuit breaker.
    pub breaker: BreakerView,
    /// Last config snapshot.
    pub last_snapshot: Option<SnapshotView>,
    /// When drift was last detected.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_drift_at: Option<OffsetDateTime>,
    /// The rollback-timer condition, while the device has it.
    pub rollback_timers: Option<RollbackTimersView>,
    /// When it was (last) registered.
    #[serde(with = "time::serde::rfc3339")]
    pub registered_at: OffsetDateTime,
    /// When it was removed, if it was.
    #[serde(with = "time::serde::rfc3339::option")]
    pub removed_at: Option<OffsetDateTime>,
    /// Why it was removed.
    pub removed_reason: Option<String>,
    /// Time of the latest event proving the device answered.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_seen_at: Option<OffsetDateTime>,
    /// Time of the latest event on its stream.
    #[serde(with = "time::serde::rfc3339")]
    pub last_event_at: OffsetDateTime,
    /// Version of its stream the read model reflects (for `If-Match` style checks).
    pub stream_version: i64,
}

const DEVICE_SUMMARY_COLUMNS: &str = "d.device_id, d.name, d.host, d.port, d.status, \
    d.offline_reason, d.routeros_version, d.identity, d.board_name, d.tags, d.breaker, \
    d.last_seen_at, d.last_event_at, d.removed_at";

/// A nullable jsonb column of `rm_devices` decoded into the domain type it holds.
fn json_column<T: serde::de::DeserializeOwned>(
    r: &PgRow,
    column: &'static str,
) -> Result<Option<T>, ProjectionError> {
    let decode = decode_err("decode a device's json column");
    r.try_get::<Option<serde_json::Value>, _>(column)
        .map_err(&decode)?
        .map(serde_json::from_value)
        .transpose()
        .map_err(|x| decode(sqlx::Error::Decode(Box::new(x))))
}

fn u16_of(n: i32) -> u16 {
    u16::try_from(n).unwrap_or(0)
}

fn device_summary(r: &PgRow) -> Result<DeviceSummary, ProjectionError> {
    let e = decode_err("decode device");
    Ok(DeviceSummary {
        id: DeviceId::from_uuid(r.try_get("device_id").map_err(&e)?),
        name: r.try_get("name").map_err(&e)?,
        host: r.try_get("host").map_err(&e)?,
        port: u16_of(r.try_get("port").map_err(&e)?),
        status: text_enum(r.try_get("status").map_err(&e)?)?,
        offline_reason: r.try_get("offline_reason").map_err(&e)?,
        routeros_version: r.try_get("routeros_version").map_err(&e)?,
        identity: r.try_get("identity").map_err(&e)?,
        board_name: r.try_get("board_name").map_err(&e)?,
        tags: r.try_get("tags").map_err(&e)?,
        breaker: text_enum(r.try_get("breaker").map_err(&e)?)?,
        last_seen_at: r.try_get("last_seen_at").map_err(&e)?,
        last_event_at: r.try_get("last_event_at").map_err(&e)?,
        removed_at: r.try_get("removed_at").map_err(&e)?,
    })
}

fn device_cursor(cursor: &Option<String>) -> Result<(String, Uuid), ProjectionError> {
    match cursor {
        // Before every name: names are never empty.
        None => Ok((String::new(), Uuid::nil())),
        Some(c) => {
            let bad = || ProjectionError::BadCursor { cursor: c.clone() };
            let (id, name) = c.split_at_checked(36).ok_or_else(bad)?;
            let name = name.strip_prefix(':').ok_or_else(bad)?;
            Ok((name.to_owned(), Uuid::parse_str(id).map_err(|_| bad())?))
        }
    }
}

/// A page of the device list, ordered by name then id.
pub async fn list_devices(
    app: &PgPool,
    tenant: TenantId,
    q: &DeviceQuery,
) -> Result<Page<DeviceSummary>, ProjectionError> {
    let limit = limit_of(q.limit);
    let (after_name, after_id) = device_cursor(&q.cursor)?;
    let search = q
        .search
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| format!("%{}%", like_escape(s)));
    let status = q.status.map(|s| crate::projectors::enum_text(&s));
    // The driving index follows the most selective filter: the tag index, the status
    // index, or the name index; the other filters are checked on the rows it yields.
    let residual = "($4::text IS NULL OR d.status = $4) \
        AND ($5::text IS NULL OR d.name ILIKE $5 OR d.host ILIKE $5 OR d.identity ILIKE $5) \
        AND ($6 OR d.removed_at IS NULL)";
    let sql = if q.tag.is_some() {
        format!(
            // Walk the tag index in page order and look each device up by primary key
            // (`OFFSET 0` keeps the planner from turning the lookup into a hash join that
            // reads and sorts every device carrying the tag).
            "SELECT {DEVICE_SUMMARY_COLUMNS} FROM rm_device_tags g \
             CROSS JOIN LATERAL (SELECT * FROM rm_devices d \
                 WHERE d.tenant_id = g.tenant_id AND d.device_id = g.device_id AND {residual} \
                 OFFSET 0) d \
             WHERE g.tenant_id = $1 AND g.tag = $7 AND (g.name, g.device_id) > ($2, $3) \
             ORDER BY g.name, g.device_id LIMIT $8"
        )
    } else if q.status.is_some() {
        format!(
            "SELECT {DEVICE_SUMMARY_COLUMNS} FROM rm_devices d \
             WHERE d.tenant_id = $1 AND d.status = $4 AND (d.name, d.device_id) > ($2, $3) \
               AND {residual} AND ($7::text IS NULL) \
             ORDER BY d.status, d.name, d.device_id LIMIT $8"
        )
    } else {
        format!(
            "SELECT {DEVICE_SUMMARY_COLUMNS} FROM rm_devices d \
             WHERE d.tenant_id = $1 AND (d.name, d.device_id) > ($2, $3) \
               AND {residual} AND ($7::text IS NULL) \
             ORDER BY d.name, d.device_id LIMIT $8"
        )
    };
    let mut tx = begin_tenant(app, tenant).await?;
    let rows = sqlx::query(&sql)
        .bind(tenant.as_uuid())
        .bind(&after_name)
        .bind(after_id)
        .bind(status)
        .bind(search)
        .bind(q.include_removed)
        .bind(q.tag.as_deref())
        .bind(limit + 1)
        .fetch_all(&mut *tx)
        .await
        .map_err(ProjectionError::db("list devices"))?;
    tx.commit().await.map_err(ProjectionError::db("end read"))?;
    let mut items = rows
        .iter()
        .map(device_summary)
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = next_page(&mut items, limit, |d| format!("{}:{}", d.id, d.name));
    Ok(Page { items, next_cursor })
}

/// One device's detail, or `None` if the tenant has no such device.
pub async fn device_detail(
    app: &PgPool,
    tenant: TenantId,
    device: DeviceId,
) -> Result<Option<DeviceDetail>, ProjectionError> {
    let mut tx = begin_tenant(app, tenant).await?;
    let row = sqlx::query(
        "SELECT device_id, name, host, port, transport, tls_fingerprint, username, \
                credentials_key_id, tags, poll_interval_secs, status, offline_reason, identity, \
                routeros_version, board_name, architecture, routerboard_firmware, breaker, \
                breaker_failures, breaker_retry_at, breaker_last_error, last_snapshot_commit, \
                last_snapshot_sha256, last_snapshot_at, last_drift_at, registered_at, removed_at, \
                removed_reason, last_seen_at, last_event_at, stream_version, rollback_timers, ssh, \
                ssh_client_key \
         FROM rm_devices WHERE tenant_id = $1 AND device_id = $2",
    )
    .bind(tenant.as_uuid())
    .bind(device.as_uuid())
    .fetch_optional(&mut *tx)
    .await
    .map_err(ProjectionError::db("read device"))?;
    tx.commit().await.map_err(ProjectionError::db("end read"))?;
    let Some(r) = row else {
        return Ok(None);
    };
    let e = decode_err("decode device");
    let identity: Option<String> = r.try_get("identity").map_err(&e)?;
    let routeros_version: Option<String> = r.try_get("routeros_version").map_err(&e)?;
    let board_name: Option<String> = r.try_get("board_name").map_err(&e)?;
    let architecture: Option<String> = r.try_get("architecture").map_err(&e)?;
    let routerboard_firmware: Option<String> = r.try_get("routerboard_firmware").map_err(&e)?;
    let facts = (identity.is_some()
        || routeros_version.is_some()
        || board_name.is_some()
        || architecture.is_some())
    .then_some(FactsView {
        identity,
        routeros_version,
        board_name,
        architecture,
        routerboard_firmware,
    });
    let commit: Option<String> = r.try_get("last_snapshot_commit").map_err(&e)?;
    let sha256: Option<String> = r.try_get("last_snapshot_sha256").map_err(&e)?;
    let at: Option<OffsetDateTime> = r.try_get("last_snapshot_at").map_err(&e)?;
    let last_snapshot = match (commit, sha256, at) {
        (Some(commit), Some(sha256), Some(recorded_at)) => Some(SnapshotView {
            commit,
            sha256,
            recorded_at,
        }),
        _ => None,
    };
    let failures: Option<i32> = r.try_get("breaker_failures").map_err(&e)?;
    let interval: i32 = r.try_get("poll_interval_secs").map_err(&e)?;
    Ok(Some(DeviceDetail {
        id: DeviceId::from_uuid(r.try_get("device_id").map_err(&e)?),
        name: r.try_get("name").map_err(&e)?,
        endpoint: EndpointView {
            host: r.try_get("host").map_err(&e)?,
            port: u16_of(r.try_get("port").map_err(&e)?),
            transport: text_enum(r.try_get("transport").map_err(&e)?)?,
            tls_fingerprint: r.try_get("tls_fingerprint").map_err(&e)?,
            ssh: json_column(&r, "ssh")?,
        },
        username: r.try_get("username").map_err(&e)?,
        credentials_key_id: r.try_get("credentials_key_id").map_err(&e)?,
        ssh_client_key: json_column(&r, "ssh_client_key")?,
        tags: r.try_get("tags").map_err(&e)?,
        poll_interval_secs: u32::try_from(interval).unwrap_or(0),
        status: text_enum(r.try_get("status").map_err(&e)?)?,
        offline_reason: r.try_get("offline_reason").map_err(&e)?,
        facts,
        breaker: BreakerView {
            state: text_enum(r.try_get("breaker").map_err(&e)?)?,
            consecutive_failures: failures.and_then(|f| u32::try_from(f).ok()),
            retry_at: r.try_get("breaker_retry_at").map_err(&e)?,
            last_error: r.try_get("breaker_last_error").map_err(&e)?,
        },
        last_snapshot,
        last_drift_at: r.try_get("last_drift_at").map_err(&e)?,
        rollback_timers: r
            .try_get::<Option<serde_json::Value>, _>("rollback_timers")
            .map_err(&e)?
            .map(serde_json::from_value)
            .transpose()
            .map_err(|source| ProjectionError::Database {
                operation: "decode rm_devices.rollback_timers",
                source: sqlx::Error::Decode(Box::new(source)),
            })?,
        registered_at: r.try_get("registered_at").map_err(&e)?,
        removed_at: r.try_get("removed_at").map_err(&e)?,
        removed_reason: r.try_get("removed_reason").map_err(&e)?,
        last_seen_at: r.try_get("last_seen_at").map_err(&e)?,
        last_event_at: r.try_get("last_event_at").map_err(&e)?,
        stream_version: r.try_get("stream_version").map_err(&e)?,
    }))
}

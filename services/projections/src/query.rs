//! Tenant-scoped queries over the read models, for the REST API.
//!
//! Every function takes the **app** pool (`netledger_app`) and a tenant, and runs in one
//! transaction scoped to that tenant ([`netledger_store::begin_tenant`]): row-level security
//! shows only that tenant's rows whatever the query says. Lists are keyset-paginated in a
//! stable order, each order served by an index (see the migration): pass a page's
//! `next_cursor` back unchanged to get the next page; `None` means there is no next page.
//! Limits are clamped to 1..=[`MAX_LIMIT`] (default [`DEFAULT_LIMIT`]).

use netledger_domain::workflow::{FailureClass, Outcome, RolloutState};
use netledger_domain::{DeviceId, RolloutId, TenantId, WorkflowId};
use netledger_store::begin_tenant;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::ProjectionError;

/// Page size when none is asked for.
pub const DEFAULT_LIMIT: i64 = 50;
/// Largest page size.
pub const MAX_LIMIT: i64 = 500;

fn limit_of(limit: Option<i64>) -> i64 {
    limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items, in the list's order.
    pub items: Vec<T>,
    /// Cursor of the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

fn decode_err(operation: &'static str) -> impl Fn(sqlx::Error) -> ProjectionError {
    move |source| ProjectionError::Database { operation, source }
}

/// A `snake_case` text column as a serde enum.
fn text_enum<T: DeserializeOwned>(text: String) -> Result<T, ProjectionError> {
    serde_json::from_value(serde_json::Value::String(text)).map_err(|e| ProjectionError::Database {
        operation: "decode read-model enum",
        source: sqlx::Error::Decode(Box::new(e)),
    })
}

fn numeric_cursor(cursor: &Option<String>) -> Result<Option<i64>, ProjectionError> {
    match cursor {
        None => Ok(None),
        Some(c) => c
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ProjectionError::BadCursor { cursor: c.clone() }),
    }
}

/// Escapes `%`, `_` and `\` for a `LIKE` pattern.
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    for ch in text.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

// ---- devices -------------------------------------------------------------------------------

/// Reachability of a device as last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    /// Never polled yet.
    Unknown,
    /// Answering.
    Online,
    /// Not answering.
    Offline,
}

/// The poller's circuit breaker for a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Polling normally.
    Closed,
    /// Polling suspended until `retry_at`.
    Open,
}

/// How the platform connects to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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

/// Cuts the extra row fetched to learn whether another page exists, returning its cursor.
fn next_page<T>(items: &mut Vec<T>, limit: i64, cursor: impl Fn(&T) -> String) -> Option<String> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if items.len() > limit {
        items.truncate(limit);
        items.last().map(cursor)
    } else {
        None
    }
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
                removed_reason, last_seen_at, last_event_at, stream_version \
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
        },
        username: r.try_get("username").map_err(&e)?,
        credentials_key_id: r.try_get("credentials_key_id").map_err(&e)?,
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
        registered_at: r.try_get("registered_at").map_err(&e)?,
        removed_at: r.try_get("removed_at").map_err(&e)?,
        removed_reason: r.try_get("removed_reason").map_err(&e)?,
        last_seen_at: r.try_get("last_seen_at").map_err(&e)?,
        last_event_at: r.try_get("last_event_at").map_err(&e)?,
        stream_version: r.try_get("stream_version").map_err(&e)?,
    }))
}

// ---- config versions -----------------------------------------------------------------------

/// Whether a config version is a snapshot or detected drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigVersionKind {
    /// `ConfigSnapshotRecorded`.
    Snapshot,
    /// `ConfigDriftDetected`.
    Drift,
}

/// One stored config version of a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigVersion {
    /// Version of the recording event in the device's stream (the page order, newest first).
    pub stream_version: i64,
    /// Global position of the recording event.
    pub position: i64,
    /// Snapshot or drift.
    pub kind: ConfigVersionKind,
    /// Git commit holding the config.
    pub commit: String,
    /// SHA-256 of the stored file.
    pub sha256: String,
    /// Whether the content differs from the previous snapshot (always true for drift).
    pub changed: bool,
    /// Snapshot reason (`initial`, `scheduled`, `on_demand`, `pre_push`, `post_push`,
    /// `drift`), or `drift` for detected drift.
    pub reason: String,
    /// RouterOS version the export came from (snapshots).
    pub routeros_version: Option<String>,
    /// The workflow that took the snapshot, if any.
    pub workflow_id: Option<WorkflowId>,
    /// Drift: the SHA-256 the device was expected to match.
    pub expected_sha256: Option<String>,
    /// When it was recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
}

/// Filters and page of a device's config versions. Order: newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigVersionQuery {
    /// Only versions whose content changed.
    #[serde(default)]
    pub changed_only: bool,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: Option<i64>,
}

/// A page of one device's config versions, newest first.
pub async fn config_versions(
    app: &PgPool,
    tenant: TenantId,
    device: DeviceId,
    q: &ConfigVersionQuery,
) -> Result<Page<ConfigVersion>, ProjectionError> {
    let limit = limit_of(q.limit);
    let before = numeric_cursor(&q.cursor)?.unwrap_or(i64::MAX);
    let mut tx = begin_tenant(app, tenant).await?;
    let rows = sqlx::query(
        "SELECT stream_version, position, kind, commit, sha256, changed, reason, \
                routeros_version, workflow_id, expected_sha256, recorded_at \
         FROM rm_config_versions \
         WHERE tenant_id = $1 AND device_id = $2 AND stream_version < $3 AND (NOT $4 OR changed) \
         ORDER BY stream_version DESC LIMIT $5",
    )
    .bind(tenant.as_uuid())
    .bind(device.as_uuid())
    .bind(before)
    .bind(q.changed_only)
    .bind(limit + 1)
    .fetch_all(&mut *tx)
    .await
    .map_err(ProjectionError::db("list config versions"))?;
    tx.commit().await.map_err(ProjectionError::db("end read"))?;
    let e = decode_err("decode config version");
    let mut items = Vec::with_capacity(rows.len());
    for r in &rows {
        let workflow: Option<Uuid> = r.try_get("workflow_id").map_err(&e)?;
        items.push(ConfigVersion {
            stream_version: r.try_get("stream_version").map_err(&e)?,
            position: r.try_get("position").map_err(&e)?,
            kind: text_enum(r.try_get("kind").map_err(&e)?)?,
            commit: r.try_get("commit").map_err(&e)?,
            sha256: r.try_get("sha256").map_err(&e)?,
            changed: r.try_get("changed").map_err(&e)?,
            reason: r.try_get("reason").map_err(&e)?,
            routeros_version: r.try_get("routeros_version").map_err(&e)?,
            workflow_id: workflow.map(WorkflowId::from_uuid),
            expected_sha256: r.try_get("expected_sha256").map_err(&e)?,
            recorded_at: r.try_get("recorded_at").map_err(&e)?,
        });
    }
    let next_cursor = next_page(&mut items, limit, |v| v.stream_version.to_string());
    Ok(Page { items, next_cursor })
}

// ---- workflow runs -------------------------------------------------------------------------

/// Where a workflow run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowRunState {
    /// Steps are running.
    Running,
    /// Waiting for a timer.
    Waiting,
    /// A step failed and will be retried at `wake_at`.
    Retrying,
    /// Finished: done.
    Succeeded,
    /// Finished: the change took effect and its safety net was disarmed.
    Committed,
    /// Finished: the device was brought back to its snapshot.
    RolledBack,
    /// Finished: cancelled.
    Cancelled,
    /// Finished: failed.
    Failed,
}

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Started, no outcome yet.
    Running,
    /// Completed.
    Completed,
    /// Failed; another attempt is due at `retry_at`.
    Retrying,
    /// Failed for good.
    Failed,
}

/// A workflow run in a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRun {
    /// Workflow id.
    pub id: WorkflowId,
    /// Definition name.
    pub kind: String,
    /// Definition version.
    pub definition_version: u32,
    /// Where it is.
    pub state: WorkflowRunState,
    /// How it ended, once finished.
    pub outcome: Option<Outcome>,
    /// Why, for anything but success.
    pub reason: Option<String>,
    /// Devices it touches.
    pub devices: Vec<DeviceId>,
    /// The rollout that started it.
    pub rollout_id: Option<RolloutId>,
    /// The step running now.
    pub current_step: Option<String>,
    /// Step completions so far.
    pub steps_completed: u32,
    /// Failed step attempts so far.
    pub failed_attempts: u32,
    /// The last step error.
    pub last_error: Option<String>,
    /// When it wakes up (timer or retry).
    #[serde(with = "time::serde::rfc3339::option")]
    pub wake_at: Option<OffsetDateTime>,
    /// The last signal delivered.
    pub last_signal: Option<String>,
    /// Idempotency key it was started with.
    pub idempotency_key: Option<String>,
    /// When it started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When it finished.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// Time of its latest journal event.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowStep {
    /// Step name.
    pub step: String,
    /// Display order (journal version of its first start).
    pub seq: i64,
    /// Where it is.
    pub state: StepState,
    /// Attempts made.
    pub attempts: u32,
    /// First start.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// Completion or final failure.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// The last error.
    pub last_error: Option<String>,
    /// Class of the last failure.
    pub failure_class: Option<FailureClass>,
    /// When the next attempt is due.
    #[serde(with = "time::serde::rfc3339::option")]
    pub retry_at: Option<OffsetDateTime>,
}

/// A run with its input, output and steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRunDetail {
    /// The run.
    pub run: WorkflowRun,
    /// The input it was started with.
    pub input: serde_json::Value,
    /// The definition's result, once finished.
    pub output: Option<serde_json::Value>,
    /// Its steps in order.
    pub steps: Vec<WorkflowStep>,
}

/// Filters and page of the run list. Order: newest first (by start).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRunQuery {
    /// Only runs touching this device.
    pub device: Option<DeviceId>,
    /// Only runs of this definition.
    pub kind: Option<String>,
    /// Only runs in this state.
    pub state: Option<WorkflowRunState>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: Option<i64>,
}

const RUN_COLUMNS: &str = "r.workflow_id, r.kind, r.definition_version, r.state, r.outcome, \
    r.reason, r.devices, r.rollout_id, r.current_step, r.steps_completed, r.failed_attempts, \
    r.last_error, r.wake_at, r.last_signal, r.idempotency_key, r.started_at, r.finished_at, \
    r.updated_at, r.started_position";

fn u32_of(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

fn workflow_run(r: &PgRow) -> Result<(WorkflowRun, i64), ProjectionError> {
    let e = decode_err("decode workflow run");
    let outcome: Option<String> = r.try_get("outcome").map_err(&e)?;
    let devices: Vec<Uuid> = r.try_get("devices").map_err(&e)?;
    let rollout: Option<Uuid> = r.try_get("rollout_id").map_err(&e)?;
    Ok((
        WorkflowRun {
            id: WorkflowId::from_uuid(r.try_get("workflow_id").map_err(&e)?),
            kind: r.try_get("kind").map_err(&e)?,
            definition_version: u32_of(r.try_get("definition_version").map_err(&e)?),
            state: text_enum(r.try_get("state").map_err(&e)?)?,
            outcome: outcome.map(text_enum).transpose()?,
            reason: r.try_get("reason").map_err(&e)?,
            devices: devices.into_iter().map(DeviceId::from_uuid).collect(),
            rollout_id: rollout.map(RolloutId::from_uuid),
            current_step: r.try_get("current_step").map_err(&e)?,
            steps_completed: u32_of(r.try_get("steps_completed").map_err(&e)?),
            failed_attempts: u32_of(r.try_get("failed_attempts").map_err(&e)?),
            last_error: r.try_get("last_error").map_err(&e)?,
            wake_at: r.try_get("wake_at").map_err(&e)?,
            last_signal: r.try_get("last_signal").map_err(&e)?,
            idempotency_key: r.try_get("idempotency_key").map_err(&e)?,
            started_at: r.try_get("started_at").map_err(&e)?,
            finished_at: r.try_get("finished_at").map_err(&e)?,
            updated_at: r.try_get("updated_at").map_err(&e)?,
        },
        r.try_get("started_position").map_err(&e)?,
    ))
}

/// A page of workflow runs, newest first.
pub async fn list_workflow_runs(
    app: &PgPool,
    tenant: TenantId,
    q: &WorkflowRunQuery,
) -> Result<Page<WorkflowRun>, ProjectionError> {
    let limit = limit_of(q.limit);
    let before = numeric_cursor(&q.cursor)?.unwrap_or(i64::MAX);
    let state = q.state.map(|s| crate::projectors::enum_text(&s));
    let residual = "($3::text IS NULL OR r.kind = $3) AND ($4::text IS NULL OR r.state = $4)";
    let sql = if q.device.is_some() {
        format!(
            "SELECT {RUN_COLUMNS} FROM rm_workflow_devices w \
             JOIN rm_workflow_runs r ON r.tenant_id = w.tenant_id AND r.workflow_id = w.workflow_id \
             WHERE w.tenant_id = $1 AND w.device_id = $5 AND w.started_position < $2 \
               AND {residual} \
             ORDER BY w.started_position DESC LIMIT $6"
        )
    } else if q.kind.is_some() {
        format!(
            "SELECT {RUN_COLUMNS} FROM rm_workflow_runs r \
             WHERE r.tenant_id = $1 AND r.kind = $3 AND r.started_position < $2 AND {residual} \
               AND ($5::uuid IS NULL) \
             ORDER BY r.kind, r.started_position DESC LIMIT $6"
        )
    } else if q.state.is_some() {
        format!(
            "SELECT {RUN_COLUMNS} FROM rm_workflow_runs r \
             WHERE r.tenant_id = $1 AND r.state = $4 AND r.started_position < $2 AND {residual} \
               AND ($5::uuid IS NULL) \
             ORDER BY r.state, r.started_position DESC LIMIT $6"
        )
    } else {
        format!(
            "SELECT {RUN_COLUMNS} FROM rm_workflow_runs r \
             WHERE r.tenant_id = $1 AND r.started_position < $2 AND {residual} \
               AND ($5::uuid IS NULL) \
             ORDER BY r.started_position DESC LIMIT $6"
        )
    };
    let mut tx = begin_tenant(app, tenant).await?;
    let rows = sqlx::query(&sql)
        .bind(tenant.as_uuid())
        .bind(before)
        .bind(q.kind.as_deref())
        .bind(state)
        .bind(q.device.map(|d| *d.as_uuid()))
        .bind(limit + 1)
        .fetch_all(&mut *tx)
        .await
        .map_err(ProjectionError::db("list workflow runs"))?;
    tx.commit().await.map_err(ProjectionError::db("end read"))?;
    let mut items = rows
        .iter()
        .map(workflow_run)
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = next_page(&mut items, limit, |(_, p)| p.to_string());
    Ok(Page {
        items: items.into_iter().map(|(r, _)| r).collect(),
        next_cursor,
    })
}

/// The steps of one run, in order (empty if there is no such run).
pub async fn workflow_steps(
    app: &PgPool,
    tenant: TenantId,
    workflow: WorkflowId,
) -> Result<Vec<WorkflowStep>, ProjectionError> {
    let mut tx = begin_tenant(app, tenant).await?;
    let steps = read_steps(&mut tx, tenant, workflow).await?;
    tx.commit().await.map_err(ProjectionError::db("end read"))?;
    Ok(steps)
}

async fn read_steps(
    conn: &mut sqlx::PgConnection,
    tenant: TenantId,
    workflow: WorkflowId,
) -> Result<Vec<WorkflowStep>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT step, seq, state, attempts, started_at, finished_at, last_error, failure_class, \
                retry_at \
         FROM rm_workflow_steps WHERE tenant_id = $1 AND workflow_id = $2 ORDER BY seq, step",
    )
    .bind(tenant.as_uuid())
    .bind(workflow.as_uuid())
    .fetch_all(conn)
    .await
    .map_err(ProjectionError::db("list workflow steps"))?;
    let e = decode_err("decode workflow step");
    let mut steps = Vec::with_capacity(rows.len());
    for r in &rows {
        let class: Option<String> = r.try_get("failure_class").map_err(&e)?;
        steps.push(WorkflowStep {
            step: r.try_get("step").map_err(&e)?,
            seq: r.try_get("seq").map_err(&e)?,
            state: text_enum(r.try_get("state").map_err(&e)?)?,
            attempts: u32_of(r.try_get("attempts").map_err(&e)?),
            started_at: r.try_get("started_at").map_err(&e)?,
            finished_at: r.try_get("finished_at").map_err(&e)?,
            last_error: r.try_get("last_error").map_err(&e)?,
            failure_class: class.map(text_enum).transpose()?,
            retry_at: r.try_get("retry_at").map_err(&e)?,
        });
    }
    Ok(steps)
}

/// One run with its input, output and steps, or `None`.
pub async fn workflow_run_detail(
    app: &PgPool,
    tenant: TenantId,
    workflow: WorkflowId,
) -> Result<Option<WorkflowRunDetail>, ProjectionError> {
    let mut tx = begin_tenant(app, tenant).await?;
    let row = sqlx::query(&format!(
        "SELECT {RUN_COLUMNS}, r.input::text AS input_text, r.output::text AS output_text \
         FROM rm_workflow_runs r WHERE r.tenant_id = $1 AND r.workflow_id = $2"
    ))
    .bind(tenant.as_uuid())
    .bind(workflow.as_uuid())
    .fetch_optional(&mut *tx)
    .await
    .map_err(ProjectionError::db("read workflow run"))?;
    let Some(row) = row else {
        tx.commit().await.map_err(ProjectionError::db("end read"))?;
        return Ok(None);
    };
    let steps = read_steps(&mut tx, tenant, workflow).await?;
    tx.commit().await.map_err(ProjectionError::db("end read"))?;
    let e = decode_err("decode workflow run");
    let json = |text: String| {
        serde_json::from_str::<serde_json::Value>(&text).map_err(|err| ProjectionError::Database {
            operation: "decode workflow run json",
            source: sqlx::Error::Decode(Box::new(err)),
        })
    };
    let input: String = row.try_get("input_text").map_err(&e)?;
    let output: Option<String> = row.try_get("output_text").map_err(&e)?;
    Ok(Some(WorkflowRunDetail {
        run: workflow_run(&row)?.0,
        input: json(input)?,
        output: output.map(json).transpose()?,
        steps,
    }))
}

// ---- rollouts ------------------------------------------------------------------------------

/// What a rollout deploys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutTargetKind {
    /// A RouterOS script pushed with the two-phase push.
    ChangeSet,
    /// A RouterOS version.
    Firmware,
}

/// How far a rollout has got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutProgress {
    /// Devices in the rollout (canaries included).
    pub total: u32,
    /// Canary devices.
    pub canaries: u32,
    /// Devices finished (any outcome).
    pub finished: u32,
    /// Devices not finished yet.
    pub pending: u32,
    /// Finished `succeeded` or `committed`.
    pub succeeded: u32,
    /// Finished `failed`.
    pub failed: u32,
    /// Finished `rolled_back`.
    pub rolled_back: u32,
    /// Finished `cancelled`.
    pub cancelled: u32,
    /// Batch of the device that finished last (0 = canaries).
    pub current_batch: Option<u32>,
}

/// A rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    /// Rollout id.
    pub id: RolloutId,
    /// Operator-facing name.
    pub name: String,
    /// What it deploys.
    pub target_kind: RolloutTargetKind,
    /// Target RouterOS version (firmware rollouts).
    pub target_version: Option<String>,
    /// Its state.
    pub state: RolloutState,
    /// Why it is in that state.
    pub reason: Option<String>,
    /// The workflow driving it.
    pub workflow_id: WorkflowId,
    /// Devices per batch.
    pub batch_size: u32,
    /// Devices worked on at once.
    pub parallelism: u32,
    /// Failures at which it halts.
    pub failure_threshold: u32,
    /// Whether a halt rolls back changed devices.
    pub rollback_on_halt: bool,
    /// Progress.
    pub progress: RolloutProgress,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Time of its latest event.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When it completed, was cancelled or halted.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

/// One device of a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutDevice {
    /// The device.
    pub device_id: DeviceId,
    /// Its place (canaries first).
    pub ord: u32,
    /// Its batch (0 = canaries).
    pub batch: u32,
    /// How its workflow ended; `None` while pending.
    pub outcome: Option<Outcome>,
    /// Its workflow, once finished.
    pub workflow_id: Option<WorkflowId>,
    /// When it finished.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

/// Filters and page of the rollout list. Order: newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RolloutQuery {
    /// Only rollouts in this state.
    pub state: Option<RolloutState>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: Option<i64>,
}

/// Page of a rollout's devices. Order: canaries first, then the devices in rollout order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutDeviceQuery {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: Option<i64>,
}

const ROLLOUT_COLUMNS: &str = "rollout_id, name, target_kind, target_version, state, reason, \
    workflow_id, batch_size, parallelism, failure_threshold, rollback_on_halt, total_devices, \
    canaries, finished, succeeded, failed, rolled_back, cancelled, current_batch, created_at, \
    updated_at, finished_at, created_position";

fn rollout(r: &PgRow) -> Result<(Rollout, i64), ProjectionError> {
    let e = decode_err("decode rollout");
    let total = u32_of(r.try_get("total_devices").map_err(&e)?);
    let finished = u32_of(r.try_get("finished").map_err(&e)?);
    let current_batch: Option<i32> = r.try_get("current_batch").map_err(&e)?;
    Ok((
        Rollout {
            id: RolloutId::from_uuid(r.try_get("rollout_id").map_err(&e)?),
            name: r.try_get("name").map_err(&e)?,
            target_kind: text_enum(r.try_get("target_kind").map_err(&e)?)?,
            target_version: r.try_get("target_version").map_err(&e)?,
            state: text_enum(r.try_get("state").map_err(&e)?)?,
            reason: r.try_get("reason").map_err(&e)?,
            workflow_id: WorkflowId::from_uuid(r.try_get("workflow_id").map_err(&e)?),
            batch_size: u32_of(r.try_get("batch_size").map_err(&e)?),
            parallelism: u32_of(r.try_get("parallelism").map_err(&e)?),
            failure_threshold: u32_of(r.try_get("failure_threshold").map_err(&e)?),
            rollback_on_halt: r.try_get("rollback_on_halt").map_err(&e)?,
            progress: RolloutProgress {
                total,
                canaries: u32_of(r.try_get("canaries").map_err(&e)?),
                finished,
                pending: total.saturating_sub(finished),
                succeeded: u32_of(r.try_get("succeeded").map_err(&e)?),
                failed: u32_of(r.try_get("failed").map_err(&e)?),
                rolled_back: u32_of(r.try_get("rolled_back").map_err(&e)?),
                cancelled: u32_of(r.try_get("cancelled").map_err(&e)?),
                current_batch: current_batch.map(u32_of),
            },
            created_at: r.try_get("created_at").map_err(&e)?,
            updated_at: r.try_get("updated_at").map_err(&e)?,
            finished_at: r.try_get("finished_at").map_err(&e)?,
        },
        r.try_get("created_position").map_err(&e)?,
    ))
}

/// A page of rollouts, newest first.
pub async fn list_rollouts(
    app: &PgPool,
    tenant: TenantId,
    q: &RolloutQuery,
) -> Result<Page<Rollout>, ProjectionError> {
    let limit = limit_of(q.limit);
    let before = numeric_cursor(&q.cursor)?.unwrap_or(i64::MAX);
    let state = q.state.map(|s| crate::projectors::enum_text(&s));
    let sql = if state.is_some() {
        format!(
            "SELECT {ROLLOUT_COLUMNS} FROM rm_rollouts \
             WHERE tenant_id = $1 AND state = $3 AND created_position < $2 \
             ORDER BY state, created_position DESC LIMIT $4"
        )
    } else {
        format!(
            "SELECT {ROLLOUT_COLUMNS} FROM rm_rollouts \
             WHERE tenant_id = $1 AND created_position < $2 AND ($3::text IS NULL) \
             ORDER BY created_position DESC LIMIT $4"
        )
    };
    let mut tx = begin_tenant(app, tenant).await?;
    let rows = sqlx::query(&sql)
        .bind(tenant.as_uuid())
        .bind(before)
        .bind(state)
        .bind(limit + 1)
        .fetch_all(&mut *tx)
        .await
        .map_err(ProjectionError::db("list rollouts"))?;
    tx.commit().await.map_err(ProjectionError::db("end read"))?;
    let mut items = rows.iter().map(rollout).collect::<Result<Vec<_>, _>>()?;
    let next_cursor = next_page(&mut items, limit, |(_, p)| p.to_string());
    Ok(Page {
        items: items.into_iter().map(|(r, _)| r).collect(),
        next_cursor,
    })
}

/// One rollout with its progress, or `None`.
pub async fn rollout_detail(
    app: &PgPool,
    tenant: TenantId,
    id: RolloutId,
) -> Result<Option<Rollout>, ProjectionError> {
    let mut tx = begin_tenant(app, tenant).await?;
    let row = sqlx::query(&format!(
        "SELECT {ROLLOUT_COLUMNS} FROM rm_rollouts WHERE tenant_id = $1 AND rollout_id = $2"
    ))
    .bind(tenant.as_uuid())
    .bind(id.as_uuid())
    .fetch_optional(&mut *tx)
    .await
    .map_err(ProjectionError::db("read rollout"))?;
    tx.commit().await.map_err(ProjectionError::db("end read"))?;
    row.as_ref()
        .map(rollout)
        .transpose()
        .map(|r| r.map(|(r, _)| r))
}

/// A page of a rollout's devices, in rollout order.
pub async fn rollout_devices(
    app: &PgPool,
    tenant: TenantId,
    id: RolloutId,
    q: &RolloutDeviceQuery,
) -> Result<Page<RolloutDevice>, ProjectionError> {
    let limit = limit_of(q.limit);
    let after = numeric_cursor(&q.cursor)?.unwrap_or(-1);
    let after = i32::try_from(after).map_err(|_| ProjectionError::BadCursor {
        cursor: after.to_string(),
    })?;
    let mut tx = begin_tenant(app, tenant).await?;
    let rows = sqlx::query(
        "SELECT device_id, ord, batch, outcome, workflow_id, finished_at \
         FROM rm_rollout_devices WHERE tenant_id = $1 AND rollout_id = $2 AND ord > $3 \
         ORDER BY ord LIMIT $4",
    )
    .bind(tenant.as_uuid())
    .bind(id.as_uuid())
    .bind(after)
    .bind(limit + 1)
    .fetch_all(&mut *tx)
    .await
    .map_err(ProjectionError::db("list rollout devices"))?;
    tx.commit().await.map_err(ProjectionError::db("end read"))?;
    let e = decode_err("decode rollout device");
    let mut items = Vec::with_capacity(rows.len());
    for r in &rows {
        let outcome: Option<String> = r.try_get("outcome").map_err(&e)?;
        let workflow: Option<Uuid> = r.try_get("workflow_id").map_err(&e)?;
        items.push(RolloutDevice {
            device_id: DeviceId::from_uuid(r.try_get("device_id").map_err(&e)?),
            ord: u32_of(r.try_get("ord").map_err(&e)?),
            batch: u32_of(r.try_get("batch").map_err(&e)?),
            outcome: outcome.map(text_enum).transpose()?,
            workflow_id: workflow.map(WorkflowId::from_uuid),
            finished_at: r.try_get("finished_at").map_err(&e)?,
        });
    }
    let next_cursor = next_page(&mut items, limit, |d| d.ord.to_string());
    Ok(Page { items, next_cursor })
}

// ---- audit feed ----------------------------------------------------------------------------

/// One event in the audit feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Global position (the page order, newest first).
    pub position: i64,
    /// When it was recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    /// Its stream.
    pub stream: String,
    /// Its stream's category.
    pub category: String,
    /// Event type.
    pub event_type: String,
    /// Payload schema version.
    pub schema_version: u32,
    /// Event id (the full event is in the event store).
    pub event_id: Uuid,
    /// Who caused it: `user:<id>`, `api_key:<id>` or `system:<component>`.
    pub actor: String,
    /// Correlation id.
    pub correlation_id: Uuid,
    /// Causation id.
    pub causation_id: Uuid,
    /// One-line summary.
    pub summary: String,
}

/// Filters and page of the audit feed. Order: newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    /// Only this stream (`device-<id>`, ...).
    pub stream: Option<String>,
    /// Only this category (`device`, `workflow`, ...).
    pub category: Option<String>,
    /// Only this event type.
    pub event_type: Option<String>,
    /// Only this actor (`user:<id>`, `api_key:<id>`, `system:<component>`).
    pub actor: Option<String>,
    /// `next_cursor` of the previous page (a position: entries before it).
    pub cursor: Option<String>,
    /// Page size.
    pub limit: Option<i64>,
}

/// A page of the audit feed, newest first.
pub async fn audit_feed(
    app: &PgPool,
    tenant: TenantId,
    q: &AuditQuery,
) -> Result<Page<AuditEntry>, ProjectionError> {
    let limit = limit_of(q.limit);
    let before = numeric_cursor(&q.cursor)?.unwrap_or(i64::MAX);
    let columns = "position, recorded_at, stream, category, event_type, schema_version, \
        event_id, actor, correlation_id, causation_id, summary";
    let residual = "($3::text IS NULL OR stream = $3) AND ($4::text IS NULL OR category = $4) \
        AND ($5::text IS NULL OR event_type = $5) AND ($6::text IS NULL OR actor = $6)";
    // Drive by the most selective filter's index; the others are checked on its rows.
    let (lead, order) = if q.stream.is_some() {
        ("stream = $3", "stream, position DESC")
    } else if q.event_type.is_some() {
        ("event_type = $5", "event_type, position DESC")
    } else if q.actor.is_some() {
        ("actor = $6", "actor, position DESC")
    } else if q.category.is_some() {
        ("category = $4", "category, position DESC")
    } else {
        ("true", "position DESC")
    };
    let sql = format!(
        "SELECT {columns} FROM rm_audit_feed \
         WHERE tenant_id = $1 AND {lead} AND position < $2 AND {residual} \
         ORDER BY {order} LIMIT $7"
    );
    let mut tx = begin_tenant(app, tenant).await?;
    let rows = sqlx::query(&sql)
        .bind(tenant.as_uuid())
        .bind(before)
        .bind(q.stream.as_deref())
        .bind(q.category.as_deref())
        .bind(q.event_type.as_deref())
        .bind(q.actor.as_deref())
        .bind(limit + 1)
        .fetch_all(&mut *tx)
        .await
        .map_err(ProjectionError::db("read audit feed"))?;
    tx.commit().await.map_err(ProjectionError::db("end read"))?;
    let e = decode_err("decode audit entry");
    let mut items = Vec::with_capacity(rows.len());
    for r in &rows {
        let schema_version: i32 = r.try_get("schema_version").map_err(&e)?;
        items.push(AuditEntry {
            position: r.try_get("position").map_err(&e)?,
            recorded_at: r.try_get("recorded_at").map_err(&e)?,
            stream: r.try_get("stream").map_err(&e)?,
            category: r.try_get("category").map_err(&e)?,
            event_type: r.try_get("event_type").map_err(&e)?,
            schema_version: u32_of(schema_version),
            event_id: r.try_get("event_id").map_err(&e)?,
            actor: r.try_get("actor").map_err(&e)?,
            correlation_id: r.try_get("correlation_id").map_err(&e)?,
            causation_id: r.try_get("causation_id").map_err(&e)?,
            summary: r.try_get("summary").map_err(&e)?,
        });
    }
    let next_cursor = next_page(&mut items, limit, |a| a.position.to_string());
    Ok(Page { items, next_cursor })
}

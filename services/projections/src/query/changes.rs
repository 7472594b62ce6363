//! Change requests (`rm_change_requests`) and a change request's timeline (the events of
//! its stream and every event correlated with it, read from the event store).

use netledger_domain::change::{ChangeContent, ChangeState, RiskLevel};
use netledger_domain::{Actor, ChangeRequestId, DeviceId, RolloutId, TenantId, WorkflowId};
use netledger_store::begin_tenant;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Page, decode_err, limit_of, next_page, numeric_cursor, text_enum, u32_of};
use crate::error::ProjectionError;

/// A change request in the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRequestSummary {
    /// Its id.
    pub id: ChangeRequestId,
    /// Its stream version (the ETag of its detail).
    pub version: u64,
    /// Its state.
    pub state: ChangeState,
    /// Title.
    pub title: String,
    /// Author (user id).
    pub author: String,
    /// Risk.
    pub risk: RiskLevel,
    /// Break-glass request.
    pub emergency: bool,
    /// An emergency request that ran and waits for enough retrospective approvals.
    pub review_pending: bool,
    /// Devices frozen at its last submission (0 before the first).
    pub devices: u32,
    /// Approvals that count now.
    pub approvals: u32,
    /// Approvals its risk needs (set at submission; 0 before).
    pub required_approvals: u32,
    /// Its run's workflow, once scheduled.
    pub workflow_id: Option<WorkflowId>,
    /// Its rollout, once started.
    pub rollout_id: Option<RolloutId>,
    /// Its rollout is paused (its window closed) and waits for `continue`.
    pub paused: bool,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Time of its latest event.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When its rollout started.
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    /// When it reached a final state.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

/// One approval that counts, as the read model keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeApproval {
    /// The approver (user id).
    pub by: String,
    /// Their comment.
    pub comment: Option<String>,
    /// A review after an emergency run.
    pub retrospective: bool,
    /// When the approval was recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// The last rejection (cleared by an edit or a new submission).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRejection {
    /// The approver (user id).
    pub by: String,
    /// Why.
    pub comment: String,
    /// When it was recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// One change request with everything the read model holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRequestDetail {
    /// What the list shows.
    #[serde(flatten)]
    pub summary: ChangeRequestSummary,
    /// What the author wrote (the latest edit).
    pub content: ChangeContent,
    /// The devices frozen at the last submission, in rollout order (empty before).
    pub device_ids: Vec<DeviceId>,
    /// Approvals that count, in order.
    pub approval_list: Vec<ChangeApproval>,
    /// The last rejection, while it stands.
    pub rejection: Option<ChangeRejection>,
    /// The open pause's number while paused (what `continue` names).
    pub pause: Option<u32>,
    /// Why it ended as it did.
    pub final_reason: Option<String>,
    /// When it was last submitted.
    #[serde(with = "time::serde::rfc3339::option")]
    pub submitted_at: Option<OffsetDateTime>,
    /// Global position of its latest event folded into the row.
    pub updated_position: i64,
}

/// Filters and page of the change request list (all filters combine). Order: newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRequestQuery {
    /// Only requests in this state.
    #[serde(default)]
    pub state: Option<ChangeState>,
    /// Only requests by this author (user id).
    #[serde(default)]
    pub author: Option<String>,
    /// Only requests whose frozen device list holds this device.
    #[serde(default)]
    pub device: Option<DeviceId>,
    /// Only requests whose frozen device list holds a device carrying this tag now.
    #[serde(default)]
    pub tag: Option<String>,
    /// Only emergency (`true`) or ordinary (`false`) requests.
    #[serde(default)]
    pub emergency: Option<bool>,
    /// Only emergency requests still pending review whose rollout started before this
    /// instant (the caller passes now minus the review grace period).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub review_overdue_at: Option<OffsetDateTime>,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Page size.
    #[serde(default)]
    pub limit: Option<i64>,
}

/// One event of a change request's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// Global position (the timeline's order, oldest first).
    pub position: i64,
    /// Its stream (`change-<id>`, `rollout-<id>`, `workflow-<id>`, `device-<id>`, ...).
    pub stream: String,
    /// Its version in its stream.
    pub version: i64,
    /// Event type.
    pub event_type: String,
    /// When it was recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    /// Who caused it.
    pub actor: Actor,
    /// Causation id.
    pub causation_id: Uuid,
    /// Correlation id (the change request's id for the events of its run).
    pub correlation_id: Uuid,
    /// The payload as stored.
    pub payload: serde_json::Value,
}

const SUMMARY_COLUMNS: &str = "change_request_id, version, state, title, author, risk, emergency, \
    review_pending, device_count, approvals_count, required_approvals, workflow_id, rollout_id, \
    paused, created_at, updated_at, started_at, finished_at, created_position";

fn summary(r: &PgRow) -> Result<(ChangeRequestSummary, i64), ProjectionError> {
    let e = decode_err("decode change request");
    let version: i64 = r.try_get("version").map_err(&e)?;
    let workflow: Option<Uuid> = r.try_get("workflow_id").map_err(&e)?;
    let rollout: Option<Uuid> = r.try_get("rollout_id").map_err(&e)?;
    Ok((
        ChangeRequestSummary {
            id: ChangeRequestId::from_uuid(r.try_get("change_request_id").map_err(&e)?),
            version: u64::try_from(version).unwrap_or(0),
            state: text_enum(r.try_get("state").map_err(&e)?)?,
            title: r.try_get("title").map_err(&e)?,
            author: r.try_get("author").map_err(&e)?,
            risk: text_enum(r.try_get("risk").map_err(&e)?)?,
            emergency: r.try_get("emergency").map_err(&e)?,
            review_pending: r.try_get("review_pending").map_err(&e)?,
            devices: u32_of(r.try_get("device_count").map_err(&e)?),
            approvals: u32_of(r.try_get("approvals_count").map_err(&e)?),
            required_approvals: u32_of(r.try_get("required_approvals").map_err(&e)?),
            workflow_id: workflow.map(WorkflowId::from_uuid),
            rollout_id: rollout.map(RolloutId::from_uuid),
            paused: r.try_get("paused").map_err(&e)?,
            created_at: r.try_get("created_at").map_err(&e)?,
            updated_at: r.try_get("updated_at").map_err(&e)?,
            started_at: r.try_get("started_at").map_err(&e)?,
            finished_at: r.try_get("finished_at").map_err(&e)?,
        },
        r.try_get("created_position").map_err(&e)?,
    ))
}

/// A page of change requests, newest first, filtered by `q` (filters combine).
pub async fn list_change_requests(
    app: &PgPool,
    tenant: TenantId,
    q: &ChangeRequestQuery,
) -> Result<Page<ChangeRequestSummary>, ProjectionError> {
    let limit = limit_of(q.limit);
    let before = numeric_cursor(&q.cursor)?.unwrap_or(i64::MAX);
    // Only the filters asked for are written into the statement, so the planner can use
    // the index each one has (state, author, the GIN index on devices, review_pending); an
    // absent filter's parameter is bound as NULL and only checked to be NULL.
    let filter = |present: bool, condition: &'static str, absent: &'static str| {
        if present { condition } else { absent }
    };
    let conditions = [
        filter(q.state.is_some(), "state = $3::text", "$3::text IS NULL"),
        filter(q.author.is_some(), "author = $4::text", "$4::text IS NULL"),
        filter(
            q.device.is_some(),
            "devices @> ARRAY[$5::uuid]",
            "$5::uuid IS NULL",
        ),
        filter(
            q.tag.is_some(),
            "devices && ARRAY(SELECT t.device_id FROM rm_device_tags t \
             WHERE t.tenant_id = $1 AND t.tag = $6::text)",
            "$6::text IS NULL",
        ),
        filter(
            q.emergency.is_some(),
            "emergency = $7::boolean",
            "$7::boolean IS NULL",
        ),
        filter(
            q.review_overdue_at.is_some(),
            "review_pending AND started_at < $8::timestamptz",
            "$8::timestamptz IS NULL",
        ),
    ];
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM rm_change_requests \
         WHERE tenant_id = $1 AND created_position < $2 AND {} \
         ORDER BY created_position DESC LIMIT $9",
        conditions.join(" AND ")
    );
    let mut tx = begin_tenant(app, tenant).await?;
    let rows = sqlx::query(&sql)
        .bind(tenant.as_uuid())
        .bind(before)
        .bind(q.state.map(|s| s.as_str()))
        .bind(q.author.as_deref())
        .bind(q.device.map(|d| *d.as_uuid()))
        .bind(q.tag.as_deref())
        .bind(q.emergency)
        .bind(q.review_overdue_at)
        .bind(limit + 1)
        .fetch_all(&mut *tx)
        .await
        .map_err(ProjectionError::db("list change requests"))?;
    tx.commit().await.map_err(ProjectionError::db("end read"))?;
    let mut items = rows.iter().map(summary).collect::<Result<Vec<_>, _>>()?;
    let next_cursor = next_page(&mut items, limit, |(_, p)| p.to_string());
    Ok(Page {
        items: items.into_iter().map(|(s, _)| s).collect(),
        next_cursor,
    })
}

/// One change request with everything the read model holds, or `None` (not created yet, or
/// not projected yet: wait with [`crate::wait_for_position`] first for read-your-writes).
pub async fn change_request_detail(
    app: &PgPool,
    tenant: TenantId,
    id: ChangeRequestId,
) -> Result<Option<ChangeRequestDetail>, ProjectionError> {
    let mut tx = begin_tenant(app, tenant).await?;
    let row = sqlx::query(&format!(
        "SELECT {SUMMARY_COLUMNS}, content, devices, approvals, rejection, pause, final_reason, \
                submitted_at, updated_position \
         FROM rm_change_requests WHERE tenant_id = $1 AND change_request_id = $2"
    ))
    .bind(tenant.as_uuid())
    .bind(id.as_uuid())
    .fetch_optional(&mut *tx)
    .await
    .map_err(ProjectionError::db("read change request"))?;
    tx.commit().await.map_err(ProjectionError::db("end read"))?;
    let Some(r) = row else {
        return Ok(None);
    };
    let e = decode_err("decode change request");
    let (summary, _) = summary(&r)?;
    let Json(content): Json<ChangeContent> = r.try_get("content").map_err(&e)?;
    let devices: Vec<Uuid> = r.try_get("devices").map_err(&e)?;
    let Json(approval_list): Json<Vec<ChangeApproval>> = r.try_get("approvals").map_err(&e)?;
    let rejection: Option<Json<ChangeRejection>> = r.try_get("rejection").map_err(&e)?;
    let pause: Option<i32> = r.try_get("pause").map_err(&e)?;
    Ok(Some(ChangeRequestDetail {
        summary,
        content,
        device_ids: devices.into_iter().map(DeviceId::from_uuid).collect(),
        approval_list,
        rejection: rejection.map(|Json(x)| x),
        pause: pause.map(u32_of),
        final_reason: r.try_get("final_reason").map_err(&e)?,
        submitted_at: r.try_get("submitted_at").map_err(&e)?,
        updated_position: r.try_get("updated_position").map_err(&e)?,
    }))
}

/// A page of a change request's timeline, oldest first: the events of its stream
/// `change-<id>` and every event whose correlation id is the request's id (its rollout,
/// the rollout's device workflows, their device events), in global position order. `after`
/// is the previous page's `next_cursor` (a position); the page ends with the last event
/// committed when it was read. Reads the event store as the tenant (row-level security).
pub async fn change_timeline(
    app: &PgPool,
    tenant: TenantId,
    change: ChangeRequestId,
    after: Option<i64>,
    limit: Option<i64>,
) -> Result<Page<TimelineEntry>, ProjectionError> {
    let limit = limit_of(limit);
    let after = after.unwrap_or(0);
    let mut tx = begin_tenant(app, tenant).await?;
    let rows = sqlx::query(
        "SELECT e.position, e.stream, e.version, e.event_type, e.recorded_at, \
                e.actor::text AS actor, e.causation_id, e.correlation_id, \
                e.payload::text AS payload \
         FROM events e WHERE e.tenant_id = $1 AND e.position IN ( \
             (SELECT s.position FROM events s \
              WHERE s.tenant_id = $1 AND s.stream = $2 AND s.position > $4 \
              ORDER BY s.version LIMIT $5) \
             UNION \
             (SELECT c.position FROM events c \
              WHERE c.tenant_id = $1 AND c.correlation_id = $3 AND c.position > $4 \
              ORDER BY c.position LIMIT $5)) \
         ORDER BY e.position LIMIT $5",
    )
    .bind(tenant.as_uuid())
    .bind(change.stream().to_string())
    .bind(change.as_uuid())
    .bind(after)
    .bind(limit + 1)
    .fetch_all(&mut *tx)
    .await
    .map_err(ProjectionError::db("read change timeline"))?;
    tx.commit().await.map_err(ProjectionError::db("end read"))?;
    let e = decode_err("decode timeline entry");
    let json = |what: &'static str| {
        move |err: serde_json::Error| ProjectionError::Database {
            operation: what,
            source: sqlx::Error::Decode(Box::new(err)),
        }
    };
    let mut items = Vec::with_capacity(rows.len());
    for r in &rows {
        let actor: String = r.try_get("actor").map_err(&e)?;
        let payload: String = r.try_get("payload").map_err(&e)?;
        items.push(TimelineEntry {
            position: r.try_get("position").map_err(&e)?,
            stream: r.try_get("stream").map_err(&e)?,
            version: r.try_get("version").map_err(&e)?,
            event_type: r.try_get("event_type").map_err(&e)?,
            recorded_at: r.try_get("recorded_at").map_err(&e)?,
            actor: serde_json::from_str(&actor).map_err(json("decode timeline actor"))?,
            causation_id: r.try_get("causation_id").map_err(&e)?,
            correlation_id: r.try_get("correlation_id").map_err(&e)?,
            payload: serde_json::from_str(&payload).map_err(json("decode timeline payload"))?,
        });
    }
    let next_cursor = next_page(&mut items, limit, |t| t.position.to_string());
    Ok(Page { items, next_cursor })
}

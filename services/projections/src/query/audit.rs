//! The audit feed, newest first (`rm_audit_feed`).

use netledger_domain::TenantId;
use netledger_store::begin_tenant;
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Page, decode_err, limit_of, next_page, numeric_cursor, u32_of};
use crate::error::ProjectionError;

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
    /// The actor's name as of the event (`Name <e-mail>` for a user, the key's name for an
    /// API key); absent for system components and actors never named.
    pub actor_name: Option<String>,
    /// What the event is about: `device:<id>`, `user:<id>`, `api_key:<id>`,
    /// `change_request:<id>` or `rollout:<id>`; absent when it names none.
    pub subject: Option<String>,
    /// The subject's name as of the event.
    pub subject_name: Option<String>,
    /// Correlation id.
    pub correlation_id: Uuid,
    /// Causation id.
    pub causation_id: Uuid,
    /// One-line summary.
    pub summary: String,
    /// Part of an emergency (break-glass) change request: the request's own events and
    /// everything correlated with it (its run, rollout, per-device workflows, device events).
    pub emergency: bool,
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
    /// Only events about this subject (`device:<id>`, `user:<id>`, `api_key:<id>`,
    /// `change_request:<id>`, `rollout:<id>`).
    pub subject: Option<String>,
    /// Only this correlation id (a change request id gives the request and everything it
    /// caused).
    pub correlation_id: Option<Uuid>,
    /// Only entries recorded at or after this time.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub from: Option<OffsetDateTime>,
    /// Only entries recorded at or before this time.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub to: Option<OffsetDateTime>,
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
        event_id, actor, correlation_id, causation_id, summary, actor_name, subject, subject_name";
    let residual = "($3::text IS NULL OR stream = $3) AND ($4::text IS NULL OR category = $4) \
        AND ($5::text IS NULL OR event_type = $5) AND ($6::text IS NULL OR actor = $6) \
        AND ($8::uuid IS NULL OR correlation_id = $8) \
        AND ($9::timestamptz IS NULL OR recorded_at >= $9) \
        AND ($10::timestamptz IS NULL OR recorded_at <= $10) \
        AND ($11::text IS NULL OR subject = $11)";
    // Drive by the most selective filter's index; the others are checked on its rows.
    let (lead, order) = if q.correlation_id.is_some() {
        ("correlation_id = $8", "correlation_id, position DESC")
    } else if q.stream.is_some() {
        ("stream = $3", "stream, position DESC")
    } else if q.subject.is_some() {
        ("subject = $11", "subject, position DESC")
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
        .bind(q.correlation_id)
        .bind(q.from)
        .bind(q.to)
        .bind(q.subject.as_deref())
        .fetch_all(&mut *tx)
        .await
        .map_err(ProjectionError::db("read audit feed"))?;
    // Break-glass flag: entries correlated with an emergency change request.
    let correlations: Vec<Uuid> = rows
        .iter()
        .filter_map(|r| r.try_get::<Uuid, _>("correlation_id").ok())
        .collect();
    let emergency: std::collections::HashSet<Uuid> = sqlx::query_scalar(
        "SELECT change_request_id FROM rm_change_requests \
         WHERE tenant_id = $1 AND emergency AND change_request_id = ANY($2)",
    )
    .bind(tenant.as_uuid())
    .bind(&correlations)
    .fetch_all(&mut *tx)
    .await
    .map_err(ProjectionError::db("read emergency change requests"))?
    .into_iter()
    .collect();
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
            actor_name: r.try_get("actor_name").map_err(&e)?,
            subject: r.try_get("subject").map_err(&e)?,
            subject_name: r.try_get("subject_name").map_err(&e)?,
            correlation_id: r.try_get("correlation_id").map_err(&e)?,
            causation_id: r.try_get("causation_id").map_err(&e)?,
            summary: r.try_get("summary").map_err(&e)?,
            emergency: r
                .try_get::<Uuid, _>("correlation_id")
                .is_ok_and(|c| emergency.contains(&c)),
        });
    }
    let next_cursor = next_page(&mut items, limit, |a| a.position.to_string());
    Ok(Page { items, next_cursor })
}

//! Projector `change_requests`: one row per change request (`rm_change_requests`), folded
//! from `change-<id>` streams through the domain's own [`ChangeRequest::evolve`], so the read
//! model cannot disagree with the aggregate the commands are decided on.
//!
//! The row holds every part of the aggregate that `evolve` reads (state, author, content, the
//! frozen devices, required approvals, approvals, rejection, workflow, rollout, open pause,
//! final reason), so a live batch rebuilds the aggregate from the row and folds on from
//! there; what the row does not hold (previews, the restore script, the pause count, a
//! pending cancel) never feeds back into a column. Times come from the events'
//! `recorded_at`: `created_at`, `updated_at` (latest event), `submitted_at` (last
//! submission), `started_at` (rollout started), `finished_at` (first reaching a final
//! state); each approval and the rejection carry the time of their event. `version` is the
//! stream version of the latest event; an event already folded (`updated_position`) is
//! skipped, and a replay folds the same events the same way.

use async_trait::async_trait;
use netledger_domain::change::{
    Approval, ChangeContent, ChangeEvent, ChangeRequest, ChangeRequestCreated, ChangeState,
};
use netledger_domain::{Aggregate, ChangeRequestId, DeviceId, EventType, RecordedEvent};
use netledger_domain::{RolloutId, WorkflowId};
use sqlx::types::Json;
use sqlx::{PgConnection, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Rows, enum_text, stream_uuid};
use crate::error::ProjectionError;
use crate::projector::{Projector, decode_event};
use crate::query::{ChangeApproval as ApprovalRow, ChangeRejection as RejectionRow};

type Key = (Uuid, Uuid);

#[derive(Debug, Clone)]
struct ChangeRow {
    agg: ChangeRequest,
    /// When each approval of `agg.approvals` was recorded (same length).
    approval_ats: Vec<OffsetDateTime>,
    rejection_at: Option<OffsetDateTime>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    submitted_at: Option<OffsetDateTime>,
    started_at: Option<OffsetDateTime>,
    finished_at: Option<OffsetDateTime>,
    created_position: i64,
    updated_position: i64,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct ChangeRequestsProjector {
    rows: Rows<Key, ChangeRow>,
    replay: bool,
    flush_rows: usize,
}

const COLUMNS: &str = "tenant_id, change_request_id, version, state, title, author, risk, \
    emergency, review_pending, devices, device_count, approvals_count, required_approvals, \
    content, approvals, rejection, workflow_id, rollout_id, paused, pause, final_reason, \
    created_at, updated_at, submitted_at, started_at, finished_at, created_position, \
    updated_position";

fn i32_of(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn u32_of(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

impl ChangeRequestsProjector {
    async fn load(
        &mut self,
        conn: &mut PgConnection,
        keys: Vec<Key>,
    ) -> Result<(), ProjectionError> {
        if keys.is_empty() {
            return Ok(());
        }
        let get = |e: sqlx::Error| ProjectionError::Database {
            operation: "decode change request row",
            source: e,
        };
        let (tenants, ids): (Vec<Uuid>, Vec<Uuid>) = keys.iter().copied().unzip();
        let sql = format!(
            "SELECT {COLUMNS} FROM rm_change_requests WHERE (tenant_id, change_request_id) IN \
             (SELECT * FROM unnest($1::uuid[], $2::uuid[]))"
        );
        let rows = sqlx::query(&sql)
            .bind(&tenants)
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await
            .map_err(ProjectionError::db("load change requests"))?;
        for r in rows {
            let key: Key = (
                r.try_get("tenant_id").map_err(get)?,
                r.try_get("change_request_id").map_err(get)?,
            );
            let state: String = r.try_get("state").map_err(get)?;
            let state: ChangeState = serde_json::from_value(serde_json::Value::String(state))
                .map_err(|e| get(sqlx::Error::Decode(Box::new(e))))?;
            let Json(content): Json<ChangeContent> = r.try_get("content").map_err(get)?;
            let Json(approvals): Json<Vec<ApprovalRow>> = r.try_get("approvals").map_err(get)?;
            let rejection: Option<Json<RejectionRow>> = r.try_get("rejection").map_err(get)?;
            let devices: Vec<Uuid> = r.try_get("devices").map_err(get)?;
            let version: i64 = r.try_get("version").map_err(get)?;
            let required: i32 = r.try_get("required_approvals").map_err(get)?;
            let workflow: Option<Uuid> = r.try_get("workflow_id").map_err(get)?;
            let rollout: Option<Uuid> = r.try_get("rollout_id").map_err(get)?;
            let pause: Option<i32> = r.try_get("pause").map_err(get)?;
            let agg = ChangeRequest {
                id: Some(ChangeRequestId::from_uuid(key.1)),
                version: u64::try_from(version).unwrap_or(0),
                state,
                author: r.try_get("author").map_err(get)?,
                content: Some(content),
                devices: devices.into_iter().map(DeviceId::from_uuid).collect(),
                previews: Vec::new(),
                required_approvals: u32_of(required),
                restore_script: None,
                // not in the read model: the run reads it from the stream
                sealed_script: None,
                // not in the read model (like the previews and the script): the API's run
                // key reads it from the stream
                submissions: 0,
                approvals: approvals
                    .iter()
                    .map(|a| Approval {
                        by: a.by.clone(),
                        comment: a.comment.clone(),
                        retrospective: a.retrospective,
                    })
                    .collect(),
                rejection: rejection
                    .as_ref()
                    .map(|Json(x)| (x.by.clone(), x.comment.clone())),
                workflow_id: workflow.map(WorkflowId::from_uuid),
                rollout_id: rollout.map(RolloutId::from_uuid),
                paused: pause.map(u32_of),
                pauses: pause.map_or(0, u32_of),
                cancel_requested: false,
                final_reason: r.try_get("final_reason").map_err(get)?,
            };
            self.rows.loaded(
                key,
                ChangeRow {
                    agg,
                    approval_ats: approvals.iter().map(|a| a.at).collect(),
                    rejection_at: rejection.map(|Json(x)| x.at),
                    created_at: r.try_get("created_at").map_err(get)?,
                    updated_at: r.try_get("updated_at").map_err(get)?,
                    submitted_at: r.try_get("submitted_at").map_err(get)?,
                    started_at: r.try_get("started_at").map_err(get)?,
                    finished_at: r.try_get("finished_at").map_err(get)?,
                    created_position: r.try_get("created_position").map_err(get)?,
                    updated_position: r.try_get("updated_position").map_err(get)?,
                },
            );
        }
        Ok(())
    }

    fn fold(&mut self, e: &RecordedEvent) -> Result<(), ProjectionError> {
        let Some(id) = stream_uuid(e) else {
            return Ok(());
        };
        let key = (*e.tenant_id.as_uuid(), id);
        let at = e.recorded_at;
        if let Some(r) = self.rows.get(&key)
            && e.position <= r.updated_position
        {
            return Ok(());
        }
        let event = decode_event::<ChangeEvent>(e)?;
        if e.event_type == ChangeRequestCreated::TYPE {
            if self.rows.get(&key).is_some() {
                // Created once; a second creation is not folded.
                return Ok(());
            }
            let Some(created @ ChangeEvent::Created(_)) = event else {
                return Ok(());
            };
            let mut agg = ChangeRequest::default();
            agg.evolve(&created);
            agg.version = u64::try_from(e.version).unwrap_or(0);
            self.rows.insert(
                key,
                ChangeRow {
                    agg,
                    approval_ats: Vec::new(),
                    rejection_at: None,
                    created_at: at,
                    updated_at: at,
                    submitted_at: None,
                    started_at: None,
                    finished_at: None,
                    created_position: e.position,
                    updated_position: e.position,
                },
            );
            return Ok(());
        }
        let Some(r) = self.rows.get_mut(&key) else {
            tracing::debug!(position = e.position, stream = %e.stream, "change request event before its creation; skipped");
            return Ok(());
        };
        if let Some(event) = event {
            let was_final = r.agg.state.is_final();
            r.agg.evolve(&event);
            let n = r.agg.approvals.len();
            r.approval_ats.truncate(n);
            while r.approval_ats.len() < n {
                r.approval_ats.push(at);
            }
            match &event {
                ChangeEvent::Rejected(_) => r.rejection_at = Some(at),
                ChangeEvent::Submitted(_) => r.submitted_at = Some(at),
                ChangeEvent::Started(_) => r.started_at = Some(at),
                _ => {}
            }
            if r.agg.rejection.is_none() {
                r.rejection_at = None;
            }
            if r.agg.state.is_final() && !was_final {
                r.finished_at = Some(at);
            }
        }
        // Unknown types (newer code) and malformed payloads only advance the version.
        r.agg.version = u64::try_from(e.version).unwrap_or(r.agg.version);
        r.updated_at = at;
        r.updated_position = e.position;
        self.rows.touch(&key);
        Ok(())
    }

    async fn write(&mut self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        let keys = self.rows.take_dirty();
        let sql = format!(
            "INSERT INTO rm_change_requests ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
             $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, \
             $25, $26, $27, $28) \
             ON CONFLICT (tenant_id, change_request_id) DO UPDATE SET version = EXCLUDED.version, \
             state = EXCLUDED.state, title = EXCLUDED.title, author = EXCLUDED.author, \
             risk = EXCLUDED.risk, emergency = EXCLUDED.emergency, \
             review_pending = EXCLUDED.review_pending, devices = EXCLUDED.devices, \
             device_count = EXCLUDED.device_count, approvals_count = EXCLUDED.approvals_count, \
             required_approvals = EXCLUDED.required_approvals, content = EXCLUDED.content, \
             approvals = EXCLUDED.approvals, rejection = EXCLUDED.rejection, \
             workflow_id = EXCLUDED.workflow_id, rollout_id = EXCLUDED.rollout_id, \
             paused = EXCLUDED.paused, pause = EXCLUDED.pause, \
             final_reason = EXCLUDED.final_reason, created_at = EXCLUDED.created_at, \
             updated_at = EXCLUDED.updated_at, submitted_at = EXCLUDED.submitted_at, \
             started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at, \
             created_position = EXCLUDED.created_position, \
             updated_position = EXCLUDED.updated_position"
        );
        for k in &keys {
            let Some(r) = self.rows.get(k) else {
                continue;
            };
            let a = &r.agg;
            let Some(content) = a.content.as_ref() else {
                continue;
            };
            let approvals: Vec<ApprovalRow> = a
                .approvals
                .iter()
                .zip(&r.approval_ats)
                .map(|(x, at)| ApprovalRow {
                    by: x.by.clone(),
                    comment: x.comment.clone(),
                    retrospective: x.retrospective,
                    at: *at,
                })
                .collect();
            let rejection = a
                .rejection
                .as_ref()
                .zip(r.rejection_at)
                .map(|((by, comment), at)| {
                    Json(RejectionRow {
                        by: by.clone(),
                        comment: comment.clone(),
                        at,
                    })
                });
            let devices: Vec<Uuid> = a.devices.iter().map(|d| *d.as_uuid()).collect();
            sqlx::query(&sql)
                .bind(k.0)
                .bind(k.1)
                .bind(i64::try_from(a.version).unwrap_or(i64::MAX))
                .bind(a.state.as_str())
                .bind(&content.title)
                .bind(&a.author)
                .bind(enum_text(&content.risk))
                .bind(content.emergency)
                .bind(a.review_pending())
                .bind(&devices)
                .bind(i32_of(devices.len()))
                .bind(i32_of(a.approvals.len()))
                .bind(i32::try_from(a.required_approvals).unwrap_or(i32::MAX))
                .bind(Json(content))
                .bind(Json(&approvals))
                .bind(rejection)
                .bind(a.workflow_id.map(|w| *w.as_uuid()))
                .bind(a.rollout_id.map(|w| *w.as_uuid()))
                .bind(a.paused.is_some())
                .bind(a.paused.map(|p| i32::try_from(p).unwrap_or(i32::MAX)))
                .bind(&a.final_reason)
                .bind(r.created_at)
                .bind(r.updated_at)
                .bind(r.submitted_at)
                .bind(r.started_at)
                .bind(r.finished_at)
                .bind(r.created_position)
                .bind(r.updated_position)
                .execute(&mut *conn)
                .await
                .map_err(ProjectionError::db("write change requests"))?;
        }
        Ok(())
    }
}

#[async_trait]
impl Projector for ChangeRequestsProjector {
    fn name(&self) -> &'static str {
        crate::projector::CHANGE_REQUESTS
    }

    fn category(&self) -> Option<&'static str> {
        Some(<ChangeEvent as netledger_domain::EventEnum>::CATEGORY)
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_change_requests"]
    }

    async fn apply(
        &mut self,
        conn: &mut PgConnection,
        events: &[&RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let keys: Vec<Key> = events
            .iter()
            .filter_map(|e| stream_uuid(e).map(|id| (*e.tenant_id.as_uuid(), id)))
            .collect();
        let missing = self.rows.missing(&keys, self.replay);
        self.load(conn, missing).await?;
        for e in events {
            self.fold(e)?;
        }
        if !self.replay || self.rows.dirty_len() >= self.flush_rows {
            self.write(conn).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        self.write(conn).await
    }

    fn forget(&mut self) {
        self.rows.clear();
    }

    fn set_replay(&mut self, flush_rows: Option<usize>) {
        self.replay = flush_rows.is_some();
        self.flush_rows = flush_rows.unwrap_or(0);
    }
}

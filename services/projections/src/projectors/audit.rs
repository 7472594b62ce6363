//! Projector `audit`: the audit feed (`rm_audit_feed`), one row per event of every category
//! with who, when, what and a one-line summary; the payload stays in the event store.
//! Append-only: a re-delivered event hits the primary key and changes nothing.
//!
//! Summaries are built from the payload's fields without a full decode, and never include
//! scripts or anything secret (events carry no secrets; see DESIGN invariant 13).

use async_trait::async_trait;
use netledger_domain::RecordedEvent;
use serde_json::Value;
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{actor_text, on_conflict_skip};
use crate::error::ProjectionError;
use crate::projector::Projector;

/// Summaries are cut to this many characters.
const SUMMARY_MAX: usize = 240;

/// See the module docs.
#[derive(Debug, Default)]
pub struct AuditProjector {
    replay: bool,
}

fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or("")
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// The one-line summary of an event (its type name for types this build does not know).
pub fn summary(e: &RecordedEvent) -> String {
    let p = &e.payload;
    let text = match e.event_type.as_str() {
        "DeviceRegistered" => {
            let endpoint = p.get("endpoint").unwrap_or(&Value::Null);
            format!(
                "registered {} at {}:{}",
                s(p, "name"),
                s(endpoint, "host"),
                endpoint.get("port").and_then(Value::as_u64).unwrap_or(0)
            )
        }
        "DeviceUpdated" => {
            let changed: Vec<&str> = ["name", "endpoint", "poll_interval_secs"]
                .into_iter()
                .filter(|f| p.get(*f).is_some_and(|v| !v.is_null()))
                .collect();
            format!("settings changed: {}", changed.join(", "))
        }
        "DeviceTagsSet" => {
            let tags: Vec<&str> = p
                .get("tags")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            format!("tags set to [{}]", tags.join(", "))
        }
        "DeviceCredentialsChanged" => format!(
            "credentials changed (user {}, key {})",
            s(p, "username"),
            s(p, "key_id")
        ),
        "DeviceCredentialsCleared" => format!("credentials cleared: {}", s(p, "reason")),
        "DeviceRemoved" => format!("removed: {}", s(p, "reason")),
        "DeviceCameOnline" => {
            let facts = p.get("facts").unwrap_or(&Value::Null);
            format!(
                "came online: {} RouterOS {}",
                s(facts, "identity"),
                s(facts, "version")
            )
        }
        "DeviceWentOffline" => format!("went offline: {}", s(p, "reason")),
        "DeviceVersionChanged" => {
            format!("RouterOS version {} -> {}", s(p, "from"), s(p, "to"))
        }
        "DeviceIdentityChanged" => format!("identity {} -> {}", s(p, "from"), s(p, "to")),
        "DeviceHardwareChanged" => "hardware or RouterBOARD firmware changed".to_owned(),
        "DevicePollingSuspended" => format!(
            "polling suspended after {} failures: {}",
            p.get("consecutive_failures")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            s(p, "last_error")
        ),
        "DevicePollingResumed" => "polling resumed".to_owned(),
        "ConfigSnapshotRecorded" => format!(
            "config snapshot ({}{}) {}",
            s(p, "reason"),
            if p.get("changed").and_then(Value::as_bool) == Some(true) {
                ", changed"
            } else {
                ", unchanged"
            },
            short(s(p, "commit"))
        ),
        "ConfigDriftDetected" => format!("config drift detected {}", short(s(p, "commit"))),
        "DeviceRollbackTimersFound" => format!(
            "rollback timer(s) on the device ({}): {}",
            s(p, "source"),
            p.get("timers")
                .and_then(Value::as_array)
                .map(|t| t
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        ),
        "DeviceRollbackTimersCleared" => "no rollback timer left on the device".to_owned(),
        "UserLoggedIn" => match p.get("source").and_then(Value::as_str) {
            Some(source) => format!("logged in from {source}"),
            None => "logged in".to_owned(),
        },
        "LoginFailed" => format!(
            "login refused ({}) from {}",
            s(p, "reason").replace('_', " "),
            s(p, "source")
        ),
        "ApiKeyUsed" => format!(
            "API key {} used on {} (first use that day) from {}",
            s(p, "key_id"),
            s(p, "day"),
            s(p, "source")
        ),
        "AuditBundleExported" => format!(
            "audit bundle downloaded: {} events from position {}, SHA-256 {}, from {}",
            p.get("events").and_then(Value::as_u64).unwrap_or(0),
            p.get("from_position").and_then(Value::as_i64).unwrap_or(0),
            short(s(p, "sha256")),
            s(p, "source")
        ),
        "AuditVerificationRun" => {
            if p.get("ok").and_then(Value::as_bool) == Some(true) {
                format!(
                    "history verified: {} events, signed through position {}",
                    p.get("events").and_then(Value::as_u64).unwrap_or(0),
                    p.get("signed_through").and_then(Value::as_i64).unwrap_or(0)
                )
            } else {
                format!(
                    "history verification FAILED at position {}",
                    p.get("problem_position")
                        .and_then(Value::as_i64)
                        .unwrap_or(0)
                )
            }
        }
        "WorkflowStarted" => format!("workflow {} started", s(p, "kind")),
        "WorkflowStepStarted" => format!(
            "step {} started (attempt {})",
            s(p, "step"),
            p.get("attempt").and_then(Value::as_u64).unwrap_or(0)
        ),
        "WorkflowStepCompleted" => format!("step {} completed", s(p, "step")),
        "WorkflowStepFailed" => format!(
            "step {} failed ({}): {}",
            s(p, "step"),
            s(p, "class"),
            s(p, "error")
        ),
        "WorkflowTimerScheduled" => {
            format!("timer {} set for {}", s(p, "name"), s(p, "fire_at"))
        }
        "WorkflowSignalled" => format!("signal {}", s(p, "signal")),
        "WorkflowFinished" => match p.get("reason").and_then(Value::as_str) {
            Some(reason) => format!("workflow finished: {} ({reason})", s(p, "outcome")),
            None => format!("workflow finished: {}", s(p, "outcome")),
        },
        "RolloutCreated" => {
            let n = |f: &str| p.get(f).and_then(Value::as_array).map_or(0, Vec::len);
            format!(
                "rollout {} created: {} devices ({} canaries)",
                s(p, "name"),
                n("canaries") + n("devices"),
                n("canaries")
            )
        }
        "RolloutDeviceFinished" => format!(
            "device {} finished in batch {}: {}",
            s(p, "device_id"),
            p.get("batch").and_then(Value::as_u64).unwrap_or(0),
            s(p, "outcome")
        ),
        "RolloutStateChanged" => match p.get("reason").and_then(Value::as_str) {
            Some(reason) => format!("rollout {}: {reason}", s(p, "state")),
            None => format!("rollout {}", s(p, "state")),
        },
        "ChangeRequestCreated" => {
            let content = p.get("content").unwrap_or(&Value::Null);
            format!(
                "change request created: {} (risk {}{})",
                s(content, "title"),
                s(content, "risk"),
                if content.get("emergency").and_then(Value::as_bool) == Some(true) {
                    ", emergency"
                } else {
                    ""
                }
            )
        }
        "ChangeRequestEdited" => {
            let content = p.get("content").unwrap_or(&Value::Null);
            format!(
                "change request edited ({} -> draft): {}",
                s(p, "previous_state"),
                s(content, "title")
            )
        }
        "ChangeRequestApprovalsInvalidated" => format!(
            "{} approval(s) invalidated: {}",
            p.get("approvers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len),
            s(p, "reason")
        ),
        "ChangeRequestSubmitted" => format!(
            "change request submitted: {} devices, {} approval(s) needed",
            p.get("devices")
                .and_then(Value::as_array)
                .map_or(0, Vec::len),
            p.get("required_approvals")
                .and_then(Value::as_u64)
                .unwrap_or(0)
        ),
        "ChangeRequestApproved" => {
            let kind = if p.get("retrospective").and_then(Value::as_bool) == Some(true) {
                "reviewed (retrospective approval)"
            } else {
                "approved"
            };
            match p.get("comment").and_then(Value::as_str) {
                Some(comment) => format!("change request {kind} by {}: {comment}", s(p, "by")),
                None => format!("change request {kind} by {}", s(p, "by")),
            }
        }
        "ChangeRequestRejected" => format!(
            "change request rejected by {}: {}",
            s(p, "by"),
            s(p, "comment")
        ),
        "ChangeRequestWithdrawn" => match p.get("reason").and_then(Value::as_str) {
            Some(reason) => format!("change request withdrawn: {reason}"),
            None => "change request withdrawn".to_owned(),
        },
        "ChangeRequestScheduled" => format!(
            "change request scheduled by {} (workflow {})",
            s(p, "by"),
            s(p, "workflow_id")
        ),
        "ChangeRequestStarted" => format!("change request started rollout {}", s(p, "rollout_id")),
        "ChangeRequestPaused" => format!(
            "change request paused (pause {}): {}",
            p.get("pause").and_then(Value::as_u64).unwrap_or(0),
            s(p, "reason")
        ),
        "ChangeRequestResumed" => format!(
            "change request resumed after pause {}",
            p.get("pause").and_then(Value::as_u64).unwrap_or(0)
        ),
        "ChangeRequestCancelRequested" => format!(
            "change request cancel requested by {}: {}",
            s(p, "by"),
            s(p, "reason")
        ),
        "ChangeRequestCancelled" => format!(
            "change request cancelled by {}: {}",
            s(p, "by"),
            s(p, "reason")
        ),
        "ChangeRequestFinished" => match p.get("reason").and_then(Value::as_str) {
            Some(reason) => format!("change request finished: {} ({reason})", s(p, "state")),
            None => format!("change request finished: {}", s(p, "state")),
        },
        other => other.to_owned(),
    };
    if text.chars().count() > SUMMARY_MAX {
        let mut cut: String = text.chars().take(SUMMARY_MAX - 1).collect();
        cut.push('…');
        cut
    } else {
        text
    }
}

#[async_trait]
impl Projector for AuditProjector {
    fn name(&self) -> &'static str {
        "audit"
    }

    fn category(&self) -> Option<&'static str> {
        None
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_audit_feed"]
    }

    async fn apply(
        &mut self,
        conn: &mut PgConnection,
        events: &[&RecordedEvent],
    ) -> Result<(), ProjectionError> {
        if events.is_empty() {
            return Ok(());
        }
        let n = events.len();
        let mut tenant: Vec<Uuid> = Vec::with_capacity(n);
        let mut position: Vec<i64> = Vec::with_capacity(n);
        let mut recorded_at: Vec<OffsetDateTime> = Vec::with_capacity(n);
        let mut stream: Vec<&str> = Vec::with_capacity(n);
        let mut category: Vec<&str> = Vec::with_capacity(n);
        let mut event_type: Vec<&str> = Vec::with_capacity(n);
        let mut schema_version: Vec<i32> = Vec::with_capacity(n);
        let mut event_id: Vec<Uuid> = Vec::with_capacity(n);
        let mut actor: Vec<String> = Vec::with_capacity(n);
        let mut correlation: Vec<Uuid> = Vec::with_capacity(n);
        let mut causation: Vec<Uuid> = Vec::with_capacity(n);
        let mut summaries: Vec<String> = Vec::with_capacity(n);
        for e in events {
            tenant.push(*e.tenant_id.as_uuid());
            position.push(e.position);
            recorded_at.push(e.recorded_at);
            stream.push(e.stream.as_str());
            category.push(e.category());
            event_type.push(e.event_type.as_str());
            schema_version.push(i32::try_from(e.schema_version).unwrap_or(i32::MAX));
            event_id.push(*e.event_id.as_uuid());
            actor.push(actor_text(&e.metadata.actor));
            correlation.push(e.metadata.correlation_id);
            causation.push(e.metadata.causation_id);
            summaries.push(summary(e));
        }
        let sql = format!(
            "INSERT INTO rm_audit_feed (tenant_id, position, recorded_at, stream, category, \
                 event_type, schema_version, event_id, actor, correlation_id, causation_id, summary) \
             SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::timestamptz[], $4::text[], \
                 $5::text[], $6::text[], $7::int[], $8::uuid[], $9::text[], $10::uuid[], \
                 $11::uuid[], $12::text[]) {}",
            on_conflict_skip(self.replay)
        );
        sqlx::query(&sql)
            .bind(tenant)
            .bind(position)
            .bind(recorded_at)
            .bind(stream)
            .bind(category)
            .bind(event_type)
            .bind(schema_version)
            .bind(event_id)
            .bind(actor)
            .bind(correlation)
            .bind(causation)
            .bind(summaries)
            .execute(conn)
            .await
            .map_err(ProjectionError::db("insert audit feed"))?;
        Ok(())
    }

    fn forget(&mut self) {}

    fn set_replay(&mut self, flush_rows: Option<usize>) {
        self.replay = flush_rows.is_some();
    }
}

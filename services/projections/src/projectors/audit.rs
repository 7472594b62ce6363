//! Projector `audit`: the audit feed (`rm_audit_feed`), one row per event of every category
//! with who, when, what and a one-line summary; the payload stays in the event store.
//! Append-only: a re-delivered event hits the primary key and changes nothing.
//!
//! Summaries are built from the payload's fields without a full decode, and never include
//! scripts or anything secret (events carry no secrets; see DESIGN invariant 13).
//!
//! Names as they were: the projector keeps every named subject's name history
//! (`rm_audit_names`: users, API keys, devices, change requests, rollouts, one row per
//! naming event) and writes each feed row with its actor's and its subject's name as of
//! that event, so a later rename does not rewrite what an auditor reads about the past.

use std::collections::HashMap;

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
    /// Name histories: the batch's subjects' (read from `rm_audit_names`) in a live batch;
    /// every subject's in a replay, which folds from position 0 and reads nothing back.
    names: Names,
}

fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or("")
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// Who changed a drifted device, as its own history said (`ConfigDriftDetected`'s
/// `device_history`, newest first): ` (by RouterOS user bob: filter rule added)`; empty for
/// drift recorded without it.
fn drift_by(p: &Value) -> String {
    if let Some(error) = p.get("device_history_error").and_then(Value::as_str) {
        return format!(" (device history not read: {error})");
    }
    let Some(rows) = p.get("device_history").and_then(Value::as_array) else {
        return String::new();
    };
    if rows.is_empty() {
        return " (no change in the device history)".to_owned();
    }
    let mut users: Vec<&str> = Vec::new();
    for u in rows.iter().map(|r| s(r, "by")).filter(|u| !u.is_empty()) {
        if !users.contains(&u) {
            users.push(u);
        }
    }
    let actions: Vec<&str> = rows.iter().map(|r| s(r, "action")).take(3).collect();
    let more = match rows.len().saturating_sub(actions.len()) {
        0 => String::new(),
        n => format!(", {n} more"),
    };
    let who = match users.as_slice() {
        [] => "unknown RouterOS user".to_owned(),
        [one] => format!("RouterOS user {one}"),
        many => format!("RouterOS users {}", many.join(", ")),
    };
    format!(" (by {who}: {}{more})", actions.join(", "))
}

/// The one-line summary of an event (its type name for types this build does not know),
/// with ids as they are.
pub fn summary(e: &RecordedEvent) -> String {
    summary_named(e, &|_| None)
}

/// The one-line summary of an event, naming the people and devices it mentions by id with
/// `name` (a subject such as `user:<id>` or `device:<id>` to its name as of the event).
pub fn summary_named(e: &RecordedEvent, name: &dyn Fn(&str) -> Option<String>) -> String {
    let p = &e.payload;
    // `by` fields hold a user's or an API key's id.
    let by = || {
        let id = s(p, "by");
        name(&format!("user:{id}"))
            .or_else(|| name(&format!("api_key:{id}")))
            .unwrap_or_else(|| id.to_owned())
    };
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
        "ConfigDriftDetected" => format!(
            "config drift detected {}{}",
            short(s(p, "commit")),
            drift_by(p)
        ),
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
            "audit bundle downloaded: {} events from position {}{}, SHA-256 {}, from {}",
            p.get("events").and_then(Value::as_u64).unwrap_or(0),
            p.get("from_position").and_then(Value::as_i64).unwrap_or(0),
            match p.get("devices").and_then(Value::as_array) {
                Some(d) => format!(" ({} device(s); others as hash-only stubs)", d.len()),
                None => String::new(),
            },
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
            name(&format!("device:{}", s(p, "device_id")))
                .unwrap_or_else(|| s(p, "device_id").to_owned()),
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
                Some(comment) => format!("change request {kind} by {}: {comment}", by()),
                None => format!("change request {kind} by {}", by()),
            }
        }
        "ChangeRequestRejected" => {
            format!("change request rejected by {}: {}", by(), s(p, "comment"))
        }
        "ChangeRequestWithdrawn" => match p.get("reason").and_then(Value::as_str) {
            Some(reason) => format!("change request withdrawn: {reason}"),
            None => "change request withdrawn".to_owned(),
        },
        "ChangeRequestScheduled" => format!(
            "change request scheduled by {} (workflow {})",
            by(),
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
            by(),
            s(p, "reason")
        ),
        "ChangeRequestCancelled" => {
            format!("change request cancelled by {}: {}", by(), s(p, "reason"))
        }
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

/// A name an event gives its subject: (subject, name, e-mail).
fn naming(e: &RecordedEvent) -> Option<(String, String, Option<String>)> {
    let p = &e.payload;
    let id = e.stream.id();
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    match e.event_type.as_str() {
        "UserCreated" => Some((
            format!("user:{}", s(p, "user_id")),
            text(p.get("display_name"))?,
            text(p.get("email")),
        )),
        // The e-mail address is carried over from the previous name (see `resolve`).
        "UserUpdated" => Some((format!("user:{id}"), text(p.get("display_name"))?, None)),
        "ApiKeyCreated" => Some((
            format!("api_key:{}", s(p, "key_id")),
            text(p.get("name"))?,
            None,
        )),
        "DeviceRegistered" => Some((
            format!("device:{}", s(p, "device_id")),
            text(p.get("name"))?,
            None,
        )),
        "DeviceUpdated" => Some((format!("device:{id}"), text(p.get("name"))?, None)),
        "ChangeRequestCreated" | "ChangeRequestEdited" => Some((
            format!("change_request:{id}"),
            text(p.get("content").and_then(|c| c.get("title")))?,
            None,
        )),
        "RolloutCreated" => Some((format!("rollout:{id}"), text(p.get("name"))?, None)),
        _ => None,
    }
}

/// What an event is about, as a subject (`device:<id>`, `user:<id>`, ...), when it names one.
pub fn subject(e: &RecordedEvent) -> Option<String> {
    let p = &e.payload;
    let id = e.stream.id();
    let field = |f: &str| p.get(f).and_then(Value::as_str).filter(|v| !v.is_empty());
    match e.category() {
        "device" => Some(format!("device:{id}")),
        "user" => Some(format!("user:{id}")),
        "change" => Some(format!("change_request:{id}")),
        "rollout" => Some(format!("rollout:{id}")),
        "session" => field("user_id").map(|u| format!("user:{u}")),
        _ => field("key_id")
            .map(|k| format!("api_key:{k}"))
            .or_else(|| field("user_id").map(|u| format!("user:{u}")))
            .or_else(|| field("device_id").map(|d| format!("device:{d}"))),
    }
}

/// One name of a subject, valid from a position.
#[derive(Debug, Clone)]
struct Named {
    from: i64,
    name: String,
    email: Option<String>,
}

impl Named {
    fn display(&self) -> String {
        match &self.email {
            Some(email) => format!("{} <{email}>", self.name),
            None => self.name.clone(),
        }
    }
}

/// Name histories of the subjects of one batch, by (tenant, subject), oldest first.
#[derive(Debug, Default)]
struct Names(HashMap<(Uuid, String), Vec<Named>>);

impl Names {
    /// The subject's name as of `position`.
    fn at(&self, tenant: Uuid, subject: &str, position: i64) -> Option<String> {
        let history = self.0.get(&(tenant, subject.to_owned()))?;
        history
            .iter()
            .rev()
            .find(|n| n.from <= position)
            .map(Named::display)
    }

    /// Records a name given at `position`; `None` when it is already known (a re-delivered
    /// event). A name without an e-mail keeps the subject's previous one.
    fn give(
        &mut self,
        tenant: Uuid,
        subject: String,
        position: i64,
        name: String,
        email: Option<String>,
    ) -> Option<Named> {
        let history = self.0.entry((tenant, subject)).or_default();
        if history.iter().any(|n| n.from == position) {
            return None;
        }
        let at = history.partition_point(|n| n.from < position);
        let email = email.or_else(|| at.checked_sub(1).and_then(|i| history[i].email.clone()));
        let named = Named {
            from: position,
            name,
            email,
        };
        history.insert(at, named.clone());
        Some(named)
    }
}

/// The subjects whose names a batch needs: actors, subjects, `by` fields, devices named in
/// payloads, and the subjects the batch names.
fn wanted(events: &[&RecordedEvent]) -> (Vec<Uuid>, Vec<String>) {
    let mut set = std::collections::BTreeSet::new();
    for e in events {
        let t = *e.tenant_id.as_uuid();
        let actor = actor_text(&e.metadata.actor);
        if !actor.starts_with("system:") {
            set.insert((t, actor));
        }
        if let Some(sub) = subject(e) {
            set.insert((t, sub));
        }
        if let Some(by) = e.payload.get("by").and_then(Value::as_str) {
            set.insert((t, format!("user:{by}")));
            set.insert((t, format!("api_key:{by}")));
        }
        if let Some(d) = e.payload.get("device_id").and_then(Value::as_str) {
            set.insert((t, format!("device:{d}")));
        }
        if let Some((sub, _, _)) = naming(e) {
            set.insert((t, sub));
        }
    }
    set.into_iter().unzip()
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
        &["rm_audit_feed", "rm_audit_names"]
    }

    async fn apply(
        &mut self,
        conn: &mut PgConnection,
        events: &[&RecordedEvent],
    ) -> Result<(), ProjectionError> {
        if events.is_empty() {
            return Ok(());
        }
        // Names: the batch's subjects' histories (a replay has them all already), then the
        // names the batch gives.
        if !self.replay {
            let (want_tenant, want_subject) = wanted(events);
            let rows: Vec<(Uuid, String, i64, String, Option<String>)> = sqlx::query_as(
                "SELECT n.tenant_id, n.subject, n.from_position, n.name, n.email \
                 FROM rm_audit_names n \
                 JOIN unnest($1::uuid[], $2::text[]) AS w(tenant_id, subject) \
                   ON n.tenant_id = w.tenant_id AND n.subject = w.subject \
                 ORDER BY n.from_position",
            )
            .bind(&want_tenant)
            .bind(&want_subject)
            .fetch_all(&mut *conn)
            .await
            .map_err(ProjectionError::db("read audit names"))?;
            self.names = Names::default();
            for (t, subject, from, name, email) in rows {
                self.names
                    .0
                    .entry((t, subject))
                    .or_default()
                    .push(Named { from, name, email });
            }
        }
        let names = &mut self.names;
        let mut given: Vec<(Uuid, String, Named)> = Vec::new();
        for e in events {
            if let Some((subject, name, email)) = naming(e) {
                let t = *e.tenant_id.as_uuid();
                if let Some(named) = names.give(t, subject.clone(), e.position, name, email) {
                    given.push((t, subject, named));
                }
            }
        }
        if !given.is_empty() {
            let (mut gt, mut gs, mut gp, mut gn, mut ge) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for (t, subject, named) in given {
                gt.push(t);
                gs.push(subject);
                gp.push(named.from);
                gn.push(named.name);
                ge.push(named.email);
            }
            sqlx::query(
                "INSERT INTO rm_audit_names (tenant_id, subject, from_position, name, email) \
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::text[]) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(gt)
            .bind(gs)
            .bind(gp)
            .bind(gn)
            .bind(ge)
            .execute(&mut *conn)
            .await
            .map_err(ProjectionError::db("insert audit names"))?;
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
        let mut actor_names: Vec<Option<String>> = Vec::with_capacity(n);
        let mut subjects: Vec<Option<String>> = Vec::with_capacity(n);
        let mut subject_names: Vec<Option<String>> = Vec::with_capacity(n);
        for e in events {
            let t = *e.tenant_id.as_uuid();
            let name_of = |subject: &str| names.at(t, subject, e.position);
            let actor_key = actor_text(&e.metadata.actor);
            actor_names.push(name_of(&actor_key));
            let subject = subject(e);
            subject_names.push(subject.as_deref().and_then(name_of));
            subjects.push(subject);
            tenant.push(*e.tenant_id.as_uuid());
            position.push(e.position);
            recorded_at.push(e.recorded_at);
            stream.push(e.stream.as_str());
            category.push(e.category());
            event_type.push(e.event_type.as_str());
            schema_version.push(i32::try_from(e.schema_version).unwrap_or(i32::MAX));
            event_id.push(*e.event_id.as_uuid());
            actor.push(actor_key);
            correlation.push(e.metadata.correlation_id);
            causation.push(e.metadata.causation_id);
            summaries.push(summary_named(e, &name_of));
        }
        let sql = format!(
            "INSERT INTO rm_audit_feed (tenant_id, position, recorded_at, stream, category, \
                 event_type, schema_version, event_id, actor, correlation_id, causation_id, summary, \
                 actor_name, subject, subject_name) \
             SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::timestamptz[], $4::text[], \
                 $5::text[], $6::text[], $7::int[], $8::uuid[], $9::text[], $10::uuid[], \
                 $11::uuid[], $12::text[], $13::text[], $14::text[], $15::text[]) {}",
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
            .bind(actor_names)
            .bind(subjects)
            .bind(subject_names)
            .execute(conn)
            .await
            .map_err(ProjectionError::db("insert audit feed"))?;
        Ok(())
    }

    fn forget(&mut self) {
        self.names = Names::default();
    }

    fn set_replay(&mut self, flush_rows: Option<usize>) {
        self.replay = flush_rows.is_some();
    }
}

#[cfg(test)]
mod drift_summary_tests {
    use serde_json::json;

    use super::drift_by;

    #[test]
    fn drift_summaries_name_the_routeros_users_from_the_devices_history() {
        // recorded before the device's history was read: unchanged summary
        assert_eq!(drift_by(&json!({"commit": "c"})), "");
        let one = json!({"device_history": [
            {"action": "filter rule added", "by": "bob", "time": "2023-06-01 12:11:25"}
        ]});
        assert_eq!(drift_by(&one), " (by RouterOS user bob: filter rule added)");
        let many = json!({"device_history": [
            {"action": "a1", "by": "bob", "time": "t"},
            {"action": "a2", "by": "carol", "time": "t"},
            {"action": "a3", "by": "bob", "time": "t"},
            {"action": "a4", "by": "dave", "time": "t"},
            {"action": "a5", "by": "bob", "time": "t"}
        ]});
        assert_eq!(
            drift_by(&many),
            " (by RouterOS users bob, carol, dave: a1, a2, a3, 2 more)"
        );
        assert_eq!(
            drift_by(&json!({"device_history": []})),
            " (no change in the device history)"
        );
        assert_eq!(
            drift_by(&json!({"device_history_error": "timed out after 5s"})),
            " (device history not read: timed out after 5s)"
        );
    }
}

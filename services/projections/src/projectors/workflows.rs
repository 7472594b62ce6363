//! Projector `workflows`: workflow runs (`rm_workflow_runs`), their steps
//! (`rm_workflow_steps`) and the devices each run touches (`rm_workflow_devices`), folded
//! from `workflow-<id>` journals.
//!
//! A run exists from `WorkflowStarted` on. Its `state` is `running` while steps run,
//! `waiting` after a timer was set, `retrying` after a retryable step failure with a retry
//! time, and the outcome (`succeeded`, `committed`, `rolled_back`, `cancelled`, `failed`)
//! once finished. A step is one row per step name (attempts counted on it), ordered by the
//! stream version of its first start. Events are decoded as the domain's [`WorkflowEvent`]
//! and matched exhaustively; unknown event types only advance the run's position.

use async_trait::async_trait;
use netledger_domain::workflow::{FailureClass, WorkflowEvent, WorkflowStarted};
use netledger_domain::{EventType, RecordedEvent};
use sqlx::{PgConnection, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Rows, enum_text, stream_uuid};
use crate::error::ProjectionError;
use crate::projector::{Projector, decode_event};

type Key = (Uuid, Uuid);

#[derive(Debug, Clone)]
struct Step {
    name: String,
    seq: i64,
    state: &'static str,
    attempts: i32,
    started_at: OffsetDateTime,
    finished_at: Option<OffsetDateTime>,
    last_error: Option<String>,
    failure_class: Option<&'static str>,
    retry_at: Option<OffsetDateTime>,
    dirty: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Run {
    kind: String,
    definition_version: i32,
    state: String,
    outcome: Option<String>,
    reason: Option<String>,
    input: String,
    output: Option<String>,
    idempotency_key: Option<String>,
    devices: Vec<Uuid>,
    rollout_id: Option<Uuid>,
    current_step: Option<String>,
    steps_completed: i32,
    failed_attempts: i32,
    last_error: Option<String>,
    wake_at: Option<OffsetDateTime>,
    last_signal: Option<String>,
    started_at: OffsetDateTime,
    finished_at: Option<OffsetDateTime>,
    updated_at: OffsetDateTime,
    started_position: i64,
    stream_version: i64,
    last_position: i64,
    steps: Vec<Step>,
    /// Whether `rm_workflow_devices` holds this run's devices.
    devices_written: bool,
}

impl Run {
    fn step_mut(&mut self, name: &str) -> Option<&mut Step> {
        self.steps.iter_mut().find(|s| s.name == name)
    }
}

fn static_step_state(s: &str) -> &'static str {
    match s {
        "completed" => "completed",
        "retrying" => "retrying",
        "failed" => "failed",
        _ => "running",
    }
}

fn static_class(s: &str) -> &'static str {
    if s == "fatal" { "fatal" } else { "retryable" }
}

fn class_text(c: FailureClass) -> &'static str {
    match c {
        FailureClass::Retryable => "retryable",
        FailureClass::Fatal => "fatal",
    }
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct WorkflowsProjector {
    rows: Rows<Key, Run>,
    replay: bool,
    flush_rows: usize,
}

const RUN_COLUMNS: &str = "tenant_id, workflow_id, kind, definition_version, state, outcome, \
    reason, input, output, idempotency_key, devices, rollout_id, current_step, steps_completed, \
    failed_attempts, last_error, wake_at, last_signal, started_at, finished_at, updated_at, \
    started_position, stream_version, last_position";

impl WorkflowsProjector {
    async fn load(
        &mut self,
        conn: &mut PgConnection,
        keys: Vec<Key>,
    ) -> Result<(), ProjectionError> {
        if keys.is_empty() {
            return Ok(());
        }
        let get = |e: sqlx::Error| ProjectionError::Database {
            operation: "decode workflow row",
            source: e,
        };
        let (tenants, ids): (Vec<Uuid>, Vec<Uuid>) = keys.into_iter().unzip();
        let sql = "SELECT tenant_id, workflow_id, kind, definition_version, state, outcome, reason, \
                    input::text, output::text, idempotency_key, devices, rollout_id, current_step, \
                    steps_completed, failed_attempts, last_error, wake_at, last_signal, started_at, \
                    finished_at, updated_at, started_position, stream_version, last_position \
             FROM rm_workflow_runs WHERE (tenant_id, workflow_id) IN \
             (SELECT * FROM unnest($1::uuid[], $2::uuid[]))";
        let rows = sqlx::query(sql)
            .bind(&tenants)
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await
            .map_err(ProjectionError::db("load workflow runs"))?;
        let mut runs = Vec::with_capacity(rows.len());
        for r in rows {
            let key: Key = (r.try_get(0).map_err(get)?, r.try_get(1).map_err(get)?);
            runs.push((
                key,
                Run {
                    kind: r.try_get(2).map_err(get)?,
                    definition_version: r.try_get(3).map_err(get)?,
                    state: r.try_get(4).map_err(get)?,
                    outcome: r.try_get(5).map_err(get)?,
                    reason: r.try_get(6).map_err(get)?,
                    input: r.try_get(7).map_err(get)?,
                    output: r.try_get(8).map_err(get)?,
                    idempotency_key: r.try_get(9).map_err(get)?,
                    devices: r.try_get(10).map_err(get)?,
                    rollout_id: r.try_get(11).map_err(get)?,
                    current_step: r.try_get(12).map_err(get)?,
                    steps_completed: r.try_get(13).map_err(get)?,
                    failed_attempts: r.try_get(14).map_err(get)?,
                    last_error: r.try_get(15).map_err(get)?,
                    wake_at: r.try_get(16).map_err(get)?,
                    last_signal: r.try_get(17).map_err(get)?,
                    started_at: r.try_get(18).map_err(get)?,
                    finished_at: r.try_get(19).map_err(get)?,
                    updated_at: r.try_get(20).map_err(get)?,
                    started_position: r.try_get(21).map_err(get)?,
                    stream_version: r.try_get(22).map_err(get)?,
                    last_position: r.try_get(23).map_err(get)?,
                    steps: Vec::new(),
                    devices_written: true,
                },
            ));
        }
        let steps = sqlx::query(
            "SELECT tenant_id, workflow_id, step, seq, state, attempts, started_at, finished_at, \
                    last_error, failure_class, retry_at \
             FROM rm_workflow_steps WHERE (tenant_id, workflow_id) IN \
             (SELECT * FROM unnest($1::uuid[], $2::uuid[])) ORDER BY seq",
        )
        .bind(&tenants)
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await
        .map_err(ProjectionError::db("load workflow steps"))?;
        let mut by_run: std::collections::HashMap<Key, Vec<Step>> = Default::default();
        for r in steps {
            let key: Key = (r.try_get(0).map_err(get)?, r.try_get(1).map_err(get)?);
            let state: String = r.try_get(4).map_err(get)?;
            let class: Option<String> = r.try_get(9).map_err(get)?;
            by_run.entry(key).or_default().push(Step {
                name: r.try_get(2).map_err(get)?,
                seq: r.try_get(3).map_err(get)?,
                state: static_step_state(&state),
                attempts: r.try_get(5).map_err(get)?,
                started_at: r.try_get(6).map_err(get)?,
                finished_at: r.try_get(7).map_err(get)?,
                last_error: r.try_get(8).map_err(get)?,
                failure_class: class.as_deref().map(static_class),
                retry_at: r.try_get(10).map_err(get)?,
                dirty: false,
            });
        }
        for (key, mut run) in runs {
            run.steps = by_run.remove(&key).unwrap_or_default();
            self.rows.loaded(key, run);
        }
        Ok(())
    }

    fn fold(&mut self, e: &RecordedEvent) -> Result<(), ProjectionError> {
        let Some(id) = stream_uuid(e) else {
            return Ok(());
        };
        let key = (*e.tenant_id.as_uuid(), id);
        let at = e.recorded_at;
        if let Some(run) = self.rows.get(&key)
            && e.position <= run.last_position
        {
            return Ok(());
        }
        let start = e.event_type == WorkflowStarted::TYPE;
        let Some(run) = self.rows.get_mut(&key) else {
            if start {
                if let Some(WorkflowEvent::Started(s)) = decode_event::<WorkflowEvent>(e)? {
                    self.rows.insert(
                        key,
                        Run {
                            kind: s.kind,
                            definition_version: i32::try_from(s.definition_version)
                                .unwrap_or(i32::MAX),
                            state: "running".to_owned(),
                            outcome: None,
                            reason: None,
                            input: s.input.to_string(),
                            output: None,
                            idempotency_key: s.idempotency_key,
                            devices: s.devices.iter().map(|d| *d.as_uuid()).collect(),
                            rollout_id: s.rollout_id.map(|r| *r.as_uuid()),
                            current_step: None,
                            steps_completed: 0,
                            failed_attempts: 0,
                            last_error: None,
                            wake_at: None,
                            last_signal: None,
                            started_at: at,
                            finished_at: None,
                            updated_at: at,
                            started_position: e.position,
                            stream_version: e.version,
                            last_position: e.position,
                            steps: Vec::new(),
                            devices_written: false,
                        },
                    );
                }
            } else {
                tracing::debug!(position = e.position, stream = %e.stream, "journal event for a workflow with no start; skipped");
            }
            return Ok(());
        };
        if start {
            // A journal starts once; a second start is not folded.
            return Ok(());
        }
        match decode_event::<WorkflowEvent>(e)? {
            Some(WorkflowEvent::StepStarted(s)) => {
                let attempt = i32::try_from(s.attempt).unwrap_or(i32::MAX);
                match run.step_mut(&s.step) {
                    Some(step) => {
                        step.state = "running";
                        step.attempts = step.attempts.max(attempt);
                        step.finished_at = None;
                        step.retry_at = None;
                        step.dirty = true;
                    }
                    None => run.steps.push(Step {
                        name: s.step.clone(),
                        seq: e.version,
                        state: "running",
                        attempts: attempt,
                        started_at: at,
                        finished_at: None,
                        last_error: None,
                        failure_class: None,
                        retry_at: None,
                        dirty: true,
                    }),
                }
                if run.finished_at.is_none() {
                    run.state = "running".to_owned();
                    run.wake_at = None;
                }
                run.current_step = Some(s.step);
            }
            Some(WorkflowEvent::StepCompleted(s)) => {
                let attempt = i32::try_from(s.attempt).unwrap_or(i32::MAX);
                match run.step_mut(&s.step) {
                    Some(step) => {
                        step.state = "completed";
                        step.attempts = step.attempts.max(attempt);
                        step.finished_at = Some(at);
                        step.retry_at = None;
                        step.dirty = true;
                    }
                    None => run.steps.push(Step {
                        name: s.step.clone(),
                        seq: e.version,
                        state: "completed",
                        attempts: attempt,
                        started_at: at,
                        finished_at: Some(at),
                        last_error: None,
                        failure_class: None,
                        retry_at: None,
                        dirty: true,
                    }),
                }
                run.steps_completed = run.steps_completed.saturating_add(1);
                if run.current_step.as_deref() == Some(s.step.as_str()) {
                    run.current_step = None;
                }
            }
            Some(WorkflowEvent::StepFailed(s)) => {
                let attempt = i32::try_from(s.attempt).unwrap_or(i32::MAX);
                let retrying = s.class == FailureClass::Retryable && s.retry_at.is_some();
                let state = if retrying { "retrying" } else { "failed" };
                let finished_at = if retrying { None } else { Some(at) };
                match run.step_mut(&s.step) {
                    Some(step) => {
                        step.state = state;
                        step.attempts = step.attempts.max(attempt);
                        step.finished_at = finished_at;
                        step.last_error = Some(s.error.clone());
                        step.failure_class = Some(class_text(s.class));
                        step.retry_at = s.retry_at;
                        step.dirty = true;
                    }
                    None => run.steps.push(Step {
                        name: s.step.clone(),
                        seq: e.version,
                        state,
                        attempts: attempt,
                        started_at: at,
                        finished_at,
                        last_error: Some(s.error.clone()),
                        failure_class: Some(class_text(s.class)),
                        retry_at: s.retry_at,
                        dirty: true,
                    }),
                }
                run.failed_attempts = run.failed_attempts.saturating_add(1);
                run.last_error = Some(s.error);
                if run.finished_at.is_none() {
                    if retrying {
                        run.state = "retrying".to_owned();
                        run.wake_at = s.retry_at;
                    } else {
                        run.state = "running".to_owned();
                        run.wake_at = None;
                    }
                }
            }
            Some(WorkflowEvent::TimerScheduled(t)) if run.finished_at.is_none() => {
                run.state = "waiting".to_owned();
                run.wake_at = Some(t.fire_at);
            }
            // The wait is over.
            Some(WorkflowEvent::TimerFired(_))
                if run.finished_at.is_none() && run.state == "waiting" =>
            {
                run.state = "running".to_owned();
                run.wake_at = None;
            }
            // A timer of a finished run, or a fired timer the run was not waiting for.
            Some(WorkflowEvent::TimerScheduled(_) | WorkflowEvent::TimerFired(_)) => {}
            Some(WorkflowEvent::Signalled(s)) => {
                run.last_signal = Some(s.signal);
            }
            Some(WorkflowEvent::Finished(f)) => {
                let outcome = enum_text(&f.outcome);
                run.state = outcome.clone();
                run.outcome = Some(outcome);
                run.reason = f.reason;
                run.output = Some(f.output.to_string());
                run.finished_at = Some(at);
                run.wake_at = None;
                run.current_step = None;
            }
            // Handled above (a journal starts once).
            Some(WorkflowEvent::Started(_)) => {}
            // A takeover changes who runs it, not what the run shows.
            Some(WorkflowEvent::TakenOver(_)) => {}
            // Unknown types (newer code) and malformed payloads only advance the position.
            None => {}
        }
        run.updated_at = at;
        run.stream_version = e.version;
        run.last_position = e.position;
        self.rows.touch(&key);
        Ok(())
    }

    async fn write(&mut self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        let keys = self.rows.take_dirty();
        if keys.is_empty() {
            return Ok(());
        }
        let mut runs = RunColumns::default();
        let mut steps = StepColumns::default();
        let mut devices = DeviceColumns::default();
        for k in &keys {
            let Some(run) = self.rows.get_mut(k) else {
                continue;
            };
            runs.push(*k, run);
            for s in run.steps.iter_mut().filter(|s| s.dirty) {
                steps.push(*k, s);
                s.dirty = false;
            }
            if !run.devices_written {
                for d in &run.devices {
                    devices.tenant.push(k.0);
                    devices.device.push(*d);
                    devices.started_position.push(run.started_position);
                    devices.workflow.push(k.1);
                }
                run.devices_written = true;
            }
        }
        runs.upsert(conn).await?;
        steps.upsert(conn).await?;
        if !devices.tenant.is_empty() {
            sqlx::query(
                "INSERT INTO rm_workflow_devices (tenant_id, device_id, started_position, workflow_id) \
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::uuid[]) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(devices.tenant)
            .bind(devices.device)
            .bind(devices.started_position)
            .bind(devices.workflow)
            .execute(&mut *conn)
            .await
            .map_err(ProjectionError::db("insert workflow devices"))?;
        }
        if self.replay {
            // A finished journal takes no more events: keep the replay's cache small.
            self.rows.evict(|run| run.finished_at.is_some());
        }
        Ok(())
    }
}

#[derive(Default)]
struct DeviceColumns {
    tenant: Vec<Uuid>,
    device: Vec<Uuid>,
    started_position: Vec<i64>,
    workflow: Vec<Uuid>,
}

#[derive(Default)]
struct RunColumns {
    tenant: Vec<Uuid>,
    workflow: Vec<Uuid>,
    kind: Vec<String>,
    definition_version: Vec<i32>,
    state: Vec<String>,
    outcome: Vec<Option<String>>,
    reason: Vec<Option<String>>,
    input: Vec<String>,
    output: Vec<Option<String>>,
    idempotency_key: Vec<Option<String>>,
    devices: Vec<String>,
    rollout_id: Vec<Option<Uuid>>,
    current_step: Vec<Option<String>>,
    steps_completed: Vec<i32>,
    failed_attempts: Vec<i32>,
    last_error: Vec<Option<String>>,
    wake_at: Vec<Option<OffsetDateTime>>,
    last_signal: Vec<Option<String>>,
    started_at: Vec<OffsetDateTime>,
    finished_at: Vec<Option<OffsetDateTime>>,
    updated_at: Vec<OffsetDateTime>,
    started_position: Vec<i64>,
    stream_version: Vec<i64>,
    last_position: Vec<i64>,
}

impl RunColumns {
    fn push(&mut self, key: Key, r: &Run) {
        self.tenant.push(key.0);
        self.workflow.push(key.1);
        self.kind.push(r.kind.clone());
        self.definition_version.push(r.definition_version);
        self.state.push(r.state.clone());
        self.outcome.push(r.outcome.clone());
        self.reason.push(r.reason.clone());
        self.input.push(r.input.clone());
        self.output.push(r.output.clone());
        self.idempotency_key.push(r.idempotency_key.clone());
        self.devices.push(
            r.devices
                .iter()
                .map(Uuid::to_string)
                .collect::<Vec<_>>()
                .join(","),
        );
        self.rollout_id.push(r.rollout_id);
        self.current_step.push(r.current_step.clone());
        self.steps_completed.push(r.steps_completed);
        self.failed_attempts.push(r.failed_attempts);
        self.last_error.push(r.last_error.clone());
        self.wake_at.push(r.wake_at);
        self.last_signal.push(r.last_signal.clone());
        self.started_at.push(r.started_at);
        self.finished_at.push(r.finished_at);
        self.updated_at.push(r.updated_at);
        self.started_position.push(r.started_position);
        self.stream_version.push(r.stream_version);
        self.last_position.push(r.last_position);
    }

    async fn upsert(self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        if self.tenant.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "INSERT INTO rm_workflow_runs ({RUN_COLUMNS}) \
             SELECT t, w, k, dv, st, oc, rs, i::json, o::json, ik, \
                    CASE WHEN d = '' THEN '{{}}'::uuid[] ELSE string_to_array(d, ',')::uuid[] END, \
                    ro, cs, sc, fa, le, wa, ls, sa, fi, ua, sp, sv, lp \
             FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int[], $5::text[], $6::text[], \
                         $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::uuid[], \
                         $13::text[], $14::int[], $15::int[], $16::text[], $17::timestamptz[], \
                         $18::text[], $19::timestamptz[], $20::timestamptz[], $21::timestamptz[], \
                         $22::bigint[], $23::bigint[], $24::bigint[]) \
                  AS u(t, w, k, dv, st, oc, rs, i, o, ik, d, ro, cs, sc, fa, le, wa, ls, sa, fi, \
                       ua, sp, sv, lp) \
             ON CONFLICT (tenant_id, workflow_id) DO UPDATE SET \
                state = EXCLUDED.state, outcome = EXCLUDED.outcome, reason = EXCLUDED.reason, \
                output = EXCLUDED.output, current_step = EXCLUDED.current_step, \
                steps_completed = EXCLUDED.steps_completed, \
                failed_attempts = EXCLUDED.failed_attempts, last_error = EXCLUDED.last_error, \
                wake_at = EXCLUDED.wake_at, last_signal = EXCLUDED.last_signal, \
                finished_at = EXCLUDED.finished_at, updated_at = EXCLUDED.updated_at, \
                stream_version = EXCLUDED.stream_version, last_position = EXCLUDED.last_position"
        );
        sqlx::query(&sql)
            .bind(self.tenant)
            .bind(self.workflow)
            .bind(self.kind)
            .bind(self.definition_version)
            .bind(self.state)
            .bind(self.outcome)
            .bind(self.reason)
            .bind(self.input)
            .bind(self.output)
            .bind(self.idempotency_key)
            .bind(self.devices)
            .bind(self.rollout_id)
            .bind(self.current_step)
            .bind(self.steps_completed)
            .bind(self.failed_attempts)
            .bind(self.last_error)
            .bind(self.wake_at)
            .bind(self.last_signal)
            .bind(self.started_at)
            .bind(self.finished_at)
            .bind(self.updated_at)
            .bind(self.started_position)
            .bind(self.stream_version)
            .bind(self.last_position)
            .execute(conn)
            .await
            .map_err(ProjectionError::db("upsert workflow runs"))?;
        Ok(())
    }
}

#[derive(Default)]
struct StepColumns {
    tenant: Vec<Uuid>,
    workflow: Vec<Uuid>,
    step: Vec<String>,
    seq: Vec<i64>,
    state: Vec<&'static str>,
    attempts: Vec<i32>,
    started_at: Vec<OffsetDateTime>,
    finished_at: Vec<Option<OffsetDateTime>>,
    last_error: Vec<Option<String>>,
    failure_class: Vec<Option<&'static str>>,
    retry_at: Vec<Option<OffsetDateTime>>,
}

impl StepColumns {
    fn push(&mut self, key: Key, s: &Step) {
        self.tenant.push(key.0);
        self.workflow.push(key.1);
        self.step.push(s.name.clone());
        self.seq.push(s.seq);
        self.state.push(s.state);
        self.attempts.push(s.attempts);
        self.started_at.push(s.started_at);
        self.finished_at.push(s.finished_at);
        self.last_error.push(s.last_error.clone());
        self.failure_class.push(s.failure_class);
        self.retry_at.push(s.retry_at);
    }

    async fn upsert(self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        if self.tenant.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO rm_workflow_steps (tenant_id, workflow_id, step, seq, state, attempts, \
                 started_at, finished_at, last_error, failure_class, retry_at) \
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], \
                 $6::int[], $7::timestamptz[], $8::timestamptz[], $9::text[], $10::text[], \
                 $11::timestamptz[]) \
             ON CONFLICT (tenant_id, workflow_id, step) DO UPDATE SET \
                state = EXCLUDED.state, attempts = EXCLUDED.attempts, \
                finished_at = EXCLUDED.finished_at, last_error = EXCLUDED.last_error, \
                failure_class = EXCLUDED.failure_class, retry_at = EXCLUDED.retry_at",
        )
        .bind(self.tenant)
        .bind(self.workflow)
        .bind(self.step)
        .bind(self.seq)
        .bind(self.state)
        .bind(self.attempts)
        .bind(self.started_at)
        .bind(self.finished_at)
        .bind(self.last_error)
        .bind(self.failure_class)
        .bind(self.retry_at)
        .execute(conn)
        .await
        .map_err(ProjectionError::db("upsert workflow steps"))?;
        Ok(())
    }
}

#[async_trait]
impl Projector for WorkflowsProjector {
    fn name(&self) -> &'static str {
        "workflows"
    }

    fn category(&self) -> Option<&'static str> {
        Some("workflow")
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "rm_workflow_runs",
            "rm_workflow_steps",
            "rm_workflow_devices",
        ]
    }

    async fn apply(
        &mut self,
        conn: &mut PgConnection,
        events: &[&RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let keys: Vec<Key> = events
            .iter()
            .filter_map(|e| stream_uuid(e).map(|w| (*e.tenant_id.as_uuid(), w)))
            .collect();
        let missing = self.rows.missing(keys.iter(), self.replay);
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

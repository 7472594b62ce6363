//! The journaler: the fenced write path of a workflow's journal. Every append a worker makes
//! to `workflow-<id>` goes through here: a run's buffered decisions ([`Journaler::flush`]),
//! the takeover fence a new lease holder writes first ([`take_over`]), and reading back what
//! others appended when an append conflicts ([`read_tail`]).
//!
//! A run's decisions are buffered and written in one append, expecting the exact stream
//! version the worker last saw, right before anything that must not happen unjournaled: a
//! step's side effect (the buffer plus the step's start), a suspension, the finish. So a
//! step's outcome travels with the next step's start, and a no-op step costs one append.
//!
//! When the append conflicts, the journaler reads what was appended: a takeover (or anything
//! but signals) means another worker owns the workflow and this one stops writing; signals
//! are absorbed and the definition runs again from the top with them, keeping the outcomes
//! of step attempts that already ran (see `journal.rs` for why this keeps replay exact).
//!
//! Owns no scheduling: `ctx.rs` decides what to journal and `worker.rs` when a run starts
//! and ends; neither appends to a journal except through this module, and this module
//! imports neither.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use netledger_domain::workflow::WorkflowTakenOver;
use netledger_domain::{
    Actor, EventId, EventMetadata, EventType, ExpectedVersion, NewEvent, RecordedEvent, StreamName,
    TenantId, WorkflowId,
};
use netledger_store::read::decode_row;
use netledger_store::{EventStore, StoreError};
use sqlx::PgPool;
use time::OffsetDateTime;

use crate::error::EngineError;
use crate::journal::{Decision, Entry, Journal, Replay, Tail, classify_tail, typed_event};

/// The component name in the actor of everything a worker journals.
pub(crate) const WORKER_COMPONENT: &str = "workflow-worker";

const EVENT_COLUMNS: &str = "e.position, e.tenant_prev_position, e.tenant_id, e.stream, \
     e.version, e.event_id, e.event_type, e.schema_version, e.payload, e.actor, \
     e.causation_id, e.correlation_id, e.recorded_at, e.prev_hash, e.hash";

/// The columns of an event row, for queries elsewhere that read whole journals.
pub(crate) fn event_columns() -> &'static str {
    EVENT_COLUMNS
}

/// Events of `stream` after version `since`, in order (system pool).
pub(crate) async fn read_tail(
    system: &PgPool,
    tenant: TenantId,
    stream: &StreamName,
    since: u64,
) -> Result<Vec<RecordedEvent>, EngineError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events e \
         WHERE e.tenant_id = $1 AND e.stream = $2 AND e.version > $3 ORDER BY e.version"
    );
    let rows = sqlx::query(&sql)
        .bind(tenant.as_uuid())
        .bind(stream.as_str())
        .bind(i64::try_from(since).unwrap_or(i64::MAX))
        .fetch_all(system)
        .await
        .map_err(EngineError::db("read journal tail"))?;
    rows.iter()
        .map(decode_row)
        .collect::<Result<_, _>>()
        .map_err(EngineError::store("decode journal"))
}

/// Why a run of a definition stopped before the definition returned.
#[derive(Debug)]
pub(crate) enum Halt {
    /// Release the lease until this time (`None`: until a signal).
    Suspend(Option<OffsetDateTime>),
    /// New signals were absorbed: run the definition again from the top.
    Rerun,
    /// Another worker owns the workflow now: write nothing more.
    Fenced(String),
    /// The database or store failed: release the lease and try again later.
    Failed(EngineError),
    /// The definition does not match the journal (or panicked): fail the workflow with this
    /// reason.
    Diverged(String),
}

/// Where and as whom a claim journals.
pub(crate) struct RunIo {
    /// The event store (app pool): the appends.
    pub store: EventStore,
    /// The system pool: reading what others appended.
    pub system: PgPool,
    /// The worker's actor (`workflow-worker/<name>`).
    pub actor: Actor,
    pub workflow: WorkflowId,
    pub tenant: TenantId,
    pub stream: StreamName,
    /// The claim's attempt number (fencing token).
    pub attempt: u64,
}

/// The state of one run, kept by the journaler and read by the `Ctx` and the worker's driver.
pub(crate) struct RunState {
    pub replay: Replay,
    /// Decisions made but not yet journaled.
    pub buffer: Vec<Decision>,
    /// Outcomes of step attempts that ran but whose append conflicted, by the stream version
    /// of the attempt's start: a re-run returns them instead of running the step again.
    pub retained: HashMap<u64, Decision>,
    pub halt: Option<Halt>,
}

/// Appends a run's decisions, fenced by the expected stream version.
#[derive(Clone)]
pub(crate) struct Journaler {
    pub io: Arc<RunIo>,
    pub state: Arc<Mutex<RunState>>,
}

impl Journaler {
    pub(crate) fn lock(&self) -> MutexGuard<'_, RunState> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn journal_error(&self, detail: String) -> Halt {
        Halt::Failed(EngineError::Journal {
            workflow: self.io.workflow,
            detail,
        })
    }

    /// Appends the buffer and `extra` in one append at the exact version last seen.
    pub(crate) async fn flush(&self, extra: Option<Decision>) -> Result<(), Halt> {
        let (decisions, expected, causation, correlation) = {
            let st = self.lock();
            let mut decisions = st.buffer.clone();
            decisions.extend(extra);
            (
                decisions,
                st.replay.journal.version,
                st.replay.journal.last_event_id,
                st.replay.journal.correlation_id,
            )
        };
        if decisions.is_empty() {
            return Ok(());
        }
        let metadata = EventMetadata {
            actor: self.io.actor.clone(),
            causation_id: *causation.as_uuid(),
            correlation_id: correlation,
        };
        let mut events = Vec::with_capacity(decisions.len());
        let mut last_id = causation;
        for d in &decisions {
            let (event_type, schema_version, payload) = d
                .to_payload()
                .map_err(|e| self.journal_error(format!("cannot serialize a decision: {e}")))?;
            last_id = EventId::new_v7();
            let event = NewEvent::new(
                last_id,
                event_type,
                schema_version,
                payload,
                metadata.clone(),
            )
            .map_err(|e| self.journal_error(e.to_string()))?;
            events.push(event);
        }
        let appended = self
            .io
            .store
            .append(
                self.io.tenant,
                &self.io.stream,
                ExpectedVersion::Exact(expected),
                events,
            )
            .await;
        match appended {
            Ok(outcome) => {
                let entries = decisions
                    .into_iter()
                    .zip(expected + 1..)
                    .map(|(decision, version)| Entry { version, decision })
                    .collect();
                let mut st = self.lock();
                st.replay.written(entries, outcome.stream_version, last_id);
                st.buffer.clear();
                st.retained.clear();
                Ok(())
            }
            Err(StoreError::Conflict { .. }) => Err(self.absorb().await),
            Err(e) => Err(Halt::Failed(EngineError::store("journal append")(e))),
        }
    }

    /// Reads what others appended since the version last seen; `Ok` if nothing.
    pub(crate) async fn refresh(&self) -> Result<(), Halt> {
        let since = self.lock().replay.journal.version;
        let tail = read_tail(&self.io.system, self.io.tenant, &self.io.stream, since)
            .await
            .map_err(Halt::Failed)?;
        if tail.is_empty() {
            return Ok(());
        }
        Err(self.absorb_tail(&tail))
    }

    async fn absorb(&self) -> Halt {
        let since = self.lock().replay.journal.version;
        match read_tail(&self.io.system, self.io.tenant, &self.io.stream, since).await {
            Ok(tail) => self.absorb_tail(&tail),
            Err(e) => Halt::Failed(e),
        }
    }

    fn absorb_tail(&self, tail: &[RecordedEvent]) -> Halt {
        match classify_tail(tail, self.io.attempt) {
            Tail::Fenced(why) => Halt::Fenced(why),
            Tail::Signals => {
                let mut st = self.lock();
                for e in tail {
                    if let Err(detail) = st.replay.journal.apply(e) {
                        drop(st);
                        return self.journal_error(detail);
                    }
                }
                let buffer = std::mem::take(&mut st.buffer);
                for d in buffer {
                    let key = match &d {
                        Decision::Completed(c) => started_version(&st.replay, &c.step, c.attempt),
                        Decision::Failed(f) => started_version(&st.replay, &f.step, f.attempt),
                        _ => None,
                    };
                    if let Some(key) = key
                        && d.is_step_outcome()
                    {
                        st.retained.insert(key, d);
                    }
                }
                Halt::Rerun
            }
        }
    }
}

fn started_version(replay: &Replay, step: &str, attempt: u32) -> Option<u64> {
    replay
        .journal
        .decisions
        .iter()
        .rev()
        .find_map(|e| match &e.decision {
            Decision::Started(s) if s.step == step && s.attempt == attempt => Some(e.version),
            _ => None,
        })
}

/// Why [`take_over`] did not fence the journal.
#[derive(Debug)]
pub(crate) enum TakeOverError {
    /// A newer takeover is in the journal: this claim is already stale.
    Fenced,
    /// The journal could not be read or written: release the claim and retry later.
    Failed(String),
    /// The journal cannot be read, or the fence cannot be built: give up this run.
    Broken(String),
}

/// After taking over an expired lease, appends `WorkflowTakenOver` before anything else, so
/// the previous holder's next append conflicts. Events the previous holder appended in the
/// meantime are absorbed into `journal`; a newer takeover means this claim is already stale.
/// A finished journal takes no fence.
pub(crate) async fn take_over(
    io: &RunIo,
    journal: &mut Journal,
    worker: &str,
    previous: &str,
) -> Result<(), TakeOverError> {
    let taken = WorkflowTakenOver {
        attempt: io.attempt,
        worker: worker.to_owned(),
        previous_worker: previous.to_owned(),
    };
    for _ in 0..100 {
        if journal.finished().is_some() {
            return Ok(());
        }
        let id = EventId::new_v7();
        let metadata = EventMetadata {
            actor: io.actor.clone(),
            causation_id: *journal.last_event_id.as_uuid(),
            correlation_id: journal.correlation_id,
        };
        let event = typed_event(&taken, id, metadata)
            .map_err(|e| TakeOverError::Broken(format!("cannot build a takeover event: {e}")))?;
        let appended = io
            .store
            .append(
                io.tenant,
                &io.stream,
                ExpectedVersion::Exact(journal.version),
                vec![event],
            )
            .await;
        match appended {
            Ok(outcome) => {
                journal.version = outcome.stream_version;
                journal.last_event_id = id;
                journal.takeovers.push((outcome.stream_version, io.attempt));
                return Ok(());
            }
            Err(StoreError::Conflict { .. }) => {
                let tail = read_tail(&io.system, io.tenant, &io.stream, journal.version)
                    .await
                    .map_err(|e| {
                        TakeOverError::Failed(format!(
                            "reading the journal during takeover failed: {e}"
                        ))
                    })?;
                for e in &tail {
                    if e.event_type == WorkflowTakenOver::TYPE
                        && e.decode::<WorkflowTakenOver>()
                            .is_ok_and(|t| t.attempt > io.attempt)
                    {
                        return Err(TakeOverError::Fenced);
                    }
                    journal.apply(e).map_err(|detail| {
                        TakeOverError::Broken(format!(
                            "unreadable journal during takeover: {detail}"
                        ))
                    })?;
                }
            }
            Err(e) => {
                return Err(TakeOverError::Failed(format!(
                    "appending the takeover failed: {e}"
                )));
            }
        }
    }
    Err(TakeOverError::Broken(
        "the takeover kept conflicting".to_owned(),
    ))
}

//! The journal of one workflow as the engine replays it: the pure part of the engine (no IO).
//!
//! A journal (stream `workflow-<id>`) holds three sorts of events:
//! - the start (`WorkflowStarted`, version 1);
//! - **decisions**, written only by the worker holding the lease, in the order the
//!   definition made them: step started / completed / failed, timer scheduled / fired,
//!   finished;
//! - **interjections** appended by others: signals (`WorkflowSignalled`) and takeovers
//!   (`WorkflowTakenOver`, the fence a new lease holder writes).
//!
//! Replay walks the decisions with a cursor. What a definition may see of the signals at a
//! point is decided by the journal alone: the signals written before the next decision
//! after that point (all of them once the cursor is at the end). A live run sees every
//! signal it knows of; since a worker's append expects the exact version it last saw, an
//! append that succeeds proves the run knew of every signal written before it, and one that
//! conflicts because of a new signal makes the worker run the definition again from the top
//! with that signal (see `ctx.rs`). Both rules agree, so replay is deterministic.

use std::collections::HashMap;

use netledger_domain::workflow::{
    FailureClass, WorkflowFinished, WorkflowSignalled, WorkflowStarted, WorkflowStepCompleted,
    WorkflowStepFailed, WorkflowStepStarted, WorkflowTakenOver, WorkflowTimerFired,
    WorkflowTimerScheduled,
};
use netledger_domain::{DecodeError, EventId, EventMetadata, EventType, NewEvent, RecordedEvent};
use serde_json::Value;
use uuid::Uuid;

/// Signal names the engine itself interprets.
pub mod signals {
    /// Asks the workflow to stop; the definition may unwind (see `Ctx::cancelled`).
    pub const CANCEL: &str = "cancel";
    /// No new step starts until `resume` (a cancel overrides it).
    pub const PAUSE: &str = "pause";
    /// Ends a pause.
    pub const RESUME: &str = "resume";
    /// Delivered to a parent when a child workflow started with `StartOptions::parent`
    /// finishes: `{"workflow_id", "outcome", "reason", "output"}`.
    pub const CHILD_FINISHED: &str = "child_finished";
}

/// One decision, as journaled.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    Started(WorkflowStepStarted),
    Completed(WorkflowStepCompleted),
    Failed(WorkflowStepFailed),
    TimerScheduled(WorkflowTimerScheduled),
    TimerFired(WorkflowTimerFired),
    Finished(WorkflowFinished),
}

impl Decision {
    /// A short description for divergence errors.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Started(e) => format!("step `{}` started (attempt {})", e.step, e.attempt),
            Self::Completed(e) => format!("step `{}` completed", e.step),
            Self::Failed(e) => format!("step `{}` failed", e.step),
            Self::TimerScheduled(e) => format!("timer `{}` scheduled", e.name),
            Self::TimerFired(e) => format!("timer `{}` fired", e.name),
            Self::Finished(e) => format!("workflow finished ({:?})", e.outcome),
        }
    }

    /// The event type and payload.
    pub(crate) fn to_payload(&self) -> Result<(&'static str, u32, Value), serde_json::Error> {
        fn p<E: EventType>(e: &E) -> Result<(&'static str, u32, Value), serde_json::Error> {
            Ok((E::TYPE, E::SCHEMA_VERSION, serde_json::to_value(e)?))
        }
        match self {
            Self::Started(e) => p(e),
            Self::Completed(e) => p(e),
            Self::Failed(e) => p(e),
            Self::TimerScheduled(e) => p(e),
            Self::TimerFired(e) => p(e),
            Self::Finished(e) => p(e),
        }
    }

    /// Whether this is the outcome of a step attempt (what a re-run keeps).
    pub(crate) fn is_step_outcome(&self) -> bool {
        matches!(self, Self::Completed(_) | Self::Failed(_))
    }
}

/// A decision at its stream version.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub version: u64,
    pub decision: Decision,
}

/// A signal at its stream version.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Signal {
    pub version: u64,
    pub name: String,
    pub payload: Value,
}

/// A workflow's journal as far as this worker knows it.
#[derive(Debug, Clone)]
pub(crate) struct Journal {
    pub started: WorkflowStarted,
    pub correlation_id: Uuid,
    /// The stream's version (its last event's).
    pub version: u64,
    /// The last event's id (causation of what the worker appends next).
    pub last_event_id: EventId,
    pub decisions: Vec<Entry>,
    pub signals: Vec<Signal>,
    /// (version, attempt) of each takeover.
    pub takeovers: Vec<(u64, u64)>,
}

/// What others appended while this worker held the workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tail {
    /// Only signals (and nothing at all): absorb them and run again.
    Signals,
    /// Another worker took over (or wrote decisions): this worker must stop.
    Fenced(String),
}

fn decode<E: EventType>(e: &RecordedEvent) -> Result<E, String> {
    e.decode::<E>().map_err(|err| err.to_string())
}

fn version_of(e: &RecordedEvent) -> Result<u64, String> {
    u64::try_from(e.version).map_err(|_| format!("negative version {}", e.version))
}

impl Journal {
    /// Builds the journal from the stream's events in version order.
    pub(crate) fn from_events(events: &[RecordedEvent]) -> Result<Self, String> {
        let Some(first) = events.first() else {
            return Err("the journal is empty (no WorkflowStarted)".to_owned());
        };
        if first.event_type != WorkflowStarted::TYPE || first.version != 1 {
            return Err(format!(
                "the journal starts with `{}` at version {}, not WorkflowStarted at version 1",
                first.event_type, first.version
            ));
        }
        let mut journal = Self {
            started: decode(first)?,
            correlation_id: first.metadata.correlation_id,
            version: 1,
            last_event_id: first.event_id,
            decisions: Vec::new(),
            signals: Vec::new(),
            takeovers: Vec::new(),
        };
        for e in &events[1..] {
            journal.apply(e)?;
        }
        Ok(journal)
    }

    /// Adds the next event of the stream.
    pub(crate) fn apply(&mut self, e: &RecordedEvent) -> Result<(), String> {
        let version = version_of(e)?;
        if version != self.version + 1 {
            return Err(format!(
                "journal event at version {version} follows version {}",
                self.version
            ));
        }
        let decision = match e.event_type.as_str() {
            WorkflowStepStarted::TYPE => Some(Decision::Started(decode(e)?)),
            WorkflowStepCompleted::TYPE => Some(Decision::Completed(decode(e)?)),
            WorkflowStepFailed::TYPE => Some(Decision::Failed(decode(e)?)),
            WorkflowTimerScheduled::TYPE => Some(Decision::TimerScheduled(decode(e)?)),
            WorkflowTimerFired::TYPE => Some(Decision::TimerFired(decode(e)?)),
            WorkflowFinished::TYPE => Some(Decision::Finished(decode(e)?)),
            WorkflowSignalled::TYPE => {
                let s: WorkflowSignalled = decode(e)?;
                self.signals.push(Signal {
                    version,
                    name: s.signal,
                    payload: s.payload,
                });
                None
            }
            WorkflowTakenOver::TYPE => {
                let t: WorkflowTakenOver = decode(e)?;
                self.takeovers.push((version, t.attempt));
                None
            }
            other => {
                return Err(format!(
                    "unknown event `{other}` at version {version} of a workflow journal"
                ));
            }
        };
        if let Some(decision) = decision {
            self.decisions.push(Entry { version, decision });
        }
        self.version = version;
        self.last_event_id = e.event_id;
        Ok(())
    }

    /// How the workflow finished, if the journal says it did.
    pub(crate) fn finished(&self) -> Option<&WorkflowFinished> {
        self.decisions.iter().rev().find_map(|e| match &e.decision {
            Decision::Finished(f) => Some(f),
            _ => None,
        })
    }
}

/// Classifies the events appended after `since` by others, for a worker at claim `attempt`.
pub(crate) fn classify_tail(tail: &[RecordedEvent], attempt: u64) -> Tail {
    for e in tail {
        match e.event_type.as_str() {
            WorkflowSignalled::TYPE => {}
            WorkflowTakenOver::TYPE => match e.decode::<WorkflowTakenOver>() {
                Ok(t) if t.attempt <= attempt => {}
                Ok(t) => {
                    return Tail::Fenced(format!(
                        "worker {} took the workflow over (attempt {}) from {}",
                        t.worker, t.attempt, t.previous_worker
                    ));
                }
                Err(err) => return Tail::Fenced(err.to_string()),
            },
            other => {
                return Tail::Fenced(format!(
                    "another worker journaled `{other}` at version {}",
                    e.version
                ));
            }
        }
    }
    Tail::Signals
}

/// A replay of a journal by one run of a definition: the cursor over the decisions and what
/// the run has consumed so far.
#[derive(Debug, Clone)]
pub(crate) struct Replay {
    pub journal: Journal,
    cursor: usize,
    /// The definition has seen `cancelled()` return true: it is unwinding, and steps, sleeps
    /// and waits run normally again.
    pub cancel_acknowledged: bool,
    consumed: HashMap<String, usize>,
    waits: HashMap<String, u32>,
}

impl Replay {
    pub(crate) fn new(journal: Journal) -> Self {
        Self {
            journal,
            cursor: 0,
            cancel_acknowledged: false,
            consumed: HashMap::new(),
            waits: HashMap::new(),
        }
    }

    /// The next journaled decision the run has not consumed.
    pub(crate) fn peek(&self) -> Option<&Entry> {
        self.journal.decisions.get(self.cursor)
    }

    /// Consumes the next decision.
    pub(crate) fn advance(&mut self) {
        if self.cursor < self.journal.decisions.len() {
            self.cursor += 1;
        }
    }

    /// Whether every journaled decision has been consumed (the run is live).
    #[cfg(test)]
    pub(crate) fn at_head(&self) -> bool {
        self.cursor >= self.journal.decisions.len()
    }

    /// Decisions not yet consumed.
    pub(crate) fn remaining(&self) -> usize {
        self.journal.decisions.len().saturating_sub(self.cursor)
    }

    /// Signals before this version are visible at the cursor.
    fn horizon(&self) -> u64 {
        self.peek().map_or(u64::MAX, |e| e.version)
    }

    fn visible(&self) -> impl Iterator<Item = &Signal> {
        let horizon = self.horizon();
        self.journal
            .signals
            .iter()
            .filter(move |s| s.version < horizon)
    }

    /// Whether a cancel is visible at the cursor.
    pub(crate) fn cancel_visible(&self) -> bool {
        self.visible().any(|s| s.name == signals::CANCEL)
    }

    /// Whether a cancel is visible and the definition has not acknowledged it: steps, sleeps
    /// and waits refuse with `StepError::Cancelled`.
    pub(crate) fn cancel_pending(&self) -> bool {
        !self.cancel_acknowledged && self.cancel_visible()
    }

    /// Whether the workflow is paused at the cursor (the last of pause/resume is a pause, and
    /// no cancel is visible).
    pub(crate) fn paused(&self) -> bool {
        if self.cancel_visible() {
            return false;
        }
        self.visible()
            .filter(|s| s.name == signals::PAUSE || s.name == signals::RESUME)
            .last()
            .is_some_and(|s| s.name == signals::PAUSE)
    }

    /// Takes the oldest visible signal named `name` not consumed by an earlier wait.
    pub(crate) fn take_signal(&mut self, name: &str) -> Option<Value> {
        let used = self.consumed.get(name).copied().unwrap_or(0);
        let payload = self
            .visible()
            .filter(|s| s.name == name)
            .nth(used)
            .map(|s| s.payload.clone())?;
        self.consumed.insert(name.to_owned(), used + 1);
        Some(payload)
    }

    /// A fresh timer name for the next wait on `signal` (`signal:<name>:<n>`).
    pub(crate) fn next_wait_timer(&mut self, signal: &str) -> String {
        let n = self.waits.entry(signal.to_owned()).or_insert(0);
        *n += 1;
        format!("signal:{signal}:{n}")
    }

    /// Records decisions the run has just written (at the head) as consumed.
    pub(crate) fn written(&mut self, entries: Vec<Entry>, version: u64, last_event_id: EventId) {
        self.journal.decisions.extend(entries);
        self.journal.version = version;
        self.journal.last_event_id = last_event_id;
        self.cursor = self.journal.decisions.len();
    }
}

/// An event from a typed payload with the given id.
pub(crate) fn typed_event<E: EventType>(
    payload: &E,
    id: EventId,
    metadata: EventMetadata,
) -> Result<NewEvent, DecodeError> {
    let value = serde_json::to_value(payload).map_err(|source| DecodeError::Serialize {
        event_type: E::TYPE.to_owned(),
        source,
    })?;
    NewEvent::new(id, E::TYPE, E::SCHEMA_VERSION, value, metadata)
}

/// The error of the outcome journaled for an interrupted step attempt (journaled start, no
/// outcome) when a cancel the definition has not acknowledged stops the step from running
/// again: the attempt is closed, and a replay that reads it returns `StepError::Cancelled`
/// as the live run did (see `Ctx::step_with`).
pub(crate) const CANCELLED_ATTEMPT: &str =
    "the attempt was interrupted and the workflow was cancelled before it could run again";

/// The outcome of interrupted attempt `attempt` of `step` that a cancel ends.
pub(crate) fn cancelled_attempt(step: &str, attempt: u32) -> WorkflowStepFailed {
    WorkflowStepFailed {
        step: step.to_owned(),
        attempt,
        error: CANCELLED_ATTEMPT.to_owned(),
        class: FailureClass::Fatal,
        retry_at: None,
    }
}

/// Whether `f` is the outcome [`cancelled_attempt`] journals.
pub(crate) fn is_cancelled_attempt(f: &WorkflowStepFailed) -> bool {
    f.class == FailureClass::Fatal && f.retry_at.is_none() && f.error == CANCELLED_ATTEMPT
}

/// Whether a step failure ends its retries (fatal, or retryable with no attempt left).
pub(crate) fn failure_is_final(f: &WorkflowStepFailed) -> bool {
    f.class == FailureClass::Fatal || f.retry_at.is_none()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use netledger_domain::{Actor, TenantId, WorkflowId};
    use time::OffsetDateTime;

    use super::*;

    fn ev<E: EventType>(version: i64, e: &E) -> RecordedEvent {
        RecordedEvent {
            position: version,
            tenant_prev_position: 0,
            tenant_id: TenantId::new_random(),
            stream: WorkflowId::new_random().stream(),
            version,
            event_id: EventId::new_random(),
            event_type: E::TYPE.to_owned(),
            schema_version: E::SCHEMA_VERSION,
            payload: serde_json::to_value(e).unwrap(),
            metadata: EventMetadata::for_command(Actor::system("t"), Uuid::new_v4()),
            recorded_at: OffsetDateTime::UNIX_EPOCH,
            prev_hash: [0; 32],
            hash: [0; 32],
        }
    }

    fn started() -> WorkflowStarted {
        WorkflowStarted {
            kind: "k".into(),
            definition_version: 1,
            input: Value::Null,
            idempotency_key: None,
            devices: vec![],
            rollout_id: None,
        }
    }

    fn step(v: i64, name: &str) -> RecordedEvent {
        ev(
            v,
            &WorkflowStepStarted {
                step: name.into(),
                attempt: 1,
            },
        )
    }

    fn done(v: i64, name: &str) -> RecordedEvent {
        ev(
            v,
            &WorkflowStepCompleted {
                step: name.into(),
                attempt: 1,
                output: Value::Null,
            },
        )
    }

    fn sig(v: i64, name: &str) -> RecordedEvent {
        ev(
            v,
            &WorkflowSignalled {
                signal: name.into(),
                payload: serde_json::json!({ "v": v }),
            },
        )
    }

    #[test]
    fn a_signal_is_visible_only_from_the_last_decision_written_before_it() {
        // a started, [cancel], a completed + b started: the run that wrote "a completed" had
        // seen the cancel (its append expected the version after it).
        let events = vec![
            ev(1, &started()),
            step(2, "a"),
            sig(3, "cancel"),
            done(4, "a"),
            step(5, "b"),
        ];
        let j = Journal::from_events(&events).unwrap();
        let mut r = Replay::new(j);
        assert!(!r.cancel_visible(), "before a started");
        r.advance(); // a started
        assert!(
            r.cancel_visible(),
            "the next decision (a completed) follows the cancel"
        );
        r.advance(); // a completed
        r.advance(); // b started
        assert!(r.at_head());
        assert!(r.cancel_visible());
    }

    #[test]
    fn pause_resume_and_cancel_override() {
        let events = vec![
            ev(1, &started()),
            sig(2, "pause"),
            step(3, "a"),
            sig(4, "resume"),
            sig(5, "pause"),
        ];
        let mut r = Replay::new(Journal::from_events(&events).unwrap());
        assert!(r.paused());
        r.advance();
        assert!(r.paused(), "resume then pause");
        let mut j = Journal::from_events(&events).unwrap();
        j.apply(&sig(6, "cancel")).unwrap();
        let mut r = Replay::new(j);
        r.advance();
        assert!(!r.paused(), "a cancel overrides a pause");
    }

    #[test]
    fn waits_consume_signals_in_order() {
        let events = vec![ev(1, &started()), sig(2, "go"), sig(3, "go")];
        let mut r = Replay::new(Journal::from_events(&events).unwrap());
        assert_eq!(r.take_signal("go"), Some(serde_json::json!({"v": 2})));
        assert_eq!(r.take_signal("go"), Some(serde_json::json!({"v": 3})));
        assert_eq!(r.take_signal("go"), None);
        assert_eq!(r.next_wait_timer("go"), "signal:go:1");
        assert_eq!(r.next_wait_timer("go"), "signal:go:2");
    }

    #[test]
    fn tails_with_a_newer_takeover_or_foreign_decisions_fence() {
        let t = |attempt| {
            ev(
                9,
                &WorkflowTakenOver {
                    attempt,
                    worker: "w2".into(),
                    previous_worker: "w1".into(),
                },
            )
        };
        assert_eq!(classify_tail(&[sig(8, "x")], 3), Tail::Signals);
        assert_eq!(classify_tail(&[t(3)], 3), Tail::Signals);
        assert!(matches!(classify_tail(&[t(4)], 3), Tail::Fenced(_)));
        assert!(matches!(
            classify_tail(&[sig(8, "x"), step(9, "a")], 3),
            Tail::Fenced(_)
        ));
    }

    #[test]
    fn malformed_journals_are_errors() {
        assert!(Journal::from_events(&[]).is_err());
        assert!(Journal::from_events(&[step(1, "a")]).is_err());
        assert!(Journal::from_events(&[ev(1, &started()), step(3, "a")]).is_err());
    }
}

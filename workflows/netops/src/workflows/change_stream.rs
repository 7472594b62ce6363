//! The workflows' one write path to a change request's stream (`change-<id>`): load the
//! stream, fold the [`ChangeRequest`] aggregate, `decide` the command and append what it
//! decided at the exact version folded (a concurrent append, say the API recording a cancel,
//! is a conflict: read again and decide again). The `change_request` workflow reports its
//! run through it, and the `rollout` workflow of a change request its window pauses.
//!
//! Every call runs inside a journaled step, keyed by the step's name: the appended events
//! get ids derived from (workflow, key, index), so a step re-run after its worker died
//! between the append and the step's journal entry finds its own events and does not decide
//! again (a second `Schedule` or `Resume` would be refused). A refusal is a fatal step error
//! carrying the refusal's text. Events carry the workflow as causation and its correlation
//! id (the change request's uuid).
//!
//! Owns no rule of the request (the aggregate, `netledger_domain::change`, does).

use netledger_domain::change::{ChangeCommand, ChangeEvent, ChangeRequest};
use netledger_domain::{
    Actor, Aggregate, ChangeRequestId, EventEnum, EventMetadata, ExpectedVersion, RecordedEvent,
    TenantId, WorkflowId,
};
use netledger_engine::StepError;
use netledger_store::{Direction, EventReader, StoreError};
use uuid::Uuid;

use super::COMPONENT;
use super::adapter::NetopsDeps;

/// Appends that lose a race this many times in a row give up (retryable).
const CONFLICT_RETRIES: usize = 20;

/// Who writes: the workflow (causation), its correlation id, the request.
#[derive(Debug, Clone, Copy)]
pub(super) struct ChangeWriter {
    pub tenant: TenantId,
    pub workflow: WorkflowId,
    pub correlation: Uuid,
    pub change: ChangeRequestId,
}

impl ChangeWriter {
    /// The request's events, in order.
    async fn read(&self, d: &NetopsDeps) -> Result<Vec<RecordedEvent>, StepError> {
        let reader = EventReader::tenant(d.app.clone(), self.tenant);
        let stream = self.change.stream();
        let mut out: Vec<RecordedEvent> = Vec::new();
        loop {
            let from = u64::try_from(out.len()).unwrap_or(u64::MAX) + 1;
            let page = reader
                .read_stream(&stream, from, Direction::Forward, 1000)
                .await
                .map_err(|e| StepError::retryable(format!("read {stream}: {e}")))?;
            let n = page.len();
            out.extend(page);
            if n < 1000 {
                return Ok(out);
            }
        }
    }

    /// The request as its stream has it now (the default when the stream does not exist).
    pub(super) async fn load(&self, d: &NetopsDeps) -> Result<ChangeRequest, StepError> {
        let events = self.read(d).await?;
        fold(&events)
    }

    /// Decides `command` on the request and appends what it decided (see the module doc):
    /// the state after. `key` names the call within the workflow (the step's name).
    pub(super) async fn decide(
        &self,
        d: &NetopsDeps,
        key: &str,
        command: &ChangeCommand,
    ) -> Result<ChangeRequest, StepError> {
        let stream = self.change.stream();
        let metadata = EventMetadata {
            actor: Actor::system(COMPONENT),
            causation_id: *self.workflow.as_uuid(),
            correlation_id: self.correlation,
        };
        let id = |i: usize| super::step_event_id(self.workflow, &["change", key, &i.to_string()]);
        for _ in 0..CONFLICT_RETRIES {
            let events = self.read(d).await?;
            let mut state = fold(&events)?;
            if events.iter().any(|e| e.event_id == id(0)) {
                // appended by an earlier attempt of this step
                return Ok(state);
            }
            let decided = state
                .decide(command)
                .map_err(|refusal| StepError::Fatal(format!("change request: {refusal}")))?;
            if decided.is_empty() {
                return Ok(state);
            }
            let new = decided
                .iter()
                .enumerate()
                .map(|(i, e)| e.to_new_event(id(i), metadata.clone()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(StepError::fatal)?;
            match d
                .store
                .append(
                    self.tenant,
                    &stream,
                    ExpectedVersion::Exact(state.version),
                    new,
                )
                .await
            {
                Ok(_) => {
                    for e in &decided {
                        state.evolve(e);
                    }
                    return Ok(state);
                }
                // another writer got there first (or an earlier attempt of this step, whose
                // events the next read finds): read again, decide again
                Err(StoreError::Conflict { .. } | StoreError::DuplicateEvent { .. }) => {
                    tokio::task::yield_now().await;
                }
                Err(e) => return Err(StepError::retryable(format!("append to {stream}: {e}"))),
            }
        }
        Err(StepError::retryable(format!(
            "{stream} kept changing while {} was being recorded",
            command.name()
        )))
    }
}

fn fold(events: &[RecordedEvent]) -> Result<ChangeRequest, StepError> {
    let decoded = events
        .iter()
        .map(ChangeEvent::decode)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StepError::fatal(format!("an event of the change request: {e}")))?;
    Ok(ChangeRequest::fold(&decoded))
}

//! [`Engine`]: starting workflows (idempotency key, device ownership), signalling and
//! cancelling them, and reading their task state. What the API and other workflows call; the
//! [`crate::Worker`] runs what is started here.

use std::ops::RangeInclusive;
use std::sync::Arc;

use netledger_domain::clock::Clock;
use netledger_domain::workflow::card::WorkflowCard;
use netledger_domain::workflow::{Outcome, WorkflowFinished, WorkflowSignalled, WorkflowStarted};
use netledger_domain::{
    Actor, DeviceId, EventId, EventMetadata, EventType, ExpectedVersion, RolloutId, TenantId,
    WorkflowId,
};
use netledger_store::append::append_in_transaction;
use netledger_store::{
    AppendRequest, Direction, EventReader, EventStore, StoreError, begin_tenant,
};
use serde_json::Value;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::definition::Registry;
use crate::error::EngineError;
use crate::journal::signals;

/// The notification channel workers listen on: an empty payload means "new runnable work",
/// a workflow id means "this workflow was signalled".
pub const NOTIFY_CHANNEL: &str = "netledger_workflows";

/// How to start a workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct StartOptions {
    /// Starting twice with the same key (per tenant) gives the same workflow, even when the
    /// two starts race. `None` = every start is a new workflow.
    pub idempotency_key: Option<String>,
    /// Devices the workflow owns while it runs (one workflow per device at a time).
    pub devices: Vec<DeviceId>,
    /// When a device is owned by another workflow: `false` refuses the start
    /// ([`EngineError::DeviceBusy`]), `true` queues it until its devices are free.
    pub queue_if_busy: bool,
    /// The rollout that started it.
    pub rollout_id: Option<RolloutId>,
    /// A workflow to signal (`child_finished`) when this one finishes.
    pub parent: Option<WorkflowId>,
    /// Who asked (journaled on `WorkflowStarted`).
    pub actor: Actor,
    /// Correlation id shared by everything this request causes; `None` = the workflow id
    /// (for a child started by `Ctx::start_child`: its parent's correlation id).
    pub correlation_id: Option<Uuid>,
}

impl StartOptions {
    /// Options with nothing but the actor set.
    pub fn new(actor: Actor) -> Self {
        Self {
            idempotency_key: None,
            devices: Vec::new(),
            queue_if_busy: false,
            rollout_id: None,
            parent: None,
            actor,
            correlation_id: None,
        }
    }

    /// With this idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Owning these devices.
    pub fn devices(mut self, devices: impl IntoIterator<Item = DeviceId>) -> Self {
        self.devices = devices.into_iter().collect();
        self
    }

    /// Queue behind a busy device instead of refusing.
    pub fn queue_if_busy(mut self, queue: bool) -> Self {
        self.queue_if_busy = queue;
        self
    }

    /// Started by this rollout.
    pub fn rollout(mut self, rollout: RolloutId) -> Self {
        self.rollout_id = Some(rollout);
        self
    }

    /// Signal `parent` when finished.
    pub fn parent(mut self, parent: WorkflowId) -> Self {
        self.parent = Some(parent);
        self
    }

    /// With this correlation id (a child started with `Ctx::start_child` inherits its
    /// parent's unless this is set).
    pub fn correlation_id(mut self, correlation: Uuid) -> Self {
        self.correlation_id = Some(correlation);
        self
    }
}

/// What [`Engine::start`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// The workflow (the existing one when the idempotency key was used before).
    pub workflow_id: WorkflowId,
    /// Whether the idempotency key had already started it (nothing new was written).
    pub existed: bool,
    /// Whether it waits for a busy device (`queue_if_busy`).
    pub queued: bool,
    /// Global positions of its `WorkflowStarted` event.
    pub positions: RangeInclusive<i64>,
}

/// A task row's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// Waiting for its devices.
    Queued,
    /// Running, or waiting for a timer or a signal.
    Runnable,
    /// Done.
    Finished,
}

/// A workflow's task row.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowStatus {
    /// The workflow.
    pub workflow_id: WorkflowId,
    /// Its kind.
    pub kind: String,
    /// The definition version it runs under.
    pub definition_version: u32,
    /// Queued, runnable or finished.
    pub state: TaskState,
    /// How it ended.
    pub outcome: Option<Outcome>,
    /// Claims so far (the fencing token).
    pub attempt: u64,
    /// The worker holding its lease, if any (it may have expired).
    pub lease_owner: Option<String>,
    /// When it may next be claimed (a held lease's expiry); `None` = waits for a signal.
    pub runnable_at: Option<OffsetDateTime>,
    /// Devices it owns.
    pub devices: Vec<DeviceId>,
}

/// Starts, signals and inspects workflows. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    app: PgPool,
    store: EventStore,
    registry: Arc<Registry>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("registry", &self.inner.registry.describe())
            .finish()
    }
}

impl Engine {
    /// An engine over the app pool (role `netledger_app`), the event store appending with it,
    /// the definitions this process knows, and the clock.
    pub fn new(
        app_pool: PgPool,
        store: EventStore,
        registry: Arc<Registry>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                app: app_pool,
                store,
                registry,
                clock,
            }),
        }
    }

    /// The definitions.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.inner.registry
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    pub(crate) fn store(&self) -> &EventStore {
        &self.inner.store
    }

    pub(crate) fn app_pool(&self) -> &PgPool {
        &self.inner.app
    }

    /// Starts a workflow of card `C` under the newest registered version of its kind, with
    /// `input`. It owns the devices the card names for this input ([`WorkflowCard::devices`])
    /// plus any in `options.devices`.
    ///
    /// In one transaction: the task row (refused or answered with the existing workflow when
    /// the idempotency key was used before), the device locks (refused with
    /// [`EngineError::DeviceBusy`] naming the owner, or queued), and `WorkflowStarted` in its
    /// journal. Workers are notified on commit.
    #[tracing::instrument(skip_all, fields(tenant = %tenant, kind = C::KIND))]
    pub async fn start<C: WorkflowCard>(
        &self,
        tenant: TenantId,
        input: C::Input,
        mut options: StartOptions,
    ) -> Result<Started, EngineError> {
        options.devices.extend(C::devices(&input));
        let input = serde_json::to_value(&input).map_err(|e| {
            EngineError::Invalid(format!("the input of {} does not serialize: {e}", C::KIND))
        })?;
        self.start_kind(tenant, C::KIND, input, options).await
    }

    /// Starts a workflow of `kind` (untyped: the engine's plumbing behind [`Engine::start`]).
    pub(crate) async fn start_kind(
        &self,
        tenant: TenantId,
        kind: &str,
        input: Value,
        options: StartOptions,
    ) -> Result<Started, EngineError> {
        let definition =
            self.inner
                .registry
                .latest(kind)
                .ok_or_else(|| EngineError::UnknownKind {
                    kind: kind.to_owned(),
                    available: self.inner.registry.describe(),
                })?;
        self.start_version(tenant, kind, definition.version(), input, options)
            .await
    }

    /// Starts a workflow pinned to `version` (which need not be registered here).
    pub(crate) async fn start_version(
        &self,
        tenant: TenantId,
        kind: &str,
        version: u32,
        input: Value,
        options: StartOptions,
    ) -> Result<Started, EngineError> {
        if let Some(key) = &options.idempotency_key
            && (key.is_empty() || key.len() > 200)
        {
            return Err(EngineError::Invalid(
                "an idempotency key must be 1-200 bytes".to_owned(),
            ));
        }
        let workflow_id = WorkflowId::from_uuid(Uuid::now_v7());
        let now = self.inner.clock.now();
        let mut devices = options.devices.clone();
        devices.sort();
        devices.dedup();
        let device_uuids: Vec<Uuid> = devices.iter().map(|d| *d.as_uuid()).collect();

        let mut tx = begin_tenant(&self.inner.app, tenant)
            .await
            .map_err(EngineError::store("begin start"))?;
        // The workers' wake-up rides along (one round trip less): a NOTIFY is delivered at
        // commit, so a start that is rolled back (existing, refused) sends none.
        let row = sqlx::query(
            "SELECT workflow_id, existed, kind, state, busy_device, busy_owner, busy_kind, \
                    pg_notify($11, '') IS NULL AS notified \
             FROM netledger_workflow_create($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(tenant.as_uuid())
        .bind(workflow_id.as_uuid())
        .bind(kind)
        .bind(i32::try_from(version).unwrap_or(i32::MAX))
        .bind(options.idempotency_key.as_deref())
        .bind(&device_uuids)
        .bind(options.parent.map(|p| *p.as_uuid()))
        .bind(options.rollout_id.map(|r| *r.as_uuid()))
        .bind(options.queue_if_busy)
        .bind(now)
        .bind(NOTIFY_CHANNEL)
        .fetch_one(&mut *tx)
        .await
        .map_err(EngineError::db("create workflow task"))?;
        let get = |e| EngineError::Database {
            operation: "read created workflow task",
            source: e,
        };
        let id = WorkflowId::from_uuid(row.try_get("workflow_id").map_err(get)?);
        let existed: bool = row.try_get("existed").map_err(get)?;
        let row_kind: String = row.try_get("kind").map_err(get)?;
        let state: String = row.try_get("state").map_err(get)?;
        let busy: Option<Uuid> = row.try_get("busy_device").map_err(get)?;
        if existed {
            tx.rollback()
                .await
                .map_err(EngineError::db("end idempotent start"))?;
            if row_kind != kind {
                return Err(EngineError::IdempotencyKeyReused {
                    key: options.idempotency_key.unwrap_or_default(),
                    existing: id,
                    existing_kind: row_kind,
                    kind: kind.to_owned(),
                });
            }
            let first = EventReader::tenant(self.inner.app.clone(), tenant)
                .read_stream(&id.stream(), 1, Direction::Forward, 1)
                .await
                .map_err(EngineError::store("read existing workflow"))?;
            let position = first.first().map_or(0, |e| e.position);
            return Ok(Started {
                workflow_id: id,
                existed: true,
                queued: state == "queued",
                positions: position..=position,
            });
        }
        let queued = state == "queued";
        if let Some(device) = busy
            && !queued
        {
            let owner: Option<Uuid> = row.try_get("busy_owner").map_err(get)?;
            let owner_kind: Option<String> = row.try_get("busy_kind").map_err(get)?;
            tx.rollback()
                .await
                .map_err(EngineError::db("end refused start"))?;
            return Err(EngineError::DeviceBusy {
                device: DeviceId::from_uuid(device),
                owner: WorkflowId::from_uuid(owner.unwrap_or_default()),
                owner_kind: owner_kind.unwrap_or_default(),
            });
        }
        let started = WorkflowStarted {
            kind: kind.to_owned(),
            definition_version: version,
            input,
            idempotency_key: options.idempotency_key.clone(),
            devices,
            rollout_id: options.rollout_id,
        };
        let metadata = EventMetadata {
            actor: options.actor.clone(),
            causation_id: *workflow_id.as_uuid(),
            correlation_id: options.correlation_id.unwrap_or(*workflow_id.as_uuid()),
        };
        let event =
            crate::journal::typed_event(&started, EventId::new_v7(), metadata).map_err(|e| {
                EngineError::Journal {
                    workflow: workflow_id,
                    detail: e.to_string(),
                }
            })?;
        let outcome = append_in_transaction(
            &mut tx,
            &AppendRequest {
                tenant,
                stream: workflow_id.stream(),
                expected: ExpectedVersion::NoStream,
                events: vec![event],
            },
        )
        .await
        .map_err(EngineError::store("journal WorkflowStarted"))?;
        tx.commit().await.map_err(EngineError::db("commit start"))?;
        Ok(Started {
            workflow_id,
            existed: false,
            queued,
            positions: outcome.positions(),
        })
    }

    /// Delivers signal `name` with `payload`: appends `WorkflowSignalled` to the journal
    /// (never after `WorkflowFinished`) and wakes the workflow. Returns the signal's global
    /// position. `cancel`, `pause` and `resume` have meanings of their own; any other name is
    /// the definition's to wait for ([`crate::Ctx::wait_signal`]).
    #[tracing::instrument(skip_all, fields(tenant = %tenant, workflow = %workflow, signal = name))]
    pub async fn signal(
        &self,
        tenant: TenantId,
        workflow: WorkflowId,
        name: &str,
        payload: Value,
        actor: Actor,
    ) -> Result<i64, EngineError> {
        if name.is_empty() || name.len() > 100 {
            return Err(EngineError::Invalid(
                "a signal name must be 1-100 bytes".to_owned(),
            ));
        }
        self.append_signal(tenant, workflow, name, payload, actor, None)
            .await?
            .ok_or(EngineError::Finished(workflow))
    }

    /// Appends a signal unless the workflow finished (then `Ok(None)`); `event_id` makes a
    /// repeated delivery a no-op (the store refuses a duplicate id).
    pub(crate) async fn append_signal(
        &self,
        tenant: TenantId,
        workflow: WorkflowId,
        name: &str,
        payload: Value,
        actor: Actor,
        event_id: Option<EventId>,
    ) -> Result<Option<i64>, EngineError> {
        let stream = workflow.stream();
        let reader = EventReader::tenant(self.inner.app.clone(), tenant);
        let signal = WorkflowSignalled {
            signal: name.to_owned(),
            payload,
        };
        for _ in 0..1000 {
            let last = reader
                .read_stream(&stream, u64::MAX, Direction::Backward, 1)
                .await
                .map_err(EngineError::store("read workflow head"))?;
            let Some(last) = last.first() else {
                return Err(EngineError::NotFound(workflow));
            };
            if last.event_type == WorkflowFinished::TYPE {
                return Ok(None);
            }
            let metadata = EventMetadata {
                actor: actor.clone(),
                causation_id: Uuid::new_v4(),
                correlation_id: last.metadata.correlation_id,
            };
            let id = event_id.unwrap_or_else(EventId::new_v7);
            let event = crate::journal::typed_event(&signal, id, metadata).map_err(|e| {
                EngineError::Journal {
                    workflow,
                    detail: e.to_string(),
                }
            })?;
            let version = u64::try_from(last.version).unwrap_or(0);
            match self
                .inner
                .store
                .append(
                    tenant,
                    &stream,
                    ExpectedVersion::Exact(version),
                    vec![event],
                )
                .await
            {
                Ok(outcome) => {
                    self.wake(tenant, workflow).await?;
                    return Ok(Some(outcome.first_position));
                }
                Err(StoreError::Conflict { .. }) => tokio::task::yield_now().await,
                Err(StoreError::DuplicateEvent { .. }) => return Ok(None),
                Err(e) => return Err(EngineError::store("append signal")(e)),
            }
        }
        Err(EngineError::Invalid(format!(
            "workflow {workflow} kept appending while the signal was being delivered; try again"
        )))
    }

    async fn wake(&self, tenant: TenantId, workflow: WorkflowId) -> Result<(), EngineError> {
        sqlx::query("SELECT netledger_workflow_wake($1, $2, $3)")
            .bind(tenant.as_uuid())
            .bind(workflow.as_uuid())
            .bind(self.inner.clock.now())
            .execute(&self.inner.app)
            .await
            .map_err(EngineError::db("wake workflow"))?;
        Ok(())
    }

    /// Asks the workflow to stop (signal `cancel` with `{"reason": reason}`). The definition
    /// sees it at its next step, sleep or wait, and may unwind (see [`crate::Ctx::cancelled`]).
    pub async fn cancel(
        &self,
        tenant: TenantId,
        workflow: WorkflowId,
        reason: &str,
        actor: Actor,
    ) -> Result<i64, EngineError> {
        self.signal(
            tenant,
            workflow,
            signals::CANCEL,
            serde_json::json!({ "reason": reason }),
            actor,
        )
        .await
    }

    /// Holds the workflow before its next step until [`Engine::resume`].
    pub async fn pause(
        &self,
        tenant: TenantId,
        workflow: WorkflowId,
        actor: Actor,
    ) -> Result<i64, EngineError> {
        self.signal(tenant, workflow, signals::PAUSE, Value::Null, actor)
            .await
    }

    /// Ends a pause.
    pub async fn resume(
        &self,
        tenant: TenantId,
        workflow: WorkflowId,
        actor: Actor,
    ) -> Result<i64, EngineError> {
        self.signal(tenant, workflow, signals::RESUME, Value::Null, actor)
            .await
    }

    /// The workflow's task row, if it exists in this tenant.
    pub async fn status(
        &self,
        tenant: TenantId,
        workflow: WorkflowId,
    ) -> Result<Option<WorkflowStatus>, EngineError> {
        let mut tx = begin_tenant(&self.inner.app, tenant)
            .await
            .map_err(EngineError::store("begin status"))?;
        let row = sqlx::query(
            "SELECT kind, definition_version, state, outcome, attempt, lease_owner, \
                    runnable_at, devices \
             FROM workflow_tasks WHERE workflow_id = $1",
        )
        .bind(workflow.as_uuid())
        .fetch_optional(&mut *tx)
        .await
        .map_err(EngineError::db("read workflow status"))?;
        tx.commit().await.map_err(EngineError::db("end status"))?;
        let Some(row) = row else { return Ok(None) };
        let get = |e| EngineError::Database {
            operation: "decode workflow status",
            source: e,
        };
        let state: String = row.try_get("state").map_err(get)?;
        let outcome: Option<String> = row.try_get("outcome").map_err(get)?;
        let version: i32 = row.try_get("definition_version").map_err(get)?;
        let attempt: i64 = row.try_get("attempt").map_err(get)?;
        let devices: Vec<Uuid> = row.try_get("devices").map_err(get)?;
        Ok(Some(WorkflowStatus {
            workflow_id: workflow,
            kind: row.try_get("kind").map_err(get)?,
            definition_version: u32::try_from(version).unwrap_or(0),
            state: match state.as_str() {
                "queued" => TaskState::Queued,
                "finished" => TaskState::Finished,
                _ => TaskState::Runnable,
            },
            outcome: outcome.and_then(|o| serde_json::from_value(Value::String(o)).ok()),
            attempt: u64::try_from(attempt).unwrap_or(0),
            lease_owner: row.try_get("lease_owner").map_err(get)?,
            runnable_at: row.try_get("runnable_at").map_err(get)?,
            devices: devices.into_iter().map(DeviceId::from_uuid).collect(),
        }))
    }
}

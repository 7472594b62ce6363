//! What a worker shares with the runs it drives ([`Shared`]: the engine, the system pool,
//! the options, the stop signal, the finisher's queue) and the worker's options
//! ([`WorkerOptions`]). Split from `worker.rs` so that `Ctx` can reach the worker's state
//! without importing the worker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use netledger_domain::{Actor, DeviceId, TenantId, WorkflowId};
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use crate::crash::{CrashHook, CrashPoint};
use crate::engine::Engine;
use crate::journaler::WORKER_COMPONENT;

/// How a worker runs.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerOptions {
    /// This worker's name: the lease owner written on claimed tasks (unique per process).
    pub name: String,
    /// Workflows in flight at once.
    pub concurrency: usize,
    /// How long a claim holds a workflow without a heartbeat; another worker takes it over
    /// after that.
    pub lease: Duration,
    /// How often the leases of in-flight workflows are renewed (well under `lease`).
    pub heartbeat: Duration,
    /// Longest wait between looks for runnable work when no notification arrives.
    pub poll: Duration,
    /// Timers and retry backoffs due within this are waited for in process, holding the
    /// lease; longer ones release the lease and set the task's runnable time.
    pub max_inline_wait: Duration,
    /// Claim workflows whose definition (kind + version) this worker lacks and fail them
    /// with an error naming what it has. Only for a worker that is the only one (otherwise
    /// it would fail workflows another worker can run); by default such workflows are left
    /// for a worker that has the definition.
    pub fail_unknown_definitions: bool,
    /// On shutdown, how long in-flight workflows get to reach their next step boundary
    /// (where they journal and release their lease) before they are abandoned to lease
    /// expiry.
    pub shutdown_grace: Duration,
    /// After a database error in a run, how long before the workflow is tried again.
    pub failure_backoff: Duration,
    /// Called at every crash point (see [`crate::crash`]). Only crash tests set it (their
    /// worker binaries kill themselves at a planned point); `None` in production.
    pub crash_points: Option<CrashHook>,
}

impl WorkerOptions {
    /// Defaults with this name.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            name: format!("worker-{}", Uuid::new_v4().simple()),
            concurrency: 64,
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            poll: Duration::from_secs(1),
            max_inline_wait: Duration::from_secs(1),
            fail_unknown_definitions: false,
            shutdown_grace: Duration::from_secs(10),
            failure_backoff: Duration::from_secs(1),
            crash_points: None,
        }
    }
}

/// What a worker shares with the runs it drives.
pub(crate) struct Shared {
    pub engine: Engine,
    pub system: PgPool,
    pub options: WorkerOptions,
    pub stop: watch::Sender<bool>,
    pub steps: AtomicU64,
    pub finisher: mpsc::Sender<FinishRequest>,
}

/// A task row to finish (after its `WorkflowFinished` was journaled), batched with others.
pub(crate) struct FinishRequest {
    pub tenant: TenantId,
    pub workflow: WorkflowId,
    pub attempt: u64,
    pub outcome: String,
    /// `true` if finished, `false` if the attempt is stale or it was already finished.
    pub reply: oneshot::Sender<Result<bool, String>>,
}

impl Shared {
    pub(crate) fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    pub(crate) fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    pub(crate) fn max_inline_wait(&self) -> time::Duration {
        time::Duration::try_from(self.options.max_inline_wait).unwrap_or(time::Duration::ZERO)
    }

    /// The actor of what this worker journals: `workflow-worker/<name>`.
    pub(crate) fn actor(&self) -> Actor {
        Actor::system(&format!("{WORKER_COMPONENT}/{}", self.options.name))
    }

    pub(crate) fn count_step(&self) {
        self.steps.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn now(&self) -> OffsetDateTime {
        self.engine.clock().now()
    }

    /// Reports a crash point to the hook, if there is one (tests only).
    pub(crate) fn crash(
        &self,
        workflow: WorkflowId,
        kind: &str,
        devices: &[DeviceId],
        at: &str,
        phase: &str,
    ) {
        if let Some(hook) = &self.options.crash_points {
            hook.0.reached(&CrashPoint {
                workflow,
                kind,
                devices,
                at,
                phase,
            });
        }
    }

    /// The local lease deadline of a lease that expires at `expires` (see [`crate::lease`]).
    pub(crate) fn lease_deadline(&self, expires: OffsetDateTime) -> OffsetDateTime {
        let margin = crate::lease::margin(self.options.lease, self.options.heartbeat);
        expires
            .checked_sub(time::Duration::try_from(margin).unwrap_or(time::Duration::ZERO))
            .unwrap_or(expires)
    }

    pub(crate) fn later(&self, d: Duration) -> OffsetDateTime {
        let now = self.now();
        now.checked_add(time::Duration::try_from(d).unwrap_or(time::Duration::ZERO))
            .unwrap_or(now)
    }
}

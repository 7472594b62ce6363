//! Crash points: the places where a worker dying matters, named, so a test can crash a
//! worker process at each of them in turn (deterministically) instead of at random times.
//!
//! The worker calls the hook given in [`crate::WorkerOptions::crash_points`] (`None` in
//! production: nothing is called, nothing can be configured to crash a worker) at:
//!
//! | label | moment |
//! |---|---|
//! | `<step>/before_start` | the previous decisions (typically the previous step's outcome) are buffered, the step's `WorkflowStepStarted` not yet appended |
//! | `<step>/started` | the start (and the previous outcome, same append) is journaled, the body has not run |
//! | `<step>/<phase>` | inside the body, right after a side effect: the body calls [`crash_point`] (`apply/imported`, ...) |
//! | `<step>/returned` | the body returned; its outcome is buffered, not journaled |
//! | `<what>/suspending`, `<what>/suspended` | before and after the append that precedes releasing the lease (`<what>`: the timer, `retry:<step>`, `pause`, `stop`) |
//! | `workflow/finishing` | the definition returned; `WorkflowFinished` not yet appended |
//! | `workflow/finished` | `WorkflowFinished` journaled; parent not yet signalled, task row not finished |
//! | `workflow/parent_notified` | a child's `child_finished` signal delivered; its task row not finished |
//!
//! A step's outcome is journaled in the same append as the next step's start (or the
//! suspension, or the finish), so "after the outcome is journaled" is the next
//! `<step>/started`, `<what>/suspended` or `workflow/finished`.
//!
//! Points are reported only for what a run does live, never for a replayed step.

use std::sync::Arc;

use netledger_domain::{DeviceId, WorkflowId};

/// One crash point reached by a worker.
#[derive(Debug, Clone, Copy)]
pub struct CrashPoint<'a> {
    /// The workflow.
    pub workflow: WorkflowId,
    /// Its kind.
    pub kind: &'a str,
    /// The devices it owns.
    pub devices: &'a [DeviceId],
    /// The step, timer or wait it is at (`workflow` for the finish).
    pub at: &'a str,
    /// Where in it (`before_start`, `started`, `returned`, a step's own phase, ...).
    pub phase: &'a str,
}

impl CrashPoint<'_> {
    /// `<at>/<phase>`: what a test records and plans kills by.
    pub fn label(&self) -> String {
        format!("{}/{}", self.at, self.phase)
    }
}

/// Called at every crash point (synchronously, on the run's task). A test's
/// implementation kills the process at the point it planned; production workers have none.
pub trait CrashPoints: Send + Sync + 'static {
    /// The worker reached `point`.
    fn reached(&self, point: &CrashPoint<'_>);
}

/// The hook as a worker option (compared by identity).
#[derive(Clone)]
pub struct CrashHook(
    /// The hook.
    pub Arc<dyn CrashPoints>,
);

impl std::fmt::Debug for CrashHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CrashHook")
    }
}

impl PartialEq for CrashHook {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// What a step body's [`crash_point`] calls report to.
#[derive(Clone)]
pub(crate) struct StepScope {
    pub hook: Arc<dyn CrashPoints>,
    pub workflow: WorkflowId,
    pub kind: Arc<str>,
    pub devices: Arc<[DeviceId]>,
    pub step: Arc<str>,
}

tokio::task_local! {
    static STEP: StepScope;
}

/// Runs a step body with its crash points reported to `scope`'s hook.
pub(crate) async fn scoped<F: std::future::Future>(scope: Option<StepScope>, body: F) -> F::Output {
    match scope {
        Some(s) => STEP.scope(s, body).await,
        None => body.await,
    }
}

/// A crash point inside a step body, right after a side effect (`phase` names it: the
/// label is `<step>/<phase>`). Does nothing unless the worker running the step was given a
/// crash-point hook (tests only), and nothing outside a step body.
pub fn crash_point(phase: &str) {
    let _ = STEP.try_with(|s| {
        s.hook.reached(&CrashPoint {
            workflow: s.workflow,
            kind: &s.kind,
            devices: &s.devices,
            at: &s.step,
            phase,
        });
    });
}

//! [`Ctx`]: what a definition's function uses to run steps, sleep, wait for signals and see
//! cancellation.
//!
//! Every `ctx` call is a *decision point*. On replay it is matched against the next journaled
//! decision (a step's start and outcome, a timer); once the journal is exhausted the run is
//! live and new decisions are buffered. The journaler (`journaler.rs`) writes the buffer in
//! one fenced append right before anything that must not happen unjournaled: a step's side
//! effect, a suspension, the finish. The code between `ctx` calls is pure, so writing its
//! decisions a little later changes nothing a crash could observe: a crash before the append
//! re-runs the step whose start was journaled (steps are idempotent).

use std::future::Future;
use std::sync::Arc;

use netledger_domain::workflow::card::WorkflowCard;
use netledger_domain::workflow::{
    FailureClass, WorkflowStepCompleted, WorkflowStepFailed, WorkflowStepStarted,
    WorkflowTimerFired, WorkflowTimerScheduled,
};
use netledger_domain::{DeviceId, EventId, RolloutId, TenantId, WorkflowId};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::definition::{RetryPolicy, StepOptions};
use crate::engine::StartOptions;
use crate::error::{EngineError, StepError};
use crate::journal::{Decision, Entry, cancelled_attempt, failure_is_final, is_cancelled_attempt};
use crate::journaler::{Halt, Journaler};
use crate::lease::LeaseWatch;
use crate::shared::Shared;

fn final_error(f: &WorkflowStepFailed) -> StepError {
    match f.class {
        FailureClass::Fatal => StepError::Fatal(f.error.clone()),
        FailureClass::Retryable => StepError::Fatal(format!(
            "step `{}` failed after {} attempts: {}",
            f.step, f.attempt, f.error
        )),
    }
}

/// The handle a definition's function receives: steps, timers, signals, cancellation.
///
/// Use it sequentially (its methods take `&mut self`). Everything a workflow does that
/// touches the world goes in a step; the code between `ctx` calls must be deterministic
/// (see [`crate::Definition`]).
pub struct Ctx {
    j: Journaler,
    shared: Arc<Shared>,
    /// Notified when a signal for this workflow is announced.
    poke: Arc<Notify>,
    halted: Arc<Notify>,
    lease: LeaseWatch,
    input: Value,
    kind: String,
    version: u32,
    devices: Vec<DeviceId>,
    rollout: Option<RolloutId>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("workflow", &self.j.io.workflow)
            .field("kind", &self.kind)
            .field("version", &self.version)
            .finish()
    }
}

impl Ctx {
    pub(crate) fn new(
        j: Journaler,
        shared: Arc<Shared>,
        poke: Arc<Notify>,
        halted: Arc<Notify>,
        lease: LeaseWatch,
    ) -> Self {
        let (input, kind, version, devices, rollout) = {
            let st = j.lock();
            let s = &st.replay.journal.started;
            (
                s.input.clone(),
                s.kind.clone(),
                s.definition_version,
                s.devices.clone(),
                s.rollout_id,
            )
        };
        Self {
            j,
            shared,
            poke,
            halted,
            lease,
            input,
            kind,
            version,
            devices,
            rollout,
        }
    }

    /// The workflow's id.
    pub fn workflow_id(&self) -> WorkflowId {
        self.j.io.workflow
    }

    /// The tenant it belongs to.
    pub fn tenant(&self) -> TenantId {
        self.j.io.tenant
    }

    /// Its kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The definition version it runs under.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The devices it owns.
    pub fn devices(&self) -> &[DeviceId] {
        &self.devices
    }

    /// The rollout that started it.
    pub fn rollout_id(&self) -> Option<RolloutId> {
        self.rollout
    }

    /// Its correlation id (journaled on `WorkflowStarted`): the one its starter gave
    /// ([`StartOptions::correlation_id`]), its parent's for a child started without one, or
    /// its own id. Events a definition appends outside its journal carry it, so everything
    /// one request caused shares one correlation id.
    pub fn correlation_id(&self) -> Uuid {
        self.j.lock().replay.journal.correlation_id
    }

    /// The local lease deadline of this run (see [`crate::lease`]): the expiry of the last
    /// lease its worker renewed successfully, minus a safety margin. The worker stops the run
    /// when it passes; a step body reads it with [`crate::lease::deadline`].
    pub fn lease_deadline(&self) -> OffsetDateTime {
        self.lease.deadline()
    }

    /// The input it was started with, as `T` (a mismatch is a fatal error). Definitions get
    /// it typed ([`crate::Definition::of`]).
    pub(crate) fn input<T: DeserializeOwned>(&self) -> Result<T, StepError> {
        serde_json::from_value(self.input.clone()).map_err(|e| {
            StepError::Fatal(format!(
                "the input does not match what {} v{} expects: {e}",
                self.kind, self.version
            ))
        })
    }

    /// Stops this run: the worker suspends, re-runs, abandons or fails the workflow as `halt`
    /// says. Never returns (the driver drops the definition's future).
    async fn halt<T>(&self, halt: Halt) -> T {
        self.j.lock().halt = Some(halt);
        self.halted.notify_one();
        std::future::pending().await
    }

    fn peek(&self) -> Option<Entry> {
        self.j.lock().replay.peek().cloned()
    }

    fn advance(&self) {
        self.j.lock().replay.advance();
    }

    fn push(&self, decision: Decision) {
        self.j.lock().buffer.push(decision);
    }

    fn cancel_pending(&self) -> bool {
        self.j.lock().replay.cancel_pending()
    }

    async fn diverged<T>(&self, asked: String, found: &Entry) -> T {
        let reason = format!(
            "replay of {} v{} diverged at journal version {}: the definition asked for {asked}, \
             the journal has {}. A running workflow finishes under the definition version it \
             started with; a change to the order of steps must be a new version (see \
             docs/workflows.md)",
            self.kind,
            self.version,
            found.version,
            found.decision.describe()
        );
        self.halt(Halt::Diverged(reason)).await
    }

    /// Runs step `name` with the default [`StepOptions`] (5 attempts, backoff from 1 s, no
    /// timeout). See [`Ctx::step_with`].
    pub async fn step<T, F, Fut>(&mut self, name: &str, f: F) -> Result<T, StepError>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StepError>>,
    {
        self.step_with(name, StepOptions::default(), f).await
    }

    /// Runs step `name`: `f` is called once per attempt and its output journaled.
    ///
    /// - If the journal has the step's outcome, returns it without calling `f` (its output
    ///   decoded as `T`; a failed step returns its journaled error).
    /// - If the journal has the step's start but no outcome (the worker stopped during it),
    ///   `f` runs again as the next attempt: **steps must be idempotent**.
    /// - A [`StepError::Retryable`] failure (or a timeout) is retried after the policy's
    ///   backoff, durably (a long backoff releases the lease and sets a timer); when no
    ///   attempt is left the step returns [`StepError::Fatal`] naming the last error.
    /// - Once the workflow is cancelled and the definition has not called
    ///   [`Ctx::cancelled`], returns [`StepError::Cancelled`] without running. If an attempt
    ///   of the step was interrupted (journaled start, no outcome), that attempt gets a fatal
    ///   outcome saying the cancel stopped the step, so the journal has no open attempt and
    ///   a replay returns `Cancelled` again.
    /// - While the workflow is paused, waits (lease released) before starting an attempt.
    pub async fn step_with<T, F, Fut>(
        &mut self,
        name: &str,
        options: StepOptions,
        mut f: F,
    ) -> Result<T, StepError>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StepError>>,
    {
        let policy = options.retry;
        let mut last_attempt: u32 = 0;
        let mut retry_at: Option<OffsetDateTime> = None;
        // The journal's last attempt of this step was interrupted (its start is journaled,
        // no outcome) and the run is at the head: live, the step would start the next one.
        let mut interrupted = false;
        loop {
            if self.cancel_pending() {
                if interrupted {
                    // The attempt stays open no longer: the step will not run again. Its
                    // outcome says so (and makes a replay return `Cancelled` here too).
                    self.push(Decision::Failed(cancelled_attempt(name, last_attempt)));
                }
                return Err(StepError::Cancelled);
            }
            if let Some(entry) = self.peek() {
                let Decision::Started(started) = &entry.decision else {
                    return self.diverged(format!("step `{name}`"), &entry).await;
                };
                if started.step != name {
                    return self.diverged(format!("step `{name}`"), &entry).await;
                }
                self.advance();
                last_attempt = started.attempt;
                retry_at = None;
                interrupted = false;
                let outcome = match self.peek() {
                    // The attempt was interrupted and the next one started.
                    Some(Entry {
                        decision: Decision::Started(s),
                        ..
                    }) if s.step == name => continue,
                    Some(e) => {
                        self.advance();
                        match e.decision {
                            Decision::Completed(c) if c.step == name => Decision::Completed(c),
                            Decision::Failed(f) if f.step == name => Decision::Failed(f),
                            _ => {
                                return self
                                    .diverged(format!("the outcome of step `{name}`"), &e)
                                    .await;
                            }
                        }
                    }
                    None => {
                        // At the head: the attempt was interrupted, or it ran in a run
                        // whose append conflicted and its outcome was kept.
                        let kept = self.j.lock().retained.remove(&entry.version);
                        match kept {
                            Some(outcome) => {
                                self.push(outcome.clone());
                                outcome
                            }
                            None => {
                                interrupted = true;
                                continue;
                            }
                        }
                    }
                };
                match outcome {
                    Decision::Completed(c) => return self.decode_output(name, c.output).await,
                    Decision::Failed(f) if is_cancelled_attempt(&f) => {
                        return Err(StepError::Cancelled);
                    }
                    Decision::Failed(f) if failure_is_final(&f) => return Err(final_error(&f)),
                    Decision::Failed(f) => {
                        retry_at = f.retry_at;
                        continue;
                    }
                    _ => continue,
                }
            }

            // Live: the journal has nothing more about this step.
            let now = self.shared.engine.clock().now();
            if let Some(at) = retry_at
                && now < at
            {
                self.wait_until(&format!("retry:{name}"), Some(at)).await;
                continue;
            }
            if self.j.lock().replay.paused() {
                return self.suspend("pause", None).await;
            }
            if self.shared.stopping() {
                return self.suspend("stop", Some(now)).await;
            }
            let attempt = last_attempt + 1;
            if attempt > policy.max_attempts.max(1) {
                let failed = WorkflowStepFailed {
                    step: name.to_owned(),
                    attempt: last_attempt,
                    error: "the attempt was interrupted (its worker stopped or lost its lease) \
                            and no attempt is left"
                        .to_owned(),
                    class: FailureClass::Retryable,
                    retry_at: None,
                };
                let error = final_error(&failed);
                self.push(Decision::Failed(failed));
                return Err(error);
            }
            let start = Decision::Started(WorkflowStepStarted {
                step: name.to_owned(),
                attempt,
            });
            self.crash(name, "before_start");
            if let Err(halt) = self.j.flush(Some(start)).await {
                return self.halt(halt).await;
            }
            self.crash(name, "started");
            let body = crate::lease::scoped(
                self.lease.clone(),
                crate::crash::scoped(self.step_scope(name), f()),
            );
            let result = match options.timeout {
                Some(limit) => match tokio::time::timeout(limit, body).await {
                    Ok(r) => r,
                    Err(_) => Err(StepError::Retryable(format!(
                        "the attempt timed out after {} ms",
                        limit.as_millis()
                    ))),
                },
                None => body.await,
            };
            self.crash(name, "returned");
            last_attempt = attempt;
            match result {
                Ok(value) => match serde_json::to_value(&value) {
                    Ok(output) => {
                        self.push(Decision::Completed(WorkflowStepCompleted {
                            step: name.to_owned(),
                            attempt,
                            output,
                        }));
                        self.shared.count_step();
                        return Ok(value);
                    }
                    Err(e) => {
                        return Err(self.fail(
                            name,
                            attempt,
                            format!("the step's output cannot be journaled: {e}"),
                            FailureClass::Fatal,
                            None,
                        ));
                    }
                },
                Err(StepError::Retryable(e)) => {
                    if attempt < policy.max_attempts {
                        let at =
                            now_plus(self.shared.engine.clock().now(), backoff(&policy, attempt));
                        let _ = self.fail(name, attempt, e, FailureClass::Retryable, Some(at));
                        retry_at = Some(at);
                        continue;
                    }
                    return Err(self.fail(name, attempt, e, FailureClass::Retryable, None));
                }
                Err(StepError::Fatal(e)) => {
                    return Err(self.fail(name, attempt, e, FailureClass::Fatal, None));
                }
                Err(StepError::Cancelled) => {
                    return Err(self.fail(
                        name,
                        attempt,
                        "the step returned Cancelled".to_owned(),
                        FailureClass::Fatal,
                        None,
                    ));
                }
            }
        }
    }

    /// Buffers a failed attempt and returns the error the step returns for it.
    fn fail(
        &self,
        step: &str,
        attempt: u32,
        error: String,
        class: FailureClass,
        retry_at: Option<OffsetDateTime>,
    ) -> StepError {
        let failed = WorkflowStepFailed {
            step: step.to_owned(),
            attempt,
            error,
            class,
            retry_at,
        };
        let returned = final_error(&failed);
        self.push(Decision::Failed(failed));
        returned
    }

    async fn decode_output<T: DeserializeOwned>(
        &self,
        step: &str,
        output: Value,
    ) -> Result<T, StepError> {
        match serde_json::from_value(output) {
            Ok(v) => Ok(v),
            Err(e) => {
                let reason = format!(
                    "the journaled output of step `{step}` does not decode as the type {} v{} \
                     expects ({e}); change output types only in a new definition version",
                    self.kind, self.version
                );
                self.halt(Halt::Diverged(reason)).await
            }
        }
    }

    /// Reports crash point `<at>/<phase>` to the worker's hook (tests only).
    fn crash(&self, at: &str, phase: &str) {
        self.shared
            .crash(self.j.io.workflow, &self.kind, &self.devices, at, phase);
    }

    /// What a step body's [`crate::crash_point`] calls report to (`None` without a hook).
    fn step_scope(&self, step: &str) -> Option<crate::crash::StepScope> {
        let hook = self.shared.options.crash_points.as_ref()?;
        Some(crate::crash::StepScope {
            hook: hook.0.clone(),
            workflow: self.j.io.workflow,
            kind: Arc::from(self.kind.as_str()),
            devices: Arc::from(self.devices.as_slice()),
            step: Arc::from(step),
        })
    }

    /// Journals the buffer and releases the lease until `until` (`None`: until a signal);
    /// `what` (a timer, `retry:<step>`, `pause`, `stop`) names its crash points.
    async fn suspend<T>(&self, what: &str, until: Option<OffsetDateTime>) -> T {
        self.crash(what, "suspending");
        if let Err(halt) = self.j.flush(None).await {
            return self.halt(halt).await;
        }
        self.crash(what, "suspended");
        self.halt(Halt::Suspend(until)).await
    }

    /// Waits until `until` (`None`: a signal): in process when it is near (a signal
    /// announcement interrupts the wait, and the definition runs again if it brought
    /// signals), otherwise by journaling the buffer and releasing the lease.
    async fn wait_until(&self, what: &str, until: Option<OffsetDateTime>) {
        let shared = &self.shared;
        let now = shared.engine.clock().now();
        let near = until
            .map(|u| u - now)
            .filter(|d| *d <= shared.max_inline_wait() && !shared.stopping());
        let Some(delay) = near else {
            return self.suspend(what, until).await;
        };
        let delay = std::time::Duration::try_from(delay).unwrap_or_default();
        enum Woke {
            Time,
            Poked,
            Stopping,
        }
        let mut stop = shared.stop_signal();
        let woke = tokio::select! {
            _ = tokio::time::sleep(delay) => Woke::Time,
            _ = self.poke.notified() => Woke::Poked,
            _ = stop.wait_for(|s| *s) => Woke::Stopping,
        };
        match woke {
            Woke::Time => {}
            Woke::Poked => {
                if let Err(halt) = self.j.refresh().await {
                    self.halt::<()>(halt).await;
                }
            }
            Woke::Stopping => self.suspend(what, until).await,
        }
    }

    /// Sleeps durably until `at` (journaled as timer `name`; on replay the journaled time
    /// holds, not `at`). Returns [`StepError::Cancelled`] if a cancel arrives first (unless
    /// the definition already acknowledged it: unwinding code can sleep).
    pub async fn sleep_until(&mut self, name: &str, at: OffsetDateTime) -> Result<(), StepError> {
        if self.cancel_pending() {
            return Err(StepError::Cancelled);
        }
        let fire_at = self.schedule(name, || at).await;
        self.await_timer(name, Some(fire_at), None)
            .await
            .map(|_| ())
    }

    /// Sleeps durably for `duration` from now (the wake-up time is journaled).
    pub async fn sleep(
        &mut self,
        name: &str,
        duration: std::time::Duration,
    ) -> Result<(), StepError> {
        let clock = self.shared.engine.clock().clone();
        if self.cancel_pending() {
            return Err(StepError::Cancelled);
        }
        let fire_at = self
            .schedule(name, || now_plus(clock.now(), duration))
            .await;
        self.await_timer(name, Some(fire_at), None)
            .await
            .map(|_| ())
    }

    /// The fire time of timer `name`: journaled, or `at()` buffered as a new timer.
    async fn schedule(&self, name: &str, at: impl FnOnce() -> OffsetDateTime) -> OffsetDateTime {
        match self.peek() {
            Some(Entry {
                decision: Decision::TimerScheduled(t),
                ..
            }) if t.name == name => {
                self.advance();
                t.fire_at
            }
            None => {
                let fire_at = at();
                self.push(Decision::TimerScheduled(WorkflowTimerScheduled {
                    name: name.to_owned(),
                    fire_at,
                }));
                fire_at
            }
            Some(entry) => self.diverged(format!("timer `{name}`"), &entry).await,
        }
    }

    /// Waits for timer `timer` to fire, or for signal `signal`, or a cancel.
    async fn await_timer(
        &self,
        timer: &str,
        fire_at: Option<OffsetDateTime>,
        signal: Option<&str>,
    ) -> Result<Option<Value>, StepError> {
        loop {
            if self.cancel_pending() {
                return Err(StepError::Cancelled);
            }
            if let Some(signal) = signal
                && let Some(payload) = self.j.lock().replay.take_signal(signal)
            {
                return Ok(Some(payload));
            }
            match self.peek() {
                Some(Entry {
                    decision: Decision::TimerFired(t),
                    ..
                }) if t.name == timer => {
                    self.advance();
                    return Ok(None);
                }
                Some(entry) => {
                    return self
                        .diverged(format!("timer `{timer}` to fire"), &entry)
                        .await;
                }
                None => {
                    let now = self.shared.engine.clock().now();
                    if let Some(at) = fire_at
                        && now >= at
                    {
                        self.push(Decision::TimerFired(WorkflowTimerFired {
                            name: timer.to_owned(),
                        }));
                        return Ok(None);
                    }
                    self.wait_until(timer, fire_at).await;
                }
            }
        }
    }

    /// Waits for signal `signal` (delivered with [`crate::Engine::signal`]) and returns its
    /// payload as `T`; `Ok(None)` when `timeout` passes first (`None`: wait as long as it
    /// takes). Signals are a mailbox: one that arrived before the wait is taken too, and
    /// each wait takes the oldest one not taken yet. The lease is released while waiting.
    pub async fn wait_signal<T: DeserializeOwned>(
        &mut self,
        signal: &str,
        timeout: Option<std::time::Duration>,
    ) -> Result<Option<T>, StepError> {
        if self.cancel_pending() {
            return Err(StepError::Cancelled);
        }
        let timer = self.j.lock().replay.next_wait_timer(signal);
        let taken = self.j.lock().replay.take_signal(signal);
        let payload = match taken {
            Some(p) => Some(p),
            None => {
                let fire_at = match timeout {
                    Some(d) => {
                        let clock = self.shared.engine.clock().clone();
                        Some(self.schedule(&timer, || now_plus(clock.now(), d)).await)
                    }
                    None => None,
                };
                self.await_timer(&timer, fire_at, Some(signal)).await?
            }
        };
        match payload {
            None => Ok(None),
            Some(p) => serde_json::from_value(p).map(Some).map_err(|e| {
                StepError::Fatal(format!(
                    "the payload of signal `{signal}` does not match what {} v{} expects: {e}",
                    self.kind, self.version
                ))
            }),
        }
    }

    /// Whether the workflow was cancelled. Returning `true` acknowledges the cancel: from
    /// then on steps, sleeps and waits run normally, so the definition can unwind (roll
    /// back) and then return, typically `Ok(Finish::cancelled(..))`. A definition that never
    /// asks is stopped at its next step, sleep or wait with [`StepError::Cancelled`].
    pub fn cancelled(&mut self) -> bool {
        let mut st = self.j.lock();
        if st.replay.cancel_visible() {
            st.replay.cancel_acknowledged = true;
            true
        } else {
            false
        }
    }

    /// Starts a child workflow of card `C` (as step `name`, with an idempotency key derived
    /// from this workflow and `name`, so a re-run starts it once). With `notify`, this
    /// workflow gets signal `child_finished` when the child finishes (wait for it with
    /// [`Ctx::wait_signal`]). A busy device is a fatal error unless `options.queue_if_busy`.
    /// The child shares this workflow's correlation id unless `options` sets one.
    pub async fn start_child<C: WorkflowCard>(
        &mut self,
        name: &str,
        input: C::Input,
        options: StartOptions,
        notify: bool,
    ) -> Result<WorkflowId, StepError> {
        let engine = self.shared.engine.clone();
        let tenant = self.j.io.tenant;
        let me = self.j.io.workflow;
        let mut options = options.idempotency_key(format!("child:{me}:{name}"));
        if options.correlation_id.is_none() {
            options.correlation_id = Some(self.correlation_id());
        }
        if notify {
            options = options.parent(me);
        }
        options.devices.extend(C::devices(&input));
        let input = serde_json::to_value(&input).map_err(|e| {
            StepError::Fatal(format!(
                "the input of child {} does not serialize: {e}",
                C::KIND
            ))
        })?;
        let options = &options;
        let input = &input;
        self.step(name, || {
            let engine = engine.clone();
            async move {
                match engine
                    .start_kind(tenant, C::KIND, input.clone(), options.clone())
                    .await
                {
                    Ok(started) => Ok(started.workflow_id),
                    Err(
                        e @ (EngineError::DeviceBusy { .. }
                        | EngineError::UnknownKind { .. }
                        | EngineError::IdempotencyKeyReused { .. }
                        | EngineError::Invalid(_)),
                    ) => Err(StepError::fatal(e)),
                    Err(e) => Err(StepError::retryable(e)),
                }
            }
        })
        .await
    }
    /// Cancels another workflow of this tenant (typically a child: see [`Ctx::start_child`])
    /// as step `name`: appends its `cancel` signal with `{"reason": reason}` (what
    /// [`crate::Engine::cancel`] does), once: the signal's event id is derived from this
    /// workflow and `name`, so a re-run of the step is a no-op. A workflow that finished
    /// already is left alone. Returns whether this attempt appended the cancel (`false`: the
    /// workflow had finished, or an earlier attempt of the step appended it).
    pub async fn cancel_workflow(
        &mut self,
        name: &str,
        workflow: WorkflowId,
        reason: &str,
    ) -> Result<bool, StepError> {
        let engine = self.shared.engine.clone();
        let tenant = self.j.io.tenant;
        let me = self.j.io.workflow;
        let actor = self.j.io.actor.clone();
        let id = derived_event_id(me, &format!("cancel:{workflow}:{name}"));
        let payload = serde_json::json!({ "reason": reason });
        self.step(name, || {
            let engine = engine.clone();
            let actor = actor.clone();
            let payload = payload.clone();
            async move {
                match engine
                    .append_signal(
                        tenant,
                        workflow,
                        crate::journal::signals::CANCEL,
                        payload,
                        actor,
                        Some(id),
                    )
                    .await
                {
                    Ok(appended) => Ok(appended.is_some()),
                    Err(e @ EngineError::NotFound(_)) => Err(StepError::fatal(e)),
                    Err(e) => Err(StepError::retryable(e)),
                }
            }
        })
        .await
    }
}

/// A fixed event id for what step `key` of workflow `me` appends elsewhere: the same on every
/// attempt (FNV-1a over the workflow id and the key, as a version 8 uuid), so the store
/// refuses a second append as a duplicate.
fn derived_event_id(me: WorkflowId, key: &str) -> EventId {
    fn fnv(seed: u64, parts: &[&[u8]]) -> u64 {
        let mut h = seed;
        for p in parts {
            for b in *p {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        h
    }
    let parts: [&[u8]; 2] = [me.as_uuid().as_bytes(), key.as_bytes()];
    let hi = fnv(0xcbf2_9ce4_8422_2325, &parts);
    let lo = fnv(0x6c62_272e_07bb_0142, &parts);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&hi.to_be_bytes());
    bytes[8..].copy_from_slice(&lo.to_be_bytes());
    EventId::from_uuid(uuid::Builder::from_custom_bytes(bytes).into_uuid())
}

fn backoff(policy: &RetryPolicy, attempt: u32) -> std::time::Duration {
    policy.backoff(attempt, rand::random::<f64>())
}

fn now_plus(now: OffsetDateTime, d: std::time::Duration) -> OffsetDateTime {
    let d = time::Duration::try_from(d).unwrap_or(time::Duration::MAX);
    now.checked_add(d).unwrap_or(now)
}

//! Workflow definitions: a card (kind, version, typed input and output) and an async function
//! of a [`Ctx`] and the input; the
//! [`Registry`] of the definitions a process knows; what a definition returns ([`Finish`]);
//! and per-step options ([`StepOptions`], [`RetryPolicy`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use netledger_domain::workflow::Outcome;
use netledger_domain::workflow::card::WorkflowCard;
use serde::Serialize;
use serde_json::Value;

use crate::ctx::Ctx;
use crate::error::{EngineError, StepError};

/// The boxed future a definition's function returns.
pub type DefinitionFuture = Pin<Box<dyn Future<Output = Result<Finish, StepError>> + Send>>;

type RunFn = dyn Fn(Ctx) -> DefinitionFuture + Send + Sync;

/// A workflow definition: a card's `kind` + `version` + the function that runs it.
///
/// The function is run from the top every time a worker picks the workflow up (after a
/// crash, a timer, a signal): steps already journaled return their journaled output without
/// running again. So the code between `ctx` calls must be deterministic (no clock, no
/// randomness, no IO outside steps) and the order of `ctx` calls must depend only on the
/// input and on what earlier `ctx` calls returned. See `docs/workflows.md`.
#[derive(Clone)]
pub struct Definition {
    kind: String,
    version: u32,
    run: Arc<RunFn>,
}

impl std::fmt::Debug for Definition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Definition")
            .field("kind", &self.kind)
            .field("version", &self.version)
            .finish()
    }
}

impl Definition {
    /// The definition of card `C` (its kind and version; `card` is the card's unit value)
    /// running `f` with the workflow's typed input; what `f` finishes with is journaled as
    /// `C::Output`. An input that does not decode as `C::Input` fails the workflow.
    ///
    /// ```no_run
    /// use netledger_domain::DeviceId;
    /// use netledger_domain::workflow::card::WorkflowCard;
    /// use netledger_engine::{Definition, Finish};
    ///
    /// struct Noop;
    /// impl WorkflowCard for Noop {
    ///     const KIND: &'static str = "noop";
    ///     const VERSION: u32 = 1;
    ///     type Input = u32;
    ///     type Output = u32;
    ///     fn devices(_: &u32) -> Vec<DeviceId> {
    ///         Vec::new()
    ///     }
    /// }
    ///
    /// let noop = Definition::of(Noop, |mut ctx, n| async move {
    ///     for i in 0..n {
    ///         ctx.step(&format!("step-{i}"), || async { Ok(()) }).await?;
    ///     }
    ///     Ok(Finish::succeeded(n))
    /// });
    /// assert_eq!((noop.kind(), noop.version()), ("noop", 1));
    /// ```
    pub fn of<C, F, Fut>(card: C, f: F) -> Self
    where
        C: WorkflowCard,
        F: Fn(Ctx, C::Input) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Finish<C::Output>, StepError>> + Send + 'static,
    {
        let _ = card;
        let f = Arc::new(f);
        Self::new(C::KIND, C::VERSION, move |ctx| {
            let f = f.clone();
            async move {
                let input: C::Input = ctx.input()?;
                f(ctx, input).await?.into_json()
            }
        })
    }

    /// A definition of `kind` at `version` (from 1) running `f` with the untyped journal
    /// input: the engine's own plumbing; everything else registers cards ([`Definition::of`]).
    pub(crate) fn new<F, Fut>(kind: &str, version: u32, f: F) -> Self
    where
        F: Fn(Ctx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Finish, StepError>> + Send + 'static,
    {
        Self {
            kind: kind.to_owned(),
            version,
            run: Arc::new(move |ctx| Box::pin(f(ctx))),
        }
    }

    /// The kind (`config_push`, `firmware_upgrade`, ...).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The version.
    pub fn version(&self) -> u32 {
        self.version
    }

    pub(crate) fn call(&self, ctx: Ctx) -> DefinitionFuture {
        (self.run)(ctx)
    }
}

/// The definitions a process knows, by kind and version.
///
/// [`crate::Engine::start`] starts a workflow under the newest registered version of its kind;
/// a [`crate::Worker`] claims only workflows whose kind and version it has.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    definitions: BTreeMap<(String, u32), Definition>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a definition; a kind and version may be registered once.
    pub fn register(&mut self, definition: Definition) -> Result<(), EngineError> {
        let key = (definition.kind.clone(), definition.version);
        if definition.version == 0 {
            return Err(EngineError::Invalid(format!(
                "workflow definition `{}` has version 0; versions start at 1",
                definition.kind
            )));
        }
        if self.definitions.contains_key(&key) {
            return Err(EngineError::DuplicateDefinition {
                kind: key.0,
                version: key.1,
            });
        }
        self.definitions.insert(key, definition);
        Ok(())
    }

    /// Adds a definition, builder style.
    pub fn with(mut self, definition: Definition) -> Result<Self, EngineError> {
        self.register(definition)?;
        Ok(self)
    }

    /// The definition of `kind` at `version`.
    pub fn get(&self, kind: &str, version: u32) -> Option<&Definition> {
        self.definitions.get(&(kind.to_owned(), version))
    }

    /// The newest version of `kind`.
    pub fn latest(&self, kind: &str) -> Option<&Definition> {
        self.definitions
            .range((kind.to_owned(), 0)..=(kind.to_owned(), u32::MAX))
            .next_back()
            .map(|(_, d)| d)
    }

    /// Every (kind, version) registered, in order.
    pub fn keys(&self) -> impl Iterator<Item = (&str, u32)> {
        self.definitions.keys().map(|(k, v)| (k.as_str(), *v))
    }

    /// `kind vN, kind vM, ...` for error messages.
    pub fn describe(&self) -> String {
        if self.definitions.is_empty() {
            return "no definitions".to_owned();
        }
        self.keys()
            .map(|(k, v)| format!("{k} v{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// How a definition ends its workflow (journaled as `WorkflowFinished`), with its card's
/// output type `O` (`Value` once journaled).
#[derive(Debug, Clone, PartialEq)]
pub struct Finish<O = Value> {
    /// The outcome.
    pub outcome: Outcome,
    /// Why, for anything but success.
    pub reason: Option<String>,
    /// The definition's result.
    pub output: O,
}

impl<O> Finish<O> {
    /// Ended as `outcome`.
    pub fn new(outcome: Outcome, reason: Option<String>, output: O) -> Self {
        Self {
            outcome,
            reason,
            output,
        }
    }

    /// Done.
    pub fn succeeded(output: O) -> Self {
        Self::new(Outcome::Succeeded, None, output)
    }

    /// A change took effect and its safety net was disarmed.
    pub fn committed(output: O) -> Self {
        Self::new(Outcome::Committed, None, output)
    }

    /// The device was brought back to its snapshot.
    pub fn rolled_back(reason: &str, output: O) -> Self {
        Self::new(Outcome::RolledBack, Some(reason.to_owned()), output)
    }

    /// Cancelled (after whatever unwinding the definition did).
    pub fn cancelled(reason: &str, output: O) -> Self {
        Self::new(Outcome::Cancelled, Some(reason.to_owned()), output)
    }

    /// Ended with an error.
    pub fn failed(reason: &str, output: O) -> Self {
        Self::new(Outcome::Failed, Some(reason.to_owned()), output)
    }
}

impl<O: Serialize> Finish<O> {
    /// The finish with its output as JSON (a fatal error if it does not serialize).
    fn into_json(self) -> Result<Finish, StepError> {
        let output = serde_json::to_value(&self.output).map_err(|e| {
            StepError::Fatal(format!("the workflow's output cannot be journaled: {e}"))
        })?;
        Ok(Finish::new(self.outcome, self.reason, output))
    }
}

impl Finish {
    /// What a definition's `Err` ends the workflow with.
    pub(crate) fn from_error(error: &StepError) -> Self {
        match error {
            StepError::Cancelled => Self::new(
                Outcome::Cancelled,
                Some("cancelled".to_owned()),
                Value::Null,
            ),
            StepError::Fatal(e) | StepError::Retryable(e) => {
                Self::new(Outcome::Failed, Some(e.clone()), Value::Null)
            }
        }
    }
}

/// Retries of a step: exponential backoff with jitter, at most `max_attempts` attempts in all
/// (an attempt interrupted by a crash counts).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, from 1 (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the second attempt.
    pub initial_backoff: Duration,
    /// Longest delay.
    pub max_backoff: Duration,
    /// Growth per attempt (2.0 doubles).
    pub multiplier: f64,
    /// Fraction of each delay drawn at random, up or down (0.2 = ±20%), so that workflows
    /// failing together do not retry together.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// No retry: one attempt.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// `max_attempts` attempts with the default backoff.
    pub fn attempts(max_attempts: u32) -> Self {
        Self {
            max_attempts,
            ..Self::default()
        }
    }

    /// The delay after failed attempt `attempt` (from 1), with `unit` in [0, 1) choosing the
    /// jitter (0.5 = none).
    pub fn backoff(&self, attempt: u32, unit: f64) -> Duration {
        let exp = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let base = self.initial_backoff.as_secs_f64() * self.multiplier.max(1.0).powi(exp);
        let base = base.min(self.max_backoff.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = 1.0 + jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        Duration::try_from_secs_f64((base * factor).max(0.0)).unwrap_or(self.max_backoff)
    }
}

/// Options of one step.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StepOptions {
    /// Retries.
    pub retry: RetryPolicy,
    /// Longest time one attempt may take; an attempt that takes longer is abandoned (its
    /// future dropped) and counts as a retryable failure. `None` = no limit.
    pub timeout: Option<Duration>,
}

impl StepOptions {
    /// These retries.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// This per-attempt timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters_within_bounds() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            multiplier: 2.0,
            jitter: 0.2,
        };
        assert_eq!(p.backoff(1, 0.5), Duration::from_millis(100));
        assert_eq!(p.backoff(2, 0.5), Duration::from_millis(200));
        assert_eq!(p.backoff(3, 0.5), Duration::from_millis(400));
        assert_eq!(p.backoff(9, 0.5), Duration::from_secs(1));
        assert_eq!(p.backoff(1, 0.0), Duration::from_millis(80));
        assert!(p.backoff(1, 0.999) > Duration::from_millis(119));
        assert!(p.backoff(1, 0.999) <= Duration::from_millis(120));
    }

    #[test]
    fn registry_picks_the_newest_version_and_refuses_duplicates() {
        let def = |v| {
            Definition::new("push", v, |_ctx| async {
                Ok(Finish::succeeded(Value::Null))
            })
        };
        let mut r = Registry::new();
        r.register(def(1)).unwrap();
        r.register(def(3)).unwrap();
        r.register(Definition::new("q", 7, |_ctx| async {
            Ok(Finish::succeeded(Value::Null))
        }))
        .unwrap();
        assert_eq!(r.latest("push").unwrap().version(), 3);
        assert!(r.latest("pus").is_none());
        assert!(r.get("push", 2).is_none());
        assert!(matches!(
            r.register(def(3)),
            Err(EngineError::DuplicateDefinition { .. })
        ));
        assert_eq!(r.describe(), "push v1, push v3, q v7");
    }
}

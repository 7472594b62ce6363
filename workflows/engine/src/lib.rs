//! The durable workflow engine: task rows claimed with `FOR UPDATE SKIP LOCKED` under a
//! fenced lease, a journal stream per instance, timers, retries, signals and cancellation.
//!
//! A workflow instance is its journal (the event stream `workflow-<id>`, event types in
//! [`netledger_domain::workflow`]) plus a task row (`workflow_tasks`: runnable time, lease,
//! attempt number). [`Engine`] starts workflows (idempotency key, device ownership) and
//! delivers signals; [`Worker`] claims and runs them; a [`Definition`] is a workflow card
//! ([`WorkflowCard`]: kind, version, typed input and output, owned devices) and an async
//! function of a [`Ctx`] and the input. Workflows start only from a card
//! (`engine.start::<C>(..)`, `ctx.start_child::<C>(..)`). `docs/workflows.md` explains the model, the SQL and
//! how to add a workflow.
//!
//! This crate owns the engine only: the concrete workflows (config push, firmware, rollouts)
//! are definitions built on it elsewhere. It depends on the domain types and the event store;
//! it reads no environment and takes time from an injected [`netledger_domain::clock::Clock`].

pub mod crash;
mod ctx;
mod definition;
mod engine;
mod error;
mod journal;
mod journaler;
pub mod lease;
mod shared;
mod worker;

pub use crash::{CrashHook, CrashPoint, CrashPoints, crash_point};
pub use ctx::Ctx;
pub use definition::{Definition, DefinitionFuture, Finish, Registry, RetryPolicy, StepOptions};
pub use engine::{Engine, NOTIFY_CHANNEL, StartOptions, Started, TaskState, WorkflowStatus};
pub use error::{EngineError, StepError};
pub use journal::signals;
pub use netledger_domain::workflow::card::WorkflowCard;
pub use worker::{Worker, WorkerOptions, WorkerReport};

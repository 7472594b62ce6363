//! The engine's error types: [`StepError`] is what a workflow definition sees and returns,
//! [`EngineError`] is what callers of [`crate::Engine`] and [`crate::Worker`] see.

use netledger_domain::{DeviceId, WorkflowId};
use netledger_store::StoreError;

/// A step's failure, as a definition sees it (and returns it: a definition's `Err` ends the
/// workflow). Classify failures where they happen (STYLE practice 5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// Worth another attempt (a timeout, a dropped connection, a device still rebooting). The
    /// engine retries with backoff up to the step's maximum attempts; once they are used up,
    /// [`crate::Ctx::step`] returns [`StepError::Fatal`] naming the last error.
    #[error("{0}")]
    Retryable(String),
    /// Not worth retrying (bad input, a device refusing the change). Returned by
    /// [`crate::Ctx::step`] as is; returned by a definition, the workflow ends `failed`.
    #[error("{0}")]
    Fatal(String),
    /// The workflow was cancelled and the definition has not acknowledged it with
    /// [`crate::Ctx::cancelled`]: steps, sleeps and waits refuse to run. Returned by a
    /// definition, the workflow ends `cancelled`.
    #[error("the workflow was cancelled")]
    Cancelled,
}

impl StepError {
    /// A retryable error from anything displayable.
    pub fn retryable(error: impl std::fmt::Display) -> Self {
        Self::Retryable(error.to_string())
    }

    /// A fatal error from anything displayable.
    pub fn fatal(error: impl std::fmt::Display) -> Self {
        Self::Fatal(error.to_string())
    }
}

/// What went wrong starting, signalling or running workflows.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No definition of this kind is registered with this engine.
    #[error(
        "no workflow definition `{kind}` is registered (this engine has: {available}); \
         register it in the Registry given to Engine::new"
    )]
    UnknownKind {
        /// The asked-for kind.
        kind: String,
        /// What is registered, `kind vN, ...`.
        available: String,
    },
    /// A definition with this kind and version is already registered.
    #[error("workflow definition `{kind}` v{version} is registered twice")]
    DuplicateDefinition {
        /// The kind.
        kind: String,
        /// The version.
        version: u32,
    },
    /// A device the new workflow needs is owned by another running workflow.
    #[error(
        "device {device} is owned by workflow {owner} ({owner_kind}) until it finishes; wait \
         for it, cancel it, or start with queue_if_busy to run after it"
    )]
    DeviceBusy {
        /// The busy device.
        device: DeviceId,
        /// The workflow that owns it.
        owner: WorkflowId,
        /// The owner's kind.
        owner_kind: String,
    },
    /// The idempotency key was used before for a workflow of another kind.
    #[error(
        "idempotency key `{key}` already started workflow {existing} of kind `{existing_kind}`, \
         not `{kind}`; use a new key for a different request"
    )]
    IdempotencyKeyReused {
        /// The key.
        key: String,
        /// The workflow it started.
        existing: WorkflowId,
        /// That workflow's kind.
        existing_kind: String,
        /// The kind asked for now.
        kind: String,
    },
    /// No such workflow in this tenant.
    #[error("workflow {0} does not exist in this tenant")]
    NotFound(WorkflowId),
    /// The workflow has finished; it takes no more signals.
    #[error("workflow {0} has finished; it takes no more signals")]
    Finished(WorkflowId),
    /// A value could not be serialized or a journal entry could not be read.
    #[error("workflow {workflow}: {detail}")]
    Journal {
        /// The workflow.
        workflow: WorkflowId,
        /// What is wrong.
        detail: String,
    },
    /// Invalid arguments.
    #[error("{0}")]
    Invalid(String),
    /// The event store refused or failed.
    #[error("event store error during {operation}")]
    Store {
        /// What the engine was doing.
        operation: &'static str,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// The database failed.
    #[error("database error during {operation}")]
    Database {
        /// What the engine was doing.
        operation: &'static str,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },
}

impl EngineError {
    pub(crate) fn db(operation: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::Database { operation, source }
    }

    pub(crate) fn store(operation: &'static str) -> impl FnOnce(StoreError) -> Self {
        move |source| Self::Store { operation, source }
    }
}

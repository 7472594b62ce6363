//! The crate's error type.

use netledger_store::StoreError;

/// What went wrong while projecting, replaying or querying read models.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// Reading events failed.
    #[error("reading events failed")]
    Store(#[from] StoreError),
    /// A read-model statement failed.
    #[error("database error during {operation}")]
    Database {
        /// What the projector or query was doing.
        operation: &'static str,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },
    /// No projector has this name.
    #[error("no projector is named `{name}`; the projectors are: {known}")]
    UnknownProjector {
        /// The refused name.
        name: String,
        /// The names that exist.
        known: String,
    },
    /// An event was written under a newer schema version than this build understands: the
    /// projector stops before it instead of skipping it, so nothing is lost.
    #[error(
        "event `{event_type}` at position {position} has schema version {found}; this build \
         reads up to version {supported}. Upgrade this process (projectors must be at least as \
         new as the writers), then it resumes from its checkpoint"
    )]
    NewerSchema {
        /// Global position of the event.
        position: i64,
        /// The event type.
        event_type: String,
        /// The stored schema version.
        found: u32,
        /// The newest version this build knows.
        supported: u32,
    },
    /// A pagination cursor did not come from a previous page of the same query.
    #[error("cursor `{cursor}` is not valid: pass the `next_cursor` of a previous page unchanged")]
    BadCursor {
        /// The refused cursor.
        cursor: String,
    },
    /// A replay stopped before it could commit; every read model is left as it was.
    #[error("replay aborted: {0}")]
    ReplayAborted(String),
}

impl ProjectionError {
    pub(crate) fn db(operation: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::Database { operation, source }
    }
}

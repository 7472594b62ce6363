//! The store's error type.

use netledger_domain::ExpectedVersion;

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream was not at the expected version; nothing was written.
    #[error("stream {stream} is at version {actual}, the append expected {expected:?}")]
    Conflict {
        /// The stream.
        stream: String,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// Where the stream actually is (0 = no stream).
        actual: u64,
    },
    /// An event with this id is already stored; nothing was written.
    #[error("event {event_id} is already stored")]
    DuplicateEvent {
        /// The event id (or the constraint detail when the id is not known).
        event_id: String,
    },
    /// The request is not valid (empty, too large, ...).
    #[error("invalid append: {0}")]
    Invalid(String),
    /// A row read back could not be turned into an event.
    #[error("event at position {position} is unreadable: {detail}")]
    Corrupt {
        /// Global position of the row.
        position: i64,
        /// What is wrong.
        detail: String,
    },
    /// The database refused or failed.
    #[error("database error during {operation}")]
    Database {
        /// What the store was doing.
        operation: &'static str,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },
    /// The store's background appender has stopped (the process is shutting down).
    #[error("the event store is shut down")]
    Closed,
}

impl StoreError {
    pub(crate) fn db(operation: &'static str) -> impl Fn(sqlx::Error) -> Self {
        move |source| Self::Database { operation, source }
    }
}

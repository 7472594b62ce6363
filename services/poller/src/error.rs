//! The poller's error type.

use netledger_store::StoreError;
use netledger_store::credentials::CredentialError;

/// What can stop the poller or one of its steps.
#[derive(Debug, thiserror::Error)]
pub enum PollerError {
    /// The database refused or failed.
    #[error("database error during {operation}")]
    Database {
        /// What the poller was doing.
        operation: &'static str,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Credentials could not be loaded or decrypted.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// The config archive failed.
    #[error(transparent)]
    Archive(#[from] netledger_archive::ArchiveError),
    /// A row or event the poller reads is malformed.
    #[error("malformed data: {0}")]
    Corrupt(String),
    /// This poller no longer holds the lease of the device's shard; it must stop polling it.
    #[error("the lease of shard {shard} (attempt {attempt}) is no longer held by this poller")]
    LeaseLost {
        /// The shard.
        shard: u32,
        /// The attempt this poller claimed.
        attempt: i64,
    },
    /// The settings are unusable.
    #[error("invalid poller settings: {0}")]
    Options(String),
    /// A background task ended unexpectedly.
    #[error("poller task failed: {0}")]
    Task(String),
}

impl PollerError {
    pub(crate) fn db(operation: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::Database { operation, source }
    }
}

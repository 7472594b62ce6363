//! PostgreSQL event store, checkpoints and read-model storage.

//! The durable workflow engine: task rows claimed with `FOR UPDATE SKIP LOCKED` under a
//! fenced lease, a journal stream per instance, timers, retries, signals and cancellation.

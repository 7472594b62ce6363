//! The fleet poller: leases devices from PostgreSQL, keeps a session per device, turns
//! observations into change-only events, runs a circuit breaker per device and writes metric
//! samples to the time-series tables.

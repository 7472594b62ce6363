//! What the binary's integration tests share: a private NATS server, and the platform as
//! real processes driven over HTTP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// The harness starts real processes: it passes the test environment's DATABASE_URL and
// NETLEDGER_LOG on to them.
#![allow(clippy::disallowed_methods)]

pub mod cluster;
pub mod nats;
pub mod platform;

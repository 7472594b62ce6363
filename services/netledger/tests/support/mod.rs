//! What the binary's integration tests share: a private NATS server, and the platform as
//! real processes driven over HTTP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod nats;
pub mod platform;

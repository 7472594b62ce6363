//! `netledger bench ...`: benchmarks that measure the real components on this machine.
//! Each takes `--json` and creates what it needs (a scratch database on the given server,
//! [`netledger_testkit::ScratchDb`]). They live here, next to the binary, so that no library
//! crate carries benchmark code or its dependencies (HTTP client, histograms, devsim).

pub mod api;
pub mod devsim;
pub mod engine;
pub mod eventstore;
pub mod poller;
pub mod replay;
pub mod workflows;

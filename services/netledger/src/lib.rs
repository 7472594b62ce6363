//! The `netledger` binary's library: configuration, process roles (relay, checkpointer,
//! migrations), the audit commands and the benchmarks. The only crate that reads the
//! environment and the system clock, and the one place that picks implementations.

pub mod audit;
pub mod bench;
/// Audit bundles v2 (export and offline verification) live in their own crate, shared with
/// the API's download.
pub use netledger_audit as bundle;
pub mod clock;
pub mod config;
pub mod keys;
pub mod relay;
pub mod roles;
pub mod supervise;

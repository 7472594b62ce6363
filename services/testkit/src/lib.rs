//! Netledger's test kit: what the tests, the benchmarks and the chaos workers share, so
//! that no library crate carries it.
//!
//! - [`scratch`]: a throw-away migrated database on a PostgreSQL server ([`ScratchDb`]).
//! - [`clock`]: the test clock, real time plus a movable offset ([`TestClock`]).
//! - [`workload`]: a realistic generated event workload (devices, workflows, rollouts).
//! - [`demo`]: registering a devsim fleet (its manifest) as managed devices.
//! - [`ssh_keys`]: deterministic SSH client keys ([`ssh_client_key`]).
//!
//! A dev-dependency of the library crates; only the `netledger` binary links it normally
//! (its `bench` commands and `all --demo-fleet`). Depends on the domain, the store and
//! devsim (`docs/architecture.md` has the rules).

pub mod clock;
pub mod demo;
pub mod scratch;
pub mod ssh_keys;
pub mod workload;

pub use clock::TestClock;
pub use demo::{DemoFleet, demo_device_id, register_demo_fleet};
pub use scratch::ScratchDb;
pub use ssh_keys::ssh_client_key;
pub use workload::{FillReport, WorkloadError, WorkloadSpec, fill};

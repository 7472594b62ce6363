//! Crash tests of the durable workflows, a development-only package: its binaries
//! (`engine-chaos-worker`, `netops-chaos-worker`) are worker processes that the tests in
//! `tests/` start and kill with SIGKILL (at random times, or at each planned crash point of
//! `netledger_engine::crash`). Nothing links this package; it keeps `anyhow`, `rustix` and the
//! chaos workers out of the engine and netops libraries.

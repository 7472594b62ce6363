//! Smoke tests of the benchmarks (`netledger bench ...`, `src/bench/`) against a real
//! PostgreSQL server: each runs a tiny configuration and checks the report's shape.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::sync::Arc;
use std::time::Duration;

use netledger_testkit::TestClock;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_api_reports_an_open_loop_run() {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL (scripts/test sets it)");
    let report = netledger::bench::api::bench_api(netledger::bench::api::ApiBenchArgs {
        database_url: url,
        devices: 120,
        rps: 100,
        duration: Duration::from_millis(1500),
        page_size: 50,
        clock: Arc::new(TestClock::new()),
    })
    .await
    .unwrap();
    assert_eq!(report.devices, 120);
    assert_eq!(report.requests, 150);
    assert_eq!(report.errors, 0);
    assert!(
        report.p50_ms > 0.0 && report.p50_ms <= report.p99_ms && report.p99_ms <= report.max_ms
    );
    let json = serde_json::to_value(&report).unwrap();
    for field in ["devices", "rps", "p50_ms", "p99_ms"] {
        assert!(json.get(field).is_some(), "{field}");
    }
}

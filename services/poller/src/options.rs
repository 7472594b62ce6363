//! The poller's settings (the binary maps its `[poller]` configuration onto these).

use std::time::Duration;

/// Circuit breaker settings, per device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerOptions {
    /// Consecutive failed polls that open the breaker.
    pub failures: u32,
    /// Backoff after the breaker opens; doubles with every further failure.
    pub base_backoff: Duration,
    /// Upper bound of the backoff.
    pub max_backoff: Duration,
}

impl Default for BreakerOptions {
    fn default() -> Self {
        Self {
            failures: 3,
            base_backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(30 * 60),
        }
    }
}

/// Everything the poller can be tuned with.
#[derive(Debug, Clone)]
pub struct PollerOptions {
    /// A name for this process in `poller_members` (host and pid, say).
    pub name: String,
    /// Number of shards the fleet is split into. The first poller to start creates them;
    /// later ones use the number already in the database.
    pub shards: u32,
    /// How long a shard lease lasts without a heartbeat.
    pub lease_ttl: Duration,
    /// How often leases are renewed and shards rebalanced (well under `lease_ttl`).
    pub heartbeat: Duration,
    /// How often the work table is brought up to date with the device events and changes
    /// to it are picked up.
    pub sync_interval: Duration,
    /// Polls running at once (each holds one device's session busy).
    pub max_concurrent_polls: usize,
    /// Exports (and archive writes) running at once.
    pub max_concurrent_exports: usize,
    /// Bound on one poll: connect, login and the status commands.
    pub poll_timeout: Duration,
    /// Bound on TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// Bound on one export (export, file read, file removal) and its archive write.
    pub export_timeout: Duration,
    /// Each interval is stretched or shortened by up to this fraction (0.0-0.5), so devices
    /// registered together do not stay in lockstep.
    pub jitter: f64,
    /// Per-device circuit breaker.
    pub breaker: BreakerOptions,
    /// Scheduled snapshot interval: the config is recorded in the archive this often (an
    /// event only when it changed).
    pub snapshot_interval: Duration,
    /// A full export to check for drift at least this often, even when the device's change
    /// indicator did not move (the indicator is not a complete record; see docs/poller.md).
    pub export_check_interval: Duration,
    /// Bound on reading who changed a drifted device (`/system/history` and `/user/active`,
    /// read together right after the export that found the drift). When it passes, or the
    /// read fails, the drift is recorded without them and says why.
    pub history_timeout: Duration,
    /// At most this many `/system/history` rows go into a drift event (newest first).
    pub history_rows: usize,
    /// Metric samples are written at least this often.
    pub metrics_flush_interval: Duration,
    /// Or as soon as this many rows are waiting.
    pub metrics_batch_rows: usize,
    /// Daily partitions created ahead of today.
    pub partitions_ahead_days: u32,
    /// Raw samples are kept this many days.
    pub raw_retention_days: u32,
    /// 5-minute rollups are kept this many days.
    pub rollup_retention_days: u32,
    /// A 5-minute bucket is rolled up once it ended this long ago (samples written late are
    /// not in the rollup).
    pub rollup_lag: Duration,
    /// Poll every device at this interval instead of its registered one (tests and
    /// benchmarks; registration refuses intervals under 5 s).
    pub interval_override: Option<Duration>,
    /// CA roots for devices registered with verified TLS (`TlsVerified`); without them such
    /// devices fail to connect with a clear error.
    pub tls_roots: Option<std::sync::Arc<rustls::RootCertStore>>,
    /// The operator's device-network policy: networks allowed for every tenant beyond the
    /// defaults (a demo fleet on loopback) and the platform's service endpoints; each
    /// tenant's own allowed networks are added per device. Checked on every address before
    /// each connect (`netledger-device-client`).
    pub device_networks: netledger_domain::device::network::DeviceNetworkPolicy,
}

impl Default for PollerOptions {
    fn default() -> Self {
        Self {
            name: "poller".to_owned(),
            shards: 64,
            lease_ttl: Duration::from_secs(15),
            heartbeat: Duration::from_secs(5),
            sync_interval: Duration::from_secs(1),
            max_concurrent_polls: 1024,
            max_concurrent_exports: 8,
            poll_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(5),
            export_timeout: Duration::from_secs(60),
            jitter: 0.1,
            breaker: BreakerOptions::default(),
            snapshot_interval: Duration::from_secs(24 * 3600),
            export_check_interval: Duration::from_secs(6 * 3600),
            history_timeout: Duration::from_secs(5),
            history_rows: 20,
            metrics_flush_interval: Duration::from_secs(2),
            metrics_batch_rows: 20_000,
            partitions_ahead_days: 3,
            raw_retention_days: 3,
            rollup_retention_days: 90,
            rollup_lag: Duration::from_secs(120),
            interval_override: None,
            tls_roots: None,
            device_networks: Default::default(),
        }
    }
}

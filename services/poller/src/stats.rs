//! Counters and the poll latency histogram of one poller process (for logs and the benchmark).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

/// Live counters, shared by the poller's tasks.
#[derive(Debug)]
pub struct Stats {
    polls_ok: AtomicU64,
    polls_failed: AtomicU64,
    events: AtomicU64,
    conflicts: AtomicU64,
    exports: AtomicU64,
    export_failures: AtomicU64,
    samples: AtomicU64,
    dropped_samples: AtomicU64,
    logins: AtomicU64,
    latency: Mutex<Option<Histogram<u64>>>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Successful polls.
    pub polls_ok: u64,
    /// Failed polls.
    pub polls_failed: u64,
    /// Events appended.
    pub events: u64,
    /// Appends that met a concurrent append and re-decided.
    pub conflicts: u64,
    /// Exports taken.
    pub exports: u64,
    /// Exports that failed.
    pub export_failures: u64,
    /// Samples written.
    pub samples: u64,
    /// Samples dropped (write failed).
    pub dropped_samples: u64,
    /// Logins (new sessions).
    pub logins: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Zeroed counters.
    pub fn new() -> Self {
        Self {
            polls_ok: AtomicU64::new(0),
            polls_failed: AtomicU64::new(0),
            events: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            exports: AtomicU64::new(0),
            export_failures: AtomicU64::new(0),
            samples: AtomicU64::new(0),
            dropped_samples: AtomicU64::new(0),
            logins: AtomicU64::new(0),
            // 1 µs .. 10 min, 3 significant digits (valid bounds: never `None`).
            latency: Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3).ok()),
        }
    }

    pub(crate) fn poll(&self, ok: bool, took: Duration) {
        if ok {
            self.polls_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.polls_failed.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        let mut h = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = h.as_mut() {
            h.saturating_record(micros);
        }
    }

    pub(crate) fn add_events(&self, n: u64) {
        self.events.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn conflict(&self) {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn export(&self, ok: bool) {
        if ok {
            self.exports.fetch_add(1, Ordering::Relaxed);
        } else {
            self.export_failures.fetch_add(1, Ordering::Relaxed);
        }
    }
    pub(crate) fn add_samples(&self, n: u64) {
        self.samples.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_dropped_samples(&self, n: u64) {
        self.dropped_samples.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn login(&self) {
        self.logins.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            polls_ok: self.polls_ok.load(Ordering::Relaxed),
            polls_failed: self.polls_failed.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            conflicts: self.conflicts.load(Ordering::Relaxed),
            exports: self.exports.load(Ordering::Relaxed),
            export_failures: self.export_failures.load(Ordering::Relaxed),
            samples: self.samples.load(Ordering::Relaxed),
            dropped_samples: self.dropped_samples.load(Ordering::Relaxed),
            logins: self.logins.load(Ordering::Relaxed),
        }
    }

    /// Poll latency at quantile `q` (0.0-1.0) since the last [`Stats::reset_latency`].
    pub fn latency_quantile(&self, q: f64) -> Duration {
        let h = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        Duration::from_micros(h.as_ref().map_or(0, |h| h.value_at_quantile(q)))
    }

    /// Clears the latency histogram (the benchmark measures a window).
    pub fn reset_latency(&self) {
        if let Some(h) = self
            .latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            h.reset();
        }
    }
}

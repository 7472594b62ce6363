//! Counters and the poll latency histogram of one poller process (for logs and the benchmark).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
    latency: Mutex<Latency>,
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
            latency: Mutex::new(Latency::new()),
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
        h.record(micros);
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
        Duration::from_micros(h.value_at_quantile(q))
    }

    /// Clears the latency histogram (the benchmark measures a window).
    pub fn reset_latency(&self) {
        self.latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reset();
    }
}

/// Sub-buckets per power of two above the exact range: values are kept to within 1/1024
/// (three significant digits, like an HDR histogram of that precision).
const SUB_BITS: u32 = 10;
/// Values below this are counted exactly.
const EXACT: u64 = 2 << SUB_BITS;
/// Largest value counted (about 18 minutes in µs); larger ones count as this.
const MAX_VALUE: u64 = (1 << 30) - 1;

/// A log-linear latency histogram in µs (1 µs .. 18 min, within 0.1%).
#[derive(Debug)]
struct Latency {
    counts: Vec<u64>,
    total: u64,
}

impl Latency {
    fn new() -> Self {
        Self {
            counts: vec![0; Self::index(MAX_VALUE) + 1],
            total: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < EXACT {
            return v as usize;
        }
        let e = 63 - v.leading_zeros(); // floor(log2 v) >= SUB_BITS + 1
        let shift = e - SUB_BITS;
        let sub = (v >> shift) - (1 << SUB_BITS);
        (EXACT + u64::from(e - SUB_BITS - 1) * (1 << SUB_BITS) + sub) as usize
    }

    /// The largest value counted in the bucket at `index`.
    fn highest(index: usize) -> u64 {
        let i = index as u64;
        if i < EXACT {
            return i;
        }
        let octave = (i - EXACT) >> SUB_BITS;
        let sub = (i - EXACT) & ((1 << SUB_BITS) - 1);
        let shift = octave + 1;
        (((1 << SUB_BITS) + sub + 1) << shift) - 1
    }

    fn record(&mut self, micros: u64) {
        let i = Self::index(micros.min(MAX_VALUE));
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
            self.total += 1;
        }
    }

    fn value_at_quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let want = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return Self::highest(i);
            }
        }
        MAX_VALUE
    }

    fn reset(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.total = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::Latency;

    #[test]
    fn quantiles_are_within_a_thousandth() {
        let mut h = Latency::new();
        for v in 1..=100_000u64 {
            h.record(v);
        }
        for (q, exact) in [(0.5, 50_000.0), (0.99, 99_000.0), (1.0, 100_000.0)] {
            let got = h.value_at_quantile(q) as f64;
            assert!((got - exact).abs() / exact < 0.001, "q {q}: {got}");
        }
        assert_eq!(h.value_at_quantile(0.00001), 1);
        h.reset();
        assert_eq!(h.value_at_quantile(0.5), 0);
    }

    #[test]
    fn every_value_lands_in_a_bucket_that_holds_it() {
        for v in [1, 2047, 2048, 2049, 4095, 4096, 1_000_000, super::MAX_VALUE] {
            let i = Latency::index(v);
            assert!(Latency::highest(i) >= v, "{v}");
            assert!(i == 0 || Latency::highest(i - 1) < v, "{v}");
        }
    }
}

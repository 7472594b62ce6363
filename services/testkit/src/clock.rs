//! The test clock: real time plus an offset a test can move forward (timers, lease expiry).
//! Tests, benchmarks and the chaos workers take time from it; the `netledger` binary has the
//! one production system clock (`netledger::clock::SystemClock`), and library code only sees
//! the injected [`Clock`] trait.

use std::sync::Mutex;
use std::time::Duration;

use netledger_domain::clock::Clock;
use time::OffsetDateTime;

/// Real time plus an offset (zero until [`TestClock::advance`]).
#[derive(Debug, Default)]
pub struct TestClock {
    offset: Mutex<time::Duration>,
}

impl TestClock {
    /// Real time, no offset.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by` (saturating).
    pub fn advance(&self, by: Duration) {
        let by = time::Duration::try_from(by).unwrap_or(time::Duration::MAX);
        let mut offset = self.offset.lock().unwrap_or_else(|p| p.into_inner());
        *offset = offset.saturating_add(by);
    }
}

impl Clock for TestClock {
    #[allow(clippy::disallowed_methods)] // the test clock is real time plus an offset
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + *self.offset.lock().unwrap_or_else(|p| p.into_inner())
    }
}

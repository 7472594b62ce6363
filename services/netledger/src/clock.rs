//! The system clock: the one production implementation of the injected `Clock`.

use netledger_domain::clock::Clock;
use time::OffsetDateTime;

/// Wall-clock time from the operating system.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the binary owns the real clock
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

//! Injected time. Library code never reads the system clock directly: the caller constructs
//! a [`SystemClock`] (production) or a [`ManualClock`] (tests) and hands it to the fleet.

use std::fmt;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::time::Duration;

/// Wall-clock time source (duration since the Unix epoch).
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Time since the Unix epoch.
    fn now(&self) -> Duration;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl SystemClock {
    /// A system clock.
    pub fn new() -> SystemClock {
        SystemClock
    }
}

impl Clock for SystemClock {
    // The one place devsim reads the system clock: the caller chose SystemClock.
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> Duration {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Duration>,
}

impl ManualClock {
    /// A manual clock at `start` since the epoch.
    pub fn new(start: Duration) -> ManualClock {
        ManualClock {
            now: Mutex::new(start),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut n = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *n += by;
    }

    /// Sets the clock.
    pub fn set(&self, to: Duration) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

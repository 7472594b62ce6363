//! The per-device circuit breaker, pure: consecutive failures open it, each further failure
//! doubles the backoff up to a maximum, a success closes it. While open the device is polled
//! only once per backoff (the half-open attempt). Transitions, not states, become events
//! (`DevicePollingSuspended` / `DevicePollingResumed`), decided against the device's folded
//! state so a poller that takes over a suspended device does not repeat the event.

use std::time::Duration;

use time::OffsetDateTime;

use crate::options::BreakerOptions;

/// What a recorded outcome did to the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing changed that anyone needs to hear about.
    None,
    /// The breaker opened: polls are suspended until `retry_at`.
    Opened {
        /// Consecutive failures so far.
        consecutive_failures: u32,
        /// When the half-open attempt is due.
        retry_at: OffsetDateTime,
    },
    /// It was open and the half-open attempt failed; the next one is at `retry_at`.
    StillOpen {
        /// When the next attempt is due.
        retry_at: OffsetDateTime,
    },
    /// It was open and a poll succeeded.
    Closed,
}

/// One device's breaker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Breaker {
    failures: u32,
    retry_at: Option<OffsetDateTime>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new() -> Self {
        Self::default()
    }

    /// A breaker for a device whose stream says polling is suspended (taken over from
    /// another poller): open, as if it had just reached the threshold.
    pub fn suspended(options: &BreakerOptions) -> Self {
        Self {
            failures: options.failures.max(1),
            retry_at: None,
        }
    }

    /// Whether the breaker is open.
    pub fn is_open(&self, options: &BreakerOptions) -> bool {
        self.failures >= options.failures.max(1)
    }

    /// Consecutive failures.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// When the next attempt is due while open.
    pub fn retry_at(&self) -> Option<OffsetDateTime> {
        self.retry_at
    }

    /// Records a failed poll at `now`.
    pub fn record_failure(&mut self, now: OffsetDateTime, options: &BreakerOptions) -> Transition {
        let threshold = options.failures.max(1);
        let was_open = self.failures >= threshold;
        self.failures = self.failures.saturating_add(1);
        if self.failures < threshold {
            return Transition::None;
        }
        let retry_at = now + backoff(self.failures - threshold, options);
        self.retry_at = Some(retry_at);
        if was_open {
            Transition::StillOpen { retry_at }
        } else {
            Transition::Opened {
                consecutive_failures: self.failures,
                retry_at,
            }
        }
    }

    /// Records a successful poll.
    pub fn record_success(&mut self, options: &BreakerOptions) -> Transition {
        let was_open = self.is_open(options);
        self.failures = 0;
        self.retry_at = None;
        if was_open {
            Transition::Closed
        } else {
            Transition::None
        }
    }
}

/// `base * 2^step`, capped at `max`.
pub fn backoff(step: u32, options: &BreakerOptions) -> Duration {
    let factor = 2u32.checked_pow(step.min(31)).unwrap_or(u32::MAX);
    options
        .base_backoff
        .checked_mul(factor)
        .unwrap_or(options.max_backoff)
        .min(options.max_backoff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> BreakerOptions {
        BreakerOptions {
            failures: 3,
            base_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(60),
        }
    }

    #[test]
    fn opens_at_the_threshold_backs_off_exponentially_and_closes_once() {
        let o = opts();
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let mut b = Breaker::new();
        assert_eq!(b.record_failure(t0, &o), Transition::None);
        assert_eq!(b.record_failure(t0, &o), Transition::None);
        assert!(!b.is_open(&o));
        assert_eq!(
            b.record_failure(t0, &o),
            Transition::Opened {
                consecutive_failures: 3,
                retry_at: t0 + Duration::from_secs(10)
            }
        );
        assert!(b.is_open(&o));
        let steps: Vec<Transition> = (0..4).map(|_| b.record_failure(t0, &o)).collect();
        assert_eq!(
            steps,
            [20, 40, 60, 60].map(|s| Transition::StillOpen {
                retry_at: t0 + Duration::from_secs(s)
            })
        );
        assert_eq!(b.record_success(&o), Transition::Closed);
        assert_eq!(b.record_success(&o), Transition::None);
        assert_eq!(b.failures(), 0);
    }

    #[test]
    fn a_suspended_device_taken_over_stays_open_until_a_success() {
        let o = opts();
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let mut b = Breaker::suspended(&o);
        assert!(b.is_open(&o));
        assert!(matches!(
            b.record_failure(t0, &o),
            Transition::StillOpen { .. }
        ));
        assert_eq!(b.record_success(&o), Transition::Closed);
    }

    #[test]
    fn backoff_never_overflows() {
        let o = opts();
        assert_eq!(backoff(u32::MAX, &o), Duration::from_secs(60));
        assert_eq!(backoff(0, &o), Duration::from_secs(10));
    }
}

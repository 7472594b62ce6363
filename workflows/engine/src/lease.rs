//! The local lease deadline: how long a worker may still act for a workflow without having
//! heard from PostgreSQL.
//!
//! A worker holds a workflow under a lease that its heartbeat renews. When heartbeats fail
//! (the worker is cut off from the database, or the database is slow), the lease runs out in
//! the database and another worker takes the workflow over, while this worker may still be
//! inside a step talking to a device. Fencing stops the stale worker's *journal* writes, not
//! its device commands. So the worker tracks, per run, the expiry of the last lease it
//! renewed *successfully* (computed from the time it sent the claim or heartbeat, so it is
//! never later than what the database holds) minus a safety margin: the **local deadline**.
//! Once the deadline passes, the worker drops the run (the definition's future and the step
//! body's future, so no further device command is sent) exactly as if it had crashed there,
//! and leaves the workflow to whoever claims it after the lease expires. Step bodies can ask
//! for the deadline ([`deadline`], [`lapsed`], `Ctx::lease_deadline`), so code that issues
//! device commands refuses to start one after it (the netops device path does).
//!
//! The margin is `(lease - heartbeat) / 2`: a heartbeat may take that long and still renew
//! in time, and the other half is left for a command in flight and for clock skew between
//! workers (lease 30 s, heartbeat 10 s: the deadline is 20 s after the last renewal was sent).

use std::sync::Arc;
use std::time::Duration;

use netledger_domain::clock::Clock;
use time::OffsetDateTime;
use tokio::sync::watch;

/// A run's local lease deadline, shared by the worker (which moves it on every successful
/// heartbeat) and the run (which stops when it passes).
#[derive(Clone)]
pub(crate) struct LeaseWatch {
    pub clock: Arc<dyn Clock>,
    pub deadline: watch::Receiver<OffsetDateTime>,
    /// How often the clock is re-read while waiting (an injected clock may jump).
    pub recheck: Duration,
}

impl LeaseWatch {
    pub(crate) fn deadline(&self) -> OffsetDateTime {
        *self.deadline.borrow()
    }

    pub(crate) fn lapsed(&self) -> bool {
        self.clock.now() >= self.deadline()
    }

    /// Resolves once the deadline has passed (never before; a renewal moves it on).
    pub(crate) async fn lapse(mut self) {
        let mut renewals = true;
        loop {
            let deadline = *self.deadline.borrow_and_update();
            let now = self.clock.now();
            if now >= deadline {
                return;
            }
            let wait = Duration::try_from(deadline - now)
                .unwrap_or_default()
                .min(self.recheck);
            if renewals {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    changed = self.deadline.changed() => renewals = changed.is_ok(),
                }
            } else {
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// The safety margin subtracted from a renewed lease's expiry (see the module docs).
pub(crate) fn margin(lease: Duration, heartbeat: Duration) -> Duration {
    lease.saturating_sub(heartbeat) / 2
}

tokio::task_local! {
    static LEASE: LeaseWatch;
}

/// Runs a step body with the run's lease deadline visible to [`deadline`] and [`lapsed`].
pub(crate) async fn scoped<F: std::future::Future>(lease: LeaseWatch, body: F) -> F::Output {
    LEASE.scope(lease, body).await
}

/// Inside a step body run by a worker: the local lease deadline (see the module docs); after
/// it the worker no longer knows that it owns the workflow. `None` outside a step body.
pub fn deadline() -> Option<OffsetDateTime> {
    LEASE.try_with(LeaseWatch::deadline).ok()
}

/// Inside a step body run by a worker: whether the local lease deadline has passed. Code that
/// issues device commands checks it before each and refuses (retryably) once it is `true`:
/// another worker may be running the same step. `false` outside a step body.
pub fn lapsed() -> bool {
    LEASE.try_with(LeaseWatch::lapsed).unwrap_or(false)
}

/// Runs `body` as if it were a step body whose local lease deadline is `deadline` on
/// `clock` (for tests of code that checks [`lapsed`]; a worker sets this up itself).
#[doc(hidden)]
pub async fn with_deadline<F: std::future::Future>(
    clock: Arc<dyn Clock>,
    deadline: OffsetDateTime,
    body: F,
) -> F::Output {
    let (_renewals, watch) = watch::channel(deadline);
    let lease = LeaseWatch {
        clock,
        deadline: watch,
        recheck: Duration::from_millis(100),
    };
    scoped(lease, body).await
}

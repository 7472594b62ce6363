//! One `LISTEN netledger_events` per process, fanned out to every subscriber in it.
//!
//! Every append notifies `netledger_events` with the new head position
//! ([`crate::append`]). A [`Notifier`] holds ONE pool connection that listens and publishes
//! the highest position it heard on a `tokio::sync::watch` channel; any number of
//! subscriptions and live-event streams wait on that channel instead of each holding a
//! listener connection of their own (which would let open live streams exhaust the pool).
//! A `watch` keeps only the newest value, so a slow subscriber never lags or blocks the
//! others: it wakes once and reads the store from its own position. Notifications are
//! only hints: subscribers poll as well, so a lost notification or a dropped listener costs
//! at most one poll interval. The listener reconnects (1 s apart) after a failure and wakes
//! everyone when it is back, since notifications may have been missed meanwhile.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The channel appends notify.
pub const CHANNEL: &str = "netledger_events";

/// A process-wide wake-up source for "new events were committed". Cheap to clone; the
/// listener task stops when the last clone is dropped.
#[derive(Clone)]
pub struct Notifier {
    rx: watch::Receiver<i64>,
    _task: Arc<AbortOnDrop>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("head", &*self.rx.borrow())
            .finish()
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Notifier {
    /// Starts the listener on one connection of `pool` (call inside a tokio runtime).
    pub fn start(pool: PgPool) -> Self {
        let (tx, rx) = watch::channel(0i64);
        let task = tokio::spawn(listen(pool, tx));
        Self {
            rx,
            _task: Arc::new(AbortOnDrop(task)),
        }
    }

    /// A receiver that turns "changed" at each notification (its value: the highest head
    /// position heard so far; 0 before the first).
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        let mut rx = self.rx.clone();
        rx.mark_unchanged();
        rx
    }
}

async fn listen(pool: PgPool, wake: watch::Sender<i64>) {
    loop {
        match PgListener::connect_with(&pool).await {
            Ok(mut listener) => match listener.listen(CHANNEL).await {
                Ok(()) => {
                    // Notifications may have been missed while there was no listener.
                    wake.send_modify(|_| {});
                    loop {
                        match listener.recv().await {
                            Ok(n) => {
                                let position = n.payload().parse::<i64>().unwrap_or(0);
                                wake.send_modify(|h| *h = (*h).max(position));
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, "event listener lost; subscribers poll");
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "LISTEN failed; subscribers poll"),
            },
            Err(e) => {
                tracing::debug!(error = %e, "event listener connection failed; subscribers poll")
            }
        }
        if wake.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

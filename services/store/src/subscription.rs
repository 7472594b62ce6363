//! Catch-up subscriptions: every committed event exactly once, in global order, then live.
//!
//! Correctness rests on the append design (positions become visible in order, see
//! [`crate::append`]), so the subscription only has to read `position > last_seen` in
//! order. `LISTEN netledger_events` is a wake-up hint; a periodic poll covers a missed
//! notification or a dropped listener connection. A subscription given a process-wide
//! [`Notifier`] waits on it and holds no connection of its own between reads (live-event
//! streams do this: one listener per process however many streams are open); without one
//! it opens its own listener on first wait (tools, replay, benchmarks).
//!
//! While catching up (the last batch was full), the subscription reads the next batch in the
//! background while the caller handles the current one, so reading and handling overlap. A
//! read ahead that found nothing is not trusted: the next call reads again, so being caught
//! up is always decided by a fresh query.

use std::time::Duration;

use netledger_domain::RecordedEvent;
use sqlx::postgres::PgListener;
use tokio::task::JoinHandle;

use crate::error::StoreError;
use crate::notify::Notifier;
use crate::read::EventReader;

/// A catch-up subscription over an [`EventReader`]'s scope.
#[derive(Debug)]
pub struct Subscription {
    reader: EventReader,
    after: i64,
    batch: i64,
    listener: Option<PgListener>,
    notifier: Option<tokio::sync::watch::Receiver<i64>>,
    poll: Duration,
    category: Option<String>,
    ahead: Option<ReadAhead>,
}

/// A read of the batch after `after`, running in the background.
#[derive(Debug)]
struct ReadAhead {
    after: i64,
    task: JoinHandle<Result<Vec<RecordedEvent>, StoreError>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(ahead) = self.ahead.take() {
            ahead.task.abort();
        }
    }
}

impl Subscription {
    /// Subscribes from global position `after` (exclusive; 0 = from the beginning).
    pub fn new(reader: EventReader, after: i64, batch: i64) -> Self {
        Self {
            reader,
            after,
            batch: batch.max(1),
            listener: None,
            notifier: None,
            poll: Duration::from_millis(500),
            category: None,
            ahead: None,
        }
    }

    /// Only events of one category.
    pub fn category(mut self, category: &str) -> Self {
        self.category = Some(category.to_owned());
        self
    }

    /// Waits on the process-wide `notifier` instead of a listener connection of its own.
    pub fn notifier(mut self, notifier: &Notifier) -> Self {
        self.notifier = Some(notifier.subscribe());
        self
    }

    /// How long to wait for a notification before polling anyway.
    pub fn poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// The last position handed out.
    pub fn position(&self) -> i64 {
        self.after
    }

    /// The next batch of events (never empty); waits until there is one.
    pub async fn next_batch(
        &mut self,
        pool: &sqlx::PgPool,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        loop {
            if let Some(batch) = self.try_next_batch().await? {
                return Ok(batch);
            }
            self.wait(pool).await;
        }
    }

    /// The next batch if one is there now.
    pub async fn try_next_batch(&mut self) -> Result<Option<Vec<RecordedEvent>>, StoreError> {
        let mut events = Vec::new();
        if let Some(ahead) = self.ahead.take()
            && ahead.after == self.after
        {
            // A failed or empty read ahead is retried below with a fresh query.
            if let Ok(Ok(read)) = ahead.task.await {
                events = read;
            }
        }
        if events.is_empty() {
            events = read_batch(
                self.reader.clone(),
                self.category.clone(),
                self.after,
                self.batch,
            )
            .await?;
        }
        match events.last() {
            Some(last) => {
                self.after = last.position;
                // A full batch means there is probably more: start reading it now, unless
                // the subscription runs outside a tokio runtime's reach.
                if i64::try_from(events.len()).unwrap_or(i64::MAX) >= self.batch
                    && let Ok(runtime) = tokio::runtime::Handle::try_current()
                {
                    self.ahead = Some(ReadAhead {
                        after: self.after,
                        task: runtime.spawn(read_batch(
                            self.reader.clone(),
                            self.category.clone(),
                            self.after,
                            self.batch,
                        )),
                    });
                }
                Ok(Some(events))
            }
            None => Ok(None),
        }
    }

    async fn wait(&mut self, pool: &sqlx::PgPool) {
        if let Some(rx) = self.notifier.as_mut() {
            match tokio::time::timeout(self.poll, rx.changed()).await {
                Ok(Ok(())) | Err(_) => {}
                // The notifier stopped: poll (never fall back to a connection of our own).
                Ok(Err(_)) => tokio::time::sleep(self.poll).await,
            }
            return;
        }
        if self.listener.is_none() {
            match PgListener::connect_with(pool).await {
                Ok(mut l) => match l.listen("netledger_events").await {
                    Ok(()) => self.listener = Some(l),
                    Err(e) => tracing::debug!(error = %e, "LISTEN failed; polling"),
                },
                Err(e) => tracing::debug!(error = %e, "listener connection failed; polling"),
            }
        }
        match self.listener.as_mut() {
            Some(l) => match tokio::time::timeout(self.poll, l.try_recv()).await {
                Ok(Ok(Some(_))) | Err(_) => {}
                Ok(Ok(None)) | Ok(Err(_)) => self.listener = None,
            },
            None => tokio::time::sleep(self.poll).await,
        }
    }
}

async fn read_batch(
    reader: EventReader,
    category: Option<String>,
    after: i64,
    batch: i64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    match category {
        Some(c) => reader.read_category(&c, after, batch).await,
        None => reader.read_all(after, batch).await,
    }
}

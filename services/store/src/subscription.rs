//! Catch-up subscriptions: every committed event exactly once, in global order, then live.
//!
//! Correctness rests on the append design (positions become visible in order, see
//! [`crate::append`]), so the subscription only has to read `position > last_seen` in
//! order. `LISTEN netledger_events` is a wake-up hint; a periodic poll covers a missed
//! notification or a dropped listener connection.

use std::time::Duration;

use netledger_domain::RecordedEvent;
use sqlx::postgres::PgListener;

use crate::error::StoreError;
use crate::read::EventReader;

/// A catch-up subscription over an [`EventReader`]'s scope.
#[derive(Debug)]
pub struct Subscription {
    reader: EventReader,
    after: i64,
    batch: i64,
    listener: Option<PgListener>,
    poll: Duration,
    category: Option<String>,
}

impl Subscription {
    /// Subscribes from global position `after` (exclusive; 0 = from the beginning).
    pub fn new(reader: EventReader, after: i64, batch: i64) -> Self {
        Self {
            reader,
            after,
            batch: batch.max(1),
            listener: None,
            poll: Duration::from_millis(500),
            category: None,
        }
    }

    /// Only events of one category.
    pub fn category(mut self, category: &str) -> Self {
        self.category = Some(category.to_owned());
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
        let events = match &self.category {
            Some(c) => self.reader.read_category(c, self.after, self.batch).await?,
            None => self.reader.read_all(self.after, self.batch).await?,
        };
        match events.last() {
            Some(last) => {
                self.after = last.position;
                Ok(Some(events))
            }
            None => Ok(None),
        }
    }

    async fn wait(&mut self, pool: &sqlx::PgPool) {
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

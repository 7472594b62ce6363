//! Appending events: optimistic concurrency per stream, gapless global positions assigned in
//! commit order, and the per-stream hash chain.
//!
//! Every append runs the same few statements while holding the row lock on
//! `event_log_head`: read the stream heads, check expected versions, assign positions, insert,
//! advance the head. Because the lock is held until commit and PostgreSQL makes a transaction
//! visible before it releases its locks, transactions that append become visible in position
//! order: a reader that has seen position P can never later find a smaller one.
//!
//! To keep that serialization from limiting throughput, [`EventStore::append`] hands requests
//! to a background appender that group-commits whatever is queued into one transaction (each
//! request still gets its own conflict check and result). [`append_in_transaction`] runs the
//! same code inside a caller's transaction, for callers that must write other rows atomically
//! with their events.

use netledger_domain::canonical::{Content, content_hash};
use netledger_domain::{ExpectedVersion, NewEvent, StreamName, TenantId};
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

use crate::error::StoreError;

/// One append: events for one stream of one tenant, with the version the stream must be at.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    /// Owning tenant.
    pub tenant: TenantId,
    /// Target stream.
    pub stream: StreamName,
    /// Required current version.
    pub expected: ExpectedVersion,
    /// Events, in order.
    pub events: Vec<NewEvent>,
}

/// What an append produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// The stream's version after the append (the version of its last new event).
    pub stream_version: u64,
    /// Global position of the first new event.
    pub first_position: i64,
    /// Global position of the last new event (positions are contiguous).
    pub last_position: i64,
}

impl AppendOutcome {
    /// The global positions of the new events.
    pub fn positions(&self) -> std::ops::RangeInclusive<i64> {
        self.first_position..=self.last_position
    }
}

/// Tuning for the background appender.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// At most this many events go into one group commit.
    pub max_batch_events: usize,
    /// At most this many events in one append request.
    pub max_events_per_append: usize,
    /// Requests waiting for the appender before callers wait for room.
    pub queue_depth: usize,
    /// Appender tasks (each with its own connection). Two keep the append lock busy: one
    /// commits while the next call is already waiting on the lock inside PostgreSQL.
    pub appenders: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_batch_events: 4_000,
            max_events_per_append: 10_000,
            queue_depth: 4_096,
            appenders: 1,
        }
    }
}

struct Pending {
    request: AppendRequest,
    reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

/// The event store's write side (tenant-scoped, role `netledger_app`).
#[derive(Debug, Clone)]
pub struct EventStore {
    sender: mpsc::Sender<Pending>,
    options: StoreOptions,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("stream", &self.request.stream)
            .finish()
    }
}

impl EventStore {
    /// Starts the background appender on `app_pool` (must be the `netledger_app` role or
    /// another role under row-level security). Must be called inside a tokio runtime.
    pub fn start(app_pool: PgPool, options: StoreOptions) -> Self {
        let (sender, receiver) = mpsc::channel(options.queue_depth.max(1));
        let receiver = std::sync::Arc::new(Mutex::new(receiver));
        for _ in 0..options.appenders.max(1) {
            tokio::spawn(run_appender(app_pool.clone(), receiver.clone(), options));
        }
        Self { sender, options }
    }

    /// Appends `events` to `stream` if it is at `expected`; returns the new version and
    /// positions, or [`StoreError::Conflict`] with the actual version.
    pub async fn append(
        &self,
        tenant: TenantId,
        stream: &StreamName,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        let request = AppendRequest {
            tenant,
            stream: stream.clone(),
            expected,
            events,
        };
        validate(&request, &self.options)?;
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Pending { request, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

fn validate(request: &AppendRequest, options: &StoreOptions) -> Result<(), StoreError> {
    if request.events.is_empty() {
        return Err(StoreError::Invalid(
            "an append needs at least one event".to_owned(),
        ));
    }
    if request.events.len() > options.max_events_per_append {
        return Err(StoreError::Invalid(format!(
            "{} events in one append; the limit is {}",
            request.events.len(),
            options.max_events_per_append
        )));
    }
    for e in &request.events {
        if contains_nul(e.payload()) {
            return Err(StoreError::Invalid(format!(
                "event {} ({}) has a NUL character in its payload, which PostgreSQL jsonb cannot store",
                e.event_id(),
                e.event_type()
            )));
        }
    }
    Ok(())
}

fn contains_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(contains_nul),
        Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

async fn run_appender(
    pool: PgPool,
    receiver: std::sync::Arc<Mutex<mpsc::Receiver<Pending>>>,
    options: StoreOptions,
) {
    loop {
        let batch = {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else {
                return;
            };
            let mut events = first.request.events.len();
            let mut batch = vec![first];
            while events < options.max_batch_events {
                match receiver.try_recv() {
                    Ok(next) => {
                        events += next.request.events.len();
                        batch.push(next);
                    }
                    Err(_) => break,
                }
            }
            batch
        };
        let started = std::time::Instant::now();
        let size = batch.len();
        commit_batch(&pool, batch).await;
        tracing::trace!(
            requests = size,
            micros = started.elapsed().as_micros() as u64,
            "group commit"
        );
    }
}

/// Commits a batch; if the transaction as a whole fails, retries each request on its own so
/// one bad request cannot fail the others.
async fn commit_batch(pool: &PgPool, batch: Vec<Pending>) {
    let requests: Vec<&AppendRequest> = batch.iter().map(|p| &p.request).collect();
    match write_and_commit(pool, &requests).await {
        Ok(results) => {
            for (pending, result) in batch.into_iter().zip(results) {
                let _ = pending.reply.send(result);
            }
        }
        Err(err) if batch.len() == 1 => {
            if let Some(pending) = batch.into_iter().next() {
                let _ = pending.reply.send(Err(err));
            }
        }
        Err(err) => {
            tracing::debug!(error = %err, size = batch.len(), "group commit failed; retrying requests one by one");
            for pending in batch {
                let result = match write_and_commit(pool, &[&pending.request]).await {
                    Ok(mut results) => results.pop().unwrap_or(Err(StoreError::Closed)),
                    Err(err) => Err(err),
                };
                let _ = pending.reply.send(result);
            }
        }
    }
}

async fn write_and_commit(
    pool: &PgPool,
    requests: &[&AppendRequest],
) -> Result<Vec<Result<AppendOutcome, StoreError>>, StoreError> {
    let single_tenant = requests.windows(2).all(|w| w[0].tenant == w[1].tenant);
    if single_tenant {
        // One statement: its implicit transaction commits with it, one round trip.
        let mut conn = pool
            .acquire()
            .await
            .map_err(StoreError::db("acquire connection"))?;
        return write_batch(&mut conn, requests).await;
    }
    let mut tx = pool.begin().await.map_err(StoreError::db("begin append"))?;
    let results = write_batch(&mut tx, requests).await?;
    tx.commit()
        .await
        .map_err(map_insert_error("commit append"))?;
    Ok(results)
}

/// Appends inside the caller's transaction (which must run as a role under row-level
/// security). Takes the append lock: commit soon after, the lock is held until then.
pub async fn append_in_transaction(
    conn: &mut PgConnection,
    request: &AppendRequest,
) -> Result<AppendOutcome, StoreError> {
    validate(request, &StoreOptions::default())?;
    let mut results = write_batch(conn, &[request]).await?;
    results.pop().unwrap_or(Err(StoreError::Closed))
}

fn map_insert_error(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| {
        if let Some(db) = source.as_database_error()
            && db.constraint() == Some("events_event_id")
        {
            return StoreError::DuplicateEvent {
                event_id: db.message().to_owned(),
            };
        }
        StoreError::Database { operation, source }
    }
}

/// One tenant's share of a batch, as the arrays `netledger_append` takes.
#[derive(Default)]
struct Columns {
    stream: Vec<String>,
    category: Vec<String>,
    expected: Vec<i64>,
    count: Vec<i32>,
    event_id: Vec<Uuid>,
    event_type: Vec<String>,
    schema_version: Vec<i32>,
    payload: Vec<String>,
    actor: Vec<String>,
    causation: Vec<Uuid>,
    correlation: Vec<Uuid>,
    content_hash: Vec<Vec<u8>>,
}

impl Columns {
    fn push(&mut self, r: &AppendRequest, scratch: &mut Vec<u8>) {
        self.stream.push(r.stream.as_str().to_owned());
        self.category.push(r.stream.category().to_owned());
        self.expected.push(match r.expected {
            ExpectedVersion::Any => -1,
            ExpectedVersion::NoStream => 0,
            ExpectedVersion::Exact(n) => i64::try_from(n).unwrap_or(i64::MAX),
        });
        self.count
            .push(i32::try_from(r.events.len()).unwrap_or(i32::MAX));
        for e in &r.events {
            let metadata = e.metadata();
            let content = Content {
                tenant_id: &r.tenant,
                stream: &r.stream,
                event_id: &e.event_id(),
                event_type: e.event_type(),
                schema_version: e.schema_version(),
                metadata,
                payload: e.payload(),
            };
            self.content_hash
                .push(content_hash(content, scratch).to_vec());
            self.event_id.push(*e.event_id().as_uuid());
            self.event_type.push(e.event_type().to_owned());
            self.schema_version
                .push(i32::try_from(e.schema_version()).unwrap_or(i32::MAX));
            self.payload.push(e.payload().to_string());
            self.actor
                .push(serde_json::to_string(&metadata.actor).unwrap_or_default());
            self.causation.push(metadata.causation_id);
            self.correlation.push(metadata.correlation_id);
        }
    }
}

/// The shared core: one `netledger_append` call per tenant in the batch. Returns one result
/// per request; an `Err` means the statement failed and the transaction must be rolled back.
async fn write_batch(
    conn: &mut PgConnection,
    requests: &[&AppendRequest],
) -> Result<Vec<Result<AppendOutcome, StoreError>>, StoreError> {
    let mut results: Vec<Option<Result<AppendOutcome, StoreError>>> =
        requests.iter().map(|_| None).collect();
    let mut tenants: Vec<TenantId> = Vec::new();
    for r in requests {
        if !tenants.contains(&r.tenant) {
            tenants.push(r.tenant);
        }
    }
    let mut scratch = Vec::with_capacity(1024);
    for tenant in tenants {
        let indices: Vec<usize> = (0..requests.len())
            .filter(|&i| requests[i].tenant == tenant)
            .collect();
        let mut cols = Columns::default();
        for &i in &indices {
            cols.push(requests[i], &mut scratch);
        }
        let rows = sqlx::query(
            "SELECT req, ok, version, first_position, last_position \
             FROM netledger_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(tenant.as_uuid())
        .bind(cols.stream)
        .bind(cols.category)
        .bind(cols.expected)
        .bind(cols.count)
        .bind(cols.event_id)
        .bind(cols.event_type)
        .bind(cols.schema_version)
        .bind(cols.payload)
        .bind(cols.actor)
        .bind(cols.causation)
        .bind(cols.correlation)
        .bind(cols.content_hash)
        .fetch_all(&mut *conn)
        .await
        .map_err(map_insert_error("append events"))?;
        for row in rows {
            let get = |e: sqlx::Error| StoreError::Database {
                operation: "read append result",
                source: e,
            };
            let req: i32 = row.try_get("req").map_err(get)?;
            let ok: bool = row.try_get("ok").map_err(get)?;
            let version: i64 = row.try_get("version").map_err(get)?;
            let Some(&i) = usize::try_from(req)
                .ok()
                .and_then(|r| indices.get(r.wrapping_sub(1)))
            else {
                continue;
            };
            let r = requests[i];
            let version_u = u64::try_from(version).unwrap_or(0);
            results[i] = Some(if ok {
                let first: Option<i64> = row.try_get("first_position").map_err(get)?;
                let last: Option<i64> = row.try_get("last_position").map_err(get)?;
                Ok(AppendOutcome {
                    stream_version: version_u,
                    first_position: first.unwrap_or(0),
                    last_position: last.unwrap_or(0),
                })
            } else {
                Err(StoreError::Conflict {
                    stream: r.stream.as_str().to_owned(),
                    expected: r.expected,
                    actual: version_u,
                })
            });
        }
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or(Err(StoreError::Closed)))
        .collect())
}

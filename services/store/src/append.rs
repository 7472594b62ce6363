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

use std::collections::HashMap;

use netledger_domain::canonical::{GENESIS_HASH, HashedFields, event_hash};
use netledger_domain::{ExpectedVersion, NewEvent, StreamName, TenantId};
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Row};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::db::set_tenant;
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
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_batch_events: 4_000,
            max_events_per_append: 10_000,
            queue_depth: 4_096,
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
        tokio::spawn(run_appender(app_pool, receiver, options));
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

async fn run_appender(pool: PgPool, mut receiver: mpsc::Receiver<Pending>, options: StoreOptions) {
    while let Some(first) = receiver.recv().await {
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
        commit_batch(&pool, batch).await;
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

#[derive(Default)]
struct Columns {
    position: Vec<i64>,
    tenant_prev: Vec<i64>,
    stream: Vec<String>,
    category: Vec<String>,
    version: Vec<i64>,
    event_id: Vec<Uuid>,
    event_type: Vec<String>,
    schema_version: Vec<i32>,
    payload: Vec<String>,
    actor: Vec<String>,
    causation: Vec<Uuid>,
    correlation: Vec<Uuid>,
    prev_hash: Vec<Vec<u8>>,
    hash: Vec<Vec<u8>>,
}

/// The shared core: lock, check, assign, hash, insert. Returns one result per request; an
/// `Err` means the transaction failed as a whole and must be rolled back.
async fn write_batch(
    conn: &mut PgConnection,
    requests: &[&AppendRequest],
) -> Result<Vec<Result<AppendOutcome, StoreError>>, StoreError> {
    let head = sqlx::query(
        "SELECT last_position, greatest(clock_timestamp(), last_recorded_at) AS now \
         FROM event_log_head WHERE id FOR UPDATE",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(StoreError::db("lock event log head"))?;
    let mut last_position: i64 = head
        .try_get("last_position")
        .map_err(StoreError::db("read head"))?;
    let recorded_at: OffsetDateTime = head.try_get("now").map_err(StoreError::db("read head"))?;

    let mut results: Vec<Option<Result<AppendOutcome, StoreError>>> =
        requests.iter().map(|_| None).collect();
    // Group by tenant, keeping request order within each tenant.
    let mut tenants: Vec<TenantId> = Vec::new();
    for r in requests {
        if !tenants.contains(&r.tenant) {
            tenants.push(r.tenant);
        }
    }
    let mut scratch = Vec::with_capacity(1024);
    for tenant in tenants {
        set_tenant(conn, tenant).await?;
        let indices: Vec<usize> = (0..requests.len())
            .filter(|&i| requests[i].tenant == tenant)
            .collect();
        let mut names: Vec<String> = indices
            .iter()
            .map(|&i| requests[i].stream.as_str().to_owned())
            .collect();
        names.sort_unstable();
        names.dedup();
        let rows = sqlx::query(
            "SELECT s.stream, h.version, h.hash, \
                    (SELECT max(position) FROM events WHERE tenant_id = $1) AS tenant_last \
             FROM unnest($2::text[]) AS s(stream) \
             LEFT JOIN LATERAL (SELECT version, hash FROM events e \
                                WHERE e.tenant_id = $1 AND e.stream = s.stream \
                                ORDER BY version DESC LIMIT 1) h ON true",
        )
        .bind(tenant.as_uuid())
        .bind(&names)
        .fetch_all(&mut *conn)
        .await
        .map_err(StoreError::db("read stream heads"))?;
        let mut heads: HashMap<String, (i64, [u8; 32])> = HashMap::with_capacity(rows.len());
        let mut tenant_last: i64 = 0;
        for row in rows {
            let stream: String = row
                .try_get("stream")
                .map_err(StoreError::db("read stream heads"))?;
            let version: Option<i64> = row
                .try_get("version")
                .map_err(StoreError::db("read stream heads"))?;
            let hash: Option<Vec<u8>> = row
                .try_get("hash")
                .map_err(StoreError::db("read stream heads"))?;
            tenant_last = row
                .try_get::<Option<i64>, _>("tenant_last")
                .map_err(StoreError::db("read stream heads"))?
                .unwrap_or(0);
            let hash = match hash {
                Some(h) => <[u8; 32]>::try_from(h.as_slice()).map_err(|_| StoreError::Corrupt {
                    position: 0,
                    detail: format!("stream {stream} head hash is not 32 bytes"),
                })?,
                None => GENESIS_HASH,
            };
            heads.insert(stream, (version.unwrap_or(0), hash));
        }

        let mut cols = Columns::default();
        for &i in &indices {
            let r = requests[i];
            let (current, mut prev_hash) = heads
                .get(r.stream.as_str())
                .copied()
                .unwrap_or((0, GENESIS_HASH));
            let current_u = u64::try_from(current).unwrap_or(0);
            if !r.expected.admits(current_u) {
                results[i] = Some(Err(StoreError::Conflict {
                    stream: r.stream.as_str().to_owned(),
                    expected: r.expected,
                    actual: current_u,
                }));
                continue;
            }
            let first_position = last_position + 1;
            let mut version = current;
            for e in &r.events {
                version += 1;
                last_position += 1;
                let metadata = e.metadata();
                let fields = HashedFields {
                    position: last_position,
                    tenant_prev_position: tenant_last,
                    tenant_id: &r.tenant,
                    stream: &r.stream,
                    version,
                    event_id: &e.event_id(),
                    event_type: e.event_type(),
                    schema_version: e.schema_version(),
                    recorded_at,
                    metadata,
                    payload: e.payload(),
                };
                let hash = event_hash(&prev_hash, fields, &mut scratch);
                cols.position.push(last_position);
                cols.tenant_prev.push(tenant_last);
                cols.stream.push(r.stream.as_str().to_owned());
                cols.category.push(r.stream.category().to_owned());
                cols.version.push(version);
                cols.event_id.push(*e.event_id().as_uuid());
                cols.event_type.push(e.event_type().to_owned());
                cols.schema_version
                    .push(i32::try_from(e.schema_version()).unwrap_or(i32::MAX));
                cols.payload.push(e.payload().to_string());
                cols.actor
                    .push(serde_json::to_string(&metadata.actor).unwrap_or_default());
                cols.causation.push(metadata.causation_id);
                cols.correlation.push(metadata.correlation_id);
                cols.prev_hash.push(prev_hash.to_vec());
                cols.hash.push(hash.to_vec());
                prev_hash = hash;
                tenant_last = last_position;
            }
            heads.insert(r.stream.as_str().to_owned(), (version, prev_hash));
            results[i] = Some(Ok(AppendOutcome {
                stream_version: u64::try_from(version).unwrap_or(0),
                first_position,
                last_position,
            }));
        }
        if !cols.position.is_empty() {
            insert(conn, tenant, recorded_at, cols).await?;
        }
    }

    sqlx::query(
        "WITH h AS (UPDATE event_log_head SET last_position = $1, last_recorded_at = $2 WHERE id \
         RETURNING last_position) SELECT pg_notify('netledger_events', last_position::text) FROM h",
    )
    .bind(last_position)
    .bind(recorded_at)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::db("advance event log head"))?;

    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or(Err(StoreError::Closed)))
        .collect())
}

async fn insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    recorded_at: OffsetDateTime,
    c: Columns,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO events (position, tenant_prev_position, tenant_id, stream, category, version, \
            event_id, event_type, schema_version, payload, actor, causation_id, correlation_id, \
            recorded_at, prev_hash, hash) \
         SELECT t.p, t.tp, $1, t.s, t.c, t.v, t.eid, t.et, t.sv, t.pl::jsonb, t.ac::jsonb, t.ca, t.co, \
                $2, t.ph, t.h \
         FROM unnest($3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::bigint[], $8::uuid[], \
                     $9::text[], $10::int[], $11::text[], $12::text[], $13::uuid[], $14::uuid[], \
                     $15::bytea[], $16::bytea[]) \
              AS t(p, tp, s, c, v, eid, et, sv, pl, ac, ca, co, ph, h)",
    )
    .bind(tenant.as_uuid())
    .bind(recorded_at)
    .bind(c.position)
    .bind(c.tenant_prev)
    .bind(c.stream)
    .bind(c.category)
    .bind(c.version)
    .bind(c.event_id)
    .bind(c.event_type)
    .bind(c.schema_version)
    .bind(c.payload)
    .bind(c.actor)
    .bind(c.causation)
    .bind(c.correlation)
    .bind(c.prev_hash)
    .bind(c.hash)
    .execute(conn)
    .await
    .map_err(map_insert_error("insert events"))?;
    Ok(())
}

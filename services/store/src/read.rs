//! Reading events: a stream forward or backward, everything or one category from a global
//! position, and history as of a time. Tenant-scoped readers run each query in a transaction
//! scoped to their tenant (row-level security); the system reader sees every tenant.

use futures::TryStreamExt;
use netledger_domain::{Actor, EventId, EventMetadata, RecordedEvent, StreamName, TenantId};
use sqlx::postgres::{PgRow, PgValueFormat};
use sqlx::{Column, PgPool, Row, TypeInfo, ValueRef};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::set_tenant;
use crate::error::StoreError;

/// Which events a reader may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadScope {
    /// One tenant, enforced by row-level security (role `netledger_app`).
    Tenant(TenantId),
    /// Every tenant, optionally narrowed to one (role `netledger_system`).
    System(Option<TenantId>),
}

/// Order of a stream read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Oldest first, from a version upward.
    Forward,
    /// Newest first, from a version downward.
    Backward,
}

/// Reads events within a scope.
#[derive(Debug, Clone)]
pub struct EventReader {
    pool: PgPool,
    scope: ReadScope,
}

macro_rules! select {
    ($rest:literal) => {
        concat!(
            "SELECT position, tenant_prev_position, tenant_id, stream, version, event_id, \
             event_type, schema_version, payload, actor, causation_id, correlation_id, \
             recorded_at, prev_hash, hash FROM events ",
            $rest
        )
    };
}

impl EventReader {
    /// A reader for one tenant over the app pool.
    pub fn tenant(app_pool: PgPool, tenant: TenantId) -> Self {
        Self {
            pool: app_pool,
            scope: ReadScope::Tenant(tenant),
        }
    }

    /// A reader over every tenant (or one, if given) over the system pool.
    pub fn system(system_pool: PgPool, tenant: Option<TenantId>) -> Self {
        Self {
            pool: system_pool,
            scope: ReadScope::System(tenant),
        }
    }

    /// The scope.
    pub fn scope(&self) -> ReadScope {
        self.scope
    }

    fn filter(&self) -> Option<Uuid> {
        match self.scope {
            ReadScope::Tenant(t) | ReadScope::System(Some(t)) => Some(*t.as_uuid()),
            ReadScope::System(None) => None,
        }
    }

    async fn run(
        &self,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Vec<PgRow>, StoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::db("begin read"))?;
        if let ReadScope::Tenant(t) = self.scope {
            set_tenant(&mut tx, t).await?;
        }
        let rows = query
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::db("read events"))?;
        tx.commit().await.map_err(StoreError::db("end read"))?;
        Ok(rows)
    }

    /// Runs an event query and decodes the rows as they arrive, so decoding overlaps with
    /// the server producing the rest. A tenant-scoped query runs in a transaction scoped to
    /// the tenant; a system-scoped one is a single statement and needs none.
    async fn run_events(
        &self,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        async fn collect<'e, E>(
            query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
            executor: E,
        ) -> Result<Vec<RecordedEvent>, StoreError>
        where
            E: sqlx::Executor<'e, Database = sqlx::Postgres>,
        {
            let mut rows = query.fetch(executor);
            let mut events = Vec::new();
            let mut map: Option<ColumnMap> = None;
            while let Some(row) = rows
                .try_next()
                .await
                .map_err(StoreError::db("read events"))?
            {
                let map = match &map {
                    Some(m) => m,
                    None => map.insert(ColumnMap::of(&row)?),
                };
                events.push(decode_with(&row, map)?);
            }
            Ok(events)
        }
        match self.scope {
            ReadScope::Tenant(t) => {
                let mut tx = self
                    .pool
                    .begin()
                    .await
                    .map_err(StoreError::db("begin read"))?;
                set_tenant(&mut tx, t).await?;
                let events = collect(query, &mut *tx).await?;
                tx.commit().await.map_err(StoreError::db("end read"))?;
                Ok(events)
            }
            ReadScope::System(_) => collect(query, &self.pool).await,
        }
    }

    /// Events of `stream`: forward from `version` (inclusive, 1 = start) or backward from it
    /// (inclusive; `u64::MAX` = the end), at most `limit`.
    pub async fn read_stream(
        &self,
        stream: &StreamName,
        version: u64,
        direction: Direction,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let tenant = self.filter();
        let version = i64::try_from(version).unwrap_or(i64::MAX);
        let query = match direction {
            Direction::Forward => sqlx::query(select!(
                "WHERE ($1::uuid IS NULL OR tenant_id = $1) AND stream = $2 AND version >= $3 \
                 ORDER BY version ASC LIMIT $4"
            )),
            Direction::Backward => sqlx::query(select!(
                "WHERE ($1::uuid IS NULL OR tenant_id = $1) AND stream = $2 AND version <= $3 \
                 ORDER BY version DESC LIMIT $4"
            )),
        };
        self.run_events(
            query
                .bind(tenant)
                .bind(stream.as_str())
                .bind(version)
                .bind(limit),
        )
        .await
    }

    /// Events after global position `after` (exclusive), in position order, at most `limit`.
    pub async fn read_all(&self, after: i64, limit: i64) -> Result<Vec<RecordedEvent>, StoreError> {
        let query = match self.filter() {
            Some(t) => sqlx::query(select!(
                "WHERE tenant_id = $1 AND position > $2 ORDER BY position LIMIT $3"
            ))
            .bind(t),
            None => sqlx::query(select!("WHERE position > $1 ORDER BY position LIMIT $2")),
        };
        self.run_events(query.bind(after).bind(limit)).await
    }

    /// Events of one category after `after`, in position order, at most `limit`.
    pub async fn read_category(
        &self,
        category: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let query = sqlx::query(select!(
            "WHERE ($1::uuid IS NULL OR tenant_id = $1) AND category = $2 AND position > $3 \
             ORDER BY position LIMIT $4"
        ));
        self.run_events(
            query
                .bind(self.filter())
                .bind(category)
                .bind(after)
                .bind(limit),
        )
        .await
    }

    /// The events of `stream` recorded at or before `at`: the stream as it was then.
    pub async fn read_stream_as_of(
        &self,
        stream: &StreamName,
        at: OffsetDateTime,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let query = sqlx::query(select!(
            "WHERE ($1::uuid IS NULL OR tenant_id = $1) AND stream = $2 AND recorded_at <= $3 \
             ORDER BY version"
        ));
        self.run_events(query.bind(self.filter()).bind(stream.as_str()).bind(at))
            .await
    }

    /// The streams of `category` with an event recorded at or before `at`, by name after
    /// `after`, at most `limit` (keyset pages of the streams that existed then).
    pub async fn streams_as_of(
        &self,
        category: &str,
        at: OffsetDateTime,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let query = sqlx::query(
            "SELECT DISTINCT stream FROM events \
             WHERE ($1::uuid IS NULL OR tenant_id = $1) AND category = $2 AND recorded_at <= $3 \
               AND ($4::text IS NULL OR stream > $4) \
             ORDER BY stream LIMIT $5",
        );
        let rows = self
            .run(
                query
                    .bind(self.filter())
                    .bind(category)
                    .bind(at)
                    .bind(after)
                    .bind(limit),
            )
            .await?;
        rows.iter()
            .map(|r| {
                sqlx::Row::try_get::<String, _>(r, "stream")
                    .map_err(|e| StoreError::Invalid(format!("stream name: {e}")))
            })
            .collect()
    }

    /// The last global position recorded at or before `at` (0 if none): reading up to it gives
    /// the history as of that time, since recorded-at never decreases with position.
    pub async fn position_as_of(&self, at: OffsetDateTime) -> Result<i64, StoreError> {
        let query = sqlx::query(
            "SELECT coalesce(max(position), 0) AS p FROM events \
             WHERE ($1::uuid IS NULL OR tenant_id = $1) AND recorded_at <= $2",
        );
        let rows = self.run(query.bind(self.filter()).bind(at)).await?;
        first_i64(&rows, "p")
    }

    /// The newest global position visible to this reader (0 if none).
    pub async fn head_position(&self) -> Result<i64, StoreError> {
        let query = match self.filter() {
            Some(t) => sqlx::query(
                "SELECT coalesce(max(position), 0) AS p FROM events WHERE tenant_id = $1",
            )
            .bind(t),
            None => sqlx::query("SELECT last_position AS p FROM event_log_head WHERE id"),
        };
        let rows = self.run(query).await?;
        first_i64(&rows, "p")
    }
}

fn first_i64(rows: &[PgRow], column: &str) -> Result<i64, StoreError> {
    match rows.first() {
        Some(row) => row.try_get(column).map_err(StoreError::db("read position")),
        None => Ok(0),
    }
}

/// Where each event column is in a result set, resolved once per query rather than by name
/// for every column of every row.
#[derive(Debug, Clone, Copy)]
struct ColumnMap {
    position: usize,
    tenant_prev_position: usize,
    tenant_id: usize,
    stream: usize,
    version: usize,
    event_id: usize,
    event_type: usize,
    schema_version: usize,
    payload: usize,
    actor: usize,
    causation_id: usize,
    correlation_id: usize,
    recorded_at: usize,
    prev_hash: usize,
    hash: usize,
}

impl ColumnMap {
    fn of(row: &PgRow) -> Result<Self, StoreError> {
        let find = |name: &str| -> Result<usize, StoreError> {
            row.columns()
                .iter()
                .position(|c| c.name() == name)
                .ok_or_else(|| StoreError::Database {
                    operation: "decode event",
                    source: sqlx::Error::ColumnNotFound(name.to_owned()),
                })
        };
        Ok(Self {
            position: find("position")?,
            tenant_prev_position: find("tenant_prev_position")?,
            tenant_id: find("tenant_id")?,
            stream: find("stream")?,
            version: find("version")?,
            event_id: find("event_id")?,
            event_type: find("event_type")?,
            schema_version: find("schema_version")?,
            payload: find("payload")?,
            actor: find("actor")?,
            causation_id: find("causation_id")?,
            correlation_id: find("correlation_id")?,
            recorded_at: find("recorded_at")?,
            prev_hash: find("prev_hash")?,
            hash: find("hash")?,
        })
    }
}

/// Turns an `events` row into a [`RecordedEvent`]; a malformed row is a typed error.
pub fn decode_row(row: &PgRow) -> Result<RecordedEvent, StoreError> {
    decode_with(row, &ColumnMap::of(row)?)
}

/// The JSON text of a `json` or `jsonb` column (`jsonb`'s binary form is a version byte and
/// the text), parsed straight into `T`.
fn json_column<T: serde::de::DeserializeOwned>(row: &PgRow, index: usize) -> Result<T, String> {
    let value = row.try_get_raw(index).map_err(|e| e.to_string())?;
    let binary = value.format() == PgValueFormat::Binary;
    let is_jsonb = value.type_info().name() == "JSONB";
    let bytes = value.as_bytes().map_err(|e| e.to_string())?;
    let text = match (is_jsonb && binary, bytes.split_first()) {
        (true, Some((1, rest))) => rest,
        (true, _) => return Err("unsupported jsonb format version".to_owned()),
        (false, _) => bytes,
    };
    serde_json::from_slice(text).map_err(|e| e.to_string())
}

fn decode_with(row: &PgRow, c: &ColumnMap) -> Result<RecordedEvent, StoreError> {
    let position: i64 = row
        .try_get(c.position)
        .map_err(StoreError::db("decode event"))?;
    let corrupt = |detail: String| StoreError::Corrupt { position, detail };
    let get = |e: sqlx::Error| corrupt(e.to_string());
    let stream: &str = row.try_get(c.stream).map_err(get)?;
    let stream = StreamName::parse(stream).map_err(|e| corrupt(e.to_string()))?;
    let actor: Actor = json_column(row, c.actor).map_err(|e| corrupt(format!("actor: {e}")))?;
    let payload: serde_json::Value =
        json_column(row, c.payload).map_err(|e| corrupt(format!("payload: {e}")))?;
    let schema_version: i32 = row.try_get(c.schema_version).map_err(get)?;
    let hash32 = |index: usize, name: &str| -> Result<[u8; 32], StoreError> {
        let bytes: &[u8] = row.try_get(index).map_err(|e| corrupt(e.to_string()))?;
        <[u8; 32]>::try_from(bytes).map_err(|_| corrupt(format!("{name} is not 32 bytes")))
    };
    Ok(RecordedEvent {
        position,
        tenant_prev_position: row.try_get(c.tenant_prev_position).map_err(get)?,
        tenant_id: TenantId::from_uuid(row.try_get(c.tenant_id).map_err(get)?),
        stream,
        version: row.try_get(c.version).map_err(get)?,
        event_id: EventId::from_uuid(row.try_get(c.event_id).map_err(get)?),
        event_type: row.try_get(c.event_type).map_err(get)?,
        schema_version: u32::try_from(schema_version)
            .map_err(|_| corrupt("negative schema version".to_owned()))?,
        payload,
        metadata: EventMetadata {
            actor,
            causation_id: row.try_get(c.causation_id).map_err(get)?,
            correlation_id: row.try_get(c.correlation_id).map_err(get)?,
        },
        recorded_at: row.try_get(c.recorded_at).map_err(get)?,
        prev_hash: hash32(c.prev_hash, "prev_hash")?,
        hash: hash32(c.hash, "hash")?,
    })
}

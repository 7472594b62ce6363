//! Reading events: a stream forward or backward, everything or one category from a global
//! position, and history as of a time. Tenant-scoped readers run each query in a transaction
//! scoped to their tenant (row-level security); the system reader sees every tenant.

use netledger_domain::{Actor, EventId, EventMetadata, RecordedEvent, StreamName, TenantId};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
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

const COLUMNS: &str = "position, tenant_prev_position, tenant_id, stream, version, event_id, \
    event_type, schema_version, payload, actor, causation_id, correlation_id, recorded_at, \
    prev_hash, hash";

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
        let rows = self
            .run(
                query
                    .bind(tenant)
                    .bind(stream.as_str())
                    .bind(version)
                    .bind(limit),
            )
            .await?;
        rows.iter().map(decode_row).collect()
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
        let rows = self.run(query.bind(after).bind(limit)).await?;
        rows.iter().map(decode_row).collect()
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
        let rows = self
            .run(
                query
                    .bind(self.filter())
                    .bind(category)
                    .bind(after)
                    .bind(limit),
            )
            .await?;
        rows.iter().map(decode_row).collect()
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
        let rows = self
            .run(query.bind(self.filter()).bind(stream.as_str()).bind(at))
            .await?;
        rows.iter().map(decode_row).collect()
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

/// Columns selected by readers, for callers that write their own queries.
pub fn event_columns() -> &'static str {
    COLUMNS
}

/// Turns an `events` row into a [`RecordedEvent`]; a malformed row is a typed error.
pub fn decode_row(row: &PgRow) -> Result<RecordedEvent, StoreError> {
    let position: i64 = row
        .try_get("position")
        .map_err(StoreError::db("decode event"))?;
    let corrupt = |detail: String| StoreError::Corrupt { position, detail };
    let get = |e: sqlx::Error| corrupt(e.to_string());
    let stream: String = row.try_get("stream").map_err(get)?;
    let stream = StreamName::parse(&stream).map_err(|e| corrupt(e.to_string()))?;
    let actor: serde_json::Value = row.try_get("actor").map_err(get)?;
    let actor: Actor = serde_json::from_value(actor).map_err(|e| corrupt(format!("actor: {e}")))?;
    let schema_version: i32 = row.try_get("schema_version").map_err(get)?;
    let hash32 = |name: &str| -> Result<[u8; 32], StoreError> {
        let bytes: Vec<u8> = row.try_get(name).map_err(|e| corrupt(e.to_string()))?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| corrupt(format!("{name} is not 32 bytes")))
    };
    Ok(RecordedEvent {
        position,
        tenant_prev_position: row.try_get("tenant_prev_position").map_err(get)?,
        tenant_id: TenantId::from_uuid(row.try_get("tenant_id").map_err(get)?),
        stream,
        version: row.try_get("version").map_err(get)?,
        event_id: EventId::from_uuid(row.try_get("event_id").map_err(get)?),
        event_type: row.try_get("event_type").map_err(get)?,
        schema_version: u32::try_from(schema_version)
            .map_err(|_| corrupt("negative schema version".to_owned()))?,
        payload: row.try_get("payload").map_err(get)?,
        metadata: EventMetadata {
            actor,
            causation_id: row.try_get("causation_id").map_err(get)?,
            correlation_id: row.try_get("correlation_id").map_err(get)?,
        },
        recorded_at: row.try_get("recorded_at").map_err(get)?,
        prev_hash: hash32("prev_hash")?,
        hash: hash32("hash")?,
    })
}

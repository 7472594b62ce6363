//! Projection lag: how far each projector's checkpoint is behind the head of the event log,
//! in events and in seconds, for readiness checks and metrics.

use serde::Serialize;
use sqlx::{PgPool, Row};

use crate::error::ProjectionError;
use crate::projector::{PROJECTORS, checkpoint_name};

/// One projector's lag.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lag {
    /// Projector name.
    pub projector: String,
    /// Its checkpoint (0 before its first batch).
    pub checkpoint: i64,
    /// The last committed global position.
    pub head: i64,
    /// `head - checkpoint`: global positions not yet covered. For a projector of one
    /// category this counts other categories' events too until its next batch (a caught-up
    /// projector moves its checkpoint to the head it has read up to).
    pub events_behind: i64,
    /// Age of the oldest event not yet covered (database clock minus its `recorded_at`);
    /// 0 when caught up.
    pub seconds_behind: f64,
}

/// The lag of every projector, in [`PROJECTORS`] order. Runs one query on the system pool.
pub async fn lag(system: &PgPool) -> Result<Vec<Lag>, ProjectionError> {
    let names: Vec<String> = PROJECTORS.iter().map(|p| checkpoint_name(p)).collect();
    let rows = sqlx::query(
        "SELECT n.ord, coalesce(c.position, 0) AS checkpoint, h.last_position AS head, \
                coalesce(extract(epoch FROM clock_timestamp() - e.recorded_at), 0)::float8 AS secs \
         FROM unnest($1::text[]) WITH ORDINALITY AS n(name, ord) \
         CROSS JOIN (SELECT last_position FROM event_log_head WHERE id) h \
         LEFT JOIN subscription_checkpoints c ON c.name = n.name \
         LEFT JOIN events e ON e.position = coalesce(c.position, 0) + 1 \
                           AND e.position <= h.last_position \
         ORDER BY n.ord",
    )
    .bind(&names)
    .fetch_all(system)
    .await
    .map_err(ProjectionError::db("read projection lag"))?;
    let mut out = Vec::with_capacity(rows.len());
    for (row, name) in rows.iter().zip(PROJECTORS) {
        let get = |e| ProjectionError::Database {
            operation: "decode projection lag",
            source: e,
        };
        let checkpoint: i64 = row.try_get("checkpoint").map_err(get)?;
        let head: i64 = row.try_get("head").map_err(get)?;
        let secs: f64 = row.try_get("secs").map_err(get)?;
        let behind = (head - checkpoint).max(0);
        out.push(Lag {
            projector: (*name).to_owned(),
            checkpoint,
            head,
            events_behind: behind,
            seconds_behind: if behind == 0 { 0.0 } else { secs.max(0.0) },
        });
    }
    Ok(out)
}

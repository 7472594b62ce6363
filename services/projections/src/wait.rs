//! Read-your-writes: waiting, bounded, until named projectors have folded everything up to a
//! global position (the position a command's append returned), so a read right after a
//! write sees the write.
//!
//! A projector's checkpoint passes a position once it has folded every event up to it; a
//! projector of one category moves its checkpoint to the head it read up to even when no
//! event of its category came (see [`crate::lag`]), so waiting on it never depends on
//! another category's traffic. The wait polls the checkpoints (one small query every
//! [`POLL`]) on the system pool.

use std::time::Duration;

use sqlx::PgPool;

use crate::error::ProjectionError;
use crate::projector::checkpoint_name;

/// How often the checkpoints are read while waiting.
pub const POLL: Duration = Duration::from_millis(20);

/// `true` once every projector in `projectors` has a checkpoint at or past `min_position`,
/// `false` if `timeout` passes first. An empty list, or a position of 0 or less, is passed
/// at once; a projector that has no checkpoint yet counts as 0. `system` is the
/// `netledger_system` pool (checkpoints are not readable by the app role).
pub async fn wait_for_position(
    system: &PgPool,
    projectors: &[&str],
    min_position: i64,
    timeout: Duration,
) -> Result<bool, ProjectionError> {
    if projectors.is_empty() || min_position <= 0 {
        return Ok(true);
    }
    let names: Vec<String> = projectors.iter().map(|p| checkpoint_name(p)).collect();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let lowest: i64 = sqlx::query_scalar(
            "SELECT coalesce(min(coalesce(c.position, 0)), 0)::bigint \
             FROM unnest($1::text[]) AS n(name) \
             LEFT JOIN subscription_checkpoints c ON c.name = n.name",
        )
        .bind(&names)
        .fetch_one(system)
        .await
        .map_err(ProjectionError::db("read projection checkpoints"))?;
        if lowest >= min_position {
            return Ok(true);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(POLL.min(deadline - now)).await;
    }
}

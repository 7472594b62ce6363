//! The work table `poller_devices`: which devices to poll and how, derived from the device
//! events (`DeviceRegistered`, `DeviceUpdated`, `DeviceCredentialsChanged`, `DeviceRemoved`,
//! `DeviceSshHostKeyPinned`)
//! by a checkpointed, idempotent subscription. The events are decoded as the domain's
//! [`DeviceEvent`] and matched exhaustively, so a new device event is a decision here too.
//!
//! Any poller may call [`sync`]; only one advances the checkpoint at a time (a transaction
//! advisory lock taken with `pg_try_advisory_xact_lock`, so the others skip instead of
//! waiting). The rows and the checkpoint (`subscription_checkpoints`, name
//! [`CHECKPOINT`]) are written in one transaction, and an event is applied only if its
//! stream version is newer than the row's, so a replay changes nothing. Rebuild: delete the
//! rows and set the checkpoint to 0.

use std::collections::HashMap;

use netledger_domain::device::{
    DeviceCredentialsChanged, DeviceEvent, DeviceRegistered, DeviceRemoved, DeviceSshHostKeyPinned,
    DeviceUpdated, SshAccess, SshHostKey, Transport,
};
use netledger_domain::{DeviceId, EventEnum, EventType, StoredEvent, TenantId};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::error::PollerError;

/// Checkpoint name in `subscription_checkpoints`.
pub const CHECKPOINT: &str = "poller-devices";
/// Advisory lock key of the work-table subscription.
const LOCK_KEY: i64 = 0x6e6c_706f_6c6c_0001;

/// One device the poller polls, as the work table has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkRow {
    /// Owning tenant.
    pub tenant: TenantId,
    /// The device.
    pub device: DeviceId,
    /// Stable hash of the device id; its shard is `shard_key % shards`.
    pub shard_key: i32,
    /// Host.
    pub host: String,
    /// API port.
    pub port: u16,
    /// Plain or TLS.
    pub transport: Transport,
    /// SSH access, when registered (exports before 7.13 go over it).
    pub ssh: Option<SshAccess>,
    /// Poll interval in seconds.
    pub poll_interval_secs: u32,
    /// Removed from management.
    pub removed: bool,
    /// Version of the stream's last event applied.
    pub stream_version: i64,
    /// Global position of that event.
    pub revision: i64,
}

/// The shard key of a device: the first 31 bits of SHA-256 of its id (ids may be
/// time-ordered, so their own bits are not spread evenly).
pub fn shard_key(device: DeviceId) -> i32 {
    let digest = Sha256::digest(device.as_uuid().as_bytes());
    let bytes = [digest[0], digest[1], digest[2], digest[3]];
    (u32::from_be_bytes(bytes) & 0x7fff_ffff) as i32
}

/// The shard of a shard key among `shards`.
pub fn shard_of(key: i32, shards: u32) -> u32 {
    (key.unsigned_abs()) % shards.max(1)
}

const TYPES: [&str; 5] = [
    DeviceRegistered::TYPE,
    DeviceUpdated::TYPE,
    DeviceCredentialsChanged::TYPE,
    DeviceRemoved::TYPE,
    DeviceSshHostKeyPinned::TYPE,
];

fn decode_row(row: &sqlx::postgres::PgRow) -> Result<WorkRow, PollerError> {
    let bad = |e: &dyn std::fmt::Display| PollerError::Corrupt(format!("poller_devices row: {e}"));
    let transport: String = row.try_get("transport").map_err(|e| bad(&e))?;
    let port: i32 = row.try_get("port").map_err(|e| bad(&e))?;
    let interval: i32 = row.try_get("poll_interval_secs").map_err(|e| bad(&e))?;
    let ssh: Option<String> = row.try_get("ssh").map_err(|e| bad(&e))?;
    Ok(WorkRow {
        tenant: TenantId::from_uuid(row.try_get("tenant_id").map_err(|e| bad(&e))?),
        device: DeviceId::from_uuid(row.try_get("device_id").map_err(|e| bad(&e))?),
        shard_key: row.try_get("shard_key").map_err(|e| bad(&e))?,
        host: row.try_get("host").map_err(|e| bad(&e))?,
        port: u16::try_from(port).map_err(|e| bad(&e))?,
        transport: serde_json::from_str(&transport).map_err(|e| bad(&e))?,
        ssh: ssh
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| bad(&e))?,
        poll_interval_secs: u32::try_from(interval).map_err(|e| bad(&e))?,
        removed: row.try_get("removed").map_err(|e| bad(&e))?,
        stream_version: row.try_get("stream_version").map_err(|e| bad(&e))?,
        revision: row.try_get("revision").map_err(|e| bad(&e))?,
    })
}

const COLUMNS: &str = "tenant_id, device_id, shard_key, host, port, transport::text AS transport, \
                       ssh::text AS ssh, poll_interval_secs, removed, stream_version, revision";

/// What one [`sync`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncOutcome {
    /// Another process holds the subscription lock; nothing was done.
    pub skipped: bool,
    /// Events applied to rows.
    pub applied: usize,
    /// The checkpoint after the call.
    pub position: i64,
    /// More events may be waiting (the batch was full).
    pub more: bool,
}

/// Applies the next batch of device events to the work table (system pool).
pub async fn sync(system: &PgPool, batch: i64) -> Result<SyncOutcome, PollerError> {
    let mut tx = system
        .begin()
        .await
        .map_err(PollerError::db("begin sync"))?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(LOCK_KEY)
        .fetch_one(&mut *tx)
        .await
        .map_err(PollerError::db("work table lock"))?;
    if !locked {
        tx.rollback().await.map_err(PollerError::db("end sync"))?;
        return Ok(SyncOutcome {
            skipped: true,
            applied: 0,
            position: 0,
            more: false,
        });
    }
    sqlx::query(
        "INSERT INTO subscription_checkpoints (name, position) VALUES ($1, 0) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(CHECKPOINT)
    .execute(&mut *tx)
    .await
    .map_err(PollerError::db("create work table checkpoint"))?;
    let position: i64 =
        sqlx::query_scalar("SELECT position FROM subscription_checkpoints WHERE name = $1")
            .bind(CHECKPOINT)
            .fetch_one(&mut *tx)
            .await
            .map_err(PollerError::db("read work table checkpoint"))?;
    // Every event up to the head is visible (appends become visible in position order), so
    // when the filtered batch is not full the checkpoint may move to the head.
    let head: i64 = sqlx::query_scalar("SELECT last_position FROM event_log_head WHERE id")
        .fetch_one(&mut *tx)
        .await
        .map_err(PollerError::db("read event head"))?;
    let types: Vec<String> = TYPES.iter().map(|t| (*t).to_owned()).collect();
    let events = sqlx::query(
        "SELECT position, tenant_id, stream, version, event_type, schema_version, \
                payload::text AS payload \
         FROM events WHERE category = 'device' AND position > $1 AND position <= $2 \
           AND event_type = ANY($3) ORDER BY position LIMIT $4",
    )
    .bind(position)
    .bind(head)
    .bind(&types)
    .bind(batch)
    .fetch_all(&mut *tx)
    .await
    .map_err(PollerError::db("read device events"))?;
    let full = i64::try_from(events.len()).unwrap_or(i64::MAX) >= batch;

    // Current rows of the devices concerned.
    let mut keys: Vec<(Uuid, Uuid)> = Vec::new();
    let mut parsed = Vec::with_capacity(events.len());
    for e in &events {
        let bad = |x: &dyn std::fmt::Display| PollerError::Corrupt(format!("device event: {x}"));
        let pos: i64 = e.try_get("position").map_err(|x| bad(&x))?;
        let tenant: Uuid = e.try_get("tenant_id").map_err(|x| bad(&x))?;
        let stream: String = e.try_get("stream").map_err(|x| bad(&x))?;
        let version: i64 = e.try_get("version").map_err(|x| bad(&x))?;
        let event_type: String = e.try_get("event_type").map_err(|x| bad(&x))?;
        let schema_version: i32 = e.try_get("schema_version").map_err(|x| bad(&x))?;
        let payload: String = e.try_get("payload").map_err(|x| bad(&x))?;
        let Some(device) = stream
            .strip_prefix("device-")
            .and_then(|id| id.parse::<Uuid>().ok())
        else {
            tracing::warn!(%stream, "device event on a stream that is not device-<uuid>; skipped");
            continue;
        };
        keys.push((tenant, device));
        parsed.push((
            pos,
            tenant,
            device,
            version,
            event_type,
            schema_version,
            payload,
        ));
    }
    let mut rows: HashMap<(Uuid, Uuid), WorkRow> = HashMap::new();
    if !keys.is_empty() {
        let (t, d): (Vec<Uuid>, Vec<Uuid>) = keys.iter().copied().unzip();
        let existing = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM poller_devices \
             WHERE (tenant_id, device_id) IN (SELECT * FROM unnest($1::uuid[], $2::uuid[]))"
        ))
        .bind(&t)
        .bind(&d)
        .fetch_all(&mut *tx)
        .await
        .map_err(PollerError::db("read work table"))?;
        for r in &existing {
            let row = decode_row(r)?;
            rows.insert((*row.tenant.as_uuid(), *row.device.as_uuid()), row);
        }
    }
    let mut applied = 0usize;
    let mut changed: Vec<(Uuid, Uuid)> = Vec::new();
    for (pos, tenant, device, version, event_type, schema_version, payload) in parsed {
        let key = (tenant, device);
        if rows.get(&key).is_some_and(|r| r.stream_version >= version) {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&payload)
            .map_err(|e| PollerError::Corrupt(format!("{event_type} at {pos}: {e}")))?;
        let event = DeviceEvent::decode_stored(StoredEvent {
            position: pos,
            event_type: &event_type,
            schema_version: u32::try_from(schema_version).unwrap_or(0),
            payload: &value,
        })
        .map_err(|e| PollerError::Corrupt(format!("{event_type} at {pos}: {e}")))?;
        match event {
            DeviceEvent::Registered(r) => {
                let id = DeviceId::from_uuid(device);
                rows.insert(
                    key,
                    WorkRow {
                        tenant: TenantId::from_uuid(tenant),
                        device: id,
                        shard_key: shard_key(id),
                        host: r.endpoint.host.as_str().to_owned(),
                        port: r.endpoint.port,
                        transport: r.endpoint.transport,
                        ssh: r.endpoint.ssh,
                        poll_interval_secs: r.poll_interval_secs,
                        removed: false,
                        stream_version: version,
                        revision: pos,
                    },
                );
            }
            DeviceEvent::Updated(u) => {
                let Some(row) = rows.get_mut(&key) else {
                    continue;
                };
                if let Some(e) = u.endpoint {
                    row.host = e.host.as_str().to_owned();
                    row.port = e.port;
                    row.transport = e.transport;
                    row.ssh = e.ssh;
                }
                if let Some(s) = u.poll_interval_secs {
                    row.poll_interval_secs = s;
                }
                row.stream_version = version;
                row.revision = pos;
            }
            DeviceEvent::SshHostKeyPinned(p) => {
                let Some(row) = rows.get_mut(&key) else {
                    continue;
                };
                if let Some(ssh) = row.ssh.as_mut() {
                    ssh.host_key = SshHostKey::Pinned {
                        fingerprint_sha256: p.fingerprint_sha256,
                    };
                }
                row.stream_version = version;
                row.revision = pos;
            }
            DeviceEvent::CredentialsChanged(_) | DeviceEvent::Removed(_) => {
                let Some(row) = rows.get_mut(&key) else {
                    continue;
                };
                if matches!(event, DeviceEvent::Removed(_)) {
                    row.removed = true;
                }
                row.stream_version = version;
                row.revision = pos;
            }
            // Not read from the events table (see `TYPES`): nothing the poller polls by.
            DeviceEvent::TagsSet(_)
            | DeviceEvent::CredentialsCleared(_)
            | DeviceEvent::CameOnline(_)
            | DeviceEvent::WentOffline(_)
            | DeviceEvent::VersionChanged(_)
            | DeviceEvent::IdentityChanged(_)
            | DeviceEvent::HardwareChanged(_)
            | DeviceEvent::PollingSuspended(_)
            | DeviceEvent::PollingResumed(_)
            | DeviceEvent::SnapshotRecorded(_)
            | DeviceEvent::DriftDetected(_)
            | DeviceEvent::RollbackTimersFound(_)
            | DeviceEvent::RollbackTimersCleared(_) => continue,
        }
        applied += 1;
        if !changed.contains(&key) {
            changed.push(key);
        }
    }
    if !changed.is_empty() {
        write_rows(&mut tx, changed.iter().filter_map(|k| rows.get(k))).await?;
    }
    let new_position = if full {
        events
            .last()
            .and_then(|e| e.try_get::<i64, _>("position").ok())
            .unwrap_or(position)
    } else {
        head.max(position)
    };
    sqlx::query(
        "UPDATE subscription_checkpoints SET position = $2, updated_at = now() WHERE name = $1",
    )
    .bind(CHECKPOINT)
    .bind(new_position)
    .execute(&mut *tx)
    .await
    .map_err(PollerError::db("advance work table checkpoint"))?;
    tx.commit().await.map_err(PollerError::db("commit sync"))?;
    Ok(SyncOutcome {
        skipped: false,
        applied,
        position: new_position,
        more: full,
    })
}

async fn write_rows<'a>(
    conn: &mut sqlx::PgConnection,
    rows: impl Iterator<Item = &'a WorkRow>,
) -> Result<(), PollerError> {
    let mut c = (
        Vec::<Uuid>::new(),
        Vec::<Uuid>::new(),
        Vec::<i32>::new(),
        Vec::<String>::new(),
        Vec::<i32>::new(),
        Vec::<String>::new(),
        Vec::<i32>::new(),
        Vec::<bool>::new(),
        Vec::<i64>::new(),
        Vec::<i64>::new(),
        Vec::<Option<String>>::new(),
    );
    for r in rows {
        c.0.push(*r.tenant.as_uuid());
        c.1.push(*r.device.as_uuid());
        c.2.push(r.shard_key);
        c.3.push(r.host.clone());
        c.4.push(i32::from(r.port));
        c.5.push(
            serde_json::to_string(&r.transport)
                .map_err(|e| PollerError::Corrupt(format!("transport: {e}")))?,
        );
        c.6.push(i32::try_from(r.poll_interval_secs).unwrap_or(i32::MAX));
        c.7.push(r.removed);
        c.8.push(r.stream_version);
        c.9.push(r.revision);
        c.10.push(
            r.ssh
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| PollerError::Corrupt(format!("ssh: {e}")))?,
        );
    }
    sqlx::query(
        "INSERT INTO poller_devices (tenant_id, device_id, shard_key, host, port, transport, \
             poll_interval_secs, removed, stream_version, revision, ssh) \
         SELECT t, d, k, h, p, tr::jsonb, i, r, v, rev, s::jsonb \
         FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::text[], $5::int[], $6::text[], \
                     $7::int[], $8::bool[], $9::bigint[], $10::bigint[], $11::text[]) \
              AS x(t, d, k, h, p, tr, i, r, v, rev, s) \
         ON CONFLICT (tenant_id, device_id) DO UPDATE SET shard_key = excluded.shard_key, \
             host = excluded.host, port = excluded.port, transport = excluded.transport, \
             poll_interval_secs = excluded.poll_interval_secs, removed = excluded.removed, \
             stream_version = excluded.stream_version, revision = excluded.revision, \
             ssh = excluded.ssh",
    )
    .bind(c.0)
    .bind(c.1)
    .bind(c.2)
    .bind(c.3)
    .bind(c.4)
    .bind(c.5)
    .bind(c.6)
    .bind(c.7)
    .bind(c.8)
    .bind(c.9)
    .bind(c.10)
    .execute(conn)
    .await
    .map_err(PollerError::db("write work table"))?;
    Ok(())
}

/// Brings the work table fully up to date (repeats [`sync`] while batches are full).
/// Returns `false` if another process holds the lock.
pub async fn sync_all(system: &PgPool) -> Result<bool, PollerError> {
    loop {
        let out = sync(system, 5_000).await?;
        if out.skipped {
            return Ok(false);
        }
        if !out.more {
            return Ok(true);
        }
    }
}

/// The rows of the given shards (not removed).
pub async fn rows_of_shards(
    system: &PgPool,
    shards: &[u32],
    shard_count: u32,
) -> Result<Vec<WorkRow>, PollerError> {
    let shards: Vec<i32> = shards.iter().map(|s| *s as i32).collect();
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM poller_devices \
         WHERE NOT removed AND (shard_key % $1) = ANY($2)"
    ))
    .bind(shard_count as i32)
    .bind(&shards)
    .fetch_all(system)
    .await
    .map_err(PollerError::db("read work table"))?;
    rows.iter().map(decode_row).collect()
}

/// Rows changed after `revision` (removed ones included), oldest change first.
pub async fn changed_since(system: &PgPool, revision: i64) -> Result<Vec<WorkRow>, PollerError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM poller_devices WHERE revision > $1 ORDER BY revision"
    ))
    .bind(revision)
    .fetch_all(system)
    .await
    .map_err(PollerError::db("read work table changes"))?;
    rows.iter().map(decode_row).collect()
}

/// The newest revision in the work table (0 when empty).
pub async fn max_revision(system: &PgPool) -> Result<i64, PollerError> {
    sqlx::query_scalar("SELECT coalesce(max(revision), 0) FROM poller_devices")
        .fetch_one(system)
        .await
        .map_err(PollerError::db("read work table revision"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_keys_are_stable_and_spread() {
        let id = DeviceId::from_uuid(Uuid::from_u128(42));
        assert_eq!(shard_key(id), shard_key(id));
        assert!(shard_key(id) >= 0);
        let mut counts = [0u32; 8];
        for i in 0..8_000u128 {
            // time-ordered-looking ids: only the low bits differ
            let k = shard_key(DeviceId::from_uuid(Uuid::from_u128(i)));
            counts[shard_of(k, 8) as usize] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    }
}

//! Projector `rollouts`: rollouts with their progress (`rm_rollouts`) and each device's
//! place and result (`rm_rollout_devices`), folded from `rollout-<id>` streams.
//!
//! Devices are listed canaries first (batch 0), then the rest in batches of `batch_size`
//! (batch 1, 2, ...). Progress counts each device once by its latest outcome
//! (`succeeded` counts both `succeeded` and `committed`). `current_batch` is the batch of the
//! device that finished last; `finished_at` is set while the state is `completed`,
//! `cancelled` or `halted`. A device a halted rollout restored (`RolloutDeviceRestored`,
//! result `restored`) moves to outcome `rolled_back` with the restore's workflow; a refused
//! or failed restore leaves its row as it was (the change is still on the device). Events are
//! decoded as the domain's [`RolloutEvent`] and matched exhaustively.

use std::collections::HashMap;

use async_trait::async_trait;
use netledger_domain::workflow::{
    RestoreResult, RolloutCreated, RolloutDeviceFinished, RolloutDeviceRestored, RolloutEvent,
    RolloutTarget,
};
use netledger_domain::{EventType, RecordedEvent};
use sqlx::{PgConnection, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Rows, enum_text, stream_uuid};
use crate::error::ProjectionError;
use crate::projector::{Projector, decode_event};

type Key = (Uuid, Uuid);

#[derive(Debug, Clone)]
struct RolloutDevice {
    ord: i32,
    batch: i32,
    outcome: Option<String>,
    workflow_id: Option<Uuid>,
    finished_at: Option<OffsetDateTime>,
    dirty: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Rollout {
    name: String,
    target_kind: &'static str,
    target_version: Option<String>,
    state: String,
    reason: Option<String>,
    workflow_id: Uuid,
    batch_size: i32,
    parallelism: i32,
    failure_threshold: i32,
    rollback_on_halt: bool,
    total_devices: i32,
    canaries: i32,
    finished: i32,
    succeeded: i32,
    failed: i32,
    rolled_back: i32,
    cancelled: i32,
    current_batch: Option<i32>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    finished_at: Option<OffsetDateTime>,
    created_position: i64,
    last_position: i64,
    /// The devices in hand: all of them after creation or in a replay; live, those the
    /// batch's events name.
    devices: HashMap<Uuid, RolloutDevice>,
}

impl Rollout {
    fn count(&mut self, outcome: &str, delta: i32) {
        let bucket = match outcome {
            "succeeded" | "committed" => &mut self.succeeded,
            "failed" => &mut self.failed,
            "rolled_back" => &mut self.rolled_back,
            "cancelled" => &mut self.cancelled,
            _ => return,
        };
        *bucket += delta;
        self.finished += delta;
    }
}

fn i32_of(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct RolloutsProjector {
    rows: Rows<Key, Rollout>,
    replay: bool,
    flush_rows: usize,
}

const COLUMNS: &str = "tenant_id, rollout_id, name, target_kind, target_version, state, reason, \
    workflow_id, batch_size, parallelism, failure_threshold, rollback_on_halt, total_devices, \
    canaries, finished, succeeded, failed, rolled_back, cancelled, current_batch, created_at, \
    updated_at, finished_at, created_position, last_position";

impl RolloutsProjector {
    async fn load(
        &mut self,
        conn: &mut PgConnection,
        keys: Vec<Key>,
        devices: &[(Uuid, Uuid, Uuid)],
    ) -> Result<(), ProjectionError> {
        if keys.is_empty() {
            return Ok(());
        }
        let get = |e: sqlx::Error| ProjectionError::Database {
            operation: "decode rollout row",
            source: e,
        };
        let (tenants, ids): (Vec<Uuid>, Vec<Uuid>) = keys.iter().copied().unzip();
        let sql = format!(
            "SELECT {COLUMNS} FROM rm_rollouts WHERE (tenant_id, rollout_id) IN \
             (SELECT * FROM unnest($1::uuid[], $2::uuid[]))"
        );
        let rows = sqlx::query(&sql)
            .bind(&tenants)
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await
            .map_err(ProjectionError::db("load rollouts"))?;
        let mut loaded = Vec::with_capacity(rows.len());
        for r in rows {
            let key: Key = (r.try_get(0).map_err(get)?, r.try_get(1).map_err(get)?);
            let target_kind: String = r.try_get(3).map_err(get)?;
            loaded.push((
                key,
                Rollout {
                    name: r.try_get(2).map_err(get)?,
                    target_kind: if target_kind == "firmware" {
                        "firmware"
                    } else {
                        "change_set"
                    },
                    target_version: r.try_get(4).map_err(get)?,
                    state: r.try_get(5).map_err(get)?,
                    reason: r.try_get(6).map_err(get)?,
                    workflow_id: r.try_get(7).map_err(get)?,
                    batch_size: r.try_get(8).map_err(get)?,
                    parallelism: r.try_get(9).map_err(get)?,
                    failure_threshold: r.try_get(10).map_err(get)?,
                    rollback_on_halt: r.try_get(11).map_err(get)?,
                    total_devices: r.try_get(12).map_err(get)?,
                    canaries: r.try_get(13).map_err(get)?,
                    finished: r.try_get(14).map_err(get)?,
                    succeeded: r.try_get(15).map_err(get)?,
                    failed: r.try_get(16).map_err(get)?,
                    rolled_back: r.try_get(17).map_err(get)?,
                    cancelled: r.try_get(18).map_err(get)?,
                    current_batch: r.try_get(19).map_err(get)?,
                    created_at: r.try_get(20).map_err(get)?,
                    updated_at: r.try_get(21).map_err(get)?,
                    finished_at: r.try_get(22).map_err(get)?,
                    created_position: r.try_get(23).map_err(get)?,
                    last_position: r.try_get(24).map_err(get)?,
                    devices: HashMap::new(),
                },
            ));
        }
        let wanted: Vec<&(Uuid, Uuid, Uuid)> = devices
            .iter()
            .filter(|(t, r, _)| keys.contains(&(*t, *r)))
            .collect();
        let mut device_rows: HashMap<Key, HashMap<Uuid, RolloutDevice>> = HashMap::new();
        if !wanted.is_empty() {
            let t: Vec<Uuid> = wanted.iter().map(|w| w.0).collect();
            let r: Vec<Uuid> = wanted.iter().map(|w| w.1).collect();
            let d: Vec<Uuid> = wanted.iter().map(|w| w.2).collect();
            let rows = sqlx::query(
                "SELECT tenant_id, rollout_id, device_id, ord, batch, outcome, workflow_id, \
                        finished_at \
                 FROM rm_rollout_devices WHERE (tenant_id, rollout_id, device_id) IN \
                 (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]))",
            )
            .bind(&t)
            .bind(&r)
            .bind(&d)
            .fetch_all(&mut *conn)
            .await
            .map_err(ProjectionError::db("load rollout devices"))?;
            for row in rows {
                let key: Key = (row.try_get(0).map_err(get)?, row.try_get(1).map_err(get)?);
                let device: Uuid = row.try_get(2).map_err(get)?;
                device_rows.entry(key).or_default().insert(
                    device,
                    RolloutDevice {
                        ord: row.try_get(3).map_err(get)?,
                        batch: row.try_get(4).map_err(get)?,
                        outcome: row.try_get(5).map_err(get)?,
                        workflow_id: row.try_get(6).map_err(get)?,
                        finished_at: row.try_get(7).map_err(get)?,
                        dirty: false,
                    },
                );
            }
        }
        for (key, mut rollout) in loaded {
            rollout.devices = device_rows.remove(&key).unwrap_or_default();
            self.rows.loaded(key, rollout);
        }
        Ok(())
    }

    fn fold(&mut self, e: &RecordedEvent) -> Result<(), ProjectionError> {
        let Some(id) = stream_uuid(e) else {
            return Ok(());
        };
        let key = (*e.tenant_id.as_uuid(), id);
        let at = e.recorded_at;
        if let Some(r) = self.rows.get(&key)
            && e.position <= r.last_position
        {
            return Ok(());
        }
        let created = e.event_type == RolloutCreated::TYPE;
        if created {
            if self.rows.get(&key).is_some() {
                // Created once; a second creation is not folded.
                return Ok(());
            }
            let Some(RolloutEvent::Created(c)) = decode_event::<RolloutEvent>(e)? else {
                return Ok(());
            };
            let (target_kind, target_version) = match &c.target {
                RolloutTarget::ChangeSet { .. } => ("change_set", None),
                RolloutTarget::Firmware { version } => ("firmware", Some(version.clone())),
            };
            let batch_size = c.batch_size.max(1);
            let mut devices = HashMap::with_capacity(c.canaries.len() + c.devices.len());
            let mut ord = 0i32;
            let mut canaries = 0i32;
            for d in &c.canaries {
                if devices.contains_key(d.as_uuid()) {
                    continue;
                }
                devices.insert(
                    *d.as_uuid(),
                    RolloutDevice {
                        ord,
                        batch: 0,
                        outcome: None,
                        workflow_id: None,
                        finished_at: None,
                        dirty: true,
                    },
                );
                ord += 1;
                canaries += 1;
            }
            let mut placed = 0u32;
            for d in &c.devices {
                if devices.contains_key(d.as_uuid()) {
                    continue;
                }
                devices.insert(
                    *d.as_uuid(),
                    RolloutDevice {
                        ord,
                        batch: i32_of(1 + placed / batch_size),
                        outcome: None,
                        workflow_id: None,
                        finished_at: None,
                        dirty: true,
                    },
                );
                ord += 1;
                placed += 1;
            }
            self.rows.insert(
                key,
                Rollout {
                    name: c.name,
                    target_kind,
                    target_version,
                    state: "running".to_owned(),
                    reason: None,
                    workflow_id: *c.workflow_id.as_uuid(),
                    batch_size: i32_of(c.batch_size),
                    parallelism: i32_of(c.parallelism),
                    failure_threshold: i32_of(c.failure_threshold),
                    rollback_on_halt: c.rollback_on_halt,
                    total_devices: ord,
                    canaries,
                    finished: 0,
                    succeeded: 0,
                    failed: 0,
                    rolled_back: 0,
                    cancelled: 0,
                    current_batch: None,
                    created_at: at,
                    updated_at: at,
                    finished_at: None,
                    created_position: e.position,
                    last_position: e.position,
                    devices,
                },
            );
            return Ok(());
        }
        let Some(r) = self.rows.get_mut(&key) else {
            tracing::debug!(position = e.position, stream = %e.stream, "rollout event before its creation; skipped");
            return Ok(());
        };
        match decode_event::<RolloutEvent>(e)? {
            Some(RolloutEvent::DeviceFinished(f)) => {
                let outcome = enum_text(&f.outcome);
                let previous = match r.devices.get_mut(f.device_id.as_uuid()) {
                    Some(d) => {
                        let previous = d.outcome.replace(outcome.clone());
                        d.batch = i32_of(f.batch);
                        d.workflow_id = Some(*f.workflow_id.as_uuid());
                        d.finished_at = Some(at);
                        d.dirty = true;
                        Some(previous)
                    }
                    None => None,
                };
                match previous {
                    Some(previous) => {
                        if let Some(p) = previous {
                            r.count(&p, -1);
                        }
                        r.count(&outcome, 1);
                        r.current_batch = Some(i32_of(f.batch));
                    }
                    None => tracing::debug!(
                        position = e.position,
                        device = %f.device_id,
                        "rollout device finished but is not part of the rollout; skipped"
                    ),
                }
            }
            Some(RolloutEvent::DeviceRestored(x)) => {
                if x.result == RestoreResult::Restored
                    && let Some(d) = r.devices.get_mut(x.device_id.as_uuid())
                {
                    let previous = d.outcome.replace("rolled_back".to_owned());
                    d.workflow_id = Some(*x.workflow_id.as_uuid());
                    d.finished_at = Some(at);
                    d.dirty = true;
                    if let Some(p) = previous {
                        r.count(&p, -1);
                    }
                    r.count("rolled_back", 1);
                }
            }
            Some(RolloutEvent::StateChanged(s)) => {
                let state = enum_text(&s.state);
                r.finished_at = match state.as_str() {
                    "completed" | "cancelled" | "halted" => Some(at),
                    _ => None,
                };
                r.state = state;
                r.reason = s.reason;
            }
            // Handled above (created once).
            Some(RolloutEvent::Created(_)) => {}
            // Unknown types (newer code) and malformed payloads only advance the position.
            None => {}
        }
        r.updated_at = at;
        r.last_position = e.position;
        self.rows.touch(&key);
        Ok(())
    }

    async fn write(&mut self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        let keys = self.rows.take_dirty();
        if keys.is_empty() {
            return Ok(());
        }
        let mut c = Columns::default();
        let mut d = DeviceColumns::default();
        for k in &keys {
            let Some(r) = self.rows.get_mut(k) else {
                continue;
            };
            c.push(*k, r);
            for (device, row) in r.devices.iter_mut().filter(|(_, row)| row.dirty) {
                d.tenant.push(k.0);
                d.rollout.push(k.1);
                d.ord.push(row.ord);
                d.device.push(*device);
                d.batch.push(row.batch);
                d.outcome.push(row.outcome.clone());
                d.workflow.push(row.workflow_id);
                d.finished_at.push(row.finished_at);
                row.dirty = false;
            }
        }
        let sql = format!(
            "INSERT INTO rm_rollouts ({COLUMNS}) \
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], \
                 $6::text[], $7::text[], $8::uuid[], $9::int[], $10::int[], $11::int[], \
                 $12::bool[], $13::int[], $14::int[], $15::int[], $16::int[], $17::int[], \
                 $18::int[], $19::int[], $20::int[], $21::timestamptz[], $22::timestamptz[], \
                 $23::timestamptz[], $24::bigint[], $25::bigint[]) \
             ON CONFLICT (tenant_id, rollout_id) DO UPDATE SET \
                state = EXCLUDED.state, reason = EXCLUDED.reason, finished = EXCLUDED.finished, \
                succeeded = EXCLUDED.succeeded, failed = EXCLUDED.failed, \
                rolled_back = EXCLUDED.rolled_back, cancelled = EXCLUDED.cancelled, \
                current_batch = EXCLUDED.current_batch, updated_at = EXCLUDED.updated_at, \
                finished_at = EXCLUDED.finished_at, last_position = EXCLUDED.last_position"
        );
        sqlx::query(&sql)
            .bind(c.tenant)
            .bind(c.rollout)
            .bind(c.name)
            .bind(c.target_kind)
            .bind(c.target_version)
            .bind(c.state)
            .bind(c.reason)
            .bind(c.workflow)
            .bind(c.batch_size)
            .bind(c.parallelism)
            .bind(c.failure_threshold)
            .bind(c.rollback_on_halt)
            .bind(c.total_devices)
            .bind(c.canaries)
            .bind(c.finished)
            .bind(c.succeeded)
            .bind(c.failed)
            .bind(c.rolled_back)
            .bind(c.cancelled)
            .bind(c.current_batch)
            .bind(c.created_at)
            .bind(c.updated_at)
            .bind(c.finished_at)
            .bind(c.created_position)
            .bind(c.last_position)
            .execute(&mut *conn)
            .await
            .map_err(ProjectionError::db("upsert rollouts"))?;
        if !d.tenant.is_empty() {
            sqlx::query(
                "INSERT INTO rm_rollout_devices (tenant_id, rollout_id, ord, device_id, batch, \
                     outcome, workflow_id, finished_at) \
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::uuid[], $5::int[], \
                     $6::text[], $7::uuid[], $8::timestamptz[]) \
                 ON CONFLICT (tenant_id, rollout_id, device_id) DO UPDATE SET \
                    batch = EXCLUDED.batch, outcome = EXCLUDED.outcome, \
                    workflow_id = EXCLUDED.workflow_id, finished_at = EXCLUDED.finished_at",
            )
            .bind(d.tenant)
            .bind(d.rollout)
            .bind(d.ord)
            .bind(d.device)
            .bind(d.batch)
            .bind(d.outcome)
            .bind(d.workflow)
            .bind(d.finished_at)
            .execute(&mut *conn)
            .await
            .map_err(ProjectionError::db("upsert rollout devices"))?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct DeviceColumns {
    tenant: Vec<Uuid>,
    rollout: Vec<Uuid>,
    ord: Vec<i32>,
    device: Vec<Uuid>,
    batch: Vec<i32>,
    outcome: Vec<Option<String>>,
    workflow: Vec<Option<Uuid>>,
    finished_at: Vec<Option<OffsetDateTime>>,
}

#[derive(Default)]
struct Columns {
    tenant: Vec<Uuid>,
    rollout: Vec<Uuid>,
    name: Vec<String>,
    target_kind: Vec<&'static str>,
    target_version: Vec<Option<String>>,
    state: Vec<String>,
    reason: Vec<Option<String>>,
    workflow: Vec<Uuid>,
    batch_size: Vec<i32>,
    parallelism: Vec<i32>,
    failure_threshold: Vec<i32>,
    rollback_on_halt: Vec<bool>,
    total_devices: Vec<i32>,
    canaries: Vec<i32>,
    finished: Vec<i32>,
    succeeded: Vec<i32>,
    failed: Vec<i32>,
    rolled_back: Vec<i32>,
    cancelled: Vec<i32>,
    current_batch: Vec<Option<i32>>,
    created_at: Vec<OffsetDateTime>,
    updated_at: Vec<OffsetDateTime>,
    finished_at: Vec<Option<OffsetDateTime>>,
    created_position: Vec<i64>,
    last_position: Vec<i64>,
}

impl Columns {
    fn push(&mut self, key: Key, r: &Rollout) {
        self.tenant.push(key.0);
        self.rollout.push(key.1);
        self.name.push(r.name.clone());
        self.target_kind.push(r.target_kind);
        self.target_version.push(r.target_version.clone());
        self.state.push(r.state.clone());
        self.reason.push(r.reason.clone());
        self.workflow.push(r.workflow_id);
        self.batch_size.push(r.batch_size);
        self.parallelism.push(r.parallelism);
        self.failure_threshold.push(r.failure_threshold);
        self.rollback_on_halt.push(r.rollback_on_halt);
        self.total_devices.push(r.total_devices);
        self.canaries.push(r.canaries);
        self.finished.push(r.finished);
        self.succeeded.push(r.succeeded);
        self.failed.push(r.failed);
        self.rolled_back.push(r.rolled_back);
        self.cancelled.push(r.cancelled);
        self.current_batch.push(r.current_batch);
        self.created_at.push(r.created_at);
        self.updated_at.push(r.updated_at);
        self.finished_at.push(r.finished_at);
        self.created_position.push(r.created_position);
        self.last_position.push(r.last_position);
    }
}

#[async_trait]
impl Projector for RolloutsProjector {
    fn name(&self) -> &'static str {
        "rollouts"
    }

    fn category(&self) -> Option<&'static str> {
        Some("rollout")
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_rollouts", "rm_rollout_devices"]
    }

    async fn apply(
        &mut self,
        conn: &mut PgConnection,
        events: &[&RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let keys: Vec<Key> = events
            .iter()
            .filter_map(|e| stream_uuid(e).map(|r| (*e.tenant_id.as_uuid(), r)))
            .collect();
        let missing = self.rows.missing(keys.iter(), self.replay);
        if !missing.is_empty() {
            // The devices the batch's finish events name, for the rollouts being loaded.
            let mut devices = Vec::new();
            for e in events {
                // Only these two name devices; the others are not decoded twice.
                let names_device = matches!(
                    e.event_type.as_str(),
                    RolloutDeviceFinished::TYPE | RolloutDeviceRestored::TYPE
                );
                let Some(r) = stream_uuid(e).filter(|_| names_device) else {
                    continue;
                };
                let device = match decode_event::<RolloutEvent>(e)? {
                    Some(RolloutEvent::DeviceFinished(f)) => f.device_id,
                    Some(RolloutEvent::DeviceRestored(x)) => x.device_id,
                    Some(RolloutEvent::Created(_) | RolloutEvent::StateChanged(_)) | None => {
                        continue;
                    }
                };
                devices.push((*e.tenant_id.as_uuid(), r, *device.as_uuid()));
            }
            self.load(conn, missing, &devices).await?;
        }
        for e in events {
            self.fold(e)?;
        }
        if !self.replay || self.rows.dirty_len() >= self.flush_rows {
            self.write(conn).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        self.write(conn).await
    }

    fn forget(&mut self) {
        self.rows.clear();
    }

    fn set_replay(&mut self, flush_rows: Option<usize>) {
        self.replay = flush_rows.is_some();
        self.flush_rows = flush_rows.unwrap_or(0);
    }
}

//! Telemetry writes: metric samples and each device's poll times, batched into one statement
//! per flush (three `unnest` inserts in one statement: device samples, interface samples,
//! poll runtime), plus partition maintenance and the 5-minute rollups.
//!
//! Samples are telemetry, not events: a batch that fails to insert is logged and dropped
//! (the runtime rows, which let a shard change hands without double polls, are kept for the
//! next flush). The read side for the API is `netledger_store::devices::metrics`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use netledger_domain::clock::Clock;
use netledger_domain::{DeviceId, TenantId};
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use crate::error::PollerError;
use crate::options::PollerOptions;

/// Counters of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceCounters {
    /// Interface name.
    pub name: String,
    /// `rx-byte`.
    pub rx_bytes: Option<u64>,
    /// `tx-byte`.
    pub tx_bytes: Option<u64>,
    /// `rx-error`.
    pub rx_errors: Option<u64>,
    /// `tx-error`.
    pub tx_errors: Option<u64>,
}

/// One poll's telemetry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Owning tenant.
    pub tenant: TenantId,
    /// The device.
    pub device: DeviceId,
    /// When it was taken.
    pub at: OffsetDateTime,
    /// CPU load in percent.
    pub cpu_load: u64,
    /// Memory in use, bytes.
    pub memory_used: u64,
    /// Total memory, bytes.
    pub memory_total: u64,
    /// Free storage, bytes.
    pub hdd_free: u64,
    /// Total storage, bytes.
    pub hdd_total: u64,
    /// Uptime in seconds.
    pub uptime_secs: u64,
    /// Per-interface counters.
    pub interfaces: Vec<InterfaceCounters>,
}

/// When a device was polled and is next due, with the change indicator its config was last
/// checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    /// Owning tenant.
    pub tenant: TenantId,
    /// The device.
    pub device: DeviceId,
    /// Last poll (successful or not).
    pub last_poll_at: OffsetDateTime,
    /// Next poll due.
    pub next_due_at: OffsetDateTime,
    /// The device's change indicator when its configuration was last exported and compared.
    pub checked_indicator: Option<String>,
}

/// What the writer receives.
#[derive(Debug)]
pub enum Record {
    /// A sample.
    Sample(Box<Sample>),
    /// A device's poll times.
    Runtime(Runtime),
    /// Write everything pending now and answer.
    Flush(oneshot::Sender<()>),
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn opt(v: Option<u64>) -> Option<i64> {
    v.map(clamp)
}

#[derive(Default)]
struct Pending {
    samples: Vec<Sample>,
    interface_rows: usize,
    runtime: HashMap<(TenantId, DeviceId), Runtime>,
}

impl Pending {
    fn rows(&self) -> usize {
        self.samples.len() + self.interface_rows + self.runtime.len()
    }
}

/// Runs the writer until every sender is dropped (then flushes and returns) or `shutdown`.
pub async fn run_writer(
    system: PgPool,
    mut rx: mpsc::Receiver<Record>,
    options: PollerOptions,
    stats: Arc<crate::stats::Stats>,
) {
    let mut pending = Pending::default();
    let mut tick = tokio::time::interval(options.metrics_flush_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Record::Sample(s)) => {
                    pending.interface_rows += s.interfaces.len();
                    pending.samples.push(*s);
                    if pending.rows() >= options.metrics_batch_rows {
                        flush(&system, &mut pending, &stats).await;
                    }
                }
                Some(Record::Runtime(r)) => {
                    pending.runtime.insert((r.tenant, r.device), r);
                }
                Some(Record::Flush(ack)) => {
                    flush(&system, &mut pending, &stats).await;
                    let _ = ack.send(());
                }
                None => {
                    flush(&system, &mut pending, &stats).await;
                    return;
                }
            },
            _ = tick.tick() => flush(&system, &mut pending, &stats).await,
        }
    }
}

async fn flush(system: &PgPool, pending: &mut Pending, stats: &crate::stats::Stats) {
    if pending.rows() == 0 {
        return;
    }
    let samples = std::mem::take(&mut pending.samples);
    pending.interface_rows = 0;
    match write(system, &samples, &pending.runtime).await {
        Ok(()) => {
            stats.add_samples(samples.len() as u64);
            pending.runtime.clear();
        }
        Err(e) => {
            tracing::warn!(error = %e, samples = samples.len(), "metric samples dropped");
            stats.add_dropped_samples(samples.len() as u64);
        }
    }
}

/// Writes samples and runtime rows in one statement (system pool).
pub async fn write(
    system: &PgPool,
    samples: &[Sample],
    runtime: &HashMap<(TenantId, DeviceId), Runtime>,
) -> Result<(), PollerError> {
    let n = samples.len();
    let mut d = (
        Vec::<Uuid>::with_capacity(n),
        Vec::<Uuid>::with_capacity(n),
        Vec::<OffsetDateTime>::with_capacity(n),
        Vec::<i16>::with_capacity(n),
        Vec::<i64>::with_capacity(n),
        Vec::<i64>::with_capacity(n),
        Vec::<i64>::with_capacity(n),
        Vec::<i64>::with_capacity(n),
        Vec::<i64>::with_capacity(n),
    );
    let mut i = (
        Vec::<Uuid>::new(),
        Vec::<Uuid>::new(),
        Vec::<OffsetDateTime>::new(),
        Vec::<String>::new(),
        Vec::<Option<i64>>::new(),
        Vec::<Option<i64>>::new(),
        Vec::<Option<i64>>::new(),
        Vec::<Option<i64>>::new(),
    );
    for s in samples {
        d.0.push(*s.tenant.as_uuid());
        d.1.push(*s.device.as_uuid());
        d.2.push(s.at);
        d.3.push(i16::try_from(s.cpu_load).unwrap_or(i16::MAX));
        d.4.push(clamp(s.memory_used));
        d.5.push(clamp(s.memory_total));
        d.6.push(clamp(s.hdd_free));
        d.7.push(clamp(s.hdd_total));
        d.8.push(clamp(s.uptime_secs));
        for f in &s.interfaces {
            i.0.push(*s.tenant.as_uuid());
            i.1.push(*s.device.as_uuid());
            i.2.push(s.at);
            i.3.push(f.name.clone());
            i.4.push(opt(f.rx_bytes));
            i.5.push(opt(f.tx_bytes));
            i.6.push(opt(f.rx_errors));
            i.7.push(opt(f.tx_errors));
        }
    }
    let mut r = (
        Vec::<Uuid>::with_capacity(runtime.len()),
        Vec::<Uuid>::with_capacity(runtime.len()),
        Vec::<OffsetDateTime>::with_capacity(runtime.len()),
        Vec::<OffsetDateTime>::with_capacity(runtime.len()),
        Vec::<Option<String>>::with_capacity(runtime.len()),
    );
    for x in runtime.values() {
        r.0.push(*x.tenant.as_uuid());
        r.1.push(*x.device.as_uuid());
        r.2.push(x.last_poll_at);
        r.3.push(x.next_due_at);
        r.4.push(x.checked_indicator.clone());
    }
    sqlx::query(
        "WITH d AS ( \
             INSERT INTO device_samples (tenant_id, device_id, at, cpu_load, memory_used, \
                 memory_total, hdd_free, hdd_total, uptime_secs) \
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::smallint[], \
                 $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[])), \
         i AS ( \
             INSERT INTO interface_samples (tenant_id, device_id, at, interface, rx_bytes, \
                 tx_bytes, rx_errors, tx_errors) \
             SELECT * FROM unnest($10::uuid[], $11::uuid[], $12::timestamptz[], $13::text[], \
                 $14::bigint[], $15::bigint[], $16::bigint[], $17::bigint[])) \
         INSERT INTO poller_device_runtime (tenant_id, device_id, last_poll_at, next_due_at, \
             change_indicator) \
         SELECT * FROM unnest($18::uuid[], $19::uuid[], $20::timestamptz[], $21::timestamptz[], \
             $22::text[]) \
         ON CONFLICT (tenant_id, device_id) DO UPDATE SET last_poll_at = excluded.last_poll_at, \
             next_due_at = excluded.next_due_at, change_indicator = excluded.change_indicator",
    )
    .bind(d.0)
    .bind(d.1)
    .bind(d.2)
    .bind(d.3)
    .bind(d.4)
    .bind(d.5)
    .bind(d.6)
    .bind(d.7)
    .bind(d.8)
    .bind(i.0)
    .bind(i.1)
    .bind(i.2)
    .bind(i.3)
    .bind(i.4)
    .bind(i.5)
    .bind(i.6)
    .bind(i.7)
    .bind(r.0)
    .bind(r.1)
    .bind(r.2)
    .bind(r.3)
    .bind(r.4)
    .execute(system)
    .await
    .map_err(PollerError::db("write metric samples"))?;
    Ok(())
}

/// Poll times and change indicators of these devices, as the last poller recorded them.
pub async fn load_runtime(
    system: &PgPool,
    devices: &[(TenantId, DeviceId)],
) -> Result<HashMap<(TenantId, DeviceId), Runtime>, PollerError> {
    let t: Vec<Uuid> = devices.iter().map(|(t, _)| *t.as_uuid()).collect();
    let d: Vec<Uuid> = devices.iter().map(|(_, d)| *d.as_uuid()).collect();
    let rows: Vec<(Uuid, Uuid, OffsetDateTime, OffsetDateTime, Option<String>)> = sqlx::query_as(
        "SELECT r.tenant_id, r.device_id, r.last_poll_at, r.next_due_at, r.change_indicator \
         FROM unnest($1::uuid[], $2::uuid[]) AS w(tenant_id, device_id) \
         JOIN poller_device_runtime r USING (tenant_id, device_id)",
    )
    .bind(&t)
    .bind(&d)
    .fetch_all(system)
    .await
    .map_err(PollerError::db("read poll runtime"))?;
    Ok(rows
        .into_iter()
        .map(|(t, d, last, next, ind)| {
            let (tenant, device) = (TenantId::from_uuid(t), DeviceId::from_uuid(d));
            (
                (tenant, device),
                Runtime {
                    tenant,
                    device,
                    last_poll_at: last,
                    next_due_at: next,
                    checked_indicator: ind,
                },
            )
        })
        .collect())
}

/// Creates partitions ahead and drops those past retention (any poller may call it; the
/// database function serialises callers). Returns (created, dropped).
pub async fn maintain_partitions(
    system: &PgPool,
    today: time::Date,
    options: &PollerOptions,
) -> Result<(i32, i32), PollerError> {
    sqlx::query_as("SELECT created, dropped FROM netledger_metrics_maintain($1, $2, $3, $4)")
        .bind(today)
        .bind(options.partitions_ahead_days as i32)
        .bind(options.raw_retention_days.max(1) as i32)
        .bind(options.rollup_retention_days.max(1) as i32)
        .fetch_one(system)
        .await
        .map_err(PollerError::db("maintain metric partitions"))
}

const ROLLUP_LOCK: i64 = 0x6e6c_706f_6c6c_0002;
const ROLLUP_NAME: &str = "metrics-5m";

/// Rolls up every complete 5-minute bucket that ended at least `lag` before `now` and is not
/// rolled up yet (at most one day per call), under an advisory lock so one poller does it.
/// Returns the new watermark, or `None` if another poller holds the lock.
pub async fn rollup(
    system: &PgPool,
    now: OffsetDateTime,
    lag: Duration,
) -> Result<Option<OffsetDateTime>, PollerError> {
    let mut tx = system
        .begin()
        .await
        .map_err(PollerError::db("begin rollup"))?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(ROLLUP_LOCK)
        .fetch_one(&mut *tx)
        .await
        .map_err(PollerError::db("rollup lock"))?;
    if !locked {
        return Ok(None);
    }
    let until: OffsetDateTime = sqlx::query_scalar(
        "SELECT date_bin('5 minutes', $1::timestamptz - make_interval(secs => $2), \
                         timestamptz 'epoch')",
    )
    .bind(now)
    .bind(lag.as_secs_f64())
    .fetch_one(&mut *tx)
    .await
    .map_err(PollerError::db("rollup bounds"))?;
    let from: OffsetDateTime = sqlx::query_scalar(
        "SELECT coalesce( \
             (SELECT rolled_until FROM metrics_rollup_state WHERE name = $1), \
             (SELECT date_bin('5 minutes', min(at), timestamptz 'epoch') FROM device_samples), \
             $2::timestamptz)",
    )
    .bind(ROLLUP_NAME)
    .bind(until)
    .fetch_one(&mut *tx)
    .await
    .map_err(PollerError::db("rollup watermark"))?;
    let until = until.min(from + time::Duration::days(1));
    if until <= from {
        tx.rollback().await.map_err(PollerError::db("end rollup"))?;
        return Ok(Some(from));
    }
    sqlx::query(
        "INSERT INTO device_samples_5m (tenant_id, device_id, bucket, samples, cpu_min, cpu_avg, \
             cpu_max, memory_used_min, memory_used_avg, memory_used_max, memory_total, \
             hdd_free_min, hdd_free_avg, hdd_free_max, hdd_total, uptime_max) \
         SELECT tenant_id, device_id, date_bin('5 minutes', at, timestamptz 'epoch'), count(*), \
                min(cpu_load), avg(cpu_load)::float8, max(cpu_load), min(memory_used), \
                avg(memory_used)::float8, max(memory_used), max(memory_total), min(hdd_free), \
                avg(hdd_free)::float8, max(hdd_free), max(hdd_total), max(uptime_secs) \
         FROM device_samples WHERE at >= $1 AND at < $2 GROUP BY 1, 2, 3 \
         ON CONFLICT DO NOTHING",
    )
    .bind(from)
    .bind(until)
    .execute(&mut *tx)
    .await
    .map_err(PollerError::db("roll up device samples"))?;
    sqlx::query(
        "INSERT INTO interface_samples_5m (tenant_id, device_id, interface, bucket, samples, \
             rx_bytes, tx_bytes, rx_errors, tx_errors, rx_bps_min, rx_bps_avg, rx_bps_max, \
             tx_bps_min, tx_bps_avg, tx_bps_max) \
         SELECT tenant_id, device_id, interface, date_bin('5 minutes', at, timestamptz 'epoch'), \
                count(*), (array_agg(rx_bytes ORDER BY at DESC))[1], \
                (array_agg(tx_bytes ORDER BY at DESC))[1], \
                (array_agg(rx_errors ORDER BY at DESC))[1], \
                (array_agg(tx_errors ORDER BY at DESC))[1], \
                min(rx_bps), avg(rx_bps), max(rx_bps), min(tx_bps), avg(tx_bps), max(tx_bps) \
         FROM (SELECT tenant_id, device_id, interface, at, rx_bytes, tx_bytes, rx_errors, \
                      tx_errors, \
                      CASE WHEN rx_bytes >= lag(rx_bytes) OVER w AND at > lag(at) OVER w \
                           THEN (rx_bytes - lag(rx_bytes) OVER w) * 8 \
                                / extract(epoch FROM at - lag(at) OVER w)::float8 END AS rx_bps, \
                      CASE WHEN tx_bytes >= lag(tx_bytes) OVER w AND at > lag(at) OVER w \
                           THEN (tx_bytes - lag(tx_bytes) OVER w) * 8 \
                                / extract(epoch FROM at - lag(at) OVER w)::float8 END AS tx_bps \
               FROM interface_samples \
               WHERE at >= $1::timestamptz - interval '15 minutes' AND at < $2 \
               WINDOW w AS (PARTITION BY tenant_id, device_id, interface ORDER BY at)) s \
         WHERE at >= $1 GROUP BY 1, 2, 3, 4 \
         ON CONFLICT DO NOTHING",
    )
    .bind(from)
    .bind(until)
    .execute(&mut *tx)
    .await
    .map_err(PollerError::db("roll up interface samples"))?;
    sqlx::query(
        "INSERT INTO metrics_rollup_state (name, rolled_until) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET rolled_until = excluded.rolled_until",
    )
    .bind(ROLLUP_NAME)
    .bind(until)
    .execute(&mut *tx)
    .await
    .map_err(PollerError::db("advance rollup watermark"))?;
    tx.commit()
        .await
        .map_err(PollerError::db("commit rollup"))?;
    Ok(Some(until))
}

/// Keeps partitions and rollups up to date until `shutdown`: partitions at start and every
/// hour, rollups every minute.
pub async fn run_maintenance(
    system: PgPool,
    clock: Arc<dyn Clock>,
    options: PollerOptions,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut partitions = tokio::time::interval(Duration::from_secs(3600));
    let mut rollups = tokio::time::interval(Duration::from_secs(60));
    rollups.tick().await;
    partitions.tick().await;
    loop {
        tokio::select! {
            _ = partitions.tick() => {
                if let Err(e) = maintain_partitions(&system, clock.now().date(), &options).await {
                    tracing::warn!(error = %e, "metric partition maintenance failed");
                }
            }
            _ = rollups.tick() => {
                if let Err(e) = rollup(&system, clock.now(), options.rollup_lag).await {
                    tracing::warn!(error = %e, "metric rollup failed");
                }
            }
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}

//! Reading device telemetry for the API: raw samples for short ranges, 5-minute rollups
//! (min/avg/max) for long ones. Tenant-scoped: runs in a transaction scoped to the tenant
//! (role `netledger_app`), so row-level security decides what is visible. The poller writes
//! these tables (`netledger-poller`, module `metrics`).

use netledger_domain::{DeviceId, TenantId};
use serde::Serialize;
use sqlx::{PgPool, Row};
use time::{Duration, OffsetDateTime};

use crate::db::begin_tenant;
use crate::error::StoreError;

/// Ranges up to this long are answered from raw samples under [`Resolution::Auto`].
pub const AUTO_RAW_MAX: Duration = Duration::hours(6);
/// At most this many raw device samples are returned; longer ranges need the rollup.
pub const RAW_ROW_LIMIT: i64 = 20_000;

/// Which table to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// Raw for ranges up to [`AUTO_RAW_MAX`], rollup beyond.
    Auto,
    /// One point per poll.
    Raw,
    /// One point per 5 minutes.
    Rollup,
}

/// Minimum, average and maximum over a bucket (all equal for a raw sample).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stat {
    /// Minimum.
    pub min: f64,
    /// Average.
    pub avg: f64,
    /// Maximum.
    pub max: f64,
}

impl Stat {
    fn one(v: f64) -> Self {
        Self {
            min: v,
            avg: v,
            max: v,
        }
    }
}

/// Device gauges at one point in time (raw) or over one bucket (rollup).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DevicePoint {
    /// Sample time, or the start of the bucket.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Samples in the bucket (1 for raw).
    pub samples: i32,
    /// CPU load in percent.
    pub cpu_load: Stat,
    /// Memory in use, bytes.
    pub memory_used: Stat,
    /// Total memory, bytes.
    pub memory_total: i64,
    /// Free storage, bytes.
    pub hdd_free: Stat,
    /// Total storage, bytes.
    pub hdd_total: i64,
    /// Uptime in seconds (the maximum in a bucket).
    pub uptime_secs: i64,
}

/// One interface at one point in time (raw) or over one bucket (rollup).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InterfacePoint {
    /// Sample time, or the start of the bucket.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Interface name.
    pub interface: String,
    /// Samples in the bucket (1 for raw).
    pub samples: i32,
    /// Received bytes counter (last value in a bucket).
    pub rx_bytes: Option<i64>,
    /// Sent bytes counter.
    pub tx_bytes: Option<i64>,
    /// Receive errors counter.
    pub rx_errors: Option<i64>,
    /// Send errors counter.
    pub tx_errors: Option<i64>,
    /// Receive rate in bits/s since the previous sample (raw) or over the bucket (rollup);
    /// absent for the first sample and across counter resets.
    pub rx_bps: Option<Stat>,
    /// Send rate in bits/s.
    pub tx_bps: Option<Stat>,
}

/// What [`samples`] returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Samples {
    /// The resolution actually used (never `Auto`).
    pub resolution: Resolution,
    /// Device gauges, oldest first.
    pub device: Vec<DevicePoint>,
    /// Interface counters, oldest first, then by interface name.
    pub interfaces: Vec<InterfacePoint>,
}

fn stat(row: &sqlx::postgres::PgRow, prefix: &str) -> Result<Option<Stat>, sqlx::Error> {
    let min: Option<f64> = row.try_get(format!("{prefix}_min").as_str())?;
    let avg: Option<f64> = row.try_get(format!("{prefix}_avg").as_str())?;
    let max: Option<f64> = row.try_get(format!("{prefix}_max").as_str())?;
    Ok(match (min, avg, max) {
        (Some(min), Some(avg), Some(max)) => Some(Stat { min, avg, max }),
        _ => None,
    })
}

/// Samples of `device` of `tenant` with `from <= at < to`.
pub async fn samples(
    app_pool: &PgPool,
    tenant: TenantId,
    device: DeviceId,
    from: OffsetDateTime,
    to: OffsetDateTime,
    resolution: Resolution,
) -> Result<Samples, StoreError> {
    if to <= from {
        return Err(StoreError::Invalid(
            "the range is empty: `to` must be after `from`".to_owned(),
        ));
    }
    let resolution = match resolution {
        Resolution::Auto if to - from <= AUTO_RAW_MAX => Resolution::Raw,
        Resolution::Auto => Resolution::Rollup,
        r => r,
    };
    let mut tx = begin_tenant(app_pool, tenant).await?;
    let read = StoreError::db("read samples");
    let (device_rows, interface_rows) = if resolution == Resolution::Raw {
        let d = sqlx::query(
            "SELECT at, 1::int AS samples, cpu_load::float8 AS cpu_min, cpu_load::float8 AS cpu_avg, \
                    cpu_load::float8 AS cpu_max, memory_used::float8 AS mem_min, \
                    memory_used::float8 AS mem_avg, memory_used::float8 AS mem_max, memory_total, \
                    hdd_free::float8 AS hdd_min, hdd_free::float8 AS hdd_avg, \
                    hdd_free::float8 AS hdd_max, hdd_total, uptime_secs \
             FROM device_samples WHERE tenant_id = $1 AND device_id = $2 AND at >= $3 AND at < $4 \
             ORDER BY at LIMIT $5",
        )
        .bind(tenant.as_uuid())
        .bind(device.as_uuid())
        .bind(from)
        .bind(to)
        .bind(RAW_ROW_LIMIT)
        .fetch_all(&mut *tx)
        .await
        .map_err(read)?;
        let i = sqlx::query(
            "SELECT at, interface, 1::int AS samples, rx_bytes, tx_bytes, rx_errors, tx_errors, \
                    rx_bps AS rx_bps_min, rx_bps AS rx_bps_avg, rx_bps AS rx_bps_max, \
                    tx_bps AS tx_bps_min, tx_bps AS tx_bps_avg, tx_bps AS tx_bps_max \
             FROM (SELECT at, interface, rx_bytes, tx_bytes, rx_errors, tx_errors, \
                          CASE WHEN rx_bytes >= lag(rx_bytes) OVER w AND at > lag(at) OVER w \
                               THEN (rx_bytes - lag(rx_bytes) OVER w) * 8 \
                                    / extract(epoch FROM at - lag(at) OVER w)::float8 END AS rx_bps, \
                          CASE WHEN tx_bytes >= lag(tx_bytes) OVER w AND at > lag(at) OVER w \
                               THEN (tx_bytes - lag(tx_bytes) OVER w) * 8 \
                                    / extract(epoch FROM at - lag(at) OVER w)::float8 END AS tx_bps \
                   FROM interface_samples \
                   WHERE tenant_id = $1 AND device_id = $2 AND at >= $3 AND at < $4 \
                   WINDOW w AS (PARTITION BY interface ORDER BY at)) s \
             ORDER BY at, interface LIMIT $5",
        )
        .bind(tenant.as_uuid())
        .bind(device.as_uuid())
        .bind(from)
        .bind(to)
        .bind(RAW_ROW_LIMIT * 64)
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::db("read samples"))?;
        (d, i)
    } else {
        let d = sqlx::query(
            "SELECT bucket AS at, samples, cpu_min::float8 AS cpu_min, cpu_avg, cpu_max::float8 AS cpu_max, \
                    memory_used_min::float8 AS mem_min, memory_used_avg AS mem_avg, \
                    memory_used_max::float8 AS mem_max, memory_total, hdd_free_min::float8 AS hdd_min, \
                    hdd_free_avg AS hdd_avg, hdd_free_max::float8 AS hdd_max, hdd_total, \
                    uptime_max AS uptime_secs \
             FROM device_samples_5m WHERE tenant_id = $1 AND device_id = $2 \
               AND bucket >= $3 AND bucket < $4 ORDER BY bucket",
        )
        .bind(tenant.as_uuid())
        .bind(device.as_uuid())
        .bind(from)
        .bind(to)
        .fetch_all(&mut *tx)
        .await
        .map_err(read)?;
        let i = sqlx::query(
            "SELECT bucket AS at, interface, samples, rx_bytes, tx_bytes, rx_errors, tx_errors, \
                    rx_bps_min, rx_bps_avg, rx_bps_max, tx_bps_min, tx_bps_avg, tx_bps_max \
             FROM interface_samples_5m WHERE tenant_id = $1 AND device_id = $2 \
               AND bucket >= $3 AND bucket < $4 ORDER BY bucket, interface",
        )
        .bind(tenant.as_uuid())
        .bind(device.as_uuid())
        .bind(from)
        .bind(to)
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::db("read samples"))?;
        (d, i)
    };
    tx.commit().await.map_err(StoreError::db("end read"))?;
    let decode = StoreError::db("decode samples");
    let device_points = device_rows
        .iter()
        .map(|r| -> Result<DevicePoint, sqlx::Error> {
            let one = |p: &str| -> Result<Stat, sqlx::Error> {
                Ok(stat(r, p)?.unwrap_or(Stat::one(0.0)))
            };
            Ok(DevicePoint {
                at: r.try_get("at")?,
                samples: r.try_get("samples")?,
                cpu_load: one("cpu")?,
                memory_used: one("mem")?,
                memory_total: r.try_get("memory_total")?,
                hdd_free: one("hdd")?,
                hdd_total: r.try_get("hdd_total")?,
                uptime_secs: r.try_get("uptime_secs")?,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(decode)?;
    let interface_points = interface_rows
        .iter()
        .map(|r| -> Result<InterfacePoint, sqlx::Error> {
            Ok(InterfacePoint {
                at: r.try_get("at")?,
                interface: r.try_get("interface")?,
                samples: r.try_get("samples")?,
                rx_bytes: r.try_get("rx_bytes")?,
                tx_bytes: r.try_get("tx_bytes")?,
                rx_errors: r.try_get("rx_errors")?,
                tx_errors: r.try_get("tx_errors")?,
                rx_bps: stat(r, "rx_bps")?,
                tx_bps: stat(r, "tx_bps")?,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(StoreError::db("decode samples"))?;
    Ok(Samples {
        resolution,
        device: device_points,
        interfaces: interface_points,
    })
}

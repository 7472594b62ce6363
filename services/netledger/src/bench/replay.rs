//! `bench replay`: fills a scratch database with a realistic workload
//! ([`netledger_testkit::workload`]) and times full rebuilds of every read model.
//!
//! The fill is not measured. Two replays are timed: the first over empty read-model tables
//! (the first rebuild of a fresh install, or after the tables were emptied), the second over
//! the tables the first one filled, which also pays for deleting every old row inside the
//! rebuild transaction (what `netledger replay` does on a live system).

use std::collections::BTreeMap;

use anyhow::Context as _;
use netledger_store::{EventStore, Pools, StoreOptions};
use serde::Serialize;
use sqlx::{Connection, PgConnection};

use netledger_projections::{PROJECTORS, ReplayReport, projector, replay};
use netledger_testkit::{FillReport, ScratchDb, WorkloadSpec, fill};

/// The replay benchmark's figures.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReplayReport {
    /// What was appended before the clock started.
    pub fill: FillReport,
    /// Full replay over empty read-model tables.
    pub replay: ReplayReport,
    /// Full replay again, over the tables the first one filled.
    pub replay_over_existing: ReplayReport,
    /// Rows in each read-model table afterwards.
    pub rows: BTreeMap<String, i64>,
}

/// Creates a scratch database on the server of `database_url`, appends `events` realistic
/// events (4 tenants, 2,500 devices each, workflows and rollouts; not timed), times two full
/// replays, and drops the database.
pub async fn bench_replay(database_url: &str, events: u64) -> anyhow::Result<BenchReplayReport> {
    let (db, fill) = fill_scratch(database_url, events).await?;
    let result = measure(&db, fill).await;
    db.drop_db().await?;
    result
}

/// The benchmark's set-up on its own: a scratch database holding `events` generated events,
/// settled (vacuumed and analysed). The caller drops it ([`ScratchDb::drop_db`]).
pub async fn fill_scratch(
    database_url: &str,
    events: u64,
) -> anyhow::Result<(ScratchDb, FillReport)> {
    let db = ScratchDb::create(database_url).await?;
    match fill_db(&db, events).await {
        Ok(fill) => Ok((db, fill)),
        Err(e) => {
            db.drop_db().await.ok();
            Err(e)
        }
    }
}

async fn fill_db(db: &ScratchDb, events: u64) -> anyhow::Result<FillReport> {
    let pools = Pools::connect(&db.owner, None, None, 32).await?;
    let store = EventStore::start(pools.app.clone(), StoreOptions::default());
    let spec = WorkloadSpec {
        tenants: 4,
        devices_per_tenant: 2_500,
        events,
        writers: 32,
        max_append: 20,
        seed: 6,
    };
    let fill = fill(&store, &spec).await?;
    drop(store);
    pools.app.close().await;
    pools.system.close().await;
    tracing::info!(
        events = fill.events,
        seconds = fill.seconds,
        "bench replay: filled"
    );
    // Settle the freshly written table the way autovacuum eventually would, so the timed
    // read does not also pay for setting hint bits on every row.
    let mut owner = PgConnection::connect_with(&db.owner)
        .await
        .context("cannot connect as the owner")?;
    sqlx::raw_sql("VACUUM (ANALYZE) events")
        .execute(&mut owner)
        .await
        .context("vacuum events")?;
    owner.close().await.ok();
    Ok(fill)
}

async fn measure(db: &ScratchDb, fill: FillReport) -> anyhow::Result<BenchReplayReport> {
    let pools = Pools::connect(&db.owner, None, None, 8).await?;
    let first = replay(&pools.system, None).await?;
    tracing::info!(seconds = first.seconds, "bench replay: first replay");
    let second = replay(&pools.system, None).await?;
    tracing::info!(
        seconds = second.seconds,
        "bench replay: replay over existing rows"
    );
    let mut rows = BTreeMap::new();
    for name in PROJECTORS {
        for table in projector(name)?.tables() {
            let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
                .fetch_one(&pools.system)
                .await
                .context("count rows")?;
            rows.insert((*table).to_owned(), n);
        }
    }
    pools.app.close().await;
    pools.system.close().await;
    Ok(BenchReplayReport {
        fill,
        replay: first,
        replay_over_existing: second,
        rows,
    })
}

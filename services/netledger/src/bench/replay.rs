//! `bench replay`: fills a scratch database with a realistic workload
//! ([`crate::workload`]) and times full rebuilds of every read model.
//!
//! The fill is not measured. Two replays are timed: the first over empty read-model tables
//! (the first rebuild of a fresh install, or after the tables were emptied), the second over
//! the tables the first one filled, which also pays for deleting every old row inside the
//! rebuild transaction (what `netledger replay` does on a live system).

use std::collections::BTreeMap;
use std::str::FromStr;

use netledger_store::{EventStore, Pools, StoreOptions};
use serde::Serialize;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use crate::error::ProjectionError;
use crate::projector::{PROJECTORS, projector};
use crate::replay::{ReplayReport, replay};
use crate::workload::{FillReport, WorkloadSpec, fill};

/// A throw-away database on the server of `url`, migrated, dropped by [`ScratchDb::drop_db`]
/// (the same pattern as the binary's event-store benchmark).
#[derive(Debug)]
pub struct ScratchDb {
    admin: PgConnectOptions,
    /// Owner options pointing at the scratch database.
    pub owner: PgConnectOptions,
    /// Its name.
    pub name: String,
}

fn setup(context: &str) -> impl Fn(sqlx::Error) -> ProjectionError + '_ {
    move |e| ProjectionError::Bench(format!("{context}: {e}"))
}

impl ScratchDb {
    /// Creates and migrates `netledger_bench_<random>` on the server of `url`.
    pub async fn create(url: &str) -> Result<Self, ProjectionError> {
        let base = PgConnectOptions::from_str(url)
            .map_err(|e| ProjectionError::Bench(format!("the database URL is not valid: {e}")))?;
        let admin = base.clone().database("postgres");
        let name = format!("netledger_bench_{:016x}", rand::random::<u64>());
        let mut conn = PgConnection::connect_with(&admin).await.map_err(setup(
            "cannot connect to PostgreSQL (is it running? see scripts/services)",
        ))?;
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .map_err(setup(
                "cannot create a scratch database (the user needs CREATEDB)",
            ))?;
        conn.close().await.ok();
        let owner = base.database(&name);
        let mut conn = PgConnection::connect_with(&owner)
            .await
            .map_err(setup("cannot connect to the scratch database"))?;
        netledger_store::MIGRATOR
            .run(&mut conn)
            .await
            .map_err(|e| ProjectionError::Bench(format!("migrations failed: {e}")))?;
        conn.close().await.ok();
        Ok(Self { admin, owner, name })
    }

    /// Drops the scratch database.
    pub async fn drop_db(self) -> Result<(), ProjectionError> {
        let mut conn = PgConnection::connect_with(&self.admin)
            .await
            .map_err(setup("cannot connect to drop the scratch database"))?;
        sqlx::raw_sql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await
        .map_err(setup("cannot drop the scratch database"))?;
        Ok(())
    }
}

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
pub async fn bench_replay(
    database_url: &str,
    events: u64,
) -> Result<BenchReplayReport, ProjectionError> {
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
) -> Result<(ScratchDb, FillReport), ProjectionError> {
    let db = ScratchDb::create(database_url).await?;
    match fill_db(&db, events).await {
        Ok(fill) => Ok((db, fill)),
        Err(e) => {
            db.drop_db().await.ok();
            Err(e)
        }
    }
}

async fn fill_db(db: &ScratchDb, events: u64) -> Result<FillReport, ProjectionError> {
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
        .map_err(setup("cannot connect as the owner"))?;
    sqlx::raw_sql("VACUUM (ANALYZE) events")
        .execute(&mut owner)
        .await
        .map_err(setup("vacuum events"))?;
    owner.close().await.ok();
    Ok(fill)
}

async fn measure(db: &ScratchDb, fill: FillReport) -> Result<BenchReplayReport, ProjectionError> {
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
                .map_err(setup("count rows"))?;
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

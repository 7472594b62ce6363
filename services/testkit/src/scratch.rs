//! Scratch databases: a throw-away PostgreSQL database with the real migrations, for the
//! benchmarks (tests get theirs from `#[sqlx::test]`).

use std::str::FromStr;

use anyhow::Context as _;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

/// A throw-away database on the server of `url`, migrated, dropped by [`ScratchDb::drop_db`].
#[derive(Debug)]
pub struct ScratchDb {
    admin: PgConnectOptions,
    /// Owner options pointing at the scratch database.
    pub owner: PgConnectOptions,
    /// Its name.
    pub name: String,
}

impl ScratchDb {
    /// Creates and migrates `netledger_bench_<random>` on the server of `url`.
    pub async fn create(url: &str) -> anyhow::Result<Self> {
        let base =
            PgConnectOptions::from_str(url).context("--database-url is not a PostgreSQL URL")?;
        let admin = base.clone().database("postgres");
        let name = format!("netledger_bench_{:016x}", rand::random::<u64>());
        let mut conn = PgConnection::connect_with(&admin)
            .await
            .context("cannot connect to PostgreSQL (is it running? see scripts/services)")?;
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .context("cannot create a scratch database (the user needs CREATEDB)")?;
        conn.close().await.ok();
        let owner = base.database(&name);
        let mut conn = PgConnection::connect_with(&owner)
            .await
            .context("cannot connect to the scratch database")?;
        netledger_store::MIGRATOR
            .run(&mut conn)
            .await
            .context("migrations failed")?;
        conn.close().await.ok();
        Ok(Self { admin, owner, name })
    }

    /// Drops the scratch database.
    pub async fn drop_db(self) -> anyhow::Result<()> {
        let mut conn = PgConnection::connect_with(&self.admin)
            .await
            .context("cannot connect to drop the scratch database")?;
        sqlx::raw_sql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await
        .context("cannot drop the scratch database")?;
        Ok(())
    }
}

//! Times `replay` (all projectors, or one) on an existing database, for profiling:
//! `cargo run --release -p netledger --example replay_existing -- <database-url>
//! [projector]`. The database must be migrated and hold events (for example a scratch
//! database kept by the replay benchmark).

use std::str::FromStr;

use netledger_projections::replay;
use netledger_store::Pools;
use sqlx::postgres::PgConnectOptions;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: replay_existing <database-url> [projector]"))?;
    let only = args.next();
    let owner = PgConnectOptions::from_str(&url)?;
    let pools = Pools::connect(&owner, None, None, 8).await?;
    let report = replay(&pools.system, only.as_deref()).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

//! Standalone devsim benchmark (`netledger bench devsim` calls the same `bench::run`).
//! `cargo run --release -p devsim --example bench -- --devices 10000 --seconds 5 --json`

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: devsim::bench::BenchArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    devsim::bench::run(cli.args).await?;
    Ok(())
}

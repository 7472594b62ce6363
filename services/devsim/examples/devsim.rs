//! Standalone devsim runner (the `netledger devsim` subcommand calls the same `run`).
//! `cargo run -p devsim --example devsim -- --devices 3 --listen 127.0.0.1:0 --manifest m.json`

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: devsim::DevsimArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    devsim::run(cli.args).await
}

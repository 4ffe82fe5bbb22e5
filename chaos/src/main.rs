//! `chaos`: the chaos suite and the soak; see docs/reliability.md.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = chaos::cli::Cli::parse();
    chaos::cli::run(cli).await
}

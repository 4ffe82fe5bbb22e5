use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    data::telemetry::init("info,sqlx=warn,lapin=warn");
    logic::cli::Cli::parse().run().await
}

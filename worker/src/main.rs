use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    data::telemetry::init("info,sqlx=warn,lapin=warn");
    let settings = worker::WorkerSettings::parse();
    let worker = worker::Worker::build(settings)?;
    worker.run_until_stopped().await
}

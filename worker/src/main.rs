use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Signals first: a stop that arrives during start-up is a clean stop too.
    let stop = worker::consumer::stop_on_signals()?;
    data::telemetry::init("info,sqlx=warn,lapin=warn");
    let settings = worker::WorkerSettings::parse();
    let worker = worker::Worker::build(settings)?.with_stop_token(stop);
    worker.run_until_stopped().await
}

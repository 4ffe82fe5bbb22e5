use clap::Parser;
use worker::config::WorkerCommand;

/// Threads of the runtime unless `TOKIO_WORKER_THREADS` says otherwise: fulfilment waits
/// on Postgres and the payment gateway far more than it computes, so the prefetched
/// messages interleave on few threads (one thread each would cost memory, not time).
const DEFAULT_RUNTIME_THREADS: usize = 1;

fn main() -> anyhow::Result<()> {
    service::runtime::block_on(DEFAULT_RUNTIME_THREADS, async {
        // Signals first: a stop that arrives during start-up is a clean stop too.
        let stop = service::signals::stop_on_signals()?;
        service::logging::init("info,sqlx=warn,lapin=warn");
        worker::parent::stop_when_orphaned(stop.clone());
        let settings = worker::WorkerSettings::parse();
        match &settings.command {
            Some(WorkerCommand::CheckBudget(check)) => {
                return worker::budget::run(&settings.data, check).await;
            }
            Some(WorkerCommand::Firehose(args)) => {
                return worker::streams::firehose::run(
                    &settings.data,
                    args,
                    settings.health_listen,
                    stop,
                )
                .await;
            }
            Some(WorkerCommand::Analytics(args)) => {
                return worker::streams::analytics::run(
                    &settings.data,
                    args,
                    settings.health_listen,
                    stop,
                )
                .await;
            }
            None => {}
        }
        let app = worker::Application::build(settings)?.with_stop_token(stop);
        app.run_until_stopped().await
    })
}

use clap::Parser;

/// Threads of the main runtime unless `TOKIO_WORKER_THREADS` says otherwise. The HTTP
/// requests run on actix's own worker threads; this runtime only drives the outbox relay
/// and the near cache's subscription, for which one thread is plenty.
const DEFAULT_RUNTIME_THREADS: usize = 1;

fn main() -> anyhow::Result<()> {
    service::runtime::block_on(DEFAULT_RUNTIME_THREADS, async {
        let stop = service::signals::stop_on_signals()?;
        service::logging::init("info,sqlx=warn,lapin=warn");
        logic::cli::Cli::parse().run(stop).await
    })
}

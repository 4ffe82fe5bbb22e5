use clap::Parser;

/// Threads of the main runtime unless `TOKIO_WORKER_THREADS` says otherwise. The HTTP
/// requests run on actix's own worker threads; this runtime only drives the outbox relay
/// and the near cache's subscription, for which one thread is plenty.
const DEFAULT_RUNTIME_THREADS: usize = 1;

fn main() -> anyhow::Result<()> {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        runtime.worker_threads(DEFAULT_RUNTIME_THREADS);
    }
    runtime.enable_all().build()?.block_on(async {
        data::telemetry::init("info,sqlx=warn,lapin=warn");
        logic::cli::Cli::parse().run().await
    })
}

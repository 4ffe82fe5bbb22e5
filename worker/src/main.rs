use clap::Parser;

/// Threads of the runtime unless `TOKIO_WORKER_THREADS` says otherwise: fulfilment waits
/// on Postgres and the payment gateway far more than it computes, so the prefetched
/// messages interleave on few threads (one thread each would cost memory, not time).
const DEFAULT_RUNTIME_THREADS: usize = 1;

fn main() -> anyhow::Result<()> {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        runtime.worker_threads(DEFAULT_RUNTIME_THREADS);
    }
    runtime.enable_all().build()?.block_on(async {
        // Signals first: a stop that arrives during start-up is a clean stop too.
        let stop = worker::consumer::stop_on_signals()?;
        data::telemetry::init("info,sqlx=warn,lapin=warn");
        let settings = worker::WorkerSettings::parse();
        let worker = worker::Worker::build(settings)?.with_stop_token(stop);
        worker.run_until_stopped().await
    })
}

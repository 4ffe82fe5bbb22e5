use clap::Parser;

/// Threads of the runtime unless `TOKIO_WORKER_THREADS` says otherwise: a control loop
/// that polls every few seconds and a small status server need no more than one.
const DEFAULT_RUNTIME_THREADS: usize = 1;

fn main() -> anyhow::Result<()> {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        runtime.worker_threads(DEFAULT_RUNTIME_THREADS);
    }
    runtime.enable_all().build()?.block_on(async {
        data::telemetry::init("info,lapin=warn");
        let settings = autoscaler::AutoscalerSettings::parse();
        let app = autoscaler::Application::build(settings)?;
        app.run_until_stopped().await
    })
}

use clap::Parser;

/// Threads of the runtime unless `TOKIO_WORKER_THREADS` says otherwise: a control loop
/// that polls every few seconds and a small status server need no more than one.
const DEFAULT_RUNTIME_THREADS: usize = 1;

fn main() -> anyhow::Result<()> {
    service::runtime::block_on(DEFAULT_RUNTIME_THREADS, async {
        let stop = service::signals::stop_on_signals()?;
        service::logging::init("info,lapin=warn");
        let settings = autoscaler::AutoscalerSettings::parse();
        let app = autoscaler::Application::build(settings)?.with_stop_token(stop);
        app.run_until_stopped().await
    })
}

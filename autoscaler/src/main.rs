use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    data::telemetry::init("info,lapin=warn");
    let settings = autoscaler::AutoscalerSettings::parse();
    let app = autoscaler::Application::build(settings)?;
    app.run_until_stopped().await
}

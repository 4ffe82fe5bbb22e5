use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    presentation::telemetry::init("info");
    let settings = presentation::Settings::parse();
    let app = presentation::Application::build(settings).await?;
    tracing::info!(address = %app.address(), "presentation listening");
    app.run_until_stopped().await
}

use std::io::Read;

use clap::Parser;
use presentation::config::{Cli, Command};

/// Threads of the main runtime unless `TOKIO_WORKER_THREADS` says otherwise. The pages
/// are served on actix's own worker threads; this runtime only starts them.
const DEFAULT_RUNTIME_THREADS: usize = 1;

fn main() -> anyhow::Result<()> {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        runtime.worker_threads(DEFAULT_RUNTIME_THREADS);
    }
    runtime.enable_all().build()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::HashPassword) = cli.command {
        let mut password = String::new();
        std::io::stdin().read_to_string(&mut password)?;
        // `echo secret |` adds a newline that is not part of the password.
        let password = password.strip_suffix('\n').unwrap_or(&password);
        let password = password.strip_suffix('\r').unwrap_or(password);
        println!("{}", presentation::ops::hash_password(password)?);
        return Ok(());
    }
    presentation::telemetry::init("info");
    let app = presentation::Application::build(cli.settings).await?;
    tracing::info!(address = %app.address(), "presentation listening");
    app.run_until_stopped().await
}

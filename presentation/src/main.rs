use std::io::Read;

use clap::Parser;
use presentation::config::{Cli, Command};
use tokio_util::sync::CancellationToken;

/// Threads of the main runtime unless `TOKIO_WORKER_THREADS` says otherwise. The pages
/// are served on actix's own worker threads; this runtime only starts them.
const DEFAULT_RUNTIME_THREADS: usize = 1;

/// Exit status of a process ended by SIGINT, as a shell reports it.
const INTERRUPTED: i32 = 130;

fn main() -> anyhow::Result<()> {
    service::runtime::block_on(DEFAULT_RUNTIME_THREADS, async {
        // Signals first: a stop that arrives during start-up is a clean stop too.
        let stop = service::signals::stop_on_signals()?;
        run(Cli::parse(), stop).await
    })
}

async fn run(cli: Cli, stop: CancellationToken) -> anyhow::Result<()> {
    if let Some(Command::HashPassword) = cli.command {
        // The signal handlers replace the default action, and the read below blocks this
        // thread: without this, Ctrl-C at the password prompt would do nothing.
        tokio::spawn(async move {
            stop.cancelled().await;
            std::process::exit(INTERRUPTED);
        });
        let mut password = String::new();
        std::io::stdin().read_to_string(&mut password)?;
        // `echo secret |` adds a newline that is not part of the password.
        let password = password.strip_suffix('\n').unwrap_or(&password);
        let password = password.strip_suffix('\r').unwrap_or(password);
        println!("{}", presentation::ops::hash_password(password)?);
        return Ok(());
    }
    service::logging::init("info");
    let app = presentation::Application::build(cli.settings)
        .await?
        .with_stop_token(stop);
    tracing::info!(address = %app.address(), "presentation listening");
    app.run_until_stopped().await
}

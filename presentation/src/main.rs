use std::io::Read;

use clap::Parser;
use presentation::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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

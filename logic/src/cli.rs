//! The `logic` command line: serve (default), `migrate`, `seed`.

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::{Application, LogicSettings};

#[derive(Debug, Parser)]
#[command(name = "logic", version, about = "Strata's private logic API")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub settings: LogicSettings,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending database migrations (safe when several replicas start at once).
    Migrate,
    /// Migrate, then insert the deterministic demo catalog (running it twice changes nothing).
    Seed {
        /// Number of products in the catalog.
        #[arg(long, default_value_t = 10_000)]
        products: u64,
    },
    /// Serve the API (the default), applying pending migrations first.
    Serve,
}

impl Cli {
    /// Runs the command; `stop` (cancelled by SIGINT/SIGTERM) stops the server.
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        // Migrating and seeding use Postgres only, so they need only its secret.
        let data = if matches!(self.command, Some(Command::Migrate | Command::Seed { .. })) {
            self.settings.data.clone().resolve_database_files()?
        } else {
            self.settings.data.clone().resolve_files()?
        };
        match self.command.unwrap_or(Command::Serve) {
            Command::Migrate => {
                data::store::db::migrate(&data).await?;
                tracing::info!("migrations applied");
                Ok(())
            }
            Command::Seed { products } => {
                let pool = data::store::db::migrate(&data).await?;
                let inserted = crate::seed::seed(&pool, products).await?;
                tracing::info!(products, inserted, "catalog seeded");
                Ok(())
            }
            Command::Serve => {
                self.settings.check_profile()?;
                let app = Application::build(LogicSettings {
                    data,
                    ..self.settings
                })
                .await?
                .with_stop_token(stop);
                tracing::info!(address = %app.address(), "logic listening");
                app.run_until_stopped().await
            }
        }
    }
}

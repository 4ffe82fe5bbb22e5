//! The Postgres pool and the embedded migrations.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

use crate::DataSettings;

/// Every migration in `migrations/`, compiled into the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// A lazily connecting pool: the process starts even while Postgres is down and readiness
/// reports it. Statement and lock timeouts bound every query.
pub fn pool(settings: &DataSettings) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(settings.database_url.expose_secret())
        .context("DATABASE_URL is not a valid Postgres URL")?
        .application_name("strata")
        .options([("statement_timeout", "30s"), ("lock_timeout", "10s")]);
    Ok(PgPoolOptions::new()
        .max_connections(settings.database_max_connections)
        .min_connections(0)
        .acquire_timeout(settings.acquire_timeout())
        .idle_timeout(Duration::from_secs(300))
        .connect_lazy_with(options))
}

/// Creates the database if it does not exist yet, then applies pending migrations. sqlx
/// holds a Postgres advisory lock while migrating, so replicas starting together are safe.
pub async fn migrate(settings: &DataSettings) -> anyhow::Result<PgPool> {
    let url = settings.database_url.expose_secret();
    if !Postgres::database_exists(url)
        .await
        .context("connecting to Postgres")?
    {
        // Two replicas may race here; losing the race is fine.
        if let Err(err) = Postgres::create_database(url).await
            && !Postgres::database_exists(url).await.unwrap_or(false)
        {
            return Err(err).context("creating the database");
        }
    }
    let pool = pool(settings)?;
    MIGRATOR.run(&pool).await.context("applying migrations")?;
    Ok(pool)
}

/// Postgres answers a trivial query.
pub async fn ping(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}

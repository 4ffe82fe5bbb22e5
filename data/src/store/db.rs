//! The Postgres pool and the embedded migrations.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool, Postgres};

use crate::DataSettings;

/// Every migration in `migrations/`, compiled into the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Idle time after which a pooled connection is checked before use.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

/// A lazily connecting pool: the process starts even while Postgres is down and readiness
/// reports it. Statement and lock timeouts bound every query.
///
/// A connection is pinged before it is handed out only when it sat idle for a while (after
/// an outage, idle connections are the ones that went stale); a busy connection was just
/// used, and pinging it on every acquire cost a round trip per request.
pub fn pool(settings: &DataSettings) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(settings.database_url.expose_secret())
        .context("DATABASE_URL is not a valid Postgres URL")?
        .application_name("strata")
        .options([("statement_timeout", "30s"), ("lock_timeout", "10s")]);
    Ok(pool_with(
        options,
        settings.database_max_connections,
        settings.acquire_timeout(),
    ))
}

/// A pool with the settings of [`pool`] on the given connection options: for a task that
/// needs connections of its own beside a process's pool (the outbox relay).
pub fn pool_with(
    options: PgConnectOptions,
    max_connections: u32,
    acquire_timeout: Duration,
) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(acquire_timeout)
        .idle_timeout(Duration::from_secs(300))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_WHEN_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_lazy_with(options)
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

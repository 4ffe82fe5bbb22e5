//! `worker check-budget`: whether a fleet of workers fits Postgres' connection limit.
//! Each worker opens up to `DATABASE_MAX_CONNECTIONS` connections in its pool and one more
//! for its outbox relay's batches (or, with `OUTBOX_RELAY=false`, its notifier's
//! wake-ups); `--replicas` workers plus
//! `--reserve` connections for everything else (logic's pools, jobs, an operator's psql)
//! must fit in `max_connections` minus the slots Postgres keeps for superusers
//! (`superuser_reserved_connections`, and `reserved_connections` from Postgres 16 on).
//! The autoscaler runs this once at start with its maximum, through the worker binary,
//! so that it needs no database driver of its own.

use std::time::Duration;

use anyhow::Context;
use data::DataSettings;
use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// Longest the check may take to connect and read the settings.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, clap::Args)]
pub struct CheckBudget {
    /// The most workers that may run at once.
    #[arg(long)]
    pub replicas: u32,
    /// Connections kept for everything but the workers.
    #[arg(long, default_value_t = 0)]
    pub reserve: u32,
}

/// The server's limits, as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    pub max_connections: u32,
    /// Superuser and `pg_use_reserved_connections` slots together.
    pub reserved: u32,
}

/// The outcome of the arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub replicas: u32,
    pub pool: u32,
    /// Connections a worker opens outside its pool (its relay's or its notifier's).
    pub own: u32,
    pub reserve: u32,
    pub limits: ServerLimits,
}

impl Budget {
    pub fn needed(&self) -> u64 {
        u64::from(self.replicas) * (u64::from(self.pool) + u64::from(self.own))
            + u64::from(self.reserve)
    }

    pub fn available(&self) -> u64 {
        u64::from(
            self.limits
                .max_connections
                .saturating_sub(self.limits.reserved),
        )
    }

    pub fn fits(&self) -> bool {
        self.needed() <= self.available()
    }

    /// One line with every figure of the sum.
    pub fn explain(&self) -> String {
        format!(
            "{} workers x (DATABASE_MAX_CONNECTIONS {} + {} of the outbox relay) + {} reserved \
             for other clients = {} connections; Postgres allows {} (max_connections {} - {} \
             reserved for superusers)",
            self.replicas,
            self.pool,
            self.own,
            self.reserve,
            self.needed(),
            self.available(),
            self.limits.max_connections,
            self.limits.reserved,
        )
    }
}

/// Reads `max_connections` and the reserved slots from the server.
pub async fn server_limits(settings: &DataSettings) -> anyhow::Result<ServerLimits> {
    use secrecy::ExposeSecret;
    let read = async {
        let mut conn = PgConnection::connect(settings.database_url.expose_secret()).await?;
        let (max, superuser, reserved): (String, String, Option<String>) = sqlx::query_as(
            "SELECT current_setting('max_connections'), \
                    current_setting('superuser_reserved_connections'), \
                    current_setting('reserved_connections', true)",
        )
        .fetch_one(&mut conn)
        .await?;
        let _ = conn.close().await;
        anyhow::Ok((max, superuser, reserved))
    };
    let (max, superuser, reserved) = tokio::time::timeout(CHECK_TIMEOUT, read)
        .await
        .context("Postgres did not answer in time")?
        .context("reading max_connections from Postgres")?;
    let number = |name: &str, v: &str| {
        v.parse::<u32>()
            .with_context(|| format!("{name} is not a number: {v}"))
    };
    Ok(ServerLimits {
        max_connections: number("max_connections", &max)?,
        reserved: number("superuser_reserved_connections", &superuser)?
            + reserved
                .filter(|v| !v.is_empty())
                .map(|v| number("reserved_connections", &v))
                .transpose()?
                .unwrap_or(0),
    })
}

/// Runs the check: prints the sum, or fails (the process exits 1) when it does not fit.
/// Connections a worker opens outside its pool: its relay's (or its notifier's) one.
pub const OWN_CONNECTIONS: u32 = 1;

pub async fn run(settings: &DataSettings, check: &CheckBudget) -> anyhow::Result<()> {
    let settings = settings.clone().resolve_files()?;
    let budget = Budget {
        replicas: check.replicas,
        pool: settings.database_max_connections,
        own: OWN_CONNECTIONS,
        reserve: check.reserve,
        limits: server_limits(&settings).await?,
    };
    if budget.fits() {
        println!("the Postgres connection budget fits: {}", budget.explain());
        Ok(())
    } else {
        anyhow::bail!(
            "the Postgres connection budget is exceeded: {}. Lower the maximum number of \
             workers or DATABASE_MAX_CONNECTIONS, or raise Postgres' max_connections",
            budget.explain()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sum_counts_every_worker_connection_and_the_reserved_slots() {
        let limits = ServerLimits {
            max_connections: 100,
            reserved: 3,
        };
        let budget = |replicas, pool, reserve| Budget {
            replicas,
            pool,
            own: OWN_CONNECTIONS,
            reserve,
            limits,
        };
        assert!(budget(8, 10, 9).fits(), "8 x 11 + 9 = 97");
        assert!(!budget(8, 10, 10).fits(), "98 > 97");
        assert!(budget(7, 10, 12).fits());
        let text = budget(9, 10, 12).explain();
        assert_eq!(
            text,
            "9 workers x (DATABASE_MAX_CONNECTIONS 10 + 1 of the outbox relay) + 12 reserved \
             for other clients = 111 connections; Postgres allows 97 (max_connections 100 - 3 \
             reserved for superusers)"
        );
    }
}

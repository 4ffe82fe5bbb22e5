//! Settings of the backing services, read from flags or the environment. Every value has a
//! default that works against the local services; secrets may come from `*_FILE` paths.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use service::Profile;
use service::profile::production_error;
use service::secrets::read_named_file;

/// The Postgres URL of local development (trust authentication, no password).
pub const DEV_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/strata";
/// The AMQP URL of local development (RabbitMQ's `guest` account).
pub const DEV_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Connection settings shared by every binary that talks to Postgres, Redis or RabbitMQ.
#[derive(Debug, Clone, clap::Args)]
pub struct DataSettings {
    /// Configuration profile: `production` requires every secret to be set explicitly.
    #[arg(
        long,
        env = "STRATA_PROFILE",
        value_enum,
        default_value = "development"
    )]
    pub profile: Profile,
    /// Postgres connection URL (default: the local development database).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = DEV_DATABASE_URL,
        hide_env_values = true,
        hide_default_value = true
    )]
    pub database_url: SecretString,
    /// File holding the Postgres URL (Docker/Kubernetes secret); wins over DATABASE_URL.
    #[arg(long, env = "DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,
    /// Largest number of pooled Postgres connections.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub database_max_connections: u32,
    /// How long a request waits for a pooled connection before failing, in milliseconds.
    #[arg(long, env = "DATABASE_ACQUIRE_TIMEOUT_MS", default_value_t = 3000)]
    pub database_acquire_timeout_ms: u64,

    /// Redis URL of the read cache.
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    pub redis_url: SecretString,
    /// File holding the Redis URL; wins over REDIS_URL.
    #[arg(long, env = "REDIS_URL_FILE")]
    pub redis_url_file: Option<PathBuf>,
    /// Prefix of every cache key (lets several deployments share one Redis).
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "strata:")]
    pub redis_key_prefix: String,
    /// Time-to-live of cached reads, in seconds.
    #[arg(long, env = "CACHE_TTL_SECS", default_value_t = 300)]
    pub cache_ttl_secs: u64,
    /// Connect and response timeout of Redis calls, in milliseconds.
    #[arg(long, env = "REDIS_TIMEOUT_MS", default_value_t = 250)]
    pub redis_timeout_ms: u64,

    /// AMQP URL of RabbitMQ; a vhost goes in the path, URL-encoded (`%2f` is `/`).
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = DEV_AMQP_URL,
        hide_env_values = true,
        hide_default_value = true
    )]
    pub amqp_url: SecretString,
    /// File holding the AMQP URL; wins over AMQP_URL.
    #[arg(long, env = "AMQP_URL_FILE")]
    pub amqp_url_file: Option<PathBuf>,
    /// Returns to the queue one message may have: it is delivered at most this many times
    /// plus one, then dead-lettered to `orders.fulfil.dlq`.
    #[arg(long, env = "AMQP_DELIVERY_LIMIT", default_value_t = 5)]
    pub delivery_limit: u32,
    /// Partitions of the inventory feed's FIFO topology (`inventory.fifo.p0` ...): a sku's
    /// adjustments always go to partition `fnv1a(sku) % FIFO_PARTITIONS`. Changing it moves
    /// skus between partitions: drain the partitions first (docs/messaging.md).
    #[arg(long, env = "FIFO_PARTITIONS", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub fifo_partitions: u16,
    /// Shards and retention of the event stream.
    #[command(flatten)]
    pub stream: crate::stream::StreamSettings,
}

impl Default for DataSettings {
    fn default() -> Self {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            data: DataSettings,
        }
        // Parsing an empty command line yields the documented defaults (and the environment).
        Defaults::parse_from(["defaults"]).data
    }
}

impl DataSettings {
    /// Replaces each URL by the content of its `*_FILE`, where one is given, then checks the
    /// result against the profile.
    pub fn resolve_files(self) -> anyhow::Result<Self> {
        let settings = self.read_files()?;
        if settings.profile == Profile::Production {
            settings.check_production()?;
        }
        Ok(settings)
    }

    /// [`Self::resolve_files`] for a process that uses Postgres only (migrations, seeding):
    /// the production profile then asks for the database's secret alone.
    pub fn resolve_database_files(self) -> anyhow::Result<Self> {
        let settings = self.read_files()?;
        if settings.profile == Profile::Production {
            settings.check_production_database()?;
        }
        Ok(settings)
    }

    fn read_files(mut self) -> anyhow::Result<Self> {
        if let Some(path) = &self.database_url_file {
            self.database_url = read_named_file("DATABASE_URL", path)?;
        }
        if let Some(path) = &self.redis_url_file {
            self.redis_url = read_named_file("REDIS_URL", path)?;
        }
        if let Some(path) = &self.amqp_url_file {
            self.amqp_url = read_named_file("AMQP_URL", path)?;
        }
        Ok(self)
    }

    /// The production profile's rules: the database and broker URLs are given explicitly
    /// and the broker is not reached with `guest:guest`.
    pub fn check_production(&self) -> anyhow::Result<()> {
        self.check_production_database()?;
        check_production_amqp("AMQP_URL", &self.amqp_url)
    }

    fn check_production_database(&self) -> anyhow::Result<()> {
        if self.database_url.expose_secret() == DEV_DATABASE_URL {
            return Err(production_error(
                "DATABASE_URL (or DATABASE_URL_FILE) must be set; the built-in default is the \
                 local development database",
            ));
        }
        Ok(())
    }

    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.database_acquire_timeout_ms)
    }

    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }

    pub fn cache_ttl(&self) -> Duration {
        Duration::from_secs(self.cache_ttl_secs)
    }

    /// The AMQP URL, to be passed straight to the client and never logged.
    pub fn amqp_url(&self) -> &str {
        self.amqp_url.expose_secret()
    }
}

/// Refuses an AMQP URL that has no credentials or RabbitMQ's `guest:guest` (production).
pub fn check_production_amqp(name: &str, url: &SecretString) -> anyhow::Result<()> {
    let url = url.expose_secret();
    if url == DEV_AMQP_URL {
        return Err(production_error(format!(
            "{name} (or {name}_FILE) must be set; the built-in default is the local development \
             broker"
        )));
    }
    let account = crate::messaging::management::AmqpAccount::of(url)
        .map_err(|_| production_error(format!("{name} is not an AMQP URL")))?;
    if account.user == "guest" && account.password == "guest" {
        return Err(production_error(format!(
            "{name} must not use RabbitMQ's guest:guest account (give the user and password \
             in the URL)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings with exactly these values, whatever the environment of the test run says.
    fn settings(profile: Profile, database_url: &str, amqp_url: &str) -> DataSettings {
        DataSettings {
            profile,
            database_url: SecretString::from(database_url.to_owned()),
            database_url_file: None,
            amqp_url: SecretString::from(amqp_url.to_owned()),
            amqp_url_file: None,
            redis_url_file: None,
            ..DataSettings::default()
        }
    }

    fn error(settings: DataSettings) -> String {
        match settings.resolve_files() {
            Ok(_) => String::new(),
            Err(e) => format!("{e:#}"),
        }
    }

    const DB: &str = "postgres://strata:pw@db:5432/strata";
    const MQ: &str = "amqp://strata:pw@mq:5672/%2f";

    #[test]
    fn production_refuses_every_default_secret() {
        let prod = |db, mq| error(settings(Profile::Production, db, mq));
        assert_eq!(prod(DB, MQ), "");
        assert!(
            prod(DEV_DATABASE_URL, MQ).contains("DATABASE_URL (or DATABASE_URL_FILE) must be set")
        );
        assert!(prod(DB, DEV_AMQP_URL).contains("AMQP_URL (or AMQP_URL_FILE) must be set"));
        let guest = prod(DB, "amqp://guest:guest@mq:5672/%2f");
        assert!(guest.contains("guest:guest"), "{guest}");
        // No credentials in the URL means guest:guest to the client.
        let none = prod(DB, "amqp://mq:5672/%2f");
        assert!(none.contains("guest:guest"), "{none}");
        // Errors name the setting, never its value.
        assert!(!guest.contains("mq:5672"));
        // Migrations and seeding use Postgres only: the broker's URL is not asked for.
        let database_only = |db| {
            settings(Profile::Production, db, DEV_AMQP_URL)
                .resolve_database_files()
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default()
        };
        assert_eq!(database_only(DB), "");
        assert!(database_only(DEV_DATABASE_URL).contains("DATABASE_URL (or DATABASE_URL_FILE)"));
    }

    #[test]
    fn development_keeps_the_local_defaults() {
        let dev = settings(Profile::Development, DEV_DATABASE_URL, DEV_AMQP_URL);
        assert_eq!(error(dev), "");
        // The profile is a flag too.
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            data: DataSettings,
        }
        let cli = Cli::try_parse_from(["test", "--profile", "production"]).expect("parses");
        assert_eq!(cli.data.profile, Profile::Production);
        assert!(Cli::try_parse_from(["test", "--profile", "staging"]).is_err());
    }

    #[test]
    fn secret_files_win_and_must_not_be_empty() {
        let dir = std::env::temp_dir().join(format!("strata-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let good = dir.join("db");
        std::fs::write(&good, "postgres://strata:from-file@db/strata\n").expect("write");
        let empty = dir.join("empty");
        std::fs::write(&empty, "\n").expect("write");
        let with_file = |path: &std::path::Path| DataSettings {
            database_url_file: Some(path.to_owned()),
            ..settings(Profile::Development, DEV_DATABASE_URL, DEV_AMQP_URL)
        };
        let read = with_file(&good).resolve_files().expect("ok");
        assert_eq!(
            read.database_url.expose_secret(),
            "postgres://strata:from-file@db/strata"
        );
        let err = error(with_file(&empty));
        assert!(
            err.contains("DATABASE_URL_FILE") && err.contains("is empty"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}

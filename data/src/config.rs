//! Settings of the backing services, read from flags or the environment. Every value has a
//! default that works against the local services; secrets may come from `*_FILE` paths.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};

/// Connection settings shared by every binary that talks to Postgres, Redis or RabbitMQ.
#[derive(Debug, Clone, clap::Args)]
pub struct DataSettings {
    /// Postgres connection URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/strata",
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
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub amqp_url: SecretString,
    /// File holding the AMQP URL; wins over AMQP_URL.
    #[arg(long, env = "AMQP_URL_FILE")]
    pub amqp_url_file: Option<PathBuf>,
    /// Deliveries of one message before it is dead-lettered to `orders.fulfil.dlq`.
    #[arg(long, env = "AMQP_DELIVERY_LIMIT", default_value_t = 5)]
    pub delivery_limit: u32,
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
    /// Replaces each URL by the content of its `*_FILE`, where one is given.
    pub fn resolve_files(mut self) -> anyhow::Result<Self> {
        if let Some(path) = &self.database_url_file {
            self.database_url = read_secret_file(path)?;
        }
        if let Some(path) = &self.redis_url_file {
            self.redis_url = read_secret_file(path)?;
        }
        if let Some(path) = &self.amqp_url_file {
            self.amqp_url = read_secret_file(path)?;
        }
        Ok(self)
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

/// Reads a secret from a file as Docker and Kubernetes mount them (trailing newline dropped).
pub fn read_secret_file(path: &std::path::Path) -> anyhow::Result<SecretString> {
    let raw = std::fs::read_to_string(path)
        .with_context(|| format!("reading secret file {}", path.display()))?;
    Ok(SecretString::from(
        raw.trim_end_matches(['\r', '\n']).to_owned(),
    ))
}

/// Resolves a secret given either directly or as a file; the file wins.
pub fn secret_or_file(
    value: Option<SecretString>,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Option<SecretString>> {
    match file {
        Some(path) => read_secret_file(path).map(Some),
        None => Ok(value.filter(|v| !v.expose_secret().is_empty())),
    }
}

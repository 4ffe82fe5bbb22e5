//! Settings of the logic binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use data::DataSettings;
use secrecy::SecretString;
use service::Profile;

#[derive(Debug, Clone, clap::Args)]
pub struct LogicSettings {
    /// Address the API listens on; keep it private (the logic tier is not public).
    #[arg(long = "listen", env = "LISTEN_ADDR", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// Bearer token of the admin endpoints (product changes, ops, the audit trail). Unset:
    /// admin calls get 401. At least 32 characters in the production profile.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<SecretString>,
    /// File holding the admin token; wins over ADMIN_TOKEN.
    #[arg(long, env = "ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// The outbox relay.
    #[command(flatten)]
    pub relay: data::messaging::relay::RelaySettings,
    /// RabbitMQ management API, for queue figures on the ops endpoints (credentials and
    /// vhost come from AMQP_URL).
    #[arg(
        long,
        env = "RABBITMQ_API_URL",
        default_value = "http://127.0.0.1:15672"
    )]
    pub rabbitmq_api_url: String,
    /// The autoscaler's base URL; its `/status` is included in the ops statistics.
    #[arg(long, env = "AUTOSCALER_URL")]
    pub autoscaler_url: Option<String>,
    /// The topic policy (JSON: principals with the SHA-256 of their token, the topics each
    /// may publish to and subscribe to, and an optional broker user limited to the same
    /// topics). Unset: only the admin token publishes and subscribes.
    #[arg(long, env = "TOPIC_POLICY_FILE")]
    pub topic_policy_file: Option<PathBuf>,
    /// Delivery attempts of a subscription (the worker's setting of the same name): the API
    /// declares `attempts - 1` retry tiers for each new subscription.
    #[arg(long, env = "SUBSCRIPTION_MAX_ATTEMPTS", default_value_t = 5)]
    pub subscription_max_attempts: u32,
    /// Threads serving HTTP requests. Each costs memory; more than the CPUs add nothing,
    /// and replicas scale further.
    #[arg(long, env = "HTTP_WORKERS", default_value_t = 2)]
    pub http_workers: usize,
    /// How long a read of the event stream waits for its first record, in milliseconds: a
    /// position with nothing after it answers empty after this long.
    #[arg(long, env = "STREAM_READ_WAIT_MS", default_value_t = 500)]
    pub stream_read_wait_ms: u64,
    /// A pause between records this long ends a read of the event stream, in milliseconds.
    #[arg(long, env = "STREAM_READ_IDLE_MS", default_value_t = 150)]
    pub stream_read_idle_ms: u64,
    #[command(flatten)]
    pub near_cache: data::cache::near::NearCacheSettings,
    #[command(flatten)]
    pub stock: crate::stock::StockSettings,
    #[command(flatten)]
    pub data: DataSettings,
}

impl LogicSettings {
    /// The production profile's rule for logic's own secret: the admin token is set (directly
    /// or as a file) and at least 32 characters. The data settings check themselves when
    /// their files are resolved.
    pub fn check_profile(&self) -> anyhow::Result<()> {
        if self.data.profile != Profile::Production {
            return Ok(());
        }
        let token = service::secrets::value_or_file(
            "ADMIN_TOKEN",
            self.admin_token.as_ref(),
            self.admin_token_file.as_deref(),
        )?;
        service::profile::check_production_token("ADMIN_TOKEN", token.as_ref())
    }

    /// Settings for tests and embedding: defaults, then the given data settings.
    pub fn with_data(data: DataSettings) -> Self {
        LogicSettings {
            listen: ([127, 0, 0, 1], 0).into(),
            admin_token: None,
            admin_token_file: None,
            relay: data::messaging::relay::RelaySettings::default(),
            rabbitmq_api_url: "http://127.0.0.1:15672".to_owned(),
            autoscaler_url: None,
            http_workers: 2,
            topic_policy_file: None,
            subscription_max_attempts: 5,
            stream_read_wait_ms: 500,
            stream_read_idle_ms: 150,
            near_cache: data::cache::near::NearCacheSettings::default(),
            stock: crate::stock::StockSettings::default(),
            data,
        }
    }
}

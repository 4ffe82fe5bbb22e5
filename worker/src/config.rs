//! Settings of the worker binary.

use std::net::SocketAddr;

use clap::Parser;
use data::DataSettings;

#[derive(Debug, Clone, Parser)]
#[command(name = "worker", version, about = "Strata's fulfilment worker")]
pub struct WorkerSettings {
    /// Messages delivered to this worker before it acks; also its concurrency.
    #[arg(long, env = "WORKER_PREFETCH", default_value_t = 10)]
    pub prefetch: u16,
    /// Simulated payment gateway latency, in milliseconds.
    #[arg(long, env = "PAYMENT_LATENCY_MS", default_value_t = 50)]
    pub payment_latency_ms: u64,
    /// Share of payments the simulated gateway declines, 0.0 to 1.0.
    #[arg(long, env = "PAYMENT_DECLINE_RATE", default_value_t = 0.0)]
    pub payment_decline_rate: f64,
    /// Delay before a message that failed for a transient reason goes back to the queue,
    /// in milliseconds (keeps an outage from burning through the delivery limit).
    #[arg(long, env = "WORKER_RETRY_DELAY_MS", default_value_t = 1000)]
    pub retry_delay_ms: u64,
    /// Address of `/healthz`, `/readyz` and `/metrics` (e.g. `0.0.0.0:9091`); unset, the
    /// worker opens no port. Give each worker its own: a taken address stops the worker.
    #[arg(long = "health-listen", env = "HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,
    /// Consume the inventory feed's FIFO partitions (besides `orders.fulfil`).
    #[arg(long, env = "FIFO_CONSUMERS", default_value_t = true, action = clap::ArgAction::Set)]
    pub fifo_consumers: bool,
    /// How often the FIFO consumers look at the partitions' spread across workers, in
    /// milliseconds.
    #[arg(long, env = "FIFO_BALANCE_INTERVAL_MS", default_value_t = 2000)]
    pub fifo_balance_interval_ms: u64,
    /// RabbitMQ management API (who holds which partition, for the spread).
    #[arg(
        long,
        env = "RABBITMQ_API_URL",
        default_value = "http://127.0.0.1:15672"
    )]
    pub rabbitmq_api_url: String,
    #[command(flatten)]
    pub data: DataSettings,
}

impl WorkerSettings {
    /// Defaults (and the environment), with the given data settings: for tests and embedding.
    pub fn with_data(data: DataSettings) -> Self {
        let mut settings = WorkerSettings::parse_from(["worker"]);
        settings.data = data;
        settings
    }
}

//! Settings of the worker binary.

use std::net::SocketAddr;
use std::time::Duration;

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
    /// Share of payment calls the simulated gateway never answers, 0.0 to 1.0 (the
    /// payment timeout or the visibility deadline cuts them).
    #[arg(long, env = "PAYMENT_HANG_RATE", default_value_t = 0.0)]
    pub payment_hang_rate: f64,
    /// Bound of one call to the payment gateway, in milliseconds; a call without answer
    /// is tried again (a few attempts with backoff, the order id as idempotency key),
    /// then the message returns to the queue.
    #[arg(long, env = "PAYMENT_TIMEOUT_MS", default_value_t = 5000)]
    pub payment_timeout_ms: u64,
    /// How long a reservation holds its stock, in seconds; past it the sweeper releases
    /// it. Must exceed `WORKER_VISIBILITY_MAX_SECS`, so that no delivery still works on a
    /// reservation that lapses.
    #[arg(long, env = "RESERVATION_TTL_SECS", default_value_t = 600)]
    pub reservation_ttl_secs: u64,
    /// How often the reservation sweeper looks for lapsed reservations, in seconds.
    #[arg(long, env = "RESERVATION_SWEEP_SECS", default_value_t = 5)]
    pub reservation_sweep_secs: u64,
    /// A delivery's deadline, in seconds: past it the worker drops the work and gives the
    /// message back for another worker. Each step that starts (reserve, each payment
    /// call, settle) pushes it out by this much again.
    #[arg(long, env = "WORKER_VISIBILITY_TIMEOUT_SECS", default_value_t = 30)]
    pub visibility_timeout_secs: u64,
    /// The furthest the steps may push a delivery's deadline, in seconds from its start
    /// (the pauses of a database outage do not count).
    #[arg(long, env = "WORKER_VISIBILITY_MAX_SECS", default_value_t = 300)]
    pub visibility_max_secs: u64,
    /// Delay before a message that failed for a transient reason other than an outage
    /// (a lock or statement timeout, say) goes back to the queue, in milliseconds. Such
    /// returns count against the delivery limit; an outage does not (it is waited out).
    #[arg(long, env = "WORKER_RETRY_DELAY_MS", default_value_t = 1000)]
    pub retry_delay_ms: u64,
    /// Longest pause between two attempts at a message while Postgres is unreachable, in
    /// milliseconds (the pauses grow from 200 ms to this; the message is held meanwhile).
    #[arg(long, env = "WORKER_OUTAGE_MAX_DELAY_MS", default_value_t = 5000)]
    pub outage_max_delay_ms: u64,
    /// AMQP heartbeat proposed to the broker, in seconds: a connection that stays silent
    /// for twice this long is taken for dead and replaced. 0 accepts the broker's (60 s on
    /// RabbitMQ).
    #[arg(long, env = "WORKER_HEARTBEAT_SECS", default_value_t = 5)]
    pub heartbeat_secs: u16,
    /// Bound of every single broker call (connect, declare, qos, consume, cancel, ack,
    /// nack, close), in milliseconds: a call that takes longer ends the connection.
    #[arg(long, env = "WORKER_BROKER_TIMEOUT_MS", default_value_t = 5000)]
    pub broker_timeout_ms: u64,
    /// How long a stop (SIGTERM) may take, in milliseconds: in-flight messages still
    /// running then are abandoned (the broker redelivers them) and the process exits.
    /// Keep it below the grace period of whatever stops the worker.
    #[arg(long, env = "WORKER_DRAIN_TIMEOUT_MS", default_value_t = 30000)]
    pub drain_timeout_ms: u64,
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
    /// Run only this function handler (`loyalty-points`, `low-stock-alert`): consume
    /// `fn.<name>` and nothing else (no fulfilment, no FIFO partitions, no subscriptions).
    #[arg(long = "function", env = "WORKER_FUNCTION")]
    pub function: Option<String>,
    /// The low-stock-alert function alerts when a product's stock falls below this.
    #[arg(long, env = "LOW_STOCK_THRESHOLD", default_value_t = 5)]
    pub low_stock_threshold: i32,
    #[command(flatten)]
    pub data: DataSettings,
    /// The outbox relay that publishes this worker's events (and any other process's).
    #[command(flatten)]
    pub relay: data::messaging::relay::RelaySettings,
    /// Delivery of the topics' events to their subscriptions.
    #[command(flatten)]
    pub subscriptions: crate::subscriptions::SubscriptionSettings,
    /// Without a command the worker consumes.
    #[command(subcommand)]
    pub command: Option<WorkerCommand>,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum WorkerCommand {
    /// Checks that this many workers, with this worker's DATABASE_MAX_CONNECTIONS, plus a
    /// reserve fit Postgres' max_connections; exits 1 with the figures when they do not.
    CheckBudget(crate::budget::CheckBudget),
    /// Archives the event stream as compressed JSON-lines files (Kinesis Data Firehose).
    Firehose(crate::streams::firehose::FirehoseArgs),
    /// Computes one-minute windows over the event stream (Kinesis Data Analytics).
    Analytics(crate::streams::analytics::AnalyticsArgs),
}

impl WorkerSettings {
    pub fn broker_timeout(&self) -> Duration {
        Duration::from_millis(self.broker_timeout_ms.max(1))
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }

    pub fn retry_delay(&self) -> Duration {
        Duration::from_millis(self.retry_delay_ms)
    }

    pub fn outage_max_delay(&self) -> Duration {
        Duration::from_millis(self.outage_max_delay_ms.max(200))
    }

    pub fn visibility_timeout(&self) -> Duration {
        Duration::from_secs(self.visibility_timeout_secs.max(1))
    }

    pub fn visibility_max(&self) -> Duration {
        Duration::from_secs(self.visibility_max_secs).max(self.visibility_timeout())
    }

    pub fn reservation_sweep(&self) -> Duration {
        Duration::from_secs(self.reservation_sweep_secs.max(1))
    }

    pub fn saga(&self) -> crate::fulfilment::SagaSettings {
        crate::fulfilment::SagaSettings {
            reservation_ttl: Duration::from_secs(self.reservation_ttl_secs),
            payment_timeout: Duration::from_millis(self.payment_timeout_ms.max(1)),
        }
    }

    /// A reservation must outlast every delivery that may work on it: one that lapsed
    /// under a live delivery would be released while its payment is being taken.
    pub fn check(&self) -> anyhow::Result<()> {
        if Duration::from_secs(self.reservation_ttl_secs) <= self.visibility_max() {
            anyhow::bail!(
                "RESERVATION_TTL_SECS ({}) must exceed WORKER_VISIBILITY_MAX_SECS ({}): a \
                 reservation could lapse while a delivery still works on it",
                self.reservation_ttl_secs,
                self.visibility_max().as_secs()
            );
        }
        Ok(())
    }

    /// Defaults (and the environment), with the given data settings: for tests and embedding.
    pub fn with_data(data: DataSettings) -> Self {
        let mut settings = WorkerSettings::parse_from(["worker"]);
        settings.data = data;
        settings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_must_outlast_the_longest_delivery() {
        let mut settings = WorkerSettings::parse_from(["worker"]);
        settings.check().expect("the defaults fit: 600 s > 300 s");
        settings.reservation_ttl_secs = 300;
        let err = settings.check().expect_err("equal is not enough");
        assert!(
            err.to_string().contains(
                "RESERVATION_TTL_SECS (300) must exceed WORKER_VISIBILITY_MAX_SECS (300)"
            ),
            "{err}"
        );
        settings.visibility_max_secs = 60;
        settings.check().expect("300 s > 60 s");
    }
}

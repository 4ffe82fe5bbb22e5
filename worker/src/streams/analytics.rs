//! `worker analytics`: tumbling one-minute windows over the event stream, by event time,
//! kept in Postgres (Kinesis Data Analytics). An application of
//! [`data::stream::consumer`]: each batch of a shard is folded ([`windows`]) and added to
//! the windows ([`store`]) in the transaction that writes the shard's checkpoint, so a
//! crash neither loses nor double-counts an event, and instances split the shards.
//!
//! Lateness is judged per shard against a watermark kept with the windows (the shard's
//! greatest event time minus `ANALYTICS_ALLOWED_LATENESS_SECS`): the same records give
//! the same windows, so a replay ([`store::replay`], `--replay`) reproduces them.

pub mod store;
pub mod windows;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{TimeDelta, Utc};
use data::DataSettings;
use data::stream::consumer::{self, ConsumerConfig, Handler};
use data::stream::reader::Record;
use service::health::HealthServer;
use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;

pub use store::Replay;

/// The application's name by default: its checkpoints, leases and windows.
pub const APPLICATION: &str = "analytics";

#[derive(Debug, Clone, clap::Args)]
pub struct AnalyticsArgs {
    /// The application: instances of one name split the shards and share the windows.
    #[arg(long, env = "ANALYTICS_APPLICATION", default_value = APPLICATION)]
    pub application: String,
    /// This instance's name in the leases (default: a fresh UUID).
    #[arg(long, env = "ANALYTICS_INSTANCE")]
    pub instance: Option<String>,
    /// How far behind its shard's newest event time an event may be and still count; an
    /// older one is late: counted in its minute's `late_events`, not in the figures.
    #[arg(long, env = "ANALYTICS_ALLOWED_LATENESS_SECS", default_value_t = 60)]
    pub allowed_lateness_secs: u64,
    /// How long a shard's lease lasts without renewal: a dead instance's shards are taken
    /// over within this plus the renewal interval.
    #[arg(long, env = "ANALYTICS_LEASE_SECS", default_value_t = 10)]
    pub lease_secs: u64,
    /// How often an instance renews its leases and rebalances, in milliseconds.
    #[arg(long, env = "ANALYTICS_RENEW_MS", default_value_t = 2000)]
    pub renew_ms: u64,
    /// Records per transaction at most.
    #[arg(long, env = "ANALYTICS_MAX_BATCH", default_value_t = 200)]
    pub max_batch: usize,
    /// Before running: `trim-horizon` recomputes every window from the oldest record
    /// kept; an RFC 3339 timestamp recomputes the windows from its minute on. Running
    /// instances of the application drop their shards and read again.
    #[arg(long)]
    pub replay: Option<Replay>,
}

/// The handler: folds each batch under its shard's watermark and adds it to the windows.
pub struct Analytics {
    pub application: String,
    pub lateness: TimeDelta,
}

impl Analytics {
    pub fn new(application: &str, lateness: Duration) -> Self {
        Analytics {
            application: application.to_owned(),
            lateness: TimeDelta::from_std(lateness).unwrap_or(TimeDelta::MAX),
        }
    }
}

impl Handler for Analytics {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        shard: u16,
        records: &[Record],
    ) -> anyhow::Result<()> {
        let app = self.application.as_str();
        let mut state = store::load_state(tx, app, shard).await?;
        let deltas = windows::fold(&mut state, self.lateness, records);
        store::add(tx, app, &deltas).await?;
        store::save_state(tx, app, shard, &state, self.lateness).await?;
        let now = Utc::now();
        for t in records.iter().filter_map(|r| r.timestamp) {
            let lag = (now - t).to_std().unwrap_or_default();
            metrics::histogram!("strata_analytics_lag_seconds").record(lag.as_secs_f64());
        }
        Ok(())
    }
}

/// The consumer settings of an instance.
pub fn consumer_config(args: &AnalyticsArgs, shards: u16) -> ConsumerConfig {
    let mut config = ConsumerConfig {
        lease_duration: Duration::from_secs(args.lease_secs.max(1)),
        renew_interval: Duration::from_millis(args.renew_ms.max(50)),
        max_batch: args.max_batch.max(1),
        ..ConsumerConfig::new(&args.application, shards)
    };
    if let Some(instance) = &args.instance {
        config.instance = instance.clone();
    }
    config
}

/// Runs one instance until `stop`; `health_listen` (the worker's `HEALTH_LISTEN`) serves
/// `/healthz`, `/readyz` and `/metrics` (`strata_analytics_lag_seconds`,
/// `strata_stream_records_total`).
pub async fn run(
    data: &DataSettings,
    args: &AnalyticsArgs,
    health_listen: Option<std::net::SocketAddr>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let data = data.clone().resolve_files()?;
    let health = match health_listen {
        Some(addr) => {
            let listener = std::net::TcpListener::bind(addr)
                .with_context(|| format!("binding HEALTH_LISTEN {addr}"))?;
            Some(HealthServer::new(listener, crate::telemetry::prometheus()).start()?)
        }
        None => None,
    };
    let pool = data::store::db::pool(&data)?;
    let shards = data.stream.stream_shards;
    if let Some(replay) = args.replay {
        store::replay(&pool, &args.application, shards, replay).await?;
        tracing::info!(application = %args.application, ?replay, "analytics replay set");
    }
    let config = consumer_config(args, shards);
    tracing::info!(
        application = %config.application,
        instance = %config.instance,
        shards,
        allowed_lateness_secs = args.allowed_lateness_secs,
        "analytics started"
    );
    let handler = Arc::new(Analytics::new(
        &args.application,
        Duration::from_secs(args.allowed_lateness_secs),
    ));
    let result = consumer::run(
        pool.clone(),
        data.amqp_url().to_owned(),
        config,
        handler,
        stop,
    )
    .await;
    pool.close().await;
    if let Some(health) = health {
        health.stop().await;
    }
    result
}

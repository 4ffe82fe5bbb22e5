//! `worker firehose`: the stream's archive (Kinesis Data Firehose). An application of
//! [`data::stream::consumer`] whose handler buffers each record, transformed
//! ([`redact`]), in Postgres with the checkpoint ([`buffer`]); a flusher writes a shard's
//! buffer as a gzip'd JSON-lines file when it holds `FIREHOSE_BUFFER_BYTES` or its oldest
//! record has waited `FIREHOSE_BUFFER_INTERVAL_SECS`, and lists it in `firehose_files`
//! ([`archive`], which also states what a crash at each point leaves). On SIGTERM it stops
//! buffering, flushes every shard it holds, then gives the leases back.

pub mod archive;
pub mod buffer;
pub mod redact;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use data::DataSettings;
use data::stream::consumer::{self, ConsumerConfig};
use data::stream::leases::Lease;
use service::health::HealthServer;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use archive::Archive;
use buffer::Buffer;

#[derive(Debug, Clone, clap::Args)]
pub struct FirehoseArgs {
    /// The archive's directory: files go to `<dir>/<YYYY>/<MM>/<DD>/<HH>/`, staging files
    /// to `<dir>/.staging/<application>/`.
    #[arg(long, env = "FIREHOSE_DIR", default_value = "firehose")]
    pub dir: PathBuf,
    /// The consumer application: its checkpoints, leases, buffer and manifest rows.
    /// Instances of one name split the shards; another name archives everything again.
    #[arg(long, env = "FIREHOSE_APPLICATION", default_value = "firehose", value_parser = parse_application)]
    pub application: String,
    /// A shard's file is written when its buffer holds this many bytes of JSON lines
    /// (before compression; default 5 MiB, as Firehose's).
    #[arg(long, env = "FIREHOSE_BUFFER_BYTES", default_value_t = 5 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub buffer_bytes: u64,
    /// ... or when its oldest record has waited this long, in seconds (default 60;
    /// Firehose's is 300).
    #[arg(long, env = "FIREHOSE_BUFFER_INTERVAL_SECS", default_value_t = 60)]
    pub buffer_interval_secs: u64,
    /// Remove e-mail addresses from the records before they are buffered.
    #[arg(long, env = "FIREHOSE_REDACT", default_value_t = true, action = clap::ArgAction::Set)]
    pub redact: bool,
    /// How often the buffers are looked at, in milliseconds.
    #[arg(long, env = "FIREHOSE_CHECK_MS", default_value_t = 500)]
    pub check_ms: u64,
    /// A shard's lease, in seconds: a dead instance's shards are taken over this long
    /// (plus a fifth of it) after its last renewal.
    #[arg(long, env = "FIREHOSE_LEASE_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub lease_secs: u64,
}

impl FirehoseArgs {
    /// The defaults, archiving into `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FirehoseArgs {
            dir: dir.into(),
            application: "firehose".to_owned(),
            buffer_bytes: 5 << 20,
            buffer_interval_secs: 60,
            redact: true,
            check_ms: 500,
            lease_secs: 10,
        }
    }
}

/// An application's name is part of file and directory names.
fn parse_application(value: &str) -> Result<String, String> {
    let valid = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "'{value}' is not an application name (letters, digits, - and _, at most 64)"
        ))
    }
}

/// Runs one instance until `stop`; `health_listen` serves `/healthz`, `/readyz` (ready
/// until the stop) and `/metrics`.
pub async fn run(
    data: &DataSettings,
    args: &FirehoseArgs,
    health_listen: Option<SocketAddr>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    parse_application(&args.application).map_err(anyhow::Error::msg)?;
    let data = data.clone().resolve_files()?;
    let pool = data::store::db::pool(&data)?;
    let lease = Duration::from_secs(args.lease_secs);
    let config = ConsumerConfig {
        lease_duration: lease,
        renew_interval: lease / 5,
        ..ConsumerConfig::new(&args.application, data.stream.stream_shards)
    };
    let archive = Archive {
        pool: pool.clone(),
        dir: args.dir.clone(),
        application: args.application.clone(),
        instance: config.instance.clone(),
        buffer_bytes: args.buffer_bytes,
        buffer_interval: Duration::from_secs(args.buffer_interval_secs),
    };
    std::fs::create_dir_all(archive.staging_dir())
        .with_context(|| format!("creating the archive directory {:?}", args.dir))?;
    let draining = Arc::new(AtomicBool::new(false));
    let health = match health_listen {
        Some(addr) => {
            let listener =
                TcpListener::bind(addr).with_context(|| format!("binding HEALTH_LISTEN {addr}"))?;
            let draining = draining.clone();
            let server = HealthServer::new(listener, crate::telemetry::prometheus()).ready_check(
                Arc::new(move || {
                    if draining.load(Ordering::Acquire) {
                        Err("draining")
                    } else {
                        Ok("archiving")
                    }
                }),
            );
            Some(server.start()?)
        }
        None => None,
    };
    tracing::info!(
        application = %args.application,
        dir = ?args.dir,
        shards = data.stream.stream_shards,
        buffer_bytes = args.buffer_bytes,
        buffer_interval_secs = args.buffer_interval_secs,
        redact = args.redact,
        "firehose starting"
    );
    let consumer_stop = CancellationToken::new();
    let consumer = tokio::spawn(consumer::run(
        pool.clone(),
        data.amqp_url().to_owned(),
        config,
        Arc::new(Buffer {
            application: args.application.clone(),
            redact: args.redact,
            draining: draining.clone(),
        }),
        consumer_stop.clone(),
    ));
    let mut flusher = Flusher {
        archive,
        recovered: HashMap::new(),
    };
    let check = Duration::from_millis(args.check_ms.max(10));
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(check) => {}
        }
        flusher.round(false).await;
    }
    // The stop: no batch is buffered from now on, what is buffered goes into files while
    // the leases are still held, then they are given back.
    draining.store(true, Ordering::Release);
    flusher.round(true).await;
    consumer_stop.cancel();
    let stopped = consumer.await;
    if let Some(health) = health {
        health.stop().await;
    }
    pool.close().await;
    stopped.context("the stream consumer panicked")??;
    tracing::info!("firehose stopped");
    Ok(())
}

/// Flushes the shards this instance holds, after recovering each newly taken one.
struct Flusher {
    archive: Archive,
    /// Shard -> the generation it was recovered under.
    recovered: HashMap<u16, i64>,
}

impl Flusher {
    async fn round(&mut self, force: bool) {
        let held = match held(&self.archive.pool, &self.archive).await {
            Ok(held) => held,
            Err(err) => {
                tracing::warn!(error = %err, "firehose cannot read its leases");
                return;
            }
        };
        self.recovered.retain(|shard, generation| {
            held.iter()
                .any(|l| l.shard == i32::from(*shard) && l.generation == *generation)
        });
        for lease in held {
            let shard = lease.shard as u16;
            if self.recovered.get(&shard) != Some(&lease.generation) {
                if let Err(err) = self.archive.recover(shard).await {
                    tracing::warn!(
                        shard,
                        error = format!("{err:#}"),
                        "firehose recovery failed"
                    );
                    continue;
                }
                self.recovered.insert(shard, lease.generation);
            }
            if let Err(err) = self.archive.flush(lease, force).await {
                // Recovered again next round: a committed file whose rename failed is
                // finished then.
                self.recovered.remove(&shard);
                tracing::warn!(shard, error = format!("{err:#}"), "firehose flush failed");
            }
        }
    }
}

/// The leases this instance holds now.
async fn held(pool: &PgPool, archive: &Archive) -> sqlx::Result<Vec<Lease>> {
    sqlx::query_as(
        "SELECT shard, generation FROM stream_leases \
         WHERE application = $1 AND owner = $2 AND expires_at > now() ORDER BY shard",
    )
    .bind(&archive.application)
    .bind(&archive.instance)
    .fetch_all(pool)
    .await
}

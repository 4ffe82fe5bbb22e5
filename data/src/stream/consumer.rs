//! A consumer application of the event stream (what Kinesis' client library gives): a
//! name, a checkpoint per shard, and instances that split the shards between them.
//!
//! - **Checkpoints.** The handler gets each batch of a shard with an open Postgres
//!   transaction; the checkpoint (the batch's last sequence) is written in that same
//!   transaction, which commits only while the instance still holds the shard's lease
//!   (the lease's generation fences a former holder). An effect written through the
//!   transaction is therefore applied exactly once, however the instance stops.
//! - **Leases.** Every `renew_interval` an instance renews its leases for
//!   `lease_duration`, takes free or expired ones up to its share (`ceil(shards / live
//!   instances)`) and, below its share, takes one from the busiest instance. A dead
//!   instance's shards are taken over within `lease_duration + renew_interval` of its
//!   last renewal; a stopped one gives its leases back at once.
//! - **Replay.** [`super::leases::reset`] sets an application's checkpoints to a position.
//!
//! A batch whose handler fails is rolled back and tried again after `retry_delay`: the
//! shard waits, in order, as a Kinesis consumer does.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::Connection;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{FieldTable, ShortString};
use sqlx::{PgConnection, PgPool};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::leases::{self, Lease};
use super::reader::{Position, Record, offset_argument};
use super::shard_queue;

/// What an application does with records: called with each batch of one shard, in
/// sequence order, and the transaction the checkpoint will be written in.
pub trait Handler: Send + Sync + 'static {
    fn handle<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        shard: u16,
        records: &'a [Record],
    ) -> impl Future<Output = anyhow::Result<()>> + Send + 'a;
}

/// Settings of one instance of an application.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The application: instances of one name share its checkpoints and split its shards.
    pub application: String,
    /// This instance's name in the leases (unique; a fresh UUID by default).
    pub instance: String,
    /// Shards of the stream (`STREAM_SHARDS`).
    pub shards: u16,
    pub lease_duration: Duration,
    pub renew_interval: Duration,
    /// Where a shard without a checkpoint is read from.
    pub initial_position: Position,
    /// Records per batch at most.
    pub max_batch: usize,
    /// Deliveries the broker sends ahead.
    pub prefetch: u16,
    /// Pause before a failed batch is tried again.
    pub retry_delay: Duration,
}

impl ConsumerConfig {
    pub fn new(application: &str, shards: u16) -> Self {
        ConsumerConfig {
            application: application.to_owned(),
            instance: uuid::Uuid::new_v4().to_string(),
            shards,
            lease_duration: Duration::from_secs(10),
            renew_interval: Duration::from_secs(2),
            initial_position: Position::TrimHorizon,
            max_batch: 100,
            prefetch: 200,
            retry_delay: Duration::from_secs(1),
        }
    }
}

/// The batch's lease was taken by another instance (or a reset) before it committed.
#[derive(Debug, thiserror::Error)]
#[error("the lease of shard {0} was lost")]
pub struct LeaseLost(pub u16);

/// Runs one instance until `cancel` fires, then gives its leases back. Dropping the
/// future stops everything at once and gives nothing back (as a crash would): the leases
/// expire.
pub async fn run<H: Handler>(
    pool: PgPool,
    amqp_url: String,
    config: ConsumerConfig,
    handler: Arc<H>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let mut connection: Option<Arc<Connection>> = None;
    // Shard -> the generation its worker runs with and a token that stops it.
    let mut running: HashMap<u16, (i64, CancellationToken)> = HashMap::new();
    let mut workers: JoinSet<(u16, i64)> = JoinSet::new();
    while !cancel.is_cancelled() {
        if connection.as_ref().is_none_or(|c| !c.status().connected()) {
            connection = match crate::messaging::broker::connect(
                &amqp_url,
                &format!("strata-stream-{}", config.application),
            )
            .await
            {
                Ok(c) => Some(Arc::new(c)),
                Err(err) => {
                    tracing::warn!(error = %err, "stream consumer cannot reach RabbitMQ");
                    None
                }
            };
        }
        match round(&pool, &config).await {
            Ok(held) => {
                let held: HashMap<u16, i64> = held
                    .into_iter()
                    .map(|l| (l.shard as u16, l.generation))
                    .collect();
                // Stop the workers of leases lost or granted anew.
                running.retain(|shard, (generation, stop)| {
                    let keep = held.get(shard) == Some(generation);
                    if !keep {
                        stop.cancel();
                    }
                    keep
                });
                if let Some(connection) = &connection {
                    for (&shard, &generation) in &held {
                        if running.contains_key(&shard) {
                            continue;
                        }
                        let stop = cancel.child_token();
                        running.insert(shard, (generation, stop.clone()));
                        let lease = Lease {
                            shard: i32::from(shard),
                            generation,
                        };
                        let worker = ShardWorker {
                            pool: pool.clone(),
                            connection: connection.clone(),
                            config: config.clone(),
                            handler: handler.clone(),
                            lease,
                            shard,
                        };
                        workers.spawn(async move {
                            if let Err(err) = worker.run(stop).await {
                                tracing::warn!(
                                    shard,
                                    error = format!("{err:#}"),
                                    "shard worker ended"
                                );
                            }
                            (shard, generation)
                        });
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "stream consumer cannot renew its leases"),
        }
        // Workers that ended (an error, a lost lease) are started again next round if
        // the lease is still held.
        while let Some(Ok((shard, generation))) = workers.try_join_next() {
            if running.get(&shard).is_some_and(|(g, _)| *g == generation) {
                running.remove(&shard);
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = tokio::time::sleep(config.renew_interval) => {}
        }
    }
    for (_, (_, stop)) in running.drain() {
        stop.cancel();
    }
    while workers.join_next().await.is_some() {}
    leases::release(&pool, &config.application, &config.instance).await?;
    if let Some(connection) = connection {
        let _ = connection.close(200, "stopping".into()).await;
    }
    Ok(())
}

/// One round of the lease protocol; returns the leases held after it.
async fn round(pool: &PgPool, config: &ConsumerConfig) -> sqlx::Result<Vec<Lease>> {
    let app = config.application.as_str();
    let me = config.instance.as_str();
    leases::ensure(pool, app, config.shards).await?;
    let mut held = leases::renew(pool, app, me, config.lease_duration).await?;
    let holders = leases::holders(pool, app).await?;
    let instances = holders.iter().filter(|(o, _)| o != me).count() as i64 + 1;
    let share = (i64::from(config.shards) + instances - 1) / instances;
    let wanted = share - held.len() as i64;
    if wanted > 0 {
        held.extend(leases::take_free(pool, app, me, config.lease_duration, wanted).await?);
    }
    let victim = holders.iter().find(|(o, n)| o != me && *n > share);
    if let (true, Some((victim, _))) = ((held.len() as i64) < share, victim)
        && let Some(lease) = leases::steal_one(pool, app, me, victim, config.lease_duration).await?
    {
        tracing::info!(shard = lease.shard, from = %victim, "stream lease taken over");
        held.push(lease);
    }
    Ok(held)
}

struct ShardWorker<H> {
    pool: PgPool,
    connection: Arc<Connection>,
    config: Arc<ConsumerConfig>,
    handler: Arc<H>,
    lease: Lease,
    shard: u16,
}

impl<H: Handler> ShardWorker<H> {
    async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        let app = self.config.application.as_str();
        let position = leases::checkpoint(&self.pool, app, self.shard)
            .await?
            .unwrap_or(self.config.initial_position);
        let start = match position {
            Position::AtSequence(n) => Some(n),
            Position::AfterSequence(n) => Some(n.saturating_add(1)),
            _ => None,
        };
        let channel = self.connection.create_channel().await?;
        channel
            .basic_qos(self.config.prefetch.max(1), BasicQosOptions::default())
            .await?;
        let mut arguments = FieldTable::default();
        arguments.insert(
            ShortString::from("x-stream-offset"),
            offset_argument(position, None),
        );
        let mut deliveries = channel
            .basic_consume(
                shard_queue(self.shard).as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                arguments,
            )
            .await?;
        let mut reached = false;
        loop {
            let first = tokio::select! {
                _ = stop.cancelled() => break,
                next = deliveries.next() => next,
            };
            let Some(first) = first else {
                anyhow::bail!("the broker ended the consumer of shard {}", self.shard);
            };
            let mut batch = vec![first?];
            // Whatever else has arrived joins the batch, without waiting.
            while batch.len() < self.config.max_batch {
                match futures_lite::future::poll_once(deliveries.next()).await {
                    Some(Some(delivery)) => batch.push(delivery?),
                    _ => break,
                }
            }
            if let Some(last) = batch.last() {
                // A stream queue's ack only grants credit: the checkpoint is what counts.
                last.acker.ack(BasicAckOptions { multiple: true }).await?;
            }
            let records: Vec<Record> = batch
                .iter()
                .filter_map(Record::of)
                .filter(|r| {
                    reached = reached
                        || match (position, start) {
                            (_, Some(start)) => r.sequence >= start,
                            (Position::AtTimestamp(t), _) => r.timestamp.is_some_and(|ts| ts >= t),
                            _ => true,
                        };
                    reached
                })
                .collect();
            if records.is_empty() {
                continue;
            }
            while !self.apply(&records).await? {
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(self.config.retry_delay) => {}
                }
            }
        }
        let _ = channel.close(200, "stopping".into()).await;
        Ok(())
    }

    /// One transaction: the fence, the handler's effect, the checkpoint. Ok(false): the
    /// handler failed and the batch is to be tried again.
    async fn apply(&self, records: &[Record]) -> anyhow::Result<bool> {
        let app = self.config.application.as_str();
        let mut tx = self.pool.begin().await?;
        if !leases::fence(&mut tx, app, &self.config.instance, self.lease).await? {
            return Err(LeaseLost(self.shard).into());
        }
        if let Err(err) = self.handler.handle(&mut tx, self.shard, records).await {
            tracing::warn!(
                shard = self.shard,
                error = format!("{err:#}"),
                "stream batch failed"
            );
            return Ok(false);
        }
        let last = records.last().map_or(0, |r| r.sequence);
        leases::save(&mut tx, app, self.shard, Position::AfterSequence(last)).await?;
        tx.commit().await?;
        metrics::counter!("strata_stream_records_total", "application" => self.config.application.clone())
            .increment(records.len() as u64);
        Ok(true)
    }
}

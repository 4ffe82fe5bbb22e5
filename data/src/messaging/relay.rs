//! The outbox relay: publishes the outbox rows of every process (logic's orders and
//! product changes, the worker's fulfilment events) to RabbitMQ with publisher confirms and
//! the mandatory flag, and stamps them published only after the broker confirmed.
//!
//! Logic and every worker each run one (`OUTBOX_RELAY`, [`RelaySettings`]). A commit that
//! writes outbox rows wakes the relay of its own process in memory
//! ([`outbox::announce`]), at no cost to the database; logic's relay also `LISTEN`s for
//! the `NOTIFY` of a process that runs none ([`outbox::notifier`]), and every relay's poll
//! catches rows that any wake-up missed (a crashed process's).
//!
//! Rows are claimed with `FOR UPDATE SKIP LOCKED` inside a transaction that stays open
//! until the confirms are in, so relays in several processes never publish the same row
//! concurrently. A crash between confirm and commit republishes the row later: delivery is
//! at least once and consumers deduplicate by message id.
//!
//! Publishing a batch and awaiting its confirms is bounded (`confirm_timeout`): a broker
//! that stops answering (a silently dead connection) would otherwise keep the claimed rows
//! locked for good. On timeout the transaction is rolled back, so the rows are free for
//! any relay, and the connection is dropped and opened anew. The relay's housekeeping
//! also prunes the consumers' `processed_messages` records past their retention.
//!
//! Every event also gets the headers that route it to its shard of the event stream
//! (`stream-shard`, `partition-key`; [`crate::stream`]): the partition key is read from the
//! row's JSON body, so the shard of a key depends on nothing but the key and the number of
//! shards, whichever relay publishes it and however often it restarts.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use backon::{BackoffBuilder, ExponentialBuilder};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::DataSettings;
use crate::messaging::{broker, outbox};
use crate::stream::{self, ShardMap};

/// Settings of a process's relay (logic's and the worker's, under the same names).
#[derive(Debug, Clone, clap::Args)]
pub struct RelaySettings {
    /// Publish the outbox from this process. Off: its commits wake the relays of other
    /// processes through Postgres (`NOTIFY`), and one of them publishes.
    #[arg(long, env = "OUTBOX_RELAY", default_value_t = true, action = clap::ArgAction::Set)]
    pub outbox_relay: bool,
    /// Longest wait of the relay for a batch to be published and confirmed (and for a
    /// broker connection to open), in milliseconds; past it the claimed rows are released
    /// and the connection replaced.
    #[arg(long, env = "RELAY_CONFIRM_TIMEOUT_MS", default_value_t = 10_000)]
    pub relay_confirm_timeout_ms: u64,
    /// Records of processed messages (the consumers' deduplication) older than this many
    /// hours are pruned by the relay; keep it above the longest redelivery path (see
    /// docs/backbone.md).
    #[arg(
        long,
        env = "PROCESSED_MESSAGES_RETENTION_HOURS",
        default_value_t = 168
    )]
    pub processed_retention_hours: u64,
}

impl Default for RelaySettings {
    fn default() -> Self {
        RelaySettings {
            outbox_relay: true,
            relay_confirm_timeout_ms: 10_000,
            processed_retention_hours: 168,
        }
    }
}

impl RelaySettings {
    /// The relay's tuning, its broker connection named `connection_name`.
    pub fn config(&self, connection_name: &str) -> RelayConfig {
        RelayConfig {
            connection_name: connection_name.to_owned(),
            confirm_timeout: Duration::from_millis(self.relay_confirm_timeout_ms.max(1)),
            processed_retention: Duration::from_secs(
                self.processed_retention_hours.saturating_mul(3600),
            ),
            ..RelayConfig::default()
        }
    }
}

/// Tuning of the relay loop.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Rows published per transaction.
    pub batch_size: i64,
    /// Poll even without a notification (catches rows of crashed processes).
    pub poll_interval: Duration,
    /// Published rows older than this are deleted.
    pub retention: Duration,
    /// Longest wait for a batch to be published and confirmed (and for a connection to be
    /// opened); past it the rows are released and the connection replaced.
    pub confirm_timeout: Duration,
    /// AMQP heartbeat proposed to the broker, in seconds (0: the broker's).
    pub heartbeat_secs: u16,
    /// Records of processed messages older than this are deleted; see docs/backbone.md
    /// for why it must outlive every redelivery path.
    pub processed_retention: Duration,
    /// On a stop, how long the relay goes on publishing the rows committed before it (a
    /// worker's last fulfilments); what is left then waits for another relay.
    pub final_flush: Duration,
    /// `LISTEN` for the `NOTIFY` of processes without a relay (logic's relay does; a
    /// worker's relay publishes its own commits and finds the rest on its poll). Without
    /// it the relay opens one connection besides its process's pool, with it two.
    pub listen: bool,
    /// Begin by waiting for a wake-up or the poll interval, not with a batch: a worker
    /// has committed nothing when it starts, and its start should not share its first
    /// milliseconds with the relay's connection.
    pub wait_first: bool,
    pub connection_name: String,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch_size: 200,
            poll_interval: Duration::from_millis(500),
            retention: Duration::from_secs(24 * 3600),
            confirm_timeout: Duration::from_secs(10),
            heartbeat_secs: 5,
            processed_retention: Duration::from_secs(7 * 24 * 3600),
            final_flush: Duration::from_secs(1),
            listen: true,
            wait_first: false,
            connection_name: "strata-relay".to_owned(),
        }
    }
}

#[derive(sqlx::FromRow)]
struct OutboxRow {
    id: i64,
    message_id: Uuid,
    exchange: String,
    routing_key: String,
    kind: String,
    body: serde_json::Value,
    traceparent: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
}

/// A publishing channel in confirm mode over its own connection.
struct Publisher {
    connection: Connection,
    channel: Channel,
    shards: ShardMap,
}

impl Publisher {
    async fn open(settings: &DataSettings, config: &RelayConfig) -> anyhow::Result<Self> {
        let opening = async {
            let connection = broker::connect_with_heartbeat(
                settings.amqp_url(),
                &config.connection_name,
                config.heartbeat_secs,
            )
            .await
            .context("connecting to RabbitMQ")?;
            let channel = connection.create_channel().await?;
            broker::declare_topology(&channel, settings.delivery_limit)
                .await
                .context("declaring the broker topology")?;
            crate::stream::topology::declare_shards(&channel, &settings.stream)
                .await
                .context("declaring the event stream's shards")?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            anyhow::Ok(Publisher {
                connection,
                channel,
                shards: settings.stream.shard_map(),
            })
        };
        tokio::time::timeout(config.confirm_timeout, opening)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "RabbitMQ did not answer within {:?} while connecting",
                    config.confirm_timeout
                )
            })?
    }

    fn usable(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }
}

fn properties(row: &OutboxRow, shards: ShardMap) -> BasicProperties {
    let mut headers = FieldTable::default();
    if row.exchange == contracts::EVENTS_EXCHANGE {
        let key = stream::partition_key(&row.routing_key, &row.body);
        headers.insert(
            ShortString::from(stream::SHARD_HEADER),
            AMQPValue::LongString(LongString::from(shards.shard_of(&key).to_string())),
        );
        headers.insert(
            ShortString::from(stream::PARTITION_KEY_HEADER),
            AMQPValue::LongString(LongString::from(key)),
        );
    }
    let schema_version = row
        .body
        .get("schema_version")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(1);
    headers.insert(
        ShortString::from(contracts::SCHEMA_VERSION_HEADER),
        AMQPValue::LongLongInt(schema_version),
    );
    if let Some(tp) = &row.traceparent {
        headers.insert(
            ShortString::from(contracts::TRACEPARENT_HEADER),
            AMQPValue::LongString(LongString::from(tp.as_str())),
        );
    }
    BasicProperties::default()
        .with_message_id(ShortString::from(row.message_id.to_string()))
        .with_type(ShortString::from(row.kind.as_str()))
        .with_content_type(ShortString::from("application/json"))
        .with_delivery_mode(2)
        .with_timestamp(row.created_at.timestamp().max(0) as u64)
        .with_app_id(ShortString::from("strata"))
        .with_headers(headers)
}

/// A batch was not published and confirmed within the timeout: the broker is taken for
/// unresponsive and the connection is replaced.
#[derive(Debug, thiserror::Error)]
#[error("the broker did not confirm the batch within {0:?}")]
pub struct ConfirmTimeout(pub Duration);

/// Publishes one batch. Returns how many rows were confirmed.
///
/// The claim and the stamp are planned on every batch (not prepared): the outbox is often
/// empty when a relay starts, and a plan cached then (Postgres keeps a generic plan after
/// five executions) scans the whole table, published rows included, until the next
/// ANALYZE, on every batch, while the table grows by a thousand rows a second.
async fn publish_batch(
    pool: &PgPool,
    publisher: &Publisher,
    batch: i64,
    confirm_timeout: Duration,
) -> anyhow::Result<usize> {
    let mut tx = pool.begin().await?;
    let rows: Vec<OutboxRow> = sqlx::query_as(
        "SELECT id, message_id, exchange, routing_key, kind, body, traceparent, created_at \
         FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(batch)
    .persistent(false)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let published = match tokio::time::timeout(confirm_timeout, publish(publisher, &rows)).await {
        Ok(Ok(published)) => published,
        Ok(Err(err)) => return Err(release(tx, err).await),
        Err(_) => return Err(release(tx, ConfirmTimeout(confirm_timeout).into()).await),
    };
    let (confirmed, failed) = published;
    sqlx::query(
        "UPDATE outbox SET published_at = now(), attempts = attempts + 1 WHERE id = ANY($1)",
    )
    .bind(&confirmed)
    .persistent(false)
    .execute(&mut *tx)
    .await?;
    for (id, error) in &failed {
        tracing::warn!(outbox.id = id, %error, "outbox message not accepted by the broker");
        sqlx::query("UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1")
            .bind(id)
            .bind(error)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    for row in &rows {
        if confirmed.contains(&row.id) {
            metrics::counter!("strata_messages_published_total", "kind" => row.kind.clone())
                .increment(1);
        }
    }
    Ok(confirmed.len())
}

/// Rolls the claim back at once, so that the rows are free for any relay, and returns the
/// error that made it give up. A rollback that does not finish in time is abandoned: the
/// connection is then dropped, which ends the transaction just as well.
async fn release(tx: sqlx::Transaction<'_, sqlx::Postgres>, err: anyhow::Error) -> anyhow::Error {
    if tokio::time::timeout(Duration::from_secs(5), tx.rollback())
        .await
        .is_err()
    {
        tracing::warn!("the outbox claim was not rolled back in time");
    }
    err
}

/// Publishes the rows, then awaits every confirm: one round trip, not one per row.
/// Returns the ids confirmed and those refused, with why.
async fn publish(
    publisher: &Publisher,
    rows: &[OutboxRow],
) -> anyhow::Result<(Vec<i64>, Vec<(i64, String)>)> {
    let mut pending = Vec::with_capacity(rows.len());
    for row in rows {
        let payload = serde_json::to_vec(&row.body)?;
        let confirm = publisher
            .channel
            .basic_publish(
                row.exchange.as_str().into(),
                row.routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &payload,
                properties(row, publisher.shards),
            )
            .await?;
        pending.push((row, confirm));
    }
    let mut confirmed = Vec::new();
    let mut failed: Vec<(i64, String)> = Vec::new();
    for (row, confirm) in pending {
        match confirm.await? {
            Confirmation::Ack(None) | Confirmation::NotRequested => confirmed.push(row.id),
            Confirmation::Ack(Some(returned)) => failed.push((
                row.id,
                format!("unroutable: {}", returned.reply_text.as_str()),
            )),
            Confirmation::Nack(_) => failed.push((row.id, "nacked by the broker".to_owned())),
        }
    }
    Ok((confirmed, failed))
}

/// Sleeps until a commit wakes the relay, the poll interval passes, or it is stopped.
async fn next_round(local: &outbox::LocalWakeUp, poll: Duration, cancel: &CancellationToken) {
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = tokio::time::sleep(poll) => {}
        _ = local.woken() => {}
    }
}

/// Whether any outbox row waits to be published (true when the database cannot say).
/// Planned each time, as the claim is (see [`publish_batch`]), so that it keeps using the
/// partial index of unpublished rows.
async fn pending(pool: &PgPool) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT FROM outbox WHERE published_at IS NULL)")
        .persistent(false)
        .fetch_one(pool)
        .await
        .unwrap_or(true)
}

/// Records of processed messages deleted per statement.
const PRUNE_BATCH: i64 = 5000;

/// Forwards the `NOTIFY`s of other processes' commits to the relay's wake-up until
/// `cancel` fires, reconnecting after a lost connection.
async fn listen(pool: PgPool, wake: Arc<Notify>, cancel: CancellationToken) {
    while !cancel.is_cancelled() {
        let Ok(mut listener) = subscribe(&pool).await else {
            pause(&cancel).await;
            continue;
        };
        loop {
            let received = tokio::select! {
                _ = cancel.cancelled() => return,
                received = listener.try_recv() => received,
            };
            // A notification, or a lost connection (Ok(None), reconnected; Err, not yet):
            // either way wake the relay, which catches up on what was missed in between.
            wake.notify_one();
            if received.is_err() {
                pause(&cancel).await;
                break;
            }
        }
    }
}

async fn subscribe(pool: &PgPool) -> sqlx::Result<PgListener> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(outbox::CHANNEL).await?;
    Ok(listener)
}

async fn pause(cancel: &CancellationToken) {
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
    }
}

/// Runs the relay until `cancel` fires. Broker and database outages are waited out with
/// exponential backoff; nothing is lost because rows stay in the outbox until confirmed.
pub async fn run(
    pool: PgPool,
    settings: DataSettings,
    config: RelayConfig,
    cancel: CancellationToken,
) {
    let mut publisher: Option<Publisher> = None;
    let backoff_builder = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .without_max_times();
    let mut backoff = backoff_builder.build();
    let mut last_cleanup = std::time::Instant::now() - Duration::from_secs(3600);
    let mut last_backlog = std::time::Instant::now() - Duration::from_secs(3600);
    // Commits in this process wake the relay in memory; other processes' through LISTEN,
    // forwarded by a task of its own into the same wake-up. A wake-up holds at most one
    // permit, so a burst of commits during a batch costs one more batch, not one per commit.
    let local = outbox::LocalWakeUp::register(&pool);
    // The relay works on connections of its own, one for LISTEN and one for its batches,
    // outside the pool it was given: the process's requests never wait for a relay's
    // batch (which holds its connection until the broker confirms), nor the relay for
    // them.
    let pool = own_pool(&pool, if config.listen { 2 } else { 1 });
    let listening = config
        .listen
        .then(|| tokio::spawn(listen(pool.clone(), local.waker(), cancel.child_token())));

    if config.wait_first {
        next_round(&local, config.poll_interval, &cancel).await;
    }
    while !cancel.is_cancelled() {
        if publisher.as_ref().is_none_or(|p| !p.usable()) {
            // The broker connection is opened when there is something to publish, and
            // then kept: an idle process (a worker that has fulfilled nothing yet) holds
            // none for its relay. A database that cannot say counts as "something".
            publisher = None;
            if !pending(&pool).await {
                next_round(&local, config.poll_interval, &cancel).await;
                continue;
            }
            publisher = match Publisher::open(&settings, &config).await {
                Ok(p) => {
                    tracing::info!("outbox relay connected to RabbitMQ");
                    Some(p)
                }
                Err(err) => {
                    tracing::warn!(
                        error = format!("{err:#}"),
                        "outbox relay cannot reach RabbitMQ"
                    );
                    None
                }
            };
        }
        // The gauge is scraped every few seconds: counting once a second is enough, and
        // keeps a query off every wake-up under load.
        if last_backlog.elapsed() >= Duration::from_secs(1) {
            last_backlog = std::time::Instant::now();
            if let Ok(backlog) = outbox::backlog(&pool).await {
                metrics::gauge!("strata_outbox_backlog").set(backlog as f64);
            }
        }

        let published_full_batch;
        if let Some(p) = &publisher {
            match publish_batch(&pool, p, config.batch_size, config.confirm_timeout).await {
                Ok(n) => {
                    backoff = backoff_builder.build();
                    published_full_batch = n as i64 == config.batch_size;
                }
                Err(err) => {
                    tracing::warn!(error = format!("{err:#}"), "outbox relay batch failed");
                    if !p.usable() || err.is::<ConfirmTimeout>() {
                        publisher = None;
                    }
                    let delay = backoff.next().unwrap_or(Duration::from_secs(5));
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    continue;
                }
            }
        } else {
            let delay = backoff.next().unwrap_or(Duration::from_secs(5));
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
            continue;
        }

        if last_cleanup.elapsed() > Duration::from_secs(600) {
            last_cleanup = std::time::Instant::now();
            let retention = format!("{} seconds", config.retention.as_secs());
            let _ = sqlx::query("DELETE FROM outbox WHERE published_at < now() - $1::interval")
                .bind(retention)
                .execute(&pool)
                .await;
            match crate::store::processed::prune(&pool, config.processed_retention, PRUNE_BATCH)
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(pruned = n, "processed-message records pruned"),
                Err(err) => tracing::warn!(error = %err, "could not prune processed messages"),
            }
        }

        if published_full_batch {
            continue;
        }
        next_round(&local, config.poll_interval, &cancel).await;
    }
    if let Some(listening) = listening {
        listening.abort();
        let _ = listening.await;
    }
    if let Some(p) = &publisher
        && p.usable()
    {
        flush(&pool, p, &config).await;
    }
    if let Some(p) = publisher {
        let _ = p.connection.close(200, "relay stopping".into()).await;
    }
    pool.close().await;
}

/// Publishes what is committed at the stop, batch after batch, for at most
/// `config.final_flush`; a batch cut short is rolled back and its rows wait for another
/// relay.
async fn flush(pool: &PgPool, publisher: &Publisher, config: &RelayConfig) {
    let batches = async {
        loop {
            match publish_batch(pool, publisher, config.batch_size, config.confirm_timeout).await {
                Ok(n) if n as i64 == config.batch_size => continue,
                Ok(_) => break,
                Err(err) => {
                    tracing::warn!(error = format!("{err:#}"), "the relay's last batch failed");
                    break;
                }
            }
        }
    };
    if tokio::time::timeout(config.final_flush, batches)
        .await
        .is_err()
    {
        tracing::warn!(
            final_flush = ?config.final_flush,
            "the relay stopped with rows left; another relay publishes them"
        );
    }
}

/// `size` connections to the database of `pool`, with its settings: the batches' and, when
/// the relay listens, the listener's.
///
/// Their commits do not wait for the WAL to reach the disk (`synchronous_commit=off`):
/// what the relay commits is only the stamp of rows the broker already confirmed, and
/// the housekeeping's deletes. A Postgres crash can lose the last fraction of a second of
/// stamps, whose rows are then published again: a duplicate, which every consumer drops
/// by its message id, as after a relay crash between confirm and commit. Waiting for the
/// flush instead held each batch, and every message committed behind it, for a disk
/// write.
fn own_pool(pool: &PgPool, size: u32) -> PgPool {
    crate::store::db::pool_with(
        pool.connect_options()
            .as_ref()
            .clone()
            .options([("synchronous_commit", "off")]),
        size,
        Duration::from_secs(10),
    )
}

#[cfg(test)]
mod tests {
    use super::own_pool;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_relays_connections_commit_without_waiting_for_the_flush() {
        let env = testkit::TestEnv::new().await;
        let pool = own_pool(&env.pool, 1);
        let show = |setting: &'static str| {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, String>(&format!("SHOW {setting}"))
                    .fetch_one(&pool)
                    .await
                    .expect(setting)
            }
        };
        assert_eq!(show("synchronous_commit").await, "off");
        assert_eq!(show("statement_timeout").await, "30s");
        assert_eq!(show("lock_timeout").await, "10s");
        // The process's own pool keeps waiting for the flush: an order or a fulfilment is
        // durable when its commit returns.
        let own: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&env.pool)
            .await
            .expect("the process's pool");
        assert_eq!(own, "on");
        pool.close().await;
    }
}

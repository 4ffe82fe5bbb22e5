//! Polling with a fine interval: until a URL answers 200, a queue has consumers or
//! messages, or no order is pending; each timed from a moment the script names.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use sqlx::PgPool;

const POLL: Duration = Duration::from_millis(5);

async fn deadline_passed(start: Instant, timeout: Duration, what: &str) -> anyhow::Result<()> {
    if start.elapsed() > timeout {
        bail!("{what} not reached within {timeout:?}");
    }
    tokio::time::sleep(POLL).await;
    Ok(())
}

/// Returns once `url` answers 200.
pub async fn http_ok(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let start = Instant::now();
    loop {
        if let Ok(resp) = client.get(url).send().await
            && resp.status().is_success()
        {
            return Ok(());
        }
        deadline_passed(start, timeout, &format!("200 from {url}")).await?;
    }
}

pub async fn amqp_channel(url: &str) -> anyhow::Result<(Connection, Channel)> {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .context("connecting to RabbitMQ")?;
    let channel = connection.create_channel().await?;
    Ok((connection, channel))
}

/// Ready messages and consumers of a queue (0, 0 while it does not exist yet).
pub async fn queue_state(connection: &Connection, queue: &str) -> anyhow::Result<(u32, u32)> {
    // A passive declare of a missing queue closes the channel: use a fresh one each time.
    let channel = connection.create_channel().await?;
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    let state = match declared {
        Ok(q) => (q.message_count(), q.consumer_count()),
        Err(_) => (0, 0),
    };
    let _ = channel.close(200, "probe".into()).await;
    Ok(state)
}

/// Returns once `queue` has at least `count` consumers.
pub async fn consumers(
    amqp_url: &str,
    queue: &str,
    count: u32,
    timeout: Duration,
) -> anyhow::Result<()> {
    let (connection, _channel) = amqp_channel(amqp_url).await?;
    let start = Instant::now();
    loop {
        if queue_state(&connection, queue).await?.1 >= count {
            return Ok(());
        }
        deadline_passed(start, timeout, &format!("{count} consumers on {queue}")).await?;
    }
}

/// Returns once `queue` has had exactly `count` consumers for `steady` (an autoscaler
/// settled at its minimum).
pub async fn consumers_exactly(
    amqp_url: &str,
    queue: &str,
    count: u32,
    steady: Duration,
    timeout: Duration,
) -> anyhow::Result<()> {
    let (connection, _channel) = amqp_channel(amqp_url).await?;
    let start = Instant::now();
    let mut since = None;
    loop {
        if queue_state(&connection, queue).await?.1 == count {
            let at = *since.get_or_insert_with(Instant::now);
            if at.elapsed() >= steady {
                return Ok(());
            }
        } else {
            since = None;
        }
        deadline_passed(
            start,
            timeout,
            &format!("exactly {count} consumers on {queue}"),
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(45)).await;
    }
}

pub async fn pending_orders(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = 'pending'")
            .fetch_one(pool)
            .await?,
    )
}

/// Returns the number of pending orders once every one of them has its command waiting
/// in `queue` and the outbox is empty: the queue is preloaded.
pub async fn preloaded(
    pool: &PgPool,
    amqp_url: &str,
    queue: &str,
    timeout: Duration,
) -> anyhow::Result<i64> {
    let (connection, _channel) = amqp_channel(amqp_url).await?;
    let start = Instant::now();
    loop {
        let pending = pending_orders(pool).await?;
        let unpublished: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                .fetch_one(pool)
                .await?;
        let (ready, _) = queue_state(&connection, queue).await?;
        if unpublished == 0 && i64::from(ready) >= pending {
            return Ok(pending);
        }
        deadline_passed(start, timeout, "a preloaded queue").await?;
        tokio::time::sleep(Duration::from_millis(45)).await;
    }
}

/// How a run of consumers over a preloaded queue went.
#[derive(Debug)]
pub struct Drain {
    /// From the moment the script started the consumers until one was registered.
    pub ready: Duration,
    /// From the first registered consumer until no order was pending.
    pub drain: Duration,
    pub rejected: i64,
}

/// Waits for a consumer on `queue`, then until no order is pending. Polls the database
/// every 20 ms, a cost small against the transactions it waits for.
pub async fn drain(
    pool: &PgPool,
    amqp_url: &str,
    queue: &str,
    since_ns: u128,
    timeout: Duration,
) -> anyhow::Result<Drain> {
    consumers(amqp_url, queue, 1, timeout).await?;
    let ready = crate::elapsed_since(since_ns);
    let start = Instant::now();
    loop {
        if pending_orders(pool).await? == 0 {
            break;
        }
        if start.elapsed() > timeout {
            bail!("orders still pending after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain = start.elapsed();
    let rejected: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = 'rejected'")
        .fetch_one(pool)
        .await?;
    Ok(Drain {
        ready,
        drain,
        rejected,
    })
}

/// Time to open a Postgres connection and run one query, then an AMQP connection and a
/// channel: the least any process that needs both takes to become ready.
pub async fn connect_floor(database_url: &str, amqp_url: &str) -> anyhow::Result<Duration> {
    use sqlx::Connection as _;
    let start = Instant::now();
    let mut pg = sqlx::PgConnection::connect(database_url).await?;
    sqlx::query("SELECT 1").execute(&mut pg).await?;
    let (connection, _channel) = amqp_channel(amqp_url).await?;
    let took = start.elapsed();
    let _ = connection.close(200, "done".into()).await;
    pg.close().await?;
    Ok(took)
}

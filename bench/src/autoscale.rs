//! Watching the autoscaler answer a backlog spike: when the first extra worker consumes,
//! how much of the capacity of the workers running went into draining the backlog, and
//! when the workers are back to the minimum.
//!
//! The watcher samples, every few tens of milliseconds, the consumers of the scaled queue
//! (each worker holds one) and the orders not yet final. From the samples:
//! - reaction: from the spike's start until the queue has more consumers than before it;
//! - backlog: the most orders open at once (pending, or in their saga);
//! - drain: from that peak until no order is open;
//! - capacity: the integral of (consumers x one worker's measured rate) over the drain,
//!   the orders the running workers could have finished had each run at its measured
//!   rate all along; the ideal drain time is the orders finished divided by the average
//!   of that capacity (the backlog over the capacity of the workers running);
//! - scale back: from the end of the drain until the consumers are back to the minimum.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sqlx::PgPool;

use crate::wait;

pub struct Settings {
    pub database_url: String,
    pub amqp_url: String,
    pub queue: String,
    /// The spike's start (nanoseconds since the Unix epoch).
    pub since_ns: u128,
    /// Consumers before the spike (the autoscaler's minimum).
    pub min_workers: u32,
    /// One worker's measured rate, orders per second.
    pub worker_capacity: f64,
    pub timeout: Duration,
    /// Waits at most this long for the scale back after the drain.
    pub scale_back_timeout: Duration,
}

#[derive(Debug)]
pub struct Figures {
    pub reaction: Duration,
    pub max_workers: u32,
    /// The most orders open at once: the backlog the spike built.
    pub backlog: i64,
    /// From that peak until no order was open.
    pub drain: Duration,
    /// The orders finished meanwhile over the average capacity of the workers running.
    pub ideal_drain: Duration,
    /// `None` when the consumers were not back to the minimum within the timeout.
    pub scale_back: Option<Duration>,
}

const SAMPLE: Duration = Duration::from_millis(25);

/// Orders not final (pending, reserved or paid: the coarse status stays `pending` until
/// the step is final), counted through the status index; and the database's clock.
async fn open_orders(pool: &PgPool) -> anyhow::Result<(i64, chrono::DateTime<chrono::Utc>)> {
    Ok(
        sqlx::query_as("SELECT count(*), clock_timestamp() FROM orders WHERE status = 'pending'")
            .fetch_one(pool)
            .await?,
    )
}

/// The watch: from just after the spike started until the workers are back to the
/// minimum. The backlog is the peak of the open orders; the drain runs from that peak, so
/// the time the spike took to place its orders is not counted against the workers.
pub async fn watch(s: Settings) -> anyhow::Result<Figures> {
    let pool = PgPool::connect(&s.database_url).await?;
    let (connection, _channel) = wait::amqp_channel(&s.amqp_url).await?;
    // The watch starts a few milliseconds after the spike; its clock starts at the spike.
    let started = Instant::now() - crate::elapsed_since(s.since_ns);

    let mut reaction = None;
    let mut max_workers = 0;
    let mut last = Instant::now();
    let mut workers = s.min_workers;
    // The peak so far: open orders, when (here and in the database), and the capacity of
    // the workers running since.
    let mut peak = (0_i64, Instant::now(), chrono::Utc::now());
    let mut capacity = 0.0;
    let drained = loop {
        let (_, consumers) = wait::queue_state(&connection, &s.queue).await?;
        let (open, at) = open_orders(&pool).await?;
        let now = Instant::now();
        // The capacity of the interval since the last sample: the workers counted then.
        capacity += f64::from(workers) * s.worker_capacity * (now - last).as_secs_f64();
        last = now;
        workers = consumers;
        max_workers = max_workers.max(consumers);
        if reaction.is_none() && consumers > s.min_workers {
            reaction = Some(now - started);
        }
        if open >= peak.0 {
            peak = (open, now, at);
            capacity = 0.0;
        }
        if peak.0 > 0 && open == 0 {
            break now;
        }
        if now - started > s.timeout {
            bail!("orders still open after {:?}", s.timeout);
        }
        tokio::time::sleep(SAMPLE).await;
    };
    let (backlog, peak_at, peak_db) = peak;
    let drain = drained - peak_at;
    // Finished since the peak: what was open then, and what arrived after it.
    let arrived: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE created_at > $1")
        .bind(peak_db)
        .fetch_one(&pool)
        .await?;
    if capacity <= 0.0 {
        bail!("no capacity measured during the drain");
    }
    // Had the running workers each kept their measured rate (the average capacity of the
    // drain), the orders finished would have taken this long.
    let ideal_drain = drain.mul_f64((backlog + arrived) as f64 / capacity);

    let drained_at = Instant::now();
    let scale_back = loop {
        let (_, consumers) = wait::queue_state(&connection, &s.queue).await?;
        if consumers <= s.min_workers {
            break Some(drained_at.elapsed());
        }
        if drained_at.elapsed() > s.scale_back_timeout {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = connection.close(200, "done".into()).await;
    Ok(Figures {
        reaction: reaction.context("no worker was added during the drain")?,
        max_workers,
        backlog,
        drain,
        ideal_drain,
        scale_back,
    })
}

//! End-to-end latency at a fixed arrival rate: orders are sent on a schedule whatever the
//! replies do (open loop, so a slow reply cannot hide queueing), and each is timed from its
//! scheduled send to the moment its `order.fulfilled` event arrives on the `events`
//! exchange. With the database at hand, each latency is split at the two transactions'
//! timestamps (`created_at`, `updated_at`: when each transaction began) to show where the
//! time goes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use chrono::{DateTime, Utc};
use contracts::EVENTS_EXCHANGE;
use futures_lite::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use tokio::time::MissedTickBehavior;
use uuid::Uuid;

use crate::wait::amqp_channel;

pub struct Settings {
    pub logic_url: String,
    pub amqp_url: String,
    pub rate: f64,
    pub duration: Duration,
    pub skus: Vec<String>,
    /// How long to wait for the last events after the last order was sent.
    pub settle: Duration,
    /// Where the orders are, to split the latency at their transactions.
    pub database_url: Option<String>,
}

/// The p50 and p99 of one part of the end-to-end latency.
#[derive(Debug, Default)]
pub struct Segment {
    pub p50: Duration,
    pub p99: Duration,
}

/// Where the end-to-end time goes, split at the transactions' start times.
#[derive(Debug, Default)]
pub struct Breakdown {
    /// Scheduled send -> the placing transaction begins (HTTP, validation, pool).
    pub to_placing: Segment,
    /// Placing transaction begins -> fulfilling transaction begins (commit, outbox relay,
    /// broker, delivery to the worker).
    pub placing_to_fulfilling: Segment,
    /// Fulfilling transaction begins -> its event arrives (transaction, commit, relay,
    /// broker).
    pub fulfilling_to_event: Segment,
}

#[derive(Debug)]
pub struct Figures {
    pub sent: usize,
    pub accepted: usize,
    pub finished: usize,
    pub accept_p50: Duration,
    pub accept_p99: Duration,
    pub e2e_p50: Duration,
    pub e2e_p99: Duration,
    pub e2e_max: Duration,
    pub breakdown: Option<Breakdown>,
}

type Arrivals = Arc<Mutex<HashMap<Uuid, Instant>>>;

/// Records when each order's final event arrived.
async fn listen(amqp_url: &str, arrivals: Arrivals) -> anyhow::Result<lapin::Connection> {
    let (connection, channel) = amqp_channel(amqp_url).await?;
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    for key in ["order.fulfilled", "order.rejected"] {
        channel
            .queue_bind(
                queue.name().clone(),
                EVENTS_EXCHANGE.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .context("binding to the events exchange")?;
    }
    let mut consumer = channel
        .basic_consume(
            queue.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    tokio::spawn(async move {
        while let Some(Ok(delivery)) = consumer.next().await {
            let at = Instant::now();
            let order_id = serde_json::from_slice::<serde_json::Value>(&delivery.data)
                .ok()
                .and_then(|v| v["payload"]["order_id"].as_str().map(str::to_owned))
                .and_then(|s| Uuid::parse_str(&s).ok());
            if let Some(id) = order_id
                && let Ok(mut map) = arrivals.lock()
            {
                map.insert(id, at);
            }
        }
    });
    Ok(connection)
}

struct Sent {
    scheduled: Instant,
    accepted: Option<(Uuid, Instant)>,
}

async fn place(client: reqwest::Client, url: String, sku: String, scheduled: Instant) -> Sent {
    let body = serde_json::json!({
        "email": "bench@example.com",
        "lines": [{"sku": sku, "quantity": 1}],
    });
    let accepted = async {
        let resp = client
            .post(&url)
            .header("Idempotency-Key", Uuid::new_v4().to_string())
            .json(&body)
            .send()
            .await
            .ok()?;
        if resp.status() != reqwest::StatusCode::ACCEPTED {
            return None;
        }
        let order: serde_json::Value = resp.json().await.ok()?;
        let id = Uuid::parse_str(order["id"].as_str()?).ok()?;
        Some((id, Instant::now()))
    }
    .await;
    Sent {
        scheduled,
        accepted,
    }
}

pub async fn run(settings: Settings) -> anyhow::Result<Figures> {
    anyhow::ensure!(!settings.skus.is_empty(), "no skus to order");
    anyhow::ensure!(settings.rate > 0.0, "the rate must be positive");
    let arrivals: Arrivals = Arc::default();
    let connection = listen(&settings.amqp_url, arrivals.clone()).await?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let url = format!("{}/api/v1/orders", settings.logic_url);
    let period = Duration::from_secs_f64(1.0 / settings.rate);
    let total = (settings.duration.as_secs_f64() * settings.rate).round() as usize;

    let mut ticker = tokio::time::interval(period);
    // Late ticks fire at once, keeping the schedule: an open loop does not slow down.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let start = Instant::now();
    let wall_start = SystemTime::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        ticker.tick().await;
        let scheduled = start + period.mul_f64(i as f64);
        let sku = settings.skus[rand::random_range(0..settings.skus.len())].clone();
        tasks.spawn(place(client.clone(), url.clone(), sku, scheduled));
    }
    let mut sent = Vec::with_capacity(total);
    while let Some(done) = tasks.join_next().await {
        sent.push(done?);
    }

    let accepted: Vec<&Sent> = sent.iter().filter(|s| s.accepted.is_some()).collect();
    let deadline = Instant::now() + settings.settle;
    loop {
        let all_in = {
            let map = arrivals.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            accepted
                .iter()
                .all(|s| s.accepted.is_some_and(|(id, _)| map.contains_key(&id)))
        };
        if all_in || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = connection.close(200, "done".into()).await;

    let map = arrivals
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    let mut accept = Vec::new();
    let mut e2e = Vec::new();
    for s in &accepted {
        if let Some((id, at)) = s.accepted {
            accept.push(at - s.scheduled);
            if let Some(done) = map.get(&id) {
                e2e.push(done.saturating_duration_since(s.scheduled));
            }
        }
    }
    accept.sort();
    e2e.sort();
    let q = |v: &[Duration], p| crate::quantile(v, p).unwrap_or_default();
    let breakdown = match &settings.database_url {
        Some(url) => {
            let wall = |at: Instant| DateTime::<Utc>::from(wall_start + (at - start));
            let finished: Vec<(Uuid, DateTime<Utc>, DateTime<Utc>)> = accepted
                .iter()
                .filter_map(|s| {
                    let (id, _) = s.accepted?;
                    Some((id, wall(s.scheduled), wall(*map.get(&id)?)))
                })
                .collect();
            Some(breakdown(url, &finished).await?)
        }
        None => None,
    };
    Ok(Figures {
        sent: sent.len(),
        accepted: accepted.len(),
        finished: e2e.len(),
        accept_p50: q(&accept, 0.5),
        accept_p99: q(&accept, 0.99),
        e2e_p50: q(&e2e, 0.5),
        e2e_p99: q(&e2e, 0.99),
        e2e_max: e2e.last().copied().unwrap_or_default(),
        breakdown,
    })
}

/// Splits each (order, sent, event seen) at the order's `created_at` and `updated_at`.
async fn breakdown(
    database_url: &str,
    finished: &[(Uuid, DateTime<Utc>, DateTime<Utc>)],
) -> anyhow::Result<Breakdown> {
    let pool = sqlx::PgPool::connect(database_url).await?;
    let ids: Vec<Uuid> = finished.iter().map(|(id, _, _)| *id).collect();
    let rows: Vec<(Uuid, DateTime<Utc>, DateTime<Utc>)> =
        sqlx::query_as("SELECT id, created_at, updated_at FROM orders WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(&pool)
            .await?;
    pool.close().await;
    let times: HashMap<Uuid, (DateTime<Utc>, DateTime<Utc>)> =
        rows.into_iter().map(|(id, c, u)| (id, (c, u))).collect();
    let span = |from: DateTime<Utc>, to: DateTime<Utc>| (to - from).to_std().unwrap_or_default();
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for (id, sent, seen) in finished {
        if let Some((created, updated)) = times.get(id) {
            a.push(span(*sent, *created));
            b.push(span(*created, *updated));
            c.push(span(*updated, *seen));
        }
    }
    let segment = |mut v: Vec<Duration>| {
        v.sort();
        Segment {
            p50: crate::quantile(&v, 0.5).unwrap_or_default(),
            p99: crate::quantile(&v, 0.99).unwrap_or_default(),
        }
    };
    Ok(Breakdown {
        to_placing: segment(a),
        placing_to_fulfilling: segment(b),
        fulfilling_to_event: segment(c),
    })
}

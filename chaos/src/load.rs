//! The load: orders sent on a schedule, each with its own Idempotency-Key, retried with the
//! same key when no answer or a 5xx came back, every attempt recorded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use uuid::Uuid;

use crate::stack::{HOT, PRODUCTS};

/// When the orders go out.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// Evenly spread, `rate` orders a second.
    Steady { rate: f64 },
    /// Bursts of `size` orders at 100 a second, one every `every`.
    Bursts { size: usize, every: Duration },
}

#[derive(Debug, Clone, Copy)]
pub struct LoadPlan {
    pub orders: usize,
    pub shape: Shape,
    /// Share of orders for the hot product.
    pub hot_share: f64,
    /// How long a client keeps retrying one order.
    pub give_up_after: Duration,
}

impl LoadPlan {
    /// When order `i` is sent, from the start of the load.
    pub fn send_at(&self, i: usize) -> Duration {
        match self.shape {
            Shape::Steady { rate } => Duration::from_secs_f64(i as f64 / rate),
            Shape::Bursts { size, every } => {
                every * (i / size) as u32 + Duration::from_millis(10) * (i % size) as u32
            }
        }
    }

    /// When the last order is sent.
    pub fn duration(&self) -> Duration {
        self.send_at(self.orders.saturating_sub(1))
    }
}

/// One HTTP attempt and what came back.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// From the start of the run.
    pub at: Duration,
    /// None: no answer (connection refused or reset, or the 5 s timeout).
    pub status: Option<u16>,
    pub retry_after: bool,
}

/// One order as the client saw it.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: String,
    pub lines: Vec<(String, i32)>,
    pub attempts: Vec<Attempt>,
    /// The order id of a 202 answer.
    pub order_id: Option<Uuid>,
}

impl Record {
    /// The final answer the client kept: a status other than 5xx, if any came.
    pub fn answer(&self) -> Option<u16> {
        self.attempts
            .iter()
            .filter_map(|a| a.status)
            .rfind(|s| *s < 500)
    }
}

fn lines_for(i: usize, hot_share: f64) -> Vec<(String, i32)> {
    let mut rng = rand::rng();
    if rng.random_bool(hot_share) {
        return vec![(HOT.to_owned(), 1)];
    }
    let first = PRODUCTS[i % PRODUCTS.len()];
    let mut lines = vec![(first.to_owned(), rng.random_range(1..=3))];
    if rng.random_bool(0.3) {
        let second = PRODUCTS[(i + 1) % PRODUCTS.len()];
        lines.push((second.to_owned(), rng.random_range(1..=3)));
    }
    lines
}

async fn send_one(
    http: reqwest::Client,
    url: Arc<String>,
    key: String,
    lines: Vec<(String, i32)>,
    run_start: Instant,
    give_up_after: Duration,
) -> Record {
    let body = serde_json::json!({
        "email": "chaos@example.com",
        "lines": lines.iter().map(|(sku, q)| serde_json::json!({"sku": sku, "quantity": q}))
            .collect::<Vec<_>>(),
    });
    let first = Instant::now();
    let mut record = Record {
        key,
        lines,
        attempts: Vec::new(),
        order_id: None,
    };
    loop {
        let at = run_start.elapsed();
        let res = http
            .post(url.as_str())
            .header("Idempotency-Key", &record.key)
            .json(&body)
            .send()
            .await;
        let (status, retry_after, order_id) = match res {
            Ok(res) => {
                let status = res.status().as_u16();
                let retry_after = res.headers().contains_key("retry-after");
                let id = if status == 202 {
                    res.json::<serde_json::Value>()
                        .await
                        .ok()
                        .and_then(|b| b.get("id")?.as_str()?.parse::<Uuid>().ok())
                } else {
                    None
                };
                (Some(status), retry_after, id)
            }
            Err(_) => (None, false, None),
        };
        record.attempts.push(Attempt {
            at,
            status,
            retry_after,
        });
        match status {
            Some(202) => {
                record.order_id = order_id;
                return record;
            }
            Some(s) if s < 500 => return record,
            _ => {}
        }
        if first.elapsed() >= give_up_after {
            return record;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Sends the plan's orders to logic at `base_url` and returns what each client saw.
pub async fn run(
    http: reqwest::Client,
    base_url: String,
    plan: LoadPlan,
    run_start: Instant,
) -> Vec<Record> {
    let url = Arc::new(format!("{base_url}/api/v1/orders"));
    let load_start = tokio::time::Instant::now();
    let prefix = Uuid::new_v4().simple().to_string();
    let mut tasks = Vec::with_capacity(plan.orders);
    for i in 0..plan.orders {
        tokio::time::sleep_until(load_start + plan.send_at(i)).await;
        tasks.push(tokio::spawn(send_one(
            http.clone(),
            url.clone(),
            format!("chaos-{prefix}-{i}"),
            lines_for(i, plan.hot_share),
            run_start,
            plan.give_up_after,
        )));
    }
    let mut records = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Ok(record) = task.await {
            records.push(record);
        }
    }
    records
}

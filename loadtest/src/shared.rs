//! State shared by every simulated shopper: the products and their popularity, and the
//! counters the sampler and the reports read.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rand::Rng;
use rand_distr::{Distribution, Zipf};

use crate::Args;

/// One row of the timeline, sampled every second.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sample {
    pub t_secs: f64,
    pub requests: u64,
    pub errors: u64,
    pub orders_placed: u64,
    pub orders_final: u64,
    /// Ready + unacknowledged messages of the work queue, when the autoscaler is sampled.
    pub backlog: Option<u64>,
    pub workers: Option<u64>,
}

pub struct Shared {
    pub skus: Vec<String>,
    zipf: Zipf<f64>,
    pub args: Args,
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub orders_placed: AtomicU64,
    pub orders_fulfilled: AtomicU64,
    pub orders_rejected: AtomicU64,
    pub orders_timed_out: AtomicU64,
    pub sold_out_skips: AtomicU64,
    /// Seconds from "placed" to a final status, one per finished order.
    pub fulfil_latencies: Mutex<Vec<f64>>,
    pub timeline: Mutex<Vec<Sample>>,
    sampling: AtomicBool,
    /// Flash sale: the next arrival slot, the time slots count from, and the placed orders
    /// (order page path, placed at) to follow after the sale.
    next_slot: AtomicU64,
    slots_from: OnceLock<Instant>,
    /// Arrivals that started more than a second after their slot (every shopper busy).
    pub late_arrivals: AtomicU64,
    pub placed: Mutex<Vec<(String, Instant)>>,
}

static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();

/// Makes the state reachable from Goose transactions (plain functions).
pub fn install(shared: Arc<Shared>) {
    let _ = SHARED.set(shared);
}

pub fn get() -> &'static Arc<Shared> {
    SHARED
        .get()
        .expect("shared state installed before the attack")
}

impl Shared {
    pub fn new(skus: Vec<String>, exponent: f64, args: Args) -> Self {
        let n = skus.len().max(1) as f64;
        Shared {
            zipf: Zipf::new(n, exponent.max(0.01)).expect("valid Zipf parameters"),
            skus,
            args,
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            orders_placed: AtomicU64::new(0),
            orders_fulfilled: AtomicU64::new(0),
            orders_rejected: AtomicU64::new(0),
            orders_timed_out: AtomicU64::new(0),
            sold_out_skips: AtomicU64::new(0),
            fulfil_latencies: Mutex::new(Vec::new()),
            timeline: Mutex::new(Vec::new()),
            sampling: AtomicBool::new(true),
            next_slot: AtomicU64::new(0),
            slots_from: OnceLock::new(),
            late_arrivals: AtomicU64::new(0),
            placed: Mutex::new(Vec::new()),
        }
    }

    /// A product, the first ones far more often than the last (rank 1 is the most popular).
    pub fn pick_sku(&self) -> &str {
        let rank = self.zipf.sample(&mut rand::rng()) as usize;
        &self.skus[rank.clamp(1, self.skus.len()) - 1]
    }

    pub fn checks_out(&self) -> bool {
        rand::rng().random_bool(self.args.checkout_ratio.clamp(0.0, 1.0))
    }

    pub fn think(&self) -> Duration {
        let base = self.args.think_ms;
        Duration::from_millis(base / 2 + rand::rng().random_range(0..=base.max(1)))
    }

    pub fn count_request(&self, ok: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn record_final(&self, fulfilled: bool, latency: Duration) {
        if fulfilled {
            self.orders_fulfilled.fetch_add(1, Ordering::Relaxed);
        } else {
            self.orders_rejected.fetch_add(1, Ordering::Relaxed);
        }
        self.fulfil_latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(latency.as_secs_f64());
    }

    pub fn orders_final(&self) -> u64 {
        self.orders_fulfilled.load(Ordering::Relaxed)
            + self.orders_rejected.load(Ordering::Relaxed)
            + self.orders_timed_out.load(Ordering::Relaxed)
    }

    /// Orders placed whose outcome is not known yet.
    pub fn outstanding(&self) -> u64 {
        self.orders_placed
            .load(Ordering::Relaxed)
            .saturating_sub(self.orders_final())
    }

    /// Waits for the next arrival slot of the flash sale: slot n is due n / rate seconds
    /// after the first, whatever the earlier arrivals are doing (open loop).
    pub async fn next_arrival(&self) {
        let from = *self.slots_from.get_or_init(Instant::now);
        let n = self.next_slot.fetch_add(1, Ordering::Relaxed);
        let due = from + Duration::from_secs_f64(n as f64 / self.args.rate);
        let now = Instant::now();
        if due > now {
            tokio::time::sleep(due - now).await;
        } else if now - due > Duration::from_secs(1) {
            self.late_arrivals.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn record_placed(&self, path: String) {
        self.orders_placed.fetch_add(1, Ordering::Relaxed);
        self.placed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((path, Instant::now()));
    }

    pub fn sampling(&self) -> bool {
        self.sampling.load(Ordering::Relaxed)
    }

    pub fn stop_sampling(&self) {
        self.sampling.store(false, Ordering::Relaxed);
    }
}

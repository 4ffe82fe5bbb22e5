//! The stock view: each replica's own map of sku → stock, no older than
//! `STOCK_FRESHNESS_MS`, laid over every cached product it answers with.
//!
//! The product body (name, text, price) is cached for minutes and dropped by `ProductChanged`
//! events; stock changes far more often (every reservation, release and inventory
//! adjustment) and those writers publish no event. Dropping the cached product on every
//! order would empty a flash sale's hot product on every order; instead the stock is kept
//! apart, with its own short freshness:
//!
//! - A read looks up the stock of every sku it answers with. Fresh entries cost nothing but
//!   a map lookup; the stale ones are fetched together in one query (`sku = ANY($1)`), and a
//!   sku already being fetched is not fetched twice (single flight), so a burst of reads of
//!   a hot product costs one query per freshness period per replica.
//! - An entry is stamped with the instant its query was sent, so an answer given from it
//!   reflects every stock change committed more than `STOCK_FRESHNESS_MS` earlier.
//! - Postgres unreachable (or slower than [`QUERY_TIMEOUT`]): the last known stock is served
//!   (or, never known, the cached body's) and the answer says so ([`Freshness::Stale`],
//!   the `X-Stock: stale` header). After a failure no new query is sent for one freshness
//!   period, so an outage costs each read a map lookup, not a timeout.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::OnceCell;

/// Longest wait for the stock query; past it the read is answered with the last known stock.
pub const QUERY_TIMEOUT: Duration = Duration::from_millis(500);

/// Skus a stock view keeps at most; the least used go first.
const CAPACITY: u64 = 100_000;

/// Settings of the stock view.
#[derive(Debug, Clone, clap::Args)]
pub struct StockSettings {
    /// Oldest stock a read may answer with, in milliseconds (1 to 999): every stock change
    /// is visible on every replica this long after its commit.
    #[arg(long, env = "STOCK_FRESHNESS_MS", default_value_t = 500)]
    pub stock_freshness_ms: u64,
}

impl Default for StockSettings {
    fn default() -> Self {
        StockSettings {
            stock_freshness_ms: 500,
        }
    }
}

impl StockSettings {
    /// The freshness, or why it is refused: readers are promised stock under a second old.
    pub fn freshness(&self) -> anyhow::Result<Duration> {
        match self.stock_freshness_ms {
            1..=999 => Ok(Duration::from_millis(self.stock_freshness_ms)),
            ms => anyhow::bail!(
                "STOCK_FRESHNESS_MS must be between 1 and 999 (stock is promised under a second \
                 old), got {ms}"
            ),
        }
    }
}

/// Whether an answer's stock is within the freshness bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Every stock of the answer was read less than the freshness period ago; it stays
    /// within the bound for the time given (the period less the age of its oldest reading).
    Fresh { for_: Duration },
    /// Postgres could not be asked: the last known stock (or the cached body's).
    Stale,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    stock: i32,
    /// When the query that read it was sent.
    read_at: Instant,
}

/// One query for a set of skus; whoever awaits it first runs it, the others wait for it.
struct Flight {
    skus: Vec<String>,
    done: OnceCell<bool>,
}

pub struct StockView {
    pool: PgPool,
    freshness: Duration,
    entries: moka::sync::Cache<String, Entry>,
    flights: Mutex<HashMap<String, Arc<Flight>>>,
    /// The last failed query: none is sent for one freshness period after it.
    failed_at: Mutex<Option<Instant>>,
    queries: AtomicU64,
}

impl StockView {
    pub fn new(pool: PgPool, freshness: Duration) -> Self {
        StockView {
            pool,
            freshness,
            entries: moka::sync::Cache::builder().max_capacity(CAPACITY).build(),
            flights: Mutex::new(HashMap::new()),
            failed_at: Mutex::new(None),
            queries: AtomicU64::new(0),
        }
    }

    /// Stock queries this view has sent since it started (for tests and diagnostics).
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    /// Records a stock its caller has just committed (an admin update), so this replica
    /// shows its own write at once.
    pub fn observe(&self, sku: &str, stock: i32, read_at: Instant) {
        self.entries
            .insert(sku.to_owned(), Entry { stock, read_at });
    }

    /// The stock of each sku (None: unknown, which a read leaves as the cached body says),
    /// refreshing the stale ones with one query.
    pub async fn stocks(&self, skus: &[&str]) -> (HashMap<String, i32>, Freshness) {
        let stale: Vec<&str> = skus
            .iter()
            .copied()
            .filter(|sku| !self.is_fresh(self.entries.get(*sku)))
            .collect();
        if !stale.is_empty() && !self.backing_off() {
            for flight in self.flights_for(&stale) {
                flight.done.get_or_init(|| self.refresh(&flight.skus)).await;
                self.land(&flight);
            }
        }
        let mut freshness = Freshness::Fresh {
            for_: self.freshness,
        };
        let mut stocks = HashMap::with_capacity(skus.len());
        for sku in skus {
            let entry = self.entries.get(*sku);
            freshness = match (freshness, self.remaining(entry)) {
                (Freshness::Fresh { for_ }, Some(left)) => Freshness::Fresh {
                    for_: for_.min(left),
                },
                _ => Freshness::Stale,
            };
            if let Some(entry) = entry {
                stocks.insert((*sku).to_owned(), entry.stock);
            }
        }
        if freshness == Freshness::Stale {
            metrics::counter!("strata_stock_stale_answers_total").increment(1);
        }
        (stocks, freshness)
    }

    fn is_fresh(&self, entry: Option<Entry>) -> bool {
        self.remaining(entry).is_some()
    }

    /// How long `entry` stays within the freshness bound; None when it is past it.
    fn remaining(&self, entry: Option<Entry>) -> Option<Duration> {
        entry.and_then(|e| self.freshness.checked_sub(e.read_at.elapsed()))
    }

    fn backing_off(&self) -> bool {
        let failed = self.failed_at.lock().unwrap_or_else(|p| p.into_inner());
        failed.is_some_and(|at| at.elapsed() < self.freshness)
    }

    /// The flights that bring `stale` up to date: those already under way for some of the
    /// skus, and one new flight for the rest.
    fn flights_for(&self, stale: &[&str]) -> Vec<Arc<Flight>> {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        let mut joined: Vec<Arc<Flight>> = Vec::new();
        let mut mine = Vec::new();
        for sku in stale {
            match flights.get(*sku) {
                Some(f) => {
                    if !joined.iter().any(|j| Arc::ptr_eq(j, f)) {
                        joined.push(f.clone());
                    }
                }
                None => mine.push((*sku).to_owned()),
            }
        }
        if !mine.is_empty() {
            let flight = Arc::new(Flight {
                skus: mine,
                done: OnceCell::new(),
            });
            for sku in &flight.skus {
                flights.insert(sku.clone(), flight.clone());
            }
            joined.push(flight);
        }
        joined
    }

    /// Forgets a finished flight, so the next stale read sends a new query.
    fn land(&self, flight: &Arc<Flight>) {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        for sku in &flight.skus {
            if flights.get(sku).is_some_and(|f| Arc::ptr_eq(f, flight)) {
                flights.remove(sku);
            }
        }
    }

    /// One query for `skus`; true when it answered.
    async fn refresh(&self, skus: &[String]) -> bool {
        let read_at = Instant::now();
        self.queries.fetch_add(1, Ordering::Relaxed);
        let query = sqlx::query_as::<_, (String, i32)>(
            "SELECT sku, stock FROM products WHERE sku = ANY($1)",
        )
        .bind(skus)
        .fetch_all(&self.pool);
        match tokio::time::timeout(QUERY_TIMEOUT, query).await {
            Ok(Ok(rows)) => {
                metrics::counter!("strata_stock_refreshes_total", "result" => "ok").increment(1);
                for (sku, stock) in rows {
                    self.entries.insert(sku, Entry { stock, read_at });
                }
                true
            }
            failed => {
                metrics::counter!("strata_stock_refreshes_total", "result" => "error").increment(1);
                let error = match failed {
                    Ok(Err(err)) => err.to_string(),
                    _ => "timed out".to_owned(),
                };
                tracing::warn!(error, "stock refresh failed; serving the last known stock");
                *self.failed_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                false
            }
        }
    }
}

/// Describes the stock view's metrics to the installed recorder.
pub fn describe_metrics() {
    metrics::describe_counter!(
        "strata_stock_refreshes_total",
        "Stock queries of the stock view by result (ok or error); one per freshness period \
         per replica for a hot product"
    );
    metrics::describe_counter!(
        "strata_stock_stale_answers_total",
        "Answers whose stock could not be refreshed (sent with X-Stock: stale)"
    );
}

/// `json` (a product as serde writes it, `stock` its last field) with its stock replaced;
/// None when the text does not end that way.
pub fn with_stock(json: &str, stock: i32) -> Option<String> {
    const FIELD: &str = "\"stock\":";
    let at = json.rfind(FIELD)?;
    let value = json[at + FIELD.len()..].strip_suffix('}')?;
    let digits = value.strip_prefix('-').unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(format!("{}{FIELD}{stock}}}", &json[..at]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stock_of_a_product_text_is_replaced() {
        let product = contracts::Product {
            sku: "A-1".into(),
            name: "\"stock\":5}".into(),
            description: "d".into(),
            category: "c".into(),
            price_cents: 100,
            stock: 1000,
        };
        let json = serde_json::to_string(&product).expect("json");
        let replaced = with_stock(&json, 990).expect("ends with the stock");
        let back: contracts::Product = serde_json::from_str(&replaced).expect("still JSON");
        assert_eq!(back.stock, 990);
        assert_eq!(back.name, product.name);
        assert_eq!(with_stock(r#"{"stock":1,"x":2}"#, 3), None);
        assert_eq!(with_stock(r#"{"stock":}"#, 3), None);
        assert_eq!(
            with_stock(r#"{"stock":-4}"#, 3).as_deref(),
            Some(r#"{"stock":3}"#)
        );
    }

    #[test]
    fn a_freshness_of_a_second_or_more_is_refused() {
        let at = |ms| StockSettings {
            stock_freshness_ms: ms,
        };
        assert_eq!(at(500).freshness().ok(), Some(Duration::from_millis(500)));
        assert!(at(999).freshness().is_ok());
        let err = at(1000).freshness().expect_err("refused").to_string();
        assert!(err.contains("STOCK_FRESHNESS_MS"), "{err}");
        assert!(at(0).freshness().is_err());
    }
}

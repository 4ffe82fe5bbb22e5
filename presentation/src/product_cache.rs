//! The page tier's copy of the products it showed, so that a product page seen again
//! costs no call to logic.
//!
//! Logic promises that a product's stock is never older than its `STOCK_FRESHNESS_MS`
//! (under a second), and says with every fresh answer how much of that promise is left
//! (`X-Stock-Fresh-For-Ms`, [`contracts::STOCK_FRESH_FOR_HEADER`]). A copy is kept exactly
//! that long and no longer, so a page from the copy keeps logic's promise: the stock it
//! shows, and its name and price, are as fresh as logic's own answer would be. An answer
//! without the header (logic answered with the last known stock, `X-Stock: stale`, or an
//! older logic) is shown and not kept.
//!
//! The copy is bounded in entries (`PRODUCT_CACHE_ENTRIES`; 0 turns it off); least used
//! entries go first.

use std::sync::Arc;
use std::time::{Duration, Instant};

use contracts::Product;

/// A product and the instant it stops being fresh.
#[derive(Clone)]
struct Kept {
    product: Arc<Product>,
    until: Instant,
}

/// Removes each entry when its freshness ends, so the bound holds entries worth keeping.
struct UntilStale;

impl moka::Expiry<String, Kept> for UntilStale {
    fn expire_after_create(&self, _: &String, kept: &Kept, now: Instant) -> Option<Duration> {
        Some(kept.until.saturating_duration_since(now))
    }
}

/// Clones share one copy (moka's cache is a handle).
#[derive(Clone)]
pub struct ProductCache {
    entries: moka::sync::Cache<String, Kept>,
}

impl ProductCache {
    /// None when `entries` is 0 (turned off).
    pub fn new(entries: u64) -> Option<Self> {
        (entries > 0).then(|| ProductCache {
            entries: moka::sync::Cache::builder()
                .max_capacity(entries)
                .expire_after(UntilStale)
                .build(),
        })
    }

    /// The product, while logic's freshness promise for it lasts.
    pub fn get(&self, sku: &str) -> Option<Arc<Product>> {
        let kept = self.entries.get(sku)?;
        // The expiry removes the entry at about this instant; this check makes it exact.
        (Instant::now() < kept.until).then_some(kept.product)
    }

    /// Keeps `product` for `fresh_for`, measured from `asked_at` (when the call to logic
    /// was sent, so the time the answer took counts against it).
    pub fn keep(&self, product: Arc<Product>, asked_at: Instant, fresh_for: Duration) {
        let until = asked_at + fresh_for;
        if until > Instant::now() {
            self.entries
                .insert(product.sku.clone(), Kept { product, until });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(sku: &str) -> Arc<Product> {
        Arc::new(Product {
            sku: sku.to_owned(),
            name: "Lamp".to_owned(),
            description: "A lamp.".to_owned(),
            category: "Lighting".to_owned(),
            price_cents: 1000,
            stock: 3,
        })
    }

    #[test]
    fn a_copy_is_served_until_its_freshness_ends_and_not_after() {
        let cache = ProductCache::new(10).expect("on");
        cache.keep(product("A-1"), Instant::now(), Duration::from_millis(80));
        assert_eq!(cache.get("A-1").map(|p| p.stock), Some(3));
        assert!(cache.get("B-1").is_none());
        std::thread::sleep(Duration::from_millis(100));
        assert!(cache.get("A-1").is_none(), "served past its freshness");
    }

    #[test]
    fn an_answer_already_past_its_freshness_is_not_kept() {
        let cache = ProductCache::new(10).expect("on");
        let asked_at = Instant::now() - Duration::from_millis(50);
        cache.keep(product("A-1"), asked_at, Duration::from_millis(40));
        assert!(cache.get("A-1").is_none());
    }

    #[test]
    fn zero_entries_turns_the_cache_off() {
        assert!(ProductCache::new(0).is_none());
    }
}

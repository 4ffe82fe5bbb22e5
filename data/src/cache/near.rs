//! The near cache: a small in-process copy of hot cache entries in front of Redis, so a
//! repeated read costs neither a Redis round trip nor a Postgres query.
//!
//! - Entries are the same JSON that Redis holds, bounded in total size
//!   (`NEAR_CACHE_CAPACITY`, least recently and least frequently used go first) and
//!   expiring after `NEAR_CACHE_TTL_MS` whatever happens: the TTL bounds staleness if an
//!   invalidation is ever missed. `NEAR_CACHE_TTL_MS=0` turns the near cache off.
//! - Every process keeps its copy fresh by subscribing to `ProductChanged` on the `events`
//!   exchange with a queue of its own ([`super::invalidation::subscribe`]); an event drops
//!   the product's entry and every catalog-wide entry, and deletes the Redis copies too.
//! - The near cache is used only while that subscription is up: until it is established,
//!   and from the moment it is lost until it is back, the near cache is emptied and
//!   bypassed (reads go to Redis), since an event missed in between would leave a stale
//!   copy behind.
//! - A value loaded while an invalidation ran is not kept: every invalidation moves an
//!   epoch forward, and an insert whose load began in an earlier epoch is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use moka::sync::Cache as Moka;

/// Settings of the near cache.
#[derive(Debug, Clone, clap::Args)]
pub struct NearCacheSettings {
    /// Largest total size of the near cache's entries, in bytes.
    #[arg(long, env = "NEAR_CACHE_CAPACITY", default_value_t = 8 * 1024 * 1024)]
    pub near_cache_capacity: u64,
    /// Time-to-live of near-cache entries, in milliseconds; 0 turns the near cache off.
    #[arg(long, env = "NEAR_CACHE_TTL_MS", default_value_t = 2000)]
    pub near_cache_ttl_ms: u64,
}

impl Default for NearCacheSettings {
    fn default() -> Self {
        NearCacheSettings {
            near_cache_capacity: 8 * 1024 * 1024,
            near_cache_ttl_ms: 2000,
        }
    }
}

impl NearCacheSettings {
    /// The near cache turned off.
    pub fn disabled() -> Self {
        NearCacheSettings {
            near_cache_ttl_ms: 0,
            ..NearCacheSettings::default()
        }
    }

    pub fn enabled(&self) -> bool {
        self.near_cache_ttl_ms > 0 && self.near_cache_capacity > 0
    }
}

/// The in-process entries and the state that decides whether they may be used.
pub struct NearCache {
    /// None when the near cache is turned off.
    entries: Option<Moka<String, Arc<str>>>,
    /// The invalidation subscription is up.
    live: AtomicBool,
    /// Moves forward on every invalidation and on every change of `live`.
    epoch: AtomicU64,
    /// Part of every catalog-wide key: moving it forward drops them all at once.
    catalog_generation: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl NearCache {
    pub fn new(settings: &NearCacheSettings) -> Self {
        let entries = settings.enabled().then(|| {
            Moka::builder()
                .max_capacity(settings.near_cache_capacity)
                .weigher(|key: &String, value: &Arc<str>| {
                    u32::try_from(key.len() + value.len() + 64).unwrap_or(u32::MAX)
                })
                .time_to_live(Duration::from_millis(settings.near_cache_ttl_ms))
                .build()
        });
        NearCache {
            entries,
            live: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            catalog_generation: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// A near cache that is turned off.
    pub fn disabled() -> Self {
        NearCache::new(&NearCacheSettings::disabled())
    }

    /// Turned on and kept fresh by a live subscription.
    pub fn usable(&self) -> bool {
        self.entries.is_some() && self.live.load(Ordering::SeqCst)
    }

    pub fn is_enabled(&self) -> bool {
        self.entries.is_some()
    }

    /// The epoch to pass to [`NearCache::insert`], read before the value is fetched.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// The near-cache key of a catalog-wide read.
    pub fn catalog_key(&self, name: &str) -> String {
        format!(
            "catalog:{}:{name}",
            self.catalog_generation.load(Ordering::SeqCst)
        )
    }

    /// The entry under `key`, counting a hit or a miss; None without counting while the
    /// near cache is bypassed.
    pub fn get(&self, key: &str) -> Option<Arc<str>> {
        let entries = self.entries.as_ref()?;
        if !self.live.load(Ordering::SeqCst) {
            return None;
        }
        match entries.get(key) {
            Some(json) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("strata_near_cache_requests_total", "result" => "hit")
                    .increment(1);
                Some(json)
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("strata_near_cache_requests_total", "result" => "miss")
                    .increment(1);
                None
            }
        }
    }

    /// Keeps `json` under `key` unless an invalidation (or a loss of the subscription)
    /// happened since `epoch` was read.
    pub fn insert(&self, key: &str, json: Arc<str>, epoch: u64) {
        let Some(entries) = self.entries.as_ref() else {
            return;
        };
        if !self.live.load(Ordering::SeqCst) || self.epoch() != epoch {
            return;
        }
        entries.insert(key.to_owned(), json);
        // An invalidation between the check above and the insert has either seen the entry
        // (and dropped it) or moved the epoch, which is checked again here.
        if self.epoch() != epoch {
            entries.invalidate(key);
        }
    }

    /// Drops the entry under `key` and every catalog-wide entry.
    pub fn invalidate(&self, key: &str) {
        let Some(entries) = self.entries.as_ref() else {
            return;
        };
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.catalog_generation.fetch_add(1, Ordering::SeqCst);
        entries.invalidate(key);
    }

    /// Drops every entry.
    pub fn clear(&self) {
        let Some(entries) = self.entries.as_ref() else {
            return;
        };
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.catalog_generation.fetch_add(1, Ordering::SeqCst);
        entries.invalidate_all();
    }

    /// Marks the subscription up or down; either way every entry is dropped, since events
    /// may have been missed while it was down.
    pub fn set_live(&self, live: bool) {
        if self.entries.is_none() {
            return;
        }
        if !live {
            self.live.store(false, Ordering::SeqCst);
        }
        self.clear();
        if live {
            self.live.store(true, Ordering::SeqCst);
        }
        metrics::gauge!("strata_near_cache_live").set(if live { 1.0 } else { 0.0 });
    }

    /// Near-cache hits and misses of this process since it started.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Holds an entry under `key` (for tests and diagnostics; does not count).
    pub fn contains(&self, key: &str) -> bool {
        self.entries
            .as_ref()
            .is_some_and(|entries| entries.contains_key(key))
    }
}

/// Describes the near cache's metrics to the installed recorder.
pub fn describe_metrics() {
    metrics::describe_counter!(
        "strata_near_cache_requests_total",
        "Near-cache lookups by result (hit or miss); bypassed reads are not counted"
    );
    metrics::describe_gauge!(
        "strata_near_cache_live",
        "1 while the near cache's invalidation subscription is up and the near cache is used"
    );
}

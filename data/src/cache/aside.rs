//! [`Cache`]: reads through the near cache and Redis to a loader, with single flight, and
//! the invalidation of a product after a write.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::ExposeSecret;
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::OnceCell;

use crate::DataSettings;
use crate::cache::near::{NearCache, NearCacheSettings};

type Flight = Arc<OnceCell<Result<String, String>>>;

pub struct Cache {
    client: Option<redis::Client>,
    manager: tokio::sync::Mutex<Option<ConnectionManager>>,
    last_attempt: Mutex<Option<Instant>>,
    timeout: Duration,
    prefix: String,
    ttl: Duration,
    flights: Mutex<HashMap<String, Flight>>,
    hits: AtomicU64,
    misses: AtomicU64,
    near: NearCache,
}

/// A fetched value, with its JSON text when it may be kept in the near cache.
struct Fetched<T> {
    value: T,
    json: Option<Arc<str>>,
    source: Source,
}

/// How a read was served, for metrics and tests. A near-cache hit is a `Hit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Hit,
    Miss,
    /// Redis could not be asked; the value came from Postgres.
    Bypass,
}

impl Cache {
    /// A Redis cache without a near cache.
    pub fn new(settings: &DataSettings) -> Self {
        Cache::with_near_cache(settings, &NearCacheSettings::disabled())
    }

    /// A Redis cache with a near cache in front; the near cache stays bypassed until
    /// [`crate::cache::invalidation::subscribe`] has its subscription up.
    pub fn with_near_cache(settings: &DataSettings, near: &NearCacheSettings) -> Self {
        let client = match redis::Client::open(settings.redis_url.expose_secret()) {
            Ok(c) => Some(c),
            Err(err) => {
                tracing::error!(error = %err, "REDIS_URL is invalid; the cache is disabled");
                None
            }
        };
        Cache {
            client,
            manager: tokio::sync::Mutex::new(None),
            last_attempt: Mutex::new(None),
            timeout: settings.redis_timeout(),
            prefix: settings.redis_key_prefix.clone(),
            ttl: settings.cache_ttl(),
            flights: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            near: NearCache::new(near),
        }
    }

    /// The near cache in front of Redis.
    pub fn near(&self) -> &NearCache {
        &self.near
    }

    pub fn key(&self, parts: &str) -> String {
        format!("{}{}", self.prefix, parts)
    }

    /// A connection, opening one at most once a second while Redis is unreachable. Once
    /// open, the manager reconnects by itself.
    async fn connection(&self) -> Option<ConnectionManager> {
        let client = self.client.as_ref()?;
        let mut guard = self.manager.lock().await;
        if let Some(m) = guard.as_ref() {
            return Some(m.clone());
        }
        {
            let mut last = self.last_attempt.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return None;
            }
            *last = Some(Instant::now());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        match tokio::time::timeout(
            self.timeout * 4,
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        {
            Ok(Ok(m)) => {
                *guard = Some(m.clone());
                Some(m)
            }
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "Redis unreachable; serving reads from Postgres");
                None
            }
            Err(_) => {
                tracing::warn!("Redis connect timed out; serving reads from Postgres");
                None
            }
        }
    }

    async fn redis_get(&self, key: &str) -> Result<Option<String>, ()> {
        let Some(mut conn) = self.connection().await else {
            return Err(());
        };
        match tokio::time::timeout(self.timeout, conn.get::<_, Option<String>>(key)).await {
            Ok(Ok(v)) => Ok(v),
            _ => Err(()),
        }
    }

    async fn redis_set(&self, key: &str, value: &str) {
        if let Some(mut conn) = self.connection().await {
            let ttl = self.ttl.as_secs().max(1);
            let _ =
                tokio::time::timeout(self.timeout, conn.set_ex::<_, _, ()>(key, value, ttl)).await;
        }
    }

    /// Reads `key` from the near cache, else from Redis, else loads it with `load` (once for
    /// all concurrent misses of the same key) and stores it in both. A `null` value (nothing
    /// found) is not stored.
    pub async fn get_or_load<T, E, F, Fut>(&self, key: &str, load: F) -> Result<(T, Source), E>
    where
        T: Serialize + DeserializeOwned,
        E: From<anyhow::Error> + std::fmt::Display,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let epoch = self.near.epoch();
        if let Some(json) = self.near.get(key)
            && let Ok(value) = serde_json::from_str(&json)
        {
            return Ok((value, Source::Hit));
        }
        let fetched = self.fetch(key, load).await?;
        if let Some(json) = fetched.json
            && fetched.source != Source::Bypass
        {
            self.near.insert(key, json, epoch);
        }
        Ok((fetched.value, fetched.source))
    }

    /// Like [`Cache::get_or_load`], but answers with the value's JSON text, which a near-cache
    /// hit hands out without decoding or encoding anything.
    pub async fn get_or_load_json<T, E, F, Fut>(
        &self,
        key: &str,
        load: F,
    ) -> Result<(Arc<str>, Source), E>
    where
        T: Serialize + DeserializeOwned,
        E: From<anyhow::Error> + std::fmt::Display,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let epoch = self.near.epoch();
        if let Some(json) = self.near.get(key) {
            return Ok((json, Source::Hit));
        }
        let fetched = self.fetch(key, load).await?;
        let json = match fetched.json {
            Some(json) => {
                if fetched.source != Source::Bypass {
                    self.near.insert(key, json.clone(), epoch);
                }
                json
            }
            None => serde_json::to_string(&fetched.value)
                .map_err(|e| E::from(anyhow::Error::from(e)))?
                .into(),
        };
        Ok((json, fetched.source))
    }

    /// Redis, then a single-flight load. The JSON text comes along when there is one worth
    /// keeping (not for `null`).
    async fn fetch<T, E, F, Fut>(&self, key: &str, load: F) -> Result<Fetched<T>, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<anyhow::Error> + std::fmt::Display,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let keep = |json: &str| (json != "null").then(|| Arc::<str>::from(json));
        let redis_ok = match self.redis_get(key).await {
            Ok(Some(json)) => {
                if let Ok(value) = serde_json::from_str(&json) {
                    metrics::counter!("strata_cache_requests_total", "result" => "hit")
                        .increment(1);
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(Fetched {
                        json: keep(&json),
                        value,
                        source: Source::Hit,
                    });
                }
                true
            }
            Ok(None) => true,
            Err(()) => {
                metrics::counter!("strata_cache_unavailable_total").increment(1);
                false
            }
        };
        metrics::counter!("strata_cache_requests_total", "result" => "miss").increment(1);
        self.misses.fetch_add(1, Ordering::Relaxed);
        let source = if redis_ok {
            Source::Miss
        } else {
            Source::Bypass
        };

        let flight: Flight = {
            let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            flights.entry(key.to_owned()).or_default().clone()
        };
        // The leader keeps its own typed result; followers decode the shared JSON.
        let mut mine: Option<Result<T, E>> = None;
        let shared = flight
            .get_or_init(|| async {
                let result = load().await;
                let json = match &result {
                    Ok(value) => serde_json::to_string(value).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                mine = Some(result);
                json
            })
            .await
            .clone();
        if let Some(result) = mine {
            if let Ok(json) = &shared
                && redis_ok
                && json != "null"
            {
                self.redis_set(key, json).await;
            }
            let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            if flights.get(key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
                flights.remove(key);
            }
            return result.map(|value| Fetched {
                json: shared.as_deref().ok().and_then(keep),
                value,
                source,
            });
        }
        match shared {
            Ok(json) => serde_json::from_str(&json)
                .map(|value| Fetched {
                    json: keep(&json),
                    value,
                    source,
                })
                .map_err(|e| E::from(anyhow::Error::from(e))),
            Err(msg) => Err(E::from(anyhow::anyhow!(msg))),
        }
    }

    /// Like [`Cache::get_or_load`] for catalog-wide reads (listings, categories): the key
    /// `name` is placed under the current catalog generation, so one product update
    /// invalidates them all. Without Redis the value is loaded straight from `load`.
    pub async fn get_or_load_catalog<T, E, F, Fut>(&self, name: &str, load: F) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<anyhow::Error> + std::fmt::Display,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        // The epoch is read before the near key, whose generation it guards.
        let epoch = self.near.epoch();
        let near_key = self.near.usable().then(|| self.near.catalog_key(name));
        if let Some(near_key) = &near_key
            && let Some(json) = self.near.get(near_key)
            && let Ok(value) = serde_json::from_str(&json)
        {
            return Ok(value);
        }
        match self.catalog_generation().await {
            Some(generation) => {
                let key = self.key(&format!("g{generation}:{name}"));
                let fetched = self.fetch(&key, load).await?;
                if let (Some(near_key), Some(json)) = (near_key, fetched.json)
                    && fetched.source != Source::Bypass
                {
                    self.near.insert(&near_key, json, epoch);
                }
                Ok(fetched.value)
            }
            None => {
                metrics::counter!("strata_cache_unavailable_total").increment(1);
                load().await
            }
        }
    }

    /// Drops cached copies of one product and of every listing (by bumping the catalog
    /// generation that listing keys include), in Redis and in the near cache. Called by
    /// the writer after its commit, and by every process when the change event arrives.
    pub async fn invalidate_product(&self, sku: &str) {
        let product_key = self.key(&format!("product:{sku}"));
        let generation_key = self.key("catalog:generation");
        // Before and after Redis: a read that began in between may have fetched the old
        // Redis copy, and the second invalidation keeps it out of the near cache.
        self.near.invalidate(&product_key);
        self.invalidate_in_redis(&product_key, &generation_key, sku)
            .await;
        self.near.invalidate(&product_key);
    }

    async fn invalidate_in_redis(&self, product_key: &str, generation_key: &str, sku: &str) {
        let Some(mut conn) = self.connection().await else {
            metrics::counter!("strata_cache_unavailable_total").increment(1);
            return;
        };
        let mut pipe = redis::pipe();
        pipe.del(product_key)
            .ignore()
            .incr(generation_key, 1)
            .ignore();
        let done = tokio::time::timeout(self.timeout, pipe.query_async::<()>(&mut conn)).await;
        if !matches!(done, Ok(Ok(()))) {
            metrics::counter!("strata_cache_unavailable_total").increment(1);
            tracing::warn!(
                sku,
                "cache invalidation failed; entries expire with their TTL"
            );
        }
    }

    /// The catalog generation; listing keys include it so one INCR invalidates them all.
    pub async fn catalog_generation(&self) -> Option<u64> {
        let key = self.key("catalog:generation");
        let mut conn = self.connection().await?;
        match tokio::time::timeout(self.timeout, conn.get::<_, Option<u64>>(&key)).await {
            Ok(Ok(v)) => Some(v.unwrap_or(0)),
            _ => None,
        }
    }

    /// Reads of this process since it started that a cache answered (the near cache or
    /// Redis), and reads that had to be loaded.
    pub fn counts(&self) -> (u64, u64) {
        let (near_hits, _) = self.near.counts();
        let (hits, misses) = self.redis_counts();
        (near_hits + hits, misses)
    }

    /// Redis hits and misses of this process since it started.
    pub fn redis_counts(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Redis answers PING.
    pub async fn ping(&self) -> bool {
        let Some(mut conn) = self.connection().await else {
            return false;
        };
        matches!(
            tokio::time::timeout(
                self.timeout,
                redis::cmd("PING").query_async::<String>(&mut conn)
            )
            .await,
            Ok(Ok(_))
        )
    }
}

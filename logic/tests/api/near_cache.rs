//! The near cache in front of Redis, against the real Redis, RabbitMQ and Postgres: it is
//! filled by reads, emptied on every logic instance when a product changes, bypassed while
//! the broker is out of reach, and can be turned off.

use std::sync::Arc;
use std::time::Duration;

use data::cache::Cache;
use data::cache::near::NearCacheSettings;
use logic::LogicSettings;
use secrecy::SecretString;
use serde_json::json;
use testkit::TestEnv;
use testkit::apps;
use testkit::proxy::Proxy;

use crate::helpers::ADMIN_TOKEN;

const WAIT: Duration = Duration::from_secs(20);

/// One logic instance on the test's services.
struct Instance {
    base: String,
    cache: Arc<Cache>,
    http: reqwest::Client,
    _logic: apps::Logic,
}

async fn start(env: &TestEnv, tweak: impl FnOnce(&mut LogicSettings)) -> Instance {
    let logic = apps::logic(env, Some(ADMIN_TOKEN), tweak).await;
    Instance {
        base: logic.base.clone(),
        cache: logic.cache.clone(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client"),
        _logic: logic,
    }
}

/// A near cache whose entries outlive every test, so only an invalidation empties it.
fn long_lived() -> NearCacheSettings {
    NearCacheSettings {
        near_cache_ttl_ms: 600_000,
        ..NearCacheSettings::default()
    }
}

impl Instance {
    async fn wait_subscribed(&self) {
        let near = || self.cache.near().usable();
        testkit::eventually(WAIT, "the near cache's subscription", || async {
            near().then_some(())
        })
        .await;
    }

    /// Price and `X-Cache` of a product read.
    async fn product(&self, sku: &str) -> (i64, String) {
        let res = self
            .http
            .get(format!("{}/api/v1/products/{sku}", self.base))
            .send()
            .await
            .expect("GET product");
        assert_eq!(res.status(), 200);
        let source = res.headers()["x-cache"].to_str().expect("ascii").to_owned();
        let product: contracts::Product = res.json().await.expect("product");
        (product.price_cents, source)
    }

    /// Price of the first product in the `Test` category listing.
    async fn listed_price(&self) -> i64 {
        let page: contracts::ProductPage = self
            .http
            .get(format!("{}/api/v1/products?category=Test", self.base))
            .send()
            .await
            .expect("GET products")
            .json()
            .await
            .expect("page");
        page.items[0].price_cents
    }

    async fn set_price(&self, sku: &str, price_cents: i64) {
        let res = self
            .http
            .patch(format!("{}/api/v1/products/{sku}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "price_cents": price_cents }))
            .send()
            .await
            .expect("PATCH");
        assert_eq!(res.status(), 200);
    }

    fn product_key(&self, sku: &str) -> String {
        self.cache.key(&format!("product:{sku}"))
    }
}

#[tokio::test]
async fn a_read_fills_the_near_cache_and_the_next_one_skips_redis() {
    let env = TestEnv::new().await;
    env.product("LAMP-1", 2500, 3).await;
    let app = start(&env, |s| s.near_cache = NearCacheSettings::default()).await;
    app.wait_subscribed().await;

    assert_eq!(app.product("LAMP-1").await, (2500, "miss".to_owned()));
    assert!(app.cache.near().contains(&app.product_key("LAMP-1")));
    assert_eq!(app.cache.near().counts(), (0, 1), "near hits, misses");
    assert_eq!(app.cache.redis_counts(), (0, 1), "Redis hits, misses");

    // Served from the process's own copy: Redis is not asked.
    assert_eq!(app.product("LAMP-1").await, (2500, "hit".to_owned()));
    assert_eq!(app.cache.near().counts(), (1, 1));
    assert_eq!(app.cache.redis_counts(), (0, 1), "Redis hits, misses");
    assert_eq!(
        app.cache.counts(),
        (1, 1),
        "reads a cache answered, reads loaded"
    );

    // Not-found answers are not kept.
    let res = app
        .http
        .get(format!("{}/api/v1/products/NOPE-404", app.base))
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status(), 404);
    assert!(!app.cache.near().contains(&app.product_key("NOPE-404")));

    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics");
    assert!(
        metrics.contains("strata_near_cache_requests_total{result=\"hit\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("strata_near_cache_requests_total{result=\"miss\"}"));
}

#[tokio::test]
async fn an_update_through_one_instance_empties_the_near_cache_of_another() {
    let env = TestEnv::new().await;
    env.product("SOFA-1", 90000, 2).await;
    let writer = start(&env, |s| s.near_cache = long_lived()).await;
    let reader = start(&env, |s| s.near_cache = long_lived()).await;
    writer.wait_subscribed().await;
    reader.wait_subscribed().await;

    assert_eq!(reader.product("SOFA-1").await.0, 90000);
    assert_eq!(reader.product("SOFA-1").await, (90000, "hit".to_owned()));
    assert_eq!(reader.listed_price().await, 90000);
    assert_eq!(reader.listed_price().await, 90000);
    let (near_hits, _) = reader.cache.near().counts();
    assert_eq!(
        near_hits, 2,
        "the product and the listing came from the near cache"
    );

    writer.set_price("SOFA-1", 85000).await;
    // The writer sees its own write at once.
    assert_eq!(writer.product("SOFA-1").await.0, 85000);

    // The reader's copies live for ten minutes: only the change event can drop them.
    let key = reader.product_key("SOFA-1");
    testkit::eventually(WAIT, "the change event to reach the reader", || async {
        (!reader.cache.near().contains(&key)).then_some(())
    })
    .await;
    assert_eq!(reader.product("SOFA-1").await.0, 85000);
    assert_eq!(reader.listed_price().await, 85000);
}

#[tokio::test]
async fn with_the_near_cache_off_reads_go_to_redis() {
    let env = TestEnv::new().await;
    env.product("RUG-1", 4000, 5).await;
    let app = start(&env, |s| s.near_cache = NearCacheSettings::disabled()).await;

    assert_eq!(app.product("RUG-1").await, (4000, "miss".to_owned()));
    assert_eq!(app.product("RUG-1").await, (4000, "hit".to_owned()));
    assert_eq!(app.cache.redis_counts(), (1, 1), "Redis hits, misses");
    assert_eq!(app.cache.near().counts(), (0, 0));
    assert!(!app.cache.near().usable());

    app.set_price("RUG-1", 4200).await;
    assert_eq!(app.product("RUG-1").await, (4200, "miss".to_owned()));
    assert_eq!(app.listed_price().await, 4200);
}

#[tokio::test]
async fn without_the_broker_the_near_cache_is_emptied_and_bypassed() {
    let env = TestEnv::new().await;
    env.product("VASE-1", 1800, 9).await;
    let proxy = Proxy::start("127.0.0.1:5672".parse().expect("addr")).await;
    let direct = secrecy::ExposeSecret::expose_secret(&env.data.amqp_url).to_owned();
    let via_proxy = direct.replace("127.0.0.1:5672", &proxy.addr().to_string());
    assert_ne!(
        via_proxy, direct,
        "the test's AMQP URL names 127.0.0.1:5672"
    );
    let app = start(&env, |s| {
        s.data.amqp_url = SecretString::from(via_proxy);
        s.near_cache = long_lived();
    })
    .await;
    app.wait_subscribed().await;

    app.product("VASE-1").await;
    let key = app.product_key("VASE-1");
    assert!(app.cache.near().contains(&key));

    proxy.cut();
    testkit::eventually(WAIT, "the near cache to be bypassed", || async {
        (!app.cache.near().usable()).then_some(())
    })
    .await;
    assert!(!app.cache.near().contains(&key), "emptied on the loss");
    let before = app.cache.near().counts();
    // Served from Redis meanwhile, and not kept near.
    assert_eq!(app.product("VASE-1").await, (1800, "hit".to_owned()));
    assert_eq!(
        app.cache.near().counts(),
        before,
        "bypassed reads are not counted"
    );
    assert!(!app.cache.near().contains(&key));

    proxy.restore();
    app.wait_subscribed().await;
    app.product("VASE-1").await;
    assert!(
        app.cache.near().contains(&key),
        "used again once subscribed"
    );
}

#[tokio::test]
async fn the_json_read_hands_out_the_stored_text() {
    let env = TestEnv::new().await;
    let cache = Cache::with_near_cache(&env.data, &long_lived());
    // As the subscription does once it is up.
    cache.near().set_live(true);
    let key = cache.key("product:TEXT-1");
    let load = || async { Ok::<_, anyhow::Error>(Some(json!({"sku": "TEXT-1", "n": 1}))) };

    let (first, source) = cache.get_or_load_json(&key, load).await.expect("load");
    assert_eq!(source, data::cache::Source::Miss);
    assert_eq!(&*first, r#"{"n":1,"sku":"TEXT-1"}"#);
    let (second, source) = cache
        .get_or_load_json(&key, || async {
            Err::<Option<serde_json::Value>, _>(anyhow::anyhow!("not loaded again"))
        })
        .await
        .expect("from the near cache");
    assert_eq!(source, data::cache::Source::Hit);
    assert!(
        Arc::ptr_eq(&first, &second),
        "the very text that was stored"
    );
    assert_eq!(cache.near().counts(), (1, 1));

    cache.invalidate_product("TEXT-1").await;
    assert!(!cache.near().contains(&key));
}

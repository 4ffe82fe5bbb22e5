//! The stock view against the real Postgres, Redis and RabbitMQ: stock changed in Postgres
//! without any product-change event (as fulfilment and inventory adjustments change it)
//! shows on every logic replica within a second while the product body stays cached, a
//! burst of reads costs one stock query per freshness period, and without Postgres the
//! last known stock is served and marked stale.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use contracts::{Order, OrderStatus, Product, ProductPage};
use data::cache::near::NearCacheSettings;
use futures_util::future::join_all;
use logic::LogicSettings;
use logic::stock::StockView;
use secrecy::{ExposeSecret, SecretString};
use testkit::TestEnv;
use testkit::apps;
use testkit::proxy::Proxy;

use crate::helpers::{ADMIN_TOKEN, order_body};

/// What every reader is promised: a stock change is visible this long after its commit.
const BOUND: Duration = Duration::from_secs(1);
const WAIT: Duration = Duration::from_secs(20);

/// One logic replica on the test's services.
struct Replica {
    base: String,
    stock: Arc<StockView>,
    http: reqwest::Client,
    logic: apps::Logic,
}

/// A product read: its stock and the `X-Cache`, `X-Stock` and `X-Stock-Fresh-For-Ms`
/// headers.
#[derive(Debug)]
struct Read {
    stock: i32,
    cache: String,
    freshness: String,
    fresh_for_ms: Option<u64>,
}

async fn start(env: &TestEnv, tweak: impl FnOnce(&mut LogicSettings)) -> Replica {
    let logic = apps::logic(env, Some(ADMIN_TOKEN), |s| {
        // Body copies that outlive the test: only the stock view can bring new stock.
        s.near_cache = NearCacheSettings {
            near_cache_ttl_ms: 600_000,
            ..NearCacheSettings::default()
        };
        tweak(s);
    })
    .await;
    Replica {
        base: logic.base.clone(),
        stock: logic.stock.clone(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client"),
        logic,
    }
}

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .map(|v| v.to_str().expect("ascii").to_owned())
        .unwrap_or_default()
}

impl Replica {
    async fn read(&self, sku: &str) -> Read {
        let res = self
            .http
            .get(format!("{}/api/v1/products/{sku}", self.base))
            .send()
            .await
            .expect("GET product");
        assert_eq!(res.status(), 200);
        let cache = header(&res, "x-cache");
        let freshness = header(&res, "x-stock");
        let fresh_for = header(&res, "x-stock-fresh-for-ms");
        let fresh_for_ms = (!fresh_for.is_empty())
            .then(|| fresh_for.parse().expect("X-Stock-Fresh-For-Ms is a number"));
        let product: Product = res.json().await.expect("product");
        Read {
            stock: product.stock,
            cache,
            freshness,
            fresh_for_ms,
        }
    }

    /// Stock of `sku` in the `Test` listing, and the listing's `X-Stock`.
    async fn listed(&self, sku: &str) -> (i32, String) {
        let res = self
            .http
            .get(format!("{}/api/v1/products?category=Test", self.base))
            .send()
            .await
            .expect("GET products");
        assert_eq!(res.status(), 200);
        let freshness = header(&res, "x-stock");
        let page: ProductPage = res.json().await.expect("page");
        let item = page.items.iter().find(|p| p.sku == sku).expect("listed");
        (item.stock, freshness)
    }

    /// Reads `sku` until its body is a cache hit (the first read loads it).
    async fn warm(&self, sku: &str) -> Read {
        testkit::eventually(WAIT, "a cached read", || async {
            let read = self.read(sku).await;
            (read.cache == "hit").then_some(read)
        })
        .await
    }

    async fn wait_subscribed(&self) {
        testkit::eventually(WAIT, "the near cache's subscription", || async {
            self.logic.cache.near().usable().then_some(())
        })
        .await;
    }
}

async fn take_stock(env: &TestEnv, sku: &str, units: i32) {
    sqlx::query("UPDATE products SET stock = stock - $2 WHERE sku = $1")
        .bind(sku)
        .bind(units)
        .execute(&env.pool)
        .await
        .expect("taking stock");
}

/// Reads `sku` on every replica until each shows `stock`; fails if that takes longer than
/// [`BOUND`] from `since`, or if a body was not served from the cache.
async fn within_bound(replicas: &[&Replica], sku: &str, stock: i32, since: Instant) {
    for replica in replicas {
        loop {
            let read = replica.read(sku).await;
            assert_eq!(read.cache, "hit", "the body stays cached: {read:?}");
            // A fresh answer says how long it stays fresh, never past the freshness period
            // (every replica here runs with the default 500 ms).
            if read.freshness == "fresh" {
                assert!(
                    read.fresh_for_ms.is_some_and(|ms| ms <= 500),
                    "a fresh answer's X-Stock-Fresh-For-Ms: {read:?}"
                );
            }
            if read.stock == stock {
                assert_eq!(read.freshness, "fresh");
                break;
            }
            assert!(
                since.elapsed() < BOUND,
                "stock {stock} not shown within {BOUND:?}: {read:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(since.elapsed() < BOUND, "took {:?}", since.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stock_change_shows_on_every_replica_within_a_second_while_the_body_stays_cached() {
    let env = TestEnv::new().await;
    env.product("HOT-1", 5000, 1000).await;
    let a = start(&env, |_| {}).await;
    let b = start(&env, |_| {}).await;
    a.wait_subscribed().await;
    b.wait_subscribed().await;
    assert_eq!(a.warm("HOT-1").await.stock, 1000);
    assert_eq!(b.warm("HOT-1").await.stock, 1000);
    assert_eq!(a.listed("HOT-1").await.0, 1000);

    // As ten fulfilled orders take it: no product-change event.
    take_stock(&env, "HOT-1", 10).await;
    let committed = Instant::now();
    within_bound(&[&a, &b], "HOT-1", 990, committed).await;
    assert_eq!(a.listed("HOT-1").await, (990, "fresh".to_owned()));
    assert_eq!(b.listed("HOT-1").await, (990, "fresh".to_owned()));

    // And again: the view keeps following, not only once.
    take_stock(&env, "HOT-1", 5).await;
    let committed = Instant::now();
    within_bound(&[&b, &a], "HOT-1", 985, committed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_fulfilled_by_a_worker_show_on_both_replicas_within_a_second() {
    let env = TestEnv::new().await;
    env.product("SALE-1", 1500, 1000).await;
    let a = start(&env, |_| {}).await;
    let b = start(&env, |_| {}).await;
    let _worker = apps::worker(&env, |s| {
        s.payment_latency_ms = 0;
        s.retry_delay_ms = 100;
    });
    a.warm("SALE-1").await;
    b.warm("SALE-1").await;

    let body = order_body("buyer@example.com", &[("SALE-1", 1)]);
    let placed = join_all((0..10).map(|_| {
        a.http
            .post(format!("{}/api/v1/orders", a.base))
            .json(&body)
            .send()
    }))
    .await;
    let mut ids = Vec::new();
    for res in placed {
        let res = res.expect("POST order");
        assert_eq!(res.status(), 202);
        ids.push(res.json::<Order>().await.expect("order").id);
    }
    for id in ids {
        let order = testkit::eventually(WAIT, "the order to be final", || async {
            let order: Order = a
                .http
                .get(format!("{}/api/v1/orders/{id}", a.base))
                .send()
                .await
                .expect("GET order")
                .json()
                .await
                .expect("order");
            order.status.is_final().then_some(order)
        })
        .await;
        assert_eq!(order.status, OrderStatus::Fulfilled);
    }
    // The last order was final when it was seen, so its stock was committed by then.
    let seen = Instant::now();
    within_bound(&[&a, &b], "SALE-1", 990, seen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flash_sale_keeps_the_product_cached_and_costs_one_stock_query_per_period() {
    let env = TestEnv::new().await;
    env.product("FLASH-1", 999, 100_000).await;
    let app = start(&env, |s| s.stock.stock_freshness_ms = 500).await;
    app.wait_subscribed().await;
    app.warm("FLASH-1").await;

    // A fresh view costs no query.
    app.read("FLASH-1").await;
    let before = app.stock.queries();
    app.read("FLASH-1").await;
    assert_eq!(app.stock.queries(), before, "a fresh view is not queried");

    // A burst of reads once the view is stale costs one query.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = app.stock.queries();
    let burst = join_all((0..50).map(|_| app.read("FLASH-1"))).await;
    assert!(burst.iter().all(|r| r.cache == "hit"), "{burst:?}");
    let burst_queries = app.stock.queries() - before;
    assert!(
        (1..=2).contains(&burst_queries),
        "50 reads at once cost {burst_queries} stock queries"
    );

    // The sale: orders take stock every 10 ms while readers keep reading.
    let sold = Arc::new(AtomicU64::new(0));
    let selling = {
        let pool = env.pool.clone();
        let sold = sold.clone();
        tokio::spawn(async move {
            let until = Instant::now() + Duration::from_secs(2);
            while Instant::now() < until {
                sqlx::query("UPDATE products SET stock = stock - 1 WHERE sku = 'FLASH-1'")
                    .execute(&pool)
                    .await
                    .expect("an order takes stock");
                sold.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let before = app.stock.queries();
    let started = Instant::now();
    let readers = join_all((0..8).map(|_| async {
        let mut reads = Vec::new();
        while started.elapsed() < Duration::from_secs(2) {
            reads.push(app.read("FLASH-1").await);
        }
        reads
    }))
    .await;
    let elapsed = started.elapsed();
    selling.await.expect("the sale ran");
    let reads: Vec<Read> = readers.into_iter().flatten().collect();
    let hits = reads.iter().filter(|r| r.cache == "hit").count();
    assert!(
        hits * 100 >= reads.len() * 90,
        "{hits} hits of {} reads during the sale",
        reads.len()
    );
    assert!(reads.len() > 100, "only {} reads", reads.len());
    let periods = elapsed.as_millis().div_ceil(500) as u64;
    let queries = app.stock.queries() - before;
    assert!(
        queries <= 2 * periods + 1,
        "{queries} stock queries in {elapsed:?} ({periods} periods of 500 ms)"
    );
    // And the stock followed the sale.
    let last = 100_000 - sold.load(Ordering::Relaxed) as i32;
    within_bound(&[&app], "FLASH-1", last, Instant::now()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_postgres_the_last_stock_is_served_and_marked_stale() {
    let env = TestEnv::new().await;
    env.product("CUT-1", 700, 50).await;
    let (proxy, through) = Proxy::in_front_of(env.data.database_url.expose_secret()).await;
    let app = start(&env, |s| s.data.database_url = SecretString::from(through)).await;
    app.warm("CUT-1").await;
    take_stock(&env, "CUT-1", 5).await;
    within_bound(&[&app], "CUT-1", 45, Instant::now()).await;
    // The listing is cached too.
    assert_eq!(app.listed("CUT-1").await, (45, "fresh".to_owned()));

    proxy.cut();
    // Taken meanwhile; this replica cannot know.
    take_stock(&env, "CUT-1", 5).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    for _ in 0..3 {
        let read = app.read("CUT-1").await;
        assert_eq!(read.cache, "hit", "the body is served from the cache");
        assert_eq!(read.stock, 45, "the last known stock");
        assert_eq!(read.freshness, "stale");
        assert_eq!(read.fresh_for_ms, None, "a stale answer is not to be kept");
    }
    assert_eq!(app.listed("CUT-1").await, (45, "stale".to_owned()));

    proxy.restore();
    testkit::eventually(WAIT, "fresh stock once Postgres is back", || async {
        let read = app.read("CUT-1").await;
        (read.freshness == "fresh").then_some(read.stock)
    })
    .await;
    assert_eq!(app.read("CUT-1").await.stock, 40);
}

#[tokio::test]
async fn a_freshness_of_a_second_or_more_is_refused_at_start() {
    let env = TestEnv::new().await;
    let mut settings = LogicSettings::with_data(env.data.clone());
    settings.stock.stock_freshness_ms = 1000;
    let err = logic::Application::build(settings)
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{err:#}").contains("STOCK_FRESHNESS_MS must be between 1 and 999"),
        "{err:#}"
    );
}

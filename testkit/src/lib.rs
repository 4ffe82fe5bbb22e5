//! Test harness against the real services. Each [`TestEnv`] owns a fresh Postgres database
//! (migrated), a RabbitMQ vhost and a Redis key prefix, and removes all three when dropped,
//! so tests run in parallel and leave nothing behind. [`apps`] starts logic, the outbox
//! relay, workers and presentation in-process over them.
//!
//! Base addresses come from the environment, with defaults for the local services:
//! `TEST_POSTGRES_URL` (postgres://postgres@127.0.0.1:5432), `TEST_AMQP_URL`
//! (amqp://guest:guest@127.0.0.1:5672), `TEST_RABBITMQ_API` (http://127.0.0.1:15672, user
//! guest/guest), `TEST_REDIS_URL` (redis://127.0.0.1:6379).

pub mod apps;
pub mod leaks;
pub mod proxy;

use std::time::{Duration, Instant};

use anyhow::Context;
use data::DataSettings;
use secrecy::SecretString;
use sqlx::PgPool;
use uuid::Uuid;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn postgres_base() -> String {
    env_or("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
}

fn amqp_base() -> String {
    env_or("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672")
}

fn rabbitmq_api() -> String {
    env_or("TEST_RABBITMQ_API", "http://127.0.0.1:15672")
}

fn redis_url() -> String {
    env_or("TEST_REDIS_URL", "redis://127.0.0.1:6379")
}

/// Services of one test.
pub struct TestEnv {
    pub id: String,
    pub database: String,
    pub vhost: String,
    pub data: DataSettings,
    pub pool: PgPool,
}

impl TestEnv {
    /// Creates and migrates a database, a vhost (guest has all rights) and a key prefix.
    pub async fn new() -> TestEnv {
        Self::try_new().await.expect("setting up the test services")
    }

    async fn try_new() -> anyhow::Result<TestEnv> {
        let id = format!("t{}", Uuid::new_v4().simple());
        let database = format!("strata_test_{id}");
        let vhost = format!("strata-test-{id}");
        let api = rabbitmq_api();
        let http = reqwest::Client::new();
        http.put(format!("{api}/api/vhosts/{vhost}"))
            .basic_auth("guest", Some("guest"))
            .send()
            .await
            .context("RabbitMQ management API (enable rabbitmq_management)")?
            .error_for_status()?;
        http.put(format!("{api}/api/permissions/{vhost}/guest"))
            .basic_auth("guest", Some("guest"))
            .json(&serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"}))
            .send()
            .await?
            .error_for_status()?;

        let data = DataSettings {
            database_url: SecretString::from(format!("{}/{database}", postgres_base())),
            database_url_file: None,
            amqp_url: SecretString::from(format!("{}/{vhost}", amqp_base())),
            amqp_url_file: None,
            redis_url: SecretString::from(redis_url()),
            redis_url_file: None,
            redis_key_prefix: format!("strata-test:{id}:"),
            database_max_connections: 20,
            delivery_limit: 5,
            ..DataSettings::default()
        };
        let pool = data::store::db::migrate(&data).await?;
        // Declare the topology now, so a test can look at queues before any process did.
        let conn = data::messaging::broker::connect(data.amqp_url(), "strata-test-setup").await?;
        let channel = conn.create_channel().await?;
        data::messaging::broker::declare_topology(&channel, data.delivery_limit).await?;
        data::messaging::fifo::declare_partitions(
            &channel,
            data.delivery_limit,
            data.fifo_partitions,
        )
        .await?;
        let _ = conn.close(200, "declared".into()).await;
        Ok(TestEnv {
            id,
            database,
            vhost,
            data,
            pool,
        })
    }

    /// Adds (or resets) a product.
    pub async fn product(&self, sku: &str, price_cents: i64, stock: i32) {
        sqlx::query(
            "INSERT INTO products (sku, name, description, category, price_cents, stock) \
             VALUES ($1, $2, 'A product made for a test.', 'Test', $3, $4) \
             ON CONFLICT (sku) DO UPDATE SET price_cents = $3, stock = $4",
        )
        .bind(sku)
        .bind(format!("Product {sku}"))
        .bind(price_cents)
        .bind(stock)
        .execute(&self.pool)
        .await
        .expect("inserting a product");
    }

    pub async fn stock(&self, sku: &str) -> i32 {
        sqlx::query_scalar("SELECT stock FROM products WHERE sku = $1")
            .bind(sku)
            .fetch_one(&self.pool)
            .await
            .expect("reading stock")
    }

    /// Status and reason of an order.
    pub async fn order_status(&self, id: Uuid) -> (String, Option<String>) {
        sqlx::query_as("SELECT status, reason FROM orders WHERE id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .expect("reading an order")
    }

    /// Waits until every order is final, or panics after `timeout`.
    pub async fn wait_all_final(&self, timeout: Duration) {
        let start = Instant::now();
        loop {
            let pending: i64 =
                sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = 'pending'")
                    .fetch_one(&self.pool)
                    .await
                    .expect("counting pending orders");
            if pending == 0 {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "{pending} orders still pending after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ready and unacknowledged message counts of a queue in this test's vhost, from the
    /// management API (its figures lag the broker by up to a few seconds); None until the
    /// API has sampled the queue.
    pub async fn queue_counts(&self, queue: &str) -> Option<(u64, u64)> {
        let reading =
            data::messaging::management::queue_reading(&self.data, &rabbitmq_api(), queue)
                .await
                .ok()?;
        Some((reading.ready, reading.unacked?))
    }

    /// Consumers of a queue in this test's vhost, from the management API (which lags the
    /// broker by a few seconds); None when the API did not answer.
    pub async fn queue_consumers(&self, queue: &str) -> Option<u64> {
        data::messaging::management::queue_reading(&self.data, &rabbitmq_api(), queue)
            .await
            .ok()
            .map(|r| r.consumers)
    }

    /// Number of messages in a queue, counted by the broker (passive declare: exact).
    pub async fn queue_ready(&self, queue: &str) -> u32 {
        let conn = data::messaging::broker::connect(
            secrecy::ExposeSecret::expose_secret(&self.data.amqp_url),
            "strata-test",
        )
        .await
        .expect("connecting to RabbitMQ");
        let channel = conn.create_channel().await.expect("channel");
        let (ready, _) = data::messaging::broker::queue_depth(&channel, queue)
            .await
            .expect("passive declare");
        let _ = conn.close(200, "done".into()).await;
        ready
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let database = self.database.clone();
        let vhost = self.vhost.clone();
        let prefix = self.data.redis_key_prefix.clone();
        // The pool's connections are driven by the test's runtime, which is blocked while we
        // wait here; DROP DATABASE ... WITH (FORCE) ends them instead of closing the pool.
        // Drop runs outside any async context we may block; clean up on a thread of our own.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            rt.block_on(async move {
                if let Ok(admin) = PgPool::connect(&format!("{}/postgres", postgres_base())).await {
                    let _ = sqlx::query(&format!(
                        "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
                    ))
                    .execute(&admin)
                    .await;
                    admin.close().await;
                }
                let _ = reqwest::Client::new()
                    .delete(format!("{}/api/vhosts/{vhost}", rabbitmq_api()))
                    .basic_auth("guest", Some("guest"))
                    .send()
                    .await;
                if let Ok(client) = redis::Client::open(redis_url())
                    && let Ok(mut conn) = client.get_multiplexed_async_connection().await
                {
                    {
                        let keys: Vec<String> = redis::cmd("KEYS")
                            .arg(format!("{prefix}*"))
                            .query_async(&mut conn)
                            .await
                            .unwrap_or_default();
                        if !keys.is_empty() {
                            let _: Result<(), _> =
                                redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
                        }
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// Polls `probe` every 50 ms until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

use std::time::Duration;

use contracts::Order;
use logic::LogicSettings;
use serde_json::{Value, json};
use testkit::TestEnv;
use testkit::apps;
use uuid::Uuid;

pub const ADMIN_TOKEN: &str = "test-admin-token";

/// A logic app on a free port over the test's own services, and the workers it was given.
pub struct TestApp {
    // Fields drop in order: the apps stop before their services are removed.
    _logic: apps::Logic,
    workers: Vec<apps::Worker>,
    pub env: TestEnv,
    pub base: String,
    pub http: reqwest::Client,
}

pub async fn spawn_app() -> TestApp {
    let env = TestEnv::new().await;
    spawn_app_with(env, |_| {}).await
}

/// Starts logic with settings adjusted by `tweak` (e.g. an unreachable Redis).
pub async fn spawn_app_with(env: TestEnv, tweak: impl FnOnce(&mut LogicSettings)) -> TestApp {
    let logic = apps::logic(&env, Some(ADMIN_TOKEN), tweak).await;
    TestApp {
        base: logic.base.clone(),
        _logic: logic,
        workers: Vec::new(),
        env,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client"),
    }
}

impl TestApp {
    /// Starts an in-process worker on this app's services.
    pub fn spawn_worker(&mut self, payment_latency_ms: u64) {
        self.workers.push(apps::worker(&self.env, |s| {
            s.payment_latency_ms = payment_latency_ms;
            s.retry_delay_ms = 100;
        }));
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn post_order(&self, body: &Value, key: Option<&str>) -> reqwest::Response {
        let mut req = self.http.post(self.url("/api/v1/orders")).json(body);
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        req.send().await.expect("POST /orders")
    }

    /// Places an order that must be accepted; returns it.
    pub async fn place_order(&self, email: &str, lines: &[(&str, i32)]) -> Order {
        let body = order_body(email, lines);
        let res = self.post_order(&body, None).await;
        assert_eq!(
            res.status(),
            202,
            "order not accepted: {}",
            res.text().await.unwrap_or_default()
        );
        res.json().await.expect("order JSON")
    }

    pub async fn order(&self, id: Uuid) -> Order {
        self.get(&format!("/api/v1/orders/{id}"))
            .await
            .json()
            .await
            .expect("order JSON")
    }

    /// Polls the API until the order is final.
    pub async fn wait_final(&self, id: Uuid, timeout: Duration) -> Order {
        testkit::eventually(timeout, "the order to be final", || async {
            let order = self.order(id).await;
            order.status.is_final().then_some(order)
        })
        .await
    }

    pub async fn patch_product(
        &self,
        sku: &str,
        body: &Value,
        token: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .patch(self.url(&format!("/api/v1/products/{sku}")))
            .json(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().await.expect("PATCH")
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.text().await.expect("metrics")
    }
}

pub fn order_body(email: &str, lines: &[(&str, i32)]) -> Value {
    json!({
        "email": email,
        "lines": lines.iter().map(|(sku, q)| json!({"sku": sku, "quantity": q})).collect::<Vec<_>>(),
    })
}

/// Asserts an error response's status and code.
pub async fn assert_error(res: reqwest::Response, status: u16, code: &str) {
    let got = res.status().as_u16();
    let body: Value = res.json().await.expect("error body is JSON");
    assert_eq!(got, status, "status for {code}: {body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(!message.is_empty());
    for leak in ["SELECT", "INSERT", "sqlx", "panicked", "stack backtrace"] {
        assert!(
            !message.contains(leak),
            "error message leaks internals: {message}"
        );
    }
}

impl TestApp {
    /// Owned-body variant for closures.
    pub async fn post_order_owned(&self, body: Value) -> reqwest::Response {
        self.post_order(&body, None).await
    }
}

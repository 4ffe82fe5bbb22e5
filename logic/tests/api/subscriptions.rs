//! Subscriptions, publishing and the topic policy, against the real services: the API's
//! answers and audit entries, the queues it declares, the broker's own enforcement of the
//! topic permissions, and the attributes events carry into a subscription's queue.

use std::time::Duration;

use contracts::{Envelope, MessageKind, OrderFulfilled, OrderPlaced, dlq_name, queue_name};
use lapin::options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Connection};
use logic::LogicSettings;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use service::Profile;
use sha2::{Digest, Sha256};
use testkit::TestEnv;
use uuid::Uuid;

use crate::helpers::{ADMIN_TOKEN, TestApp, assert_error, spawn_app, spawn_app_with};

const API: &str = "http://127.0.0.1:15672";

/// An http subscription that stays pending (nothing listens on port 9): no consumer ever
/// takes its messages, so a test can look at them in `sub.<id>`.
const PENDING_HOOK: &str = "http://127.0.0.1:9/hook";

impl TestApp {
    async fn subscribe(&self, body: &Value, token: Option<&str>) -> reqwest::Response {
        let mut req = self.http.post(self.url("/api/v1/subscriptions")).json(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().await.expect("POST /subscriptions")
    }

    async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("GET")
    }

    async fn publish(&self, topic: &str, body: &Value, token: &str) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/api/v1/topics/{topic}/messages")))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("POST /topics/.../messages")
    }

    /// Creates a subscription that must be accepted; returns its body.
    async fn subscribed(&self, body: &Value) -> Value {
        let res = self.subscribe(body, Some(ADMIN_TOKEN)).await;
        let status = res.status();
        let body: Value = res.json().await.expect("subscription JSON");
        assert_eq!(status, 201, "{body}");
        body
    }
}

async fn amqp(env: &TestEnv) -> Connection {
    data::messaging::broker::connect(env.data.amqp_url.expose_secret(), "strata-test")
        .await
        .expect("connecting to RabbitMQ")
}

/// Waits for the next message in `queue` and takes it.
async fn next_message(env: &TestEnv, queue: &str) -> Value {
    let connection = amqp(env).await;
    let channel = connection.create_channel().await.expect("channel");
    let message = testkit::eventually(Duration::from_secs(15), "a message in the queue", || {
        let channel = channel.clone();
        async move {
            channel
                .basic_get(queue.into(), BasicGetOptions { no_ack: true })
                .await
                .expect("basic_get")
        }
    })
    .await;
    let _ = connection.close(200, "done".into()).await;
    serde_json::from_slice(&message.delivery.data).expect("a JSON envelope")
}

/// A RabbitMQ user with every right in the test's vhost (users are not per vhost: the
/// test deletes it).
async fn broker_user(env: &TestEnv, name: &str, password: &str) {
    let http = reqwest::Client::new();
    http.put(format!("{API}/api/users/{name}"))
        .basic_auth("guest", Some("guest"))
        .json(&json!({"password": password, "tags": "management"}))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("creating a broker user");
    http.put(format!("{API}/api/permissions/{}/{name}", env.vhost))
        .basic_auth("guest", Some("guest"))
        .json(&json!({"configure": ".*", "write": ".*", "read": ".*"}))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("granting the vhost");
}

async fn delete_broker_user(name: &str) {
    let _ = reqwest::Client::new()
        .delete(format!("{API}/api/users/{name}"))
        .basic_auth("guest", Some("guest"))
        .send()
        .await;
}

fn amqp_url_of(env: &TestEnv, user: &str, password: &str) -> String {
    format!("amqp://{user}:{password}@127.0.0.1:5672/{}", env.vhost)
}

async fn audit_rows(env: &TestEnv, action: &str) -> Vec<(String, String, Option<String>)> {
    sqlx::query_as("SELECT actor, outcome, error_code FROM audit_log WHERE action = $1 ORDER BY id")
        .bind(action)
        .fetch_all(&env.pool)
        .await
        .expect("reading the audit trail")
}

#[tokio::test]
async fn subscriptions_are_created_listed_read_and_deleted() {
    let app = spawn_app().await;
    let hook = app
        .subscribed(&json!({"protocol": "http", "endpoint": PENDING_HOOK,
                            "filter_policy": {"total_cents": [{"numeric": [">=", 100]}]}}))
        .await;
    assert_eq!(hook["topic"], "orders");
    assert_eq!(hook["status"], "pending_confirmation");
    assert_eq!(hook["secret"].as_str().map(str::len), Some(64));
    assert_eq!(hook["owner"], "admin");
    assert_eq!(hook["raw_delivery"], false);
    let hook_id: Uuid = hook["id"].as_str().unwrap().parse().unwrap();

    let queue = app
        .subscribed(&json!({"topic": "catalog", "protocol": "queue",
                            "endpoint": "partner.stock", "raw_delivery": true}))
        .await;
    assert_eq!(queue["status"], "confirmed");
    assert!(queue.get("secret").is_none(), "{queue}");
    let queue_id: Uuid = queue["id"].as_str().unwrap().parse().unwrap();

    // The queues exist when the API answers.
    assert_eq!(app.env.queue_ready(&queue_name(hook_id)).await, 0);
    assert_eq!(app.env.queue_ready(&dlq_name(queue_id)).await, 0);
    assert_eq!(
        app.env
            .queue_ready(&contracts::retry_queue_name(hook_id, 3))
            .await,
        0
    );

    let list: Value = app
        .admin_get("/api/v1/subscriptions")
        .await
        .json()
        .await
        .unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    for item in items {
        for counter in [
            "delivered",
            "retried",
            "failed",
            "dead_lettered",
            "filtered",
        ] {
            assert_eq!(item[counter], 0, "{item}");
        }
        assert!(item.get("secret").is_none());
        assert!(item["last_error"].is_null() && item["last_delivery_at"].is_null());
        assert_eq!(item["dlq_depth"], 0, "{item}");
    }
    let one: Value = app
        .admin_get(&format!("/api/v1/subscriptions/{hook_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["endpoint"], PENDING_HOOK);
    assert_eq!(one["filter_policy"]["total_cents"][0]["numeric"][0], ">=");

    let res = app
        .http
        .delete(app.url(&format!("/api/v1/subscriptions/{hook_id}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let deleted: Value = res.json().await.unwrap();
    assert_eq!(deleted["status"], "deleted");
    let connection = amqp(&app.env).await;
    let channel = connection.create_channel().await.unwrap();
    assert!(
        data::messaging::broker::queue_depth(&channel, &queue_name(hook_id))
            .await
            .is_err(),
        "the queue is gone"
    );
    let _ = connection.close(200, "done".into()).await;
    let list: Value = app
        .admin_get("/api/v1/subscriptions")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let again = app
        .http
        .delete(app.url(&format!("/api/v1/subscriptions/{hook_id}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_error(again, 404, "subscription_not_found").await;

    let created = audit_rows(&app.env, "subscription.create").await;
    assert_eq!(created.len(), 2);
    assert!(
        created
            .iter()
            .all(|(actor, outcome, _)| actor == "admin" && outcome == "success")
    );
    let deletes = audit_rows(&app.env, "subscription.delete").await;
    assert_eq!(deletes[0].1, "success");
    assert_eq!(deletes[1].2.as_deref(), Some("subscription_not_found"));
}

#[tokio::test]
async fn each_invalid_request_has_its_code() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"protocol": "sms", "endpoint": "+4912345"}),
            422,
            "invalid_protocol",
        ),
        (
            json!({"protocol": "http", "endpoint": "https://example.com/"}),
            422,
            "invalid_endpoint",
        ),
        (
            json!({"protocol": "https", "endpoint": "not a url"}),
            422,
            "invalid_endpoint",
        ),
        (
            json!({"protocol": "email", "endpoint": "nobody"}),
            422,
            "invalid_endpoint",
        ),
        (
            json!({"protocol": "queue", "endpoint": "sub.mine"}),
            422,
            "invalid_endpoint",
        ),
        (
            json!({"protocol": "queue", "endpoint": "has space"}),
            422,
            "invalid_endpoint",
        ),
        (
            json!({"protocol": "function", "endpoint": "mine"}),
            422,
            "unknown_function",
        ),
        (
            json!({"topic": "payments", "protocol": "queue", "endpoint": "q"}),
            404,
            "unknown_topic",
        ),
        (
            json!({"protocol": "queue", "endpoint": "q", "colour": "red"}),
            400,
            "malformed_json",
        ),
        (json!({"protocol": "queue"}), 400, "malformed_json"),
    ];
    for (body, status, code) in cases {
        let res = app.subscribe(&body, Some(ADMIN_TOKEN)).await;
        assert_error(res, status, code).await;
    }
    let malformed_policies = [
        json!("type"),
        json!({}),
        json!({"type": "order.placed"}),
        json!({"type": [{"numeric": [">", "ten"]}]}),
        json!({"type": [{"wildcard": "order.*"}]}),
        json!({"a": [1], "b": [1], "c": [1], "d": [1], "e": [1], "f": [1]}),
        json!({"type": ["order\u{0}placed"]}),
    ];
    for policy in malformed_policies {
        let body = json!({"protocol": "queue", "endpoint": "q", "filter_policy": policy});
        let res = app.subscribe(&body, Some(ADMIN_TOKEN)).await;
        assert_error(res, 422, "invalid_filter_policy").await;
    }
    let res = app
        .subscribe(&json!({"protocol": "queue", "endpoint": "q"}), None)
        .await;
    assert_error(res, 401, "unauthorized").await;
    let res = app
        .publish(
            "orders",
            &json!({"type": "product.changed", "message": {}}),
            ADMIN_TOKEN,
        )
        .await;
    assert_error(res, 422, "invalid_message").await;
    let res = app
        .publish(
            "payments",
            &json!({"type": "payment.taken", "message": {}}),
            ADMIN_TOKEN,
        )
        .await;
    assert_error(res, 404, "unknown_topic").await;
    let res = app
        .publish(
            "orders",
            &json!({"type": "order.placed", "attributes": {"x": {"nested": 1}}, "message": {}}),
            ADMIN_TOKEN,
        )
        .await;
    assert_error(res, 422, "invalid_message").await;
    let res = app
        .publish(
            "orders",
            &json!({"type": "order.placed", "message": {"a": "\u{0}"}}),
            ADMIN_TOKEN,
        )
        .await;
    assert_error(res, 422, "invalid_message").await;
    // Nothing was created, and every refusal is in the audit trail.
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM subscriptions")
        .fetch_one(&app.env.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
    let refused = audit_rows(&app.env, "subscription.create").await;
    assert_eq!(refused.len(), 18);
    assert!(refused.iter().all(|(_, outcome, _)| outcome != "success"));
}

#[tokio::test]
async fn the_confirmation_url_confirms_the_subscription() {
    let app = spawn_app().await;
    let hook = app
        .subscribed(&json!({"protocol": "https", "endpoint": "https://hooks.example.com/in"}))
        .await;
    let id = hook["id"].as_str().unwrap();
    let token: String = sqlx::query_scalar("SELECT confirm_token FROM subscriptions WHERE id = $1")
        .bind(Uuid::parse_str(id).unwrap())
        .fetch_one(&app.env.pool)
        .await
        .unwrap();
    let wrong = app
        .get(&format!("/api/v1/subscriptions/{id}/confirm?token=nope"))
        .await;
    assert_error(wrong, 403, "invalid_confirmation_token").await;
    let unknown = app
        .get(&format!(
            "/api/v1/subscriptions/{}/confirm?token={token}",
            Uuid::now_v7()
        ))
        .await;
    assert_error(unknown, 404, "subscription_not_found").await;

    let res = app
        .get(&format!("/api/v1/subscriptions/{id}/confirm?token={token}"))
        .await;
    assert_eq!(res.status(), 200);
    let confirmed: Value = res.json().await.unwrap();
    assert_eq!(confirmed["status"], "confirmed");
    let now: Value = app
        .admin_get(&format!("/api/v1/subscriptions/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(now["status"], "confirmed");
    assert_eq!(now["confirmed_at"], confirmed["confirmed_at"]);
    // A second fetch changes nothing.
    let again: Value = app
        .get(&format!("/api/v1/subscriptions/{id}/confirm?token={token}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["confirmed_at"], confirmed["confirmed_at"]);
    let rows = audit_rows(&app.env, "subscription.confirm").await;
    let outcomes: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(outcomes, ["denied", "rejected", "success"]);
}

#[tokio::test]
async fn production_refuses_endpoints_in_the_private_tier() {
    let env = TestEnv::new().await;
    let user = format!("strata-prod-{}", env.id);
    broker_user(&env, &user, "a-password-for-the-test").await;
    let url = amqp_url_of(&env, &user, "a-password-for-the-test");
    let app = spawn_app_with(env, |s: &mut LogicSettings| {
        s.data.profile = Profile::Production;
        s.data.amqp_url = SecretString::from(url);
    })
    .await;
    for endpoint in [
        "http://10.1.2.3/hook",
        "http://127.0.0.1:8081/api/v1/orders",
        "http://169.254.169.254/latest/meta-data",
        "http://[fd00::1]/hook",
        "http://[::1]/hook",
        "http://postgres:5432/",
        "http://rabbitmq:15672/api/users",
        "http://localhost/",
        "http://192.168.0.10/",
        "http://100.64.0.1/",
    ] {
        let res = app
            .subscribe(
                &json!({"protocol": "http", "endpoint": endpoint}),
                Some(ADMIN_TOKEN),
            )
            .await;
        assert_error(res, 422, "endpoint_forbidden").await;
    }
    // A public address is fine.
    app.subscribed(&json!({"protocol": "https", "endpoint": "https://93.184.216.34/hook"}))
        .await;
    delete_broker_user(&user).await;
}

fn policy_file(dir: &std::path::Path, principals: Value) -> std::path::PathBuf {
    let path = dir.join(format!("topic-policy-{}.json", Uuid::now_v7()));
    std::fs::write(&path, json!({"principals": principals}).to_string()).unwrap();
    path
}

fn sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[tokio::test]
async fn the_topic_policy_decides_who_publishes_and_subscribes() {
    let env = TestEnv::new().await;
    let path = policy_file(
        &std::env::temp_dir(),
        json!([
            {"name": "catalog-feed", "token_sha256": sha256("feed-token"),
             "publish": ["catalog"], "subscribe": []},
            {"name": "orders-reader", "token_sha256": sha256("reader-token"),
             "publish": [], "subscribe": ["orders"]},
        ]),
    );
    let policy = path.clone();
    let app = spawn_app_with(env, move |s| s.topic_policy_file = Some(policy)).await;

    let denied = app
        .subscribe(
            &json!({"protocol": "queue", "endpoint": "feed.q"}),
            Some("feed-token"),
        )
        .await;
    assert_error(denied, 403, "topic_forbidden").await;
    let rows = audit_rows(&app.env, "subscription.create").await;
    assert_eq!(
        rows,
        [(
            "catalog-feed".to_owned(),
            "denied".to_owned(),
            Some("topic_forbidden".to_owned())
        )]
    );
    let denied = app
        .publish(
            "orders",
            &json!({"type": "order.placed", "message": {}}),
            "feed-token",
        )
        .await;
    assert_error(denied, 403, "topic_forbidden").await;
    let allowed = app
        .publish(
            "catalog",
            &json!({"type": "product.changed", "message": {"sku": "KIT-1"}}),
            "feed-token",
        )
        .await;
    assert_eq!(allowed.status(), 202);
    let published = audit_rows(&app.env, "topic.publish").await;
    assert_eq!(published.len(), 2);
    assert_eq!(published[0].2.as_deref(), Some("topic_forbidden"));
    assert_eq!(
        published[1],
        ("catalog-feed".into(), "success".into(), None)
    );

    let mine = app
        .subscribe(
            &json!({"protocol": "queue", "endpoint": "reader.q"}),
            Some("reader-token"),
        )
        .await;
    assert_eq!(mine.status(), 201);
    app.subscribed(&json!({"protocol": "queue", "endpoint": "admin.q"}))
        .await;
    let seen: Value = app
        .http
        .get(app.url("/api/v1/subscriptions"))
        .bearer_auth("reader-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = seen["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "a principal sees its own: {seen}");
    assert_eq!(items[0]["owner"], "orders-reader");
    let wrong = app
        .subscribe(
            &json!({"protocol": "queue", "endpoint": "q"}),
            Some("no-such-token"),
        )
        .await;
    assert_error(wrong, 401, "unauthorized").await;
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn the_broker_limits_a_publisher_to_its_topics() {
    let env = TestEnv::new().await;
    let user = format!("strata-feed-{}", env.id);
    broker_user(&env, &user, "feed-password").await;
    let path = policy_file(
        &std::env::temp_dir(),
        json!([{"name": "catalog-feed", "token_sha256": sha256("feed-token"),
                "publish": ["catalog"], "subscribe": [], "broker_user": user}]),
    );
    let policy = path.clone();
    let app = spawn_app_with(env, move |s| s.topic_policy_file = Some(policy)).await;

    let connection = data::messaging::broker::connect(
        &amqp_url_of(&app.env, &user, "feed-password"),
        "strata-test-feed",
    )
    .await
    .expect("the feed's user connects");
    let publish = |key: &'static str| {
        let connection = &connection;
        let attempt = async move {
            let channel = connection.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            channel
                .basic_publish(
                    contracts::EVENTS_EXCHANGE.into(),
                    key.into(),
                    BasicPublishOptions::default(),
                    b"{}",
                    BasicProperties::default(),
                )
                .await?
                .await
        };
        async move {
            tokio::time::timeout(Duration::from_secs(10), attempt)
                .await
                .expect("the broker answers the publish")
        }
    };
    publish("product.changed")
        .await
        .expect("a catalog key is allowed");
    let refused = publish("order.placed")
        .await
        .expect_err("an orders key is refused");
    let text = format!("{refused:?}");
    assert!(
        text.contains("ACCESS_REFUSED") || text.contains("403"),
        "the broker closes the channel with 403 ACCESS_REFUSED: {text}"
    );
    let _ = connection.close(200, "done".into()).await;
    delete_broker_user(&user).await;
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn a_published_message_reaches_the_subscription_queue_with_its_attributes() {
    let app = spawn_app().await;
    let sub = app
        .subscribed(&json!({"protocol": "http", "endpoint": PENDING_HOOK}))
        .await;
    let id: Uuid = sub["id"].as_str().unwrap().parse().unwrap();
    let res = app
        .publish(
            "orders",
            &json!({"type": "order.fulfilled",
                    "attributes": {"total_cents": 12500, "category": ["Kitchen"], "country": "DE"},
                    "message": {"hello": "subscribers"}}),
            ADMIN_TOKEN,
        )
        .await;
    assert_eq!(res.status(), 202);
    let published: Value = res.json().await.unwrap();
    let envelope = next_message(&app.env, &queue_name(id)).await;
    assert_eq!(envelope["message_id"], published["message_id"]);
    assert_eq!(envelope["type"], "OrderFulfilled");
    assert_eq!(envelope["payload"], json!({"hello": "subscribers"}));
    assert_eq!(
        envelope["attributes"],
        json!({"type": "order.fulfilled", "total_cents": 12500,
               "category": ["Kitchen"], "country": "DE"})
    );
}

#[tokio::test]
async fn the_events_of_an_order_carry_its_attributes() {
    let mut app = spawn_app().await;
    app.env.product("KIT-00001", 4500, 10).await;
    app.env.product("LAMP-00001", 3000, 10).await;
    sqlx::query(
        "UPDATE products SET category = CASE WHEN sku LIKE 'KIT%' THEN 'Kitchen' ELSE 'Lamps' END",
    )
    .execute(&app.env.pool)
    .await
    .unwrap();
    let sub = app
        .subscribed(&json!({"protocol": "http", "endpoint": PENDING_HOOK}))
        .await;
    let queue = queue_name(sub["id"].as_str().unwrap().parse().unwrap());
    let order = app
        .place_order("Ann@Example.com", &[("LAMP-00001", 1), ("KIT-00001", 2)])
        .await;

    let placed = next_message(&app.env, &queue).await;
    assert_eq!(placed["type"], "OrderPlaced");
    let attributes = &placed["attributes"];
    assert_eq!(attributes["type"], "order.placed");
    assert_eq!(attributes["order_id"], order.id.to_string());
    assert_eq!(attributes["total_cents"], 12000);
    assert_eq!(attributes["category"], json!(["Kitchen", "Lamps"]));
    assert_eq!(attributes["sku"], json!(["LAMP-00001", "KIT-00001"]));
    assert_eq!(attributes["line_count"], 2);
    assert_eq!(attributes["email_domain"], "example.com");
    // What the statement wrote is what the Rust type says.
    let envelope: Envelope<OrderPlaced> = serde_json::from_value(placed.clone()).unwrap();
    assert_eq!(envelope.attributes, envelope.payload.attributes());
    assert_eq!(envelope.payload.lines[0].name, "Product LAMP-00001");
    assert_eq!(envelope.payload.lines[1].unit_price_cents, 4500);

    app.spawn_worker(0);
    let fulfilled = next_message(&app.env, &queue).await;
    assert_eq!(
        fulfilled["attributes"]["type"], "order.fulfilled",
        "{fulfilled}"
    );
    let envelope: Envelope<OrderFulfilled> = serde_json::from_value(fulfilled).unwrap();
    assert!(
        envelope
            .payload
            .email
            .eq_ignore_ascii_case("ann@example.com")
    );
    assert_eq!(envelope.payload.lines.len(), 2);
    assert_eq!(envelope.payload.lines[1].name, "Product KIT-00001");
    assert_eq!(envelope.payload.lines[1].category, "Kitchen");
    assert_eq!(envelope.attributes, envelope.payload.attributes());
    assert_eq!(envelope.attributes["total_cents"], 12000);
}

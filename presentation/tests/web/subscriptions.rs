//! `/ops/subscriptions` against a real logic: a subscription created through logic's API
//! is listed with its counters; a dead letter in its DLQ shows as the DLQ's depth, and the
//! redrive button moves it back into the subscription's queue. The confirmation URL the
//! worker sends to a subscriber, passed through presentation to logic, confirms it.

use std::time::Duration;

use crate::helpers::{LOGIC_ADMIN_TOKEN, OPS_PASSWORD, spawn_shop_with, with_ops};

fn rabbitmq_api() -> String {
    std::env::var("TEST_RABBITMQ_API").unwrap_or_else(|_| "http://127.0.0.1:15672".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_listed_with_counters_and_their_dlq_is_redriven() {
    let shop = spawn_shop_with(with_ops).await;
    let http = reqwest::Client::new();
    let created: serde_json::Value = http
        .post(format!("{}/api/v1/subscriptions", shop.logic_base))
        .bearer_auth(LOGIC_ADMIN_TOKEN)
        .json(&serde_json::json!({
            "topic": "orders",
            "protocol": "queue",
            "endpoint": "ops-console-sink",
        }))
        .send()
        .await
        .expect("creating a subscription")
        .error_for_status()
        .expect("201")
        .json()
        .await
        .expect("JSON");
    let id = created["id"].as_str().expect("an id").to_owned();

    // A delivery that failed every attempt, as the delivering consumer leaves it.
    let dlq = format!("sub.{id}.dlq");
    let published: serde_json::Value = http
        .post(format!(
            "{}/api/exchanges/{}/amq.default/publish",
            rabbitmq_api(),
            shop.env.vhost
        ))
        .basic_auth("guest", Some("guest"))
        .json(&serde_json::json!({
            "properties": {"message_id": "dead-1", "delivery_mode": 2,
                           "headers": {"x-strata-last-error": "HTTP 500"}},
            "routing_key": dlq,
            "payload": "{\"type\":\"order.fulfilled\"}",
            "payload_encoding": "string",
        }))
        .send()
        .await
        .expect("publishing a dead letter")
        .json()
        .await
        .expect("JSON");
    assert_eq!(published["routed"], true, "{published}");

    let c = &shop.client.for_base(&shop.base);
    assert_eq!(c.ops_login("admin", OPS_PASSWORD).await.status, 303);
    // The DLQ's depth comes from the management API, which samples every few seconds.
    let page = testkit::eventually(
        Duration::from_secs(30),
        "the dead letter on /ops/subscriptions",
        || async {
            let page = c.get("/ops/subscriptions").await;
            page.body
                .contains("data-counter=\"dlq_depth\">1<")
                .then_some(page)
        },
    )
    .await;
    assert_eq!(page.status, 200);
    let body = &page.body;
    assert!(body.contains(&format!("id=\"sub-{id}\"")), "{body}");
    assert!(body.contains("<code>ops-console-sink</code>"), "{body}");
    assert!(body.contains("<td>queue</td>"), "{body}");
    assert!(body.contains("<td>confirmed</td>"), "{body}");
    assert!(body.contains("data-counter=\"delivered\">0<"), "{body}");
    assert!(
        body.contains("href=\"/ops/subscriptions\""),
        "linked: {body}"
    );
    assert!(
        body.contains(&format!("action=\"/ops/subscriptions/{id}/redrive\"")),
        "{body}"
    );
    assert!(
        body.contains("Functions (workers scaled from zero)"),
        "{body}"
    );

    // Without the form's CSRF token: refused, nothing moved.
    let forged = c
        .post(&format!("/ops/subscriptions/{id}/redrive"), &[])
        .await;
    assert_ne!(forged.status, 303, "{}", forged.body);

    let token = page.input("csrf_token");
    let done = c
        .post(
            &format!("/ops/subscriptions/{id}/redrive"),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(
        done.location(),
        "/ops/subscriptions?notice=redriven&moved=1&left=0"
    );
    let page = c.get(done.location()).await;
    assert!(
        page.body.contains("1 message(s) moved back"),
        "{}",
        page.body
    );
    assert_eq!(shop.env.queue_ready(&dlq).await, 0);
    assert_eq!(shop.env.queue_ready(&format!("sub.{id}")).await, 1);
}

/// The confirmation URL reaches logic through the public tier: a wrong token is refused
/// with logic's status and code, the right one confirms the subscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_confirmation_url_confirms_through_presentation() {
    let shop = spawn_shop_with(|_| {}).await;
    let http = reqwest::Client::new();
    let created: serde_json::Value = http
        .post(format!("{}/api/v1/subscriptions", shop.logic_base))
        .bearer_auth(LOGIC_ADMIN_TOKEN)
        .json(&serde_json::json!({
            "topic": "orders",
            "protocol": "https",
            "endpoint": "https://hooks.example.com/in",
        }))
        .send()
        .await
        .expect("creating a subscription")
        .error_for_status()
        .expect("201")
        .json()
        .await
        .expect("JSON");
    assert_eq!(created["status"], "pending_confirmation", "{created}");
    let id = created["id"].as_str().expect("an id").to_owned();
    let token: String =
        sqlx::query_scalar("SELECT confirm_token FROM subscriptions WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&shop.env.pool)
            .await
            .expect("the confirmation token");
    let status = || async {
        let now: serde_json::Value = http
            .get(format!("{}/api/v1/subscriptions/{id}", shop.logic_base))
            .bearer_auth(LOGIC_ADMIN_TOKEN)
            .send()
            .await
            .expect("reading the subscription")
            .json()
            .await
            .expect("JSON");
        now["status"].as_str().unwrap_or_default().to_owned()
    };
    let confirm = |token: &str| {
        http.get(format!("{}/api/v1/subscriptions/{id}/confirm", shop.base))
            .query(&[("token", token)])
            .send()
    };

    let wrong = confirm("nope").await.expect("the confirmation URL answers");
    assert_eq!(wrong.status(), 403);
    let body: serde_json::Value = wrong.json().await.expect("JSON");
    assert_eq!(
        body["error"]["code"], "invalid_confirmation_token",
        "{body}"
    );
    assert_eq!(status().await, "pending_confirmation");

    let unknown = http
        .get(format!(
            "{}/api/v1/subscriptions/{}/confirm",
            shop.base,
            uuid::Uuid::now_v7()
        ))
        .query(&[("token", &token)])
        .send()
        .await
        .expect("answers");
    assert_eq!(unknown.status(), 404);
    let body: serde_json::Value = unknown.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "subscription_not_found", "{body}");

    let done = confirm(&token).await.expect("the confirmation URL answers");
    assert_eq!(done.status(), 200);
    let body: serde_json::Value = done.json().await.expect("JSON");
    assert_eq!(body["id"], id.as_str(), "{body}");
    assert_eq!(body["status"], "confirmed", "{body}");
    assert_eq!(status().await, "confirmed");

    // Only this route of logic's API is passed through.
    let listing = http
        .get(format!("{}/api/v1/subscriptions", shop.base))
        .bearer_auth(LOGIC_ADMIN_TOKEN)
        .send()
        .await
        .expect("answers");
    assert_eq!(listing.status(), 404);
}

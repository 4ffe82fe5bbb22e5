use std::time::Duration;

use contracts::OrderStatus;
use secrecy::{ExposeSecret, SecretString};
use testkit::proxy::Proxy;

use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test]
async fn readiness_names_the_failing_dependency() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);

    let env = testkit::TestEnv::new().await;
    let broken = spawn_app_with(env, |s| {
        s.data.amqp_url = SecretString::from("amqp://guest:guest@127.0.0.1:1/%2f".to_owned());
    })
    .await;
    let res = broken.get("/readyz").await;
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["checks"]["rabbitmq"], "unreachable", "{body}");
    assert_eq!(body["checks"]["postgres"], "ok", "{body}");
    let text = body.to_string();
    assert!(
        !text.contains("guest:guest"),
        "no secret in readiness output"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_accepted_while_the_broker_is_unreachable_is_fulfilled_once_it_is_back() {
    let env = testkit::TestEnv::new().await;
    env.product("TENT-1", 19900, 4).await;
    let direct_amqp = env.data.amqp_url.expose_secret().to_owned();
    let proxy = Proxy::start("127.0.0.1:5672".parse().expect("addr")).await;
    proxy.cut();
    let via_proxy = direct_amqp.replace("127.0.0.1:5672", &proxy.addr().to_string());
    let mut app = spawn_app_with(env, |s| {
        s.data.amqp_url = SecretString::from(via_proxy.clone());
    })
    .await;

    let order = app.place_order("out@example.com", &[("TENT-1", 1)]).await;
    assert_eq!(order.status, OrderStatus::Pending);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let unpublished: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE published_at IS NULL AND kind = 'FulfilOrder'",
    )
    .fetch_one(&app.env.pool)
    .await
    .expect("count");
    assert_eq!(
        unpublished, 1,
        "the command waits in the outbox while the broker is away"
    );

    // The worker reaches the broker directly; logic only once the proxy is restored.
    app.spawn_worker(0);
    proxy.restore();
    let done = app.wait_final(order.id, Duration::from_secs(30)).await;
    assert_eq!(done.status, OrderStatus::Fulfilled);
    assert_eq!(app.env.stock("TENT-1").await, 3);
    let processed: i64 = sqlx::query_scalar("SELECT count(*) FROM processed_messages")
        .fetch_one(&app.env.pool)
        .await
        .expect("count");
    assert_eq!(processed, 1);
}

//! `worker --function <name>`: the process consumes `fn.<name>` only, applies each event
//! once (a redelivered message id changes nothing), skips events that are not its own,
//! dead-letters what it cannot read, and stops cleanly.

use std::time::Duration;

use contracts::{Envelope, FULFIL_QUEUE, function_dlq_name, function_queue_name};
use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use testkit::apps;
use uuid::Uuid;

use crate::helpers::Rig;

const FUNCTION: &str = "low-stock-alert";

fn event(kind: &str, attributes: serde_json::Value, payload: serde_json::Value) -> Vec<u8> {
    let envelope: Envelope<serde_json::Value> = serde_json::from_value(serde_json::json!({
        "message_id": Uuid::now_v7(),
        "type": kind,
        "schema_version": 1,
        "occurred_at": "2026-12-03T12:00:00Z",
        "attributes": attributes,
        "payload": payload,
    }))
    .expect("an envelope");
    serde_json::to_vec(&envelope).expect("JSON")
}

/// Publishes raw bytes into `fn.<FUNCTION>` (default exchange, confirmed), with the
/// envelope's message id as the AMQP message id when it has one.
async fn publish(rig: &Rig, body: &[u8]) {
    let conn = data::messaging::broker::connect(rig.env.data.amqp_url(), "test-publisher")
        .await
        .expect("connect");
    let channel = conn.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    data::messaging::subscriptions::declare_function(&channel, FUNCTION, 5)
        .await
        .expect("declare");
    let id = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["message_id"].as_str().map(str::to_owned))
        .unwrap_or_default();
    channel
        .basic_publish(
            "".into(),
            function_queue_name(FUNCTION).as_str().into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default().with_message_id(id.into()),
        )
        .await
        .expect("publish")
        .await
        .expect("confirmed");
    let _ = conn.close(200, "published".into()).await;
}

async fn count(rig: &Rig, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&rig.env.pool)
        .await
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_worker_applies_its_events_once_and_consumes_nothing_else() {
    let rig = Rig::new().await;
    rig.env.product("LOW-1", 500, 2).await;
    rig.env.product("LOW-2", 500, 40).await;
    let worker = apps::worker(&rig.env, |s| {
        s.function = Some(FUNCTION.to_owned());
        s.low_stock_threshold = 5;
        s.retry_delay_ms = 50;
    });
    let queue = function_queue_name(FUNCTION);
    testkit::eventually(
        Duration::from_secs(20),
        "the function's consumer",
        || async { (rig.env.queue_consumers(&queue).await == Some(1)).then_some(()) },
    )
    .await;

    // Stock 2 (the product's, the event has none) < 5: an alert; sent twice, one alert.
    let low = event(
        "ProductChanged",
        serde_json::json!({"type": "product.changed", "sku": ["LOW-1"]}),
        serde_json::json!({"sku": "LOW-1"}),
    );
    publish(&rig, &low).await;
    publish(&rig, &low).await;
    // Stock 10 in the event: above the threshold, skipped (and recorded).
    publish(
        &rig,
        &event(
            "InventoryAdjusted",
            serde_json::json!({"type": "inventory.adjusted", "sku": "LOW-2", "stock": 10}),
            serde_json::json!({"sku": "LOW-2"}),
        ),
    )
    .await;
    // Not an envelope: dead-lettered at once.
    publish(&rig, b"not json").await;

    testkit::eventually(Duration::from_secs(20), "every message settled", || async {
        let done = count(
            &rig,
            "SELECT count(*) FROM processed_messages WHERE consumer = 'fn.low-stock-alert'",
        )
        .await
            == 2
            && rig.env.queue_ready(&function_dlq_name(FUNCTION)).await == 1
            && rig.env.queue_ready(&queue).await == 0;
        done.then_some(())
    })
    .await;
    let (sku, stock, threshold): (String, i64, i32) =
        sqlx::query_as("SELECT sku, stock, threshold FROM low_stock_alerts")
            .fetch_one(&rig.env.pool)
            .await
            .expect("one alert");
    assert_eq!((sku.as_str(), stock, threshold), ("LOW-1", 2, 5));

    // Nothing else is consumed: no fulfilment, no FIFO partition.
    assert_eq!(rig.env.queue_consumers(FULFIL_QUEUE).await, Some(0));
    assert_eq!(
        rig.env
            .queue_consumers(&contracts::partition_queue(0))
            .await,
        Some(0)
    );
    worker.stop().await.expect("a clean drain");
    assert_eq!(
        count(&rig, "SELECT count(*) FROM low_stock_alerts").await,
        1
    );
}

#[tokio::test]
async fn an_unknown_function_stops_the_worker_at_start() {
    let env = testkit::TestEnv::new().await;
    let mut settings = worker::WorkerSettings::with_data(env.data.clone());
    settings.function = Some("resize-image".to_owned());
    let err = worker::Application::build(settings).err().expect("refused");
    assert!(err.to_string().contains("unknown function"), "{err}");
}

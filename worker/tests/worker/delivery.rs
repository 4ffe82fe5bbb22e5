use std::time::Duration;

use lapin::BasicProperties;
use lapin::types::ShortString;
use secrecy::{ExposeSecret, SecretString};
use worker::fulfilment::Outcome;
use worker::fulfilment::PaymentGateway;
use worker::{Disposition, handle_message};

use crate::helpers::Rig;

fn gateway(pool: &sqlx::PgPool, decline_rate: f64) -> PaymentGateway {
    PaymentGateway::new(pool, Duration::ZERO, decline_rate)
}

#[tokio::test]
async fn a_message_handled_twice_changes_nothing_the_second_time() {
    let rig = Rig::new().await;
    rig.env.product("DUP-1", 100, 5).await;
    let id = rig.place("DUP-1", 2).await;
    let (message_id, body) = rig.command_body(id).await;
    let mid = message_id.to_string();

    let first = handle_message(
        &rig.env.pool,
        &gateway(&rig.env.pool, 0.0),
        Some(&mid),
        &body,
    )
    .await;
    assert_eq!(first, Disposition::Ack(Some(Outcome::Fulfilled)));
    let second = handle_message(
        &rig.env.pool,
        &gateway(&rig.env.pool, 0.0),
        Some(&mid),
        &body,
    )
    .await;
    assert_eq!(second, Disposition::Ack(Some(Outcome::Duplicate)));
    assert_eq!(rig.env.stock("DUP-1").await, 3);
    assert_eq!(rig.processed().await, 1);

    // Another command for the order under another message id (a redriven copy keeps its
    // id, but one whose record was pruned looks the same) finds the order final.
    let other = uuid::Uuid::now_v7().to_string();
    let third = handle_message(
        &rig.env.pool,
        &gateway(&rig.env.pool, 0.0),
        Some(&other),
        &body,
    )
    .await;
    assert!(matches!(
        third,
        Disposition::Ack(Some(Outcome::AlreadyFinal(_)))
    ));
    assert_eq!(rig.env.stock("DUP-1").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_message_delivered_twice_by_the_broker_is_applied_once() {
    let mut rig = Rig::new().await;
    rig.env.product("DUP-2", 100, 10).await;
    let id = rig.place("DUP-2", 1).await;
    let (message_id, body) = rig.command_body(id).await;
    // The relay publishes it once; publish the very same message a second time.
    rig.publish_command(
        &body,
        BasicProperties::default().with_message_id(ShortString::from(message_id.to_string())),
    )
    .await;
    rig.spawn_worker(|_| {});
    rig.wait_status(id, "fulfilled", Duration::from_secs(20))
        .await;
    testkit::eventually(Duration::from_secs(20), "both copies consumed", || async {
        (rig.env.queue_ready(contracts::FULFIL_QUEUE).await == 0
            && rig.env.queue_counts(contracts::FULFIL_QUEUE).await == Some((0, 0)))
        .then_some(())
    })
    .await;
    assert_eq!(rig.env.stock("DUP-2").await, 9, "stock taken once");
    assert_eq!(rig.processed().await, 1);
}

#[tokio::test]
async fn payment_declined_rejects_and_gives_the_reserved_stock_back() {
    let rig = Rig::new().await;
    rig.env.product("DEC-1", 100, 5).await;
    let id = rig.place("DEC-1", 2).await;
    let (message_id, body) = rig.command_body(id).await;
    let d = handle_message(
        &rig.env.pool,
        &gateway(&rig.env.pool, 1.0),
        Some(&message_id.to_string()),
        &body,
    )
    .await;
    assert_eq!(
        d,
        Disposition::Ack(Some(Outcome::Rejected("payment_declined".into())))
    );
    assert_eq!(rig.env.stock("DEC-1").await, 5);
    assert_eq!(
        rig.env.order_status(id).await,
        ("rejected".to_owned(), Some("payment_declined".to_owned()))
    );
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE kind = 'OrderRejected'")
            .fetch_one(&rig.env.pool)
            .await
            .expect("count");
    assert_eq!(events, 1);
    let (outcome, calls): (String, i32) =
        sqlx::query_as("SELECT outcome, calls FROM payment_charges WHERE order_id = $1")
            .bind(id)
            .fetch_one(&rig.env.pool)
            .await
            .expect("the gateway's ledger");
    assert_eq!((outcome.as_str(), calls), ("declined", 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_message_is_dead_lettered_at_once() {
    let mut rig = Rig::new().await;
    rig.publish_command(b"{not json", BasicProperties::default())
        .await;
    rig.spawn_worker(|_| {});
    testkit::eventually(
        Duration::from_secs(20),
        "the poison message in the DLQ",
        || async { (rig.env.queue_ready(contracts::FULFIL_DLQ).await == 1).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failure_that_is_no_outage_is_retried_then_dead_lettered_past_the_delivery_limit() {
    let mut rig = Rig::new().await;
    rig.env.product("DB-1", 100, 5).await;
    let id = rig.place("DB-1", 1).await;
    // This worker's database does not exist: every attempt fails, and not because the
    // server is out of reach (it answers, 3D000), so the message goes back to the queue
    // each time and the delivery limit ends it.
    let url = rig.env.data.database_url.expose_secret().to_owned();
    rig.spawn_worker(|s| {
        s.data.database_url = SecretString::from(format!("{url}_missing"));
        s.data.database_acquire_timeout_ms = 500;
    });
    testkit::eventually(
        Duration::from_secs(60),
        "the message in the DLQ",
        || async { (rig.env.queue_ready(contracts::FULFIL_DLQ).await == 1).then_some(()) },
    )
    .await;
    assert_eq!(rig.env.order_status(id).await.0, "pending");
    assert_eq!(rig.env.queue_ready(contracts::FULFIL_QUEUE).await, 0);
    assert_eq!(rig.processed().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_prefetched_beyond_the_pool_wait_for_a_connection_not_a_retry() {
    let mut rig = Rig::new().await;
    rig.env.product("SLOT-1", 100, 100).await;
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(rig.place("SLOT-1", 1).await);
    }
    // Twelve messages in hand, two connections: most messages wait for a slot longer than
    // the pool's acquire timeout at some step. Had they waited in the pool, they would
    // fail, go back to the queue and end in the DLQ past the limit.
    rig.spawn_worker(|s| {
        s.prefetch = 12;
        s.payment_latency_ms = 150;
        s.data.database_max_connections = 2;
        s.data.database_acquire_timeout_ms = 100;
    });
    for id in &ids {
        rig.wait_status(*id, "fulfilled", Duration::from_secs(30))
            .await;
    }
    assert_eq!(rig.env.queue_ready(contracts::FULFIL_DLQ).await, 0);
    assert_eq!(rig.processed().await, 12);
}

//! The worker's own outbox relay: with no other relay running, a worker publishes the
//! orders' commands (found on its poll) and its own events (woken in memory by its
//! commits), each event no earlier than the event of the order it follows; with
//! `OUTBOX_RELAY=false` it publishes nothing and leaves the outbox to the other relays.

use std::time::Duration;

use contracts::{OrderLineRequest, PlaceOrder};
use testkit::TestEnv;
use testkit::apps;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

async fn place(env: &TestEnv, sku: &str) -> Uuid {
    let (order, _) = data::store::orders::place(
        &env.pool,
        &PlaceOrder {
            email: "relay@example.com".to_owned(),
            lines: vec![OrderLineRequest {
                sku: sku.to_owned(),
                quantity: 1,
            }],
        },
        None,
        None,
    )
    .await
    .expect("placing an order");
    order.id
}

/// The order's outbox rows, oldest first: kind and whether the broker confirmed it.
async fn rows(env: &TestEnv, id: Uuid) -> Vec<(String, bool)> {
    sqlx::query_as(
        "SELECT kind, published_at IS NOT NULL FROM outbox \
         WHERE body->'payload'->>'order_id' = $1 ORDER BY id",
    )
    .bind(id.to_string())
    .fetch_all(&env.pool)
    .await
    .expect("outbox rows")
}

/// Waits until the order is fulfilled and its three rows (placed, command, fulfilled) are
/// confirmed by the broker.
async fn fulfilled_and_published(env: &TestEnv, id: Uuid) {
    testkit::eventually(
        WAIT,
        "the order fulfilled and every row published",
        || async {
            let (status, _) = env.order_status(id).await;
            let rows = rows(env, id).await;
            (status == "fulfilled" && rows.len() == 3 && rows.iter().all(|(_, p)| *p)).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_alone_publishes_the_commands_and_its_own_events() {
    let env = TestEnv::new().await;
    env.product("RELAY-1", 700, 10).await;
    let first = place(&env, "RELAY-1").await;
    let _worker = apps::worker(&env, |s| {
        s.payment_latency_ms = 0;
        s.retry_delay_ms = 50;
    });
    let second = place(&env, "RELAY-1").await;
    for id in [first, second] {
        fulfilled_and_published(&env, id).await;
        // The order's event is written before its command, so no relay can publish the
        // command first, nor anything the command causes.
        let kinds: Vec<String> = rows(&env, id).await.into_iter().map(|(k, _)| k).collect();
        assert_eq!(kinds, ["OrderPlaced", "FulfilOrder", "OrderFulfilled"]);
        let published_in_order: bool = sqlx::query_scalar(
            "SELECT bool_and(p.published_at <= f.published_at) FROM outbox p, outbox f \
             WHERE p.kind = 'OrderPlaced' AND f.kind = 'OrderFulfilled' \
               AND p.body->'payload'->>'order_id' = $1 AND f.body->'payload'->>'order_id' = $1",
        )
        .bind(id.to_string())
        .fetch_one(&env.pool)
        .await
        .expect("publication times");
        assert!(
            published_in_order,
            "order.fulfilled went out before order.placed"
        );
    }
    assert_eq!(env.stock("RELAY-1").await, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_outbox_relay_off_a_worker_leaves_the_outbox_to_the_other_relays() {
    let env = TestEnv::new().await;
    env.product("RELAY-2", 700, 10).await;
    let _worker = apps::worker(&env, |s| {
        s.payment_latency_ms = 0;
        s.retry_delay_ms = 50;
        s.relay.outbox_relay = false;
    });
    let id = place(&env, "RELAY-2").await;
    // Longer than a relay's poll (500 ms): nothing in this process publishes.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        rows(&env, id).await.iter().all(|(_, published)| !published),
        "{:?}",
        rows(&env, id).await
    );
    assert_eq!(env.order_status(id).await.0, "pending");

    // Another process's relay publishes the command, and the worker's event.
    let _relay = apps::relay(&env, |_| {});
    fulfilled_and_published(&env, id).await;
}

//! Lock modes of the fulfilment transaction against order placement, on the real Postgres.

use std::time::Duration;

use contracts::{OrderLineRequest, PlaceOrder};
use data::fulfil::{Outcome, Payment};
use uuid::Uuid;

fn order(skus: &[&str]) -> PlaceOrder {
    PlaceOrder {
        email: "locks@example.com".to_owned(),
        lines: skus
            .iter()
            .map(|sku| OrderLineRequest {
                sku: (*sku).to_owned(),
                quantity: 1,
            })
            .collect(),
    }
}

/// A worker holds its product locks while the payment gateway answers. Placing another
/// order for the same products (in the opposite line order) meanwhile must go through at
/// once: it only needs the products to exist, not their stock. With a lock mode that
/// conflicts with the foreign-key check this waits for the payment, and with two products
/// locked in opposite orders the two transactions deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn placing_an_order_does_not_wait_for_a_payment_in_progress() {
    let env = testkit::TestEnv::new().await;
    env.product("LCK-A", 100, 10).await;
    env.product("LCK-B", 100, 10).await;
    let (first, _) = data::orders::place(&env.pool, &order(&["LCK-A", "LCK-B"]), None, None)
        .await
        .expect("first order");

    let (charging_tx, charging_rx) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let pool = env.pool.clone();
    let worker = tokio::spawn(async move {
        data::fulfil::fulfil(&pool, Uuid::now_v7(), first.id, None, |_| async move {
            let _ = charging_tx.send(());
            let _ = release_rx.await;
            Payment::Approved
        })
        .await
    });
    charging_rx
        .await
        .expect("the worker reaches the payment with both products locked");

    // Generous bound: this either succeeds at once or waits for the payment forever.
    let second = tokio::time::timeout(
        Duration::from_secs(10),
        data::orders::place(&env.pool, &order(&["LCK-B", "LCK-A"]), None, None),
    )
    .await
    .expect("placing must not wait for the worker's product locks")
    .expect("second order");

    release_tx.send(()).expect("worker still waiting");
    let outcome = worker.await.expect("join").expect("fulfil");
    assert_eq!(outcome, Outcome::Fulfilled);
    let outcome = data::fulfil::fulfil(&env.pool, Uuid::now_v7(), second.0.id, None, |_| async {
        Payment::Approved
    })
    .await
    .expect("fulfil second");
    assert_eq!(outcome, Outcome::Fulfilled);
    assert_eq!(env.stock("LCK-A").await, 8);
    assert_eq!(env.stock("LCK-B").await, 8);
}

//! Lock modes of the fulfilment transaction against order placement, on the real Postgres.

use std::time::Duration;

use contracts::{OrderLineRequest, PlaceOrder};
use tokio::sync::{Mutex, oneshot};
use uuid::Uuid;
use worker::fulfilment::{Gateway, Outcome, Payment, fulfil};

/// A gateway that says when it is charging and then waits to be released.
struct Held {
    charging: Mutex<Option<oneshot::Sender<()>>>,
    release: Mutex<Option<oneshot::Receiver<()>>>,
}

impl Gateway for Held {
    async fn charge(&self, _total_cents: i64) -> Payment {
        if let Some(charging) = self.charging.lock().await.take() {
            let _ = charging.send(());
        }
        if let Some(release) = self.release.lock().await.take() {
            let _ = release.await;
        }
        Payment::Approved
    }
}

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
    let (first, _) = data::store::orders::place(&env.pool, &order(&["LCK-A", "LCK-B"]), None, None)
        .await
        .expect("first order");

    let (charging_tx, charging_rx) = oneshot::channel::<()>();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let gateway = Held {
        charging: Mutex::new(Some(charging_tx)),
        release: Mutex::new(Some(release_rx)),
    };
    let pool = env.pool.clone();
    let worker =
        tokio::spawn(async move { fulfil(&pool, &gateway, Uuid::now_v7(), first.id, None).await });
    charging_rx
        .await
        .expect("the worker reaches the payment with both products locked");

    // Generous bound: this either succeeds at once or waits for the payment forever.
    let second = tokio::time::timeout(
        Duration::from_secs(10),
        data::store::orders::place(&env.pool, &order(&["LCK-B", "LCK-A"]), None, None),
    )
    .await
    .expect("placing must not wait for the worker's product locks")
    .expect("second order");

    release_tx.send(()).expect("worker still waiting");
    let outcome = worker.await.expect("join").expect("fulfil");
    assert_eq!(outcome, Outcome::Fulfilled);
    let instant = Held {
        charging: Mutex::new(None),
        release: Mutex::new(None),
    };
    let outcome = fulfil(&env.pool, &instant, Uuid::now_v7(), second.0.id, None)
        .await
        .expect("fulfil second");
    assert_eq!(outcome, Outcome::Fulfilled);
    assert_eq!(env.stock("LCK-A").await, 8);
    assert_eq!(env.stock("LCK-B").await, 8);
}

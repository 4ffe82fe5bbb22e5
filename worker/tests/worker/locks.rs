//! Locks of the fulfilment saga against order placement and other orders of the same
//! products, on the real Postgres.

use std::time::Duration;

use contracts::{OrderLineRequest, PlaceOrder};
use tokio::sync::{Mutex, oneshot};
use uuid::Uuid;
use worker::fulfilment::{Gateway, GatewayError, Outcome, Payment, fulfil};

/// A gateway that says when it is charging and then waits to be released.
struct Held {
    charging: Mutex<Option<oneshot::Sender<()>>>,
    release: Mutex<Option<oneshot::Receiver<()>>>,
}

impl Gateway for Held {
    async fn charge(&self, _order_id: Uuid, _total_cents: i64) -> Result<Payment, GatewayError> {
        if let Some(charging) = self.charging.lock().await.take() {
            let _ = charging.send(());
        }
        if let Some(release) = self.release.lock().await.take() {
            let _ = release.await;
        }
        Ok(Payment::Approved)
    }

    async fn refund(&self, _order_id: Uuid) -> Result<(), GatewayError> {
        Ok(())
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

/// A worker waits for the payment gateway with no lock held: placing another order for
/// the same products (in the opposite line order) meanwhile goes through at once, and so
/// does the whole fulfilment of that other order. Under the single transaction that
/// charged with the product rows locked, the second fulfilment waited for the payment.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payment_in_progress_holds_no_lock_on_its_products() {
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
        .expect("the worker reaches the payment with the stock reserved");
    assert_eq!(env.stock("LCK-A").await, 9, "reserved before the payment");

    // Generous bounds: these either succeed at once or wait for the payment forever.
    let second = tokio::time::timeout(
        Duration::from_secs(10),
        data::store::orders::place(&env.pool, &order(&["LCK-B", "LCK-A"]), None, None),
    )
    .await
    .expect("placing must not wait for the payment in progress")
    .expect("second order");
    let instant = Held {
        charging: Mutex::new(None),
        release: Mutex::new(None),
    };
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        fulfil(&env.pool, &instant, Uuid::now_v7(), second.0.id, None),
    )
    .await
    .expect("another order of the same products must not wait for the payment")
    .expect("fulfil second");
    assert_eq!(outcome, Outcome::Fulfilled);

    release_tx.send(()).expect("worker still waiting");
    let outcome = worker.await.expect("join").expect("fulfil");
    assert_eq!(outcome, Outcome::Fulfilled);
    assert_eq!(env.stock("LCK-A").await, 8);
    assert_eq!(env.stock("LCK-B").await, 8);
}

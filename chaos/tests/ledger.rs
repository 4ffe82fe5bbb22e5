//! The ledger checker against a real database: orders placed and fulfilled by the real
//! placement statement and fulfilment saga (with the simulated gateway's ledger) are
//! classified as they are, and each kind of damage (an order left pending, a second
//! settlement, a rejected order charged, stock taken without an order, a 500, a 503 outside
//! the fault) is counted where it belongs.

use std::collections::HashMap;
use std::time::Duration;

use chaos::ledger::{self, Window};
use chaos::load::{Attempt, Record};
use contracts::{OrderLineRequest, PlaceOrder};
use testkit::TestEnv;
use uuid::Uuid;
use worker::fulfilment::{PaymentGateway, fulfil};

fn attempt(at: u64, status: Option<u16>, retry_after: bool) -> Attempt {
    Attempt {
        at: Duration::from_secs(at),
        status,
        retry_after,
    }
}

async fn place(env: &TestEnv, key: &str, sku: &str) -> Uuid {
    let order = PlaceOrder {
        email: "chaos@example.com".to_owned(),
        lines: vec![OrderLineRequest {
            sku: sku.to_owned(),
            quantity: 1,
        }],
    };
    let (order, _) = data::store::orders::place(&env.pool, &order, Some(key), None)
        .await
        .expect("placing an order");
    order.id
}

async fn settle(env: &TestEnv, id: Uuid) {
    let approve = PaymentGateway::new(&env.pool, Duration::ZERO, 0.0);
    fulfil(&env.pool, &approve, Uuid::new_v4(), id, None)
        .await
        .expect("fulfilling");
}

fn record(key: &str, sku: &str, attempts: Vec<Attempt>, id: Option<Uuid>) -> Record {
    Record {
        key: key.to_owned(),
        lines: vec![(sku.to_owned(), 1)],
        attempts,
        order_id: id,
    }
}

#[tokio::test]
async fn every_order_lands_in_its_class_and_damage_is_counted() {
    let env = TestEnv::new().await;
    env.product("CHAOS-A", 100, 50).await;
    env.product(chaos::stack::HOT, 100, 1).await;
    let initial: HashMap<String, i32> = [
        ("CHAOS-A".to_owned(), 50),
        (chaos::stack::HOT.to_owned(), 1),
    ]
    .into();
    let window = Window {
        start: Duration::from_secs(10),
        end: Duration::from_secs(20),
        end_wall: chrono::Utc::now() - chrono::Duration::seconds(60),
    };

    // Clean: one fulfilled, one hot fulfilled, one hot rejected out of stock, one the client
    // never heard of that was created and fulfilled, one never created, a 503 in the fault.
    let a = place(&env, "k-a", "CHAOS-A").await;
    let h1 = place(&env, "k-h1", chaos::stack::HOT).await;
    let h2 = place(&env, "k-h2", chaos::stack::HOT).await;
    let quiet = place(&env, "k-quiet", "CHAOS-A").await;
    for id in [a, h1, h2, quiet] {
        settle(&env, id).await;
    }
    let mut records = vec![
        record(
            "k-a",
            "CHAOS-A",
            vec![attempt(1, Some(202), false)],
            Some(a),
        ),
        record(
            "k-h1",
            chaos::stack::HOT,
            vec![attempt(2, Some(202), false)],
            Some(h1),
        ),
        record(
            "k-h2",
            chaos::stack::HOT,
            vec![attempt(12, Some(503), true), attempt(13, Some(202), false)],
            Some(h2),
        ),
        record("k-quiet", "CHAOS-A", vec![attempt(14, None, false)], None),
        record("k-absent", "CHAOS-A", vec![attempt(15, None, false)], None),
    ];
    let clean = ledger::check(&env.pool, &records, &initial, window, Duration::ZERO)
        .await
        .expect("checking");
    assert!(clean.passed(), "{:?}", clean.problems);
    assert_eq!(
        (clean.sent, clean.accepted, clean.fulfilled, clean.rejected),
        (5, 4, 3, 1)
    );
    assert_eq!(
        (
            clean.unanswered,
            clean.unanswered_final,
            clean.unanswered_absent
        ),
        (2, 1, 1)
    );
    assert_eq!((clean.http_5xx, clean.http_5xx_failures), (1, 0));
    assert_eq!(clean.rows.len(), 5);

    // Damage: an accepted order left pending, a second settlement event for `a`, a charge
    // for the rejected `h2`, a unit of stock gone without an order, a 500, and a 503 long
    // after the fault.
    let pending = place(&env, "k-pending", "CHAOS-A").await;
    records.push(record(
        "k-pending",
        "CHAOS-A",
        vec![
            attempt(16, Some(500), false),
            attempt(40, Some(503), true),
            attempt(41, Some(202), false),
        ],
        Some(pending),
    ));
    sqlx::query(
        "INSERT INTO outbox (message_id, exchange, routing_key, kind, body) \
         SELECT gen_random_uuid(), exchange, routing_key, kind, body FROM outbox \
         WHERE kind = 'OrderFulfilled' AND body->'payload'->>'order_id' = $1",
    )
    .bind(a.to_string())
    .execute(&env.pool)
    .await
    .expect("a second settlement");
    // The order rejected out of stock, charged all the same and never refunded.
    sqlx::query(
        "INSERT INTO payment_charges (order_id, amount_cents, outcome) VALUES ($1, 100, 'approved')",
    )
    .bind(h2)
    .execute(&env.pool)
    .await
    .expect("a wrong charge");
    sqlx::query("UPDATE products SET stock = stock - 1 WHERE sku = 'CHAOS-A'")
        .execute(&env.pool)
        .await
        .expect("taking stock");
    let damaged = ledger::check(&env.pool, &records, &initial, window, Duration::ZERO)
        .await
        .expect("checking");
    assert!(!damaged.passed());
    assert_eq!(damaged.lost, 1, "{:?}", damaged.problems);
    assert_eq!(damaged.duplicated, 2, "{:?}", damaged.problems);
    assert!(
        damaged
            .problems
            .iter()
            .any(|p| p.contains("charged and not refunded")),
        "{:?}",
        damaged.problems
    );
    assert_eq!(damaged.oversold, 1, "{:?}", damaged.problems);
    assert_eq!((damaged.http_5xx, damaged.http_5xx_failures), (3, 2));
}

#[tokio::test]
async fn an_order_no_client_asked_for_is_a_duplicate() {
    let env = TestEnv::new().await;
    env.product("CHAOS-A", 100, 50).await;
    let initial: HashMap<String, i32> = [("CHAOS-A".to_owned(), 50)].into();
    let a = place(&env, "k-a", "CHAOS-A").await;
    settle(&env, a).await;
    let order = PlaceOrder {
        email: "chaos@example.com".to_owned(),
        lines: vec![OrderLineRequest {
            sku: "CHAOS-A".to_owned(),
            quantity: 1,
        }],
    };
    data::store::orders::place(&env.pool, &order, None, None)
        .await
        .expect("an order without a key");
    let records = vec![record(
        "k-a",
        "CHAOS-A",
        vec![attempt(1, Some(202), false)],
        Some(a),
    )];
    let window = Window {
        start: Duration::ZERO,
        end: Duration::ZERO,
        end_wall: chrono::Utc::now(),
    };
    let l = ledger::check(&env.pool, &records, &initial, window, Duration::ZERO)
        .await
        .expect("checking");
    assert_eq!(l.duplicated, 1, "{:?}", l.problems);
}

#[test]
fn a_charge_is_right_only_once_and_only_for_fulfilled_orders() {
    use chaos::ledger::wrong_charge;
    assert_eq!(wrong_charge("fulfilled", Some(("approved", false))), None);
    assert!(wrong_charge("fulfilled", None).is_some());
    assert!(wrong_charge("fulfilled", Some(("declined", false))).is_some());
    assert!(wrong_charge("fulfilled", Some(("approved", true))).is_some());
    assert_eq!(wrong_charge("rejected", None), None);
    assert_eq!(wrong_charge("rejected", Some(("declined", false))), None);
    assert_eq!(wrong_charge("rejected", Some(("approved", true))), None);
    assert!(wrong_charge("rejected", Some(("approved", false))).is_some());
    assert_eq!(wrong_charge("pending", Some(("approved", false))), None);
}

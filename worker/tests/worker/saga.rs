//! The fulfilment saga against the real services: crashes between its steps (SIGKILL of
//! a worker process, or the exact state a crash leaves where there is no window to kill
//! in), a payment that hangs past the visibility deadline, a hot product under
//! concurrent orders, declines, the reservation sweeper and the late settle's refund,
//! and the throughput of several workers on one product.

use std::time::{Duration, Instant};

use testkit::apps;
use uuid::Uuid;
use worker::fulfilment::{
    Gateway, GatewayError, Outcome, Payment, PaymentGateway, Saga, SagaSettings, sweeper,
};
use worker::{Disposition, handle_message};

use crate::helpers::Rig;
use crate::processes::{spawn_worker_process, wait_in_flight};

async fn count(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"))
}

async fn step(pool: &sqlx::PgPool, id: Uuid) -> String {
    sqlx::query_scalar("SELECT step FROM orders WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .expect("order step")
}

/// The gateway's ledger row of an order: (outcome, calls, refunded).
async fn charge(pool: &sqlx::PgPool, id: Uuid) -> Option<(String, i32, bool)> {
    sqlx::query_as(
        "SELECT outcome, calls, refunded_at IS NOT NULL FROM payment_charges WHERE order_id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
    .expect("ledger")
}

async fn events(pool: &sqlx::PgPool, id: Uuid, kind: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE kind = $1 AND body->'payload'->>'order_id' = $2",
    )
    .bind(kind)
    .bind(id.to_string())
    .fetch_one(pool)
    .await
    .expect("events")
}

async fn wait_step(pool: &sqlx::PgPool, id: Uuid, want: &str) {
    testkit::eventually(
        Duration::from_secs(30),
        &format!("order {id} at {want}"),
        || async { (step(pool, id).await == want).then_some(()) },
    )
    .await;
}

/// Fulfilled once, charged once (whatever the number of calls), nothing refunded.
async fn assert_fulfilled_once(rig: &Rig, id: Uuid) {
    assert_eq!(rig.env.order_status(id).await.0, "fulfilled");
    assert_eq!(step(&rig.env.pool, id).await, "fulfilled");
    assert_eq!(events(&rig.env.pool, id, "OrderFulfilled").await, 1);
    assert_eq!(events(&rig.env.pool, id, "OrderRejected").await, 0);
    let (outcome, _, refunded) = charge(&rig.env.pool, id).await.expect("a charge");
    assert_eq!(outcome, "approved");
    assert!(!refunded);
}

/// A gateway that never answers and records nothing: a worker that dies after its
/// reservation, before its charge reached the gateway.
struct Unreachable;

impl Gateway for Unreachable {
    async fn charge(&self, _order_id: Uuid, _total_cents: i64) -> Result<Payment, GatewayError> {
        std::future::pending().await
    }

    async fn refund(&self, _order_id: Uuid) -> Result<(), GatewayError> {
        std::future::pending().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_while_the_charge_is_in_flight_charges_once() {
    let mut rig = Rig::new().await;
    rig.env.product("SAGA-K1", 100, 5).await;
    // The answer takes a minute: the worker is surely waiting for it when killed.
    let mut doomed = spawn_worker_process(&rig, 60_000);
    let id = rig.place("SAGA-K1", 2).await;
    wait_in_flight(&rig).await;
    wait_step(&rig.env.pool, id, "reserved").await;
    testkit::eventually(Duration::from_secs(30), "the charge recorded", || async {
        charge(&rig.env.pool, id).await.map(drop)
    })
    .await;
    doomed.kill().await.expect("SIGKILL");
    assert_eq!(rig.env.order_status(id).await.0, "pending");
    assert_eq!(rig.env.stock("SAGA-K1").await, 3, "reserved");

    rig.spawn_worker(|_| {});
    rig.wait_status(id, "fulfilled", Duration::from_secs(30))
        .await;
    assert_fulfilled_once(&rig, id).await;
    let (_, calls, _) = charge(&rig.env.pool, id).await.expect("charge");
    assert_eq!(calls, 2, "charged again under the same key, once");
    assert_eq!(
        rig.env.stock("SAGA-K1").await,
        3,
        "stock taken exactly once"
    );
    assert_eq!(rig.processed().await, 1);
}

/// The state a crash right after the reservation leaves (stock held, the gateway never
/// called) is made by the saga itself, cut while it waits for a gateway that does not
/// answer: dropping it is what a crash does to the process's work.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_after_the_reservation_resumes_with_the_charge() {
    let mut rig = Rig::new().await;
    rig.env.product("SAGA-R1", 100, 5).await;
    let id = rig.place("SAGA-R1", 2).await;
    let cut = tokio::time::timeout(
        Duration::from_millis(500),
        worker::fulfilment::fulfil(&rig.env.pool, &Unreachable, Uuid::now_v7(), id, None),
    )
    .await;
    assert!(cut.is_err(), "the saga waits for the gateway");
    assert_eq!(step(&rig.env.pool, id).await, "reserved");
    assert_eq!(rig.env.stock("SAGA-R1").await, 3);
    assert!(charge(&rig.env.pool, id).await.is_none());

    rig.spawn_worker(|_| {});
    rig.wait_status(id, "fulfilled", Duration::from_secs(30))
        .await;
    assert_fulfilled_once(&rig, id).await;
    assert_eq!(charge(&rig.env.pool, id).await.expect("charge").1, 1);
    assert_eq!(rig.env.stock("SAGA-R1").await, 3);
}

/// Between `paid` and `fulfilled` there is no window to kill a process in (two short
/// transactions back to back), so this seeds the exact state such a crash leaves: stock
/// taken, the charge approved in the gateway's ledger, the order at `paid`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_before_the_settle_fulfils_without_charging_again() {
    let mut rig = Rig::new().await;
    rig.env.product("SAGA-P1", 100, 5).await;
    let id = rig.place("SAGA-P1", 2).await;
    for sql in [
        "UPDATE products SET stock = stock - 2 WHERE sku = 'SAGA-P1'",
        "UPDATE orders SET step = 'paid' WHERE id = $1",
        "INSERT INTO payment_charges (order_id, amount_cents, outcome) VALUES ($1, 200, 'approved')",
    ] {
        let query = sqlx::query(sql);
        let query = if sql.contains("$1") {
            query.bind(id)
        } else {
            query
        };
        query.execute(&rig.env.pool).await.expect(sql);
    }
    rig.spawn_worker(|_| {});
    rig.wait_status(id, "fulfilled", Duration::from_secs(30))
        .await;
    assert_fulfilled_once(&rig, id).await;
    assert_eq!(
        charge(&rig.env.pool, id).await.expect("charge").1,
        1,
        "a paid order is not charged again"
    );
    assert_eq!(rig.env.stock("SAGA-P1").await, 3);
    assert_eq!(rig.processed().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payment_hanging_past_the_deadline_goes_to_another_worker_and_charges_once() {
    let rig = Rig::new().await;
    rig.env.product("SAGA-H1", 100, 5).await;
    // Every call hangs; the payment's own bound is far; the deadline is two seconds.
    let hanging = apps::worker(&rig.env, |s| {
        s.payment_latency_ms = 0;
        s.payment_hang_rate = 1.0;
        s.payment_timeout_ms = 120_000;
        s.visibility_timeout_secs = 2;
        s.visibility_max_secs = 2;
    });
    let id = rig.place("SAGA-H1", 1).await;
    testkit::eventually(Duration::from_secs(30), "the charge recorded", || async {
        charge(&rig.env.pool, id).await.map(drop)
    })
    .await;
    let healthy = apps::worker(&rig.env, |s| s.payment_latency_ms = 0);
    // The hanging worker stops taking messages; its drain ends when the deadline drops
    // the hung delivery and gives it back, well before its drain timeout (30 s).
    let started = Instant::now();
    hanging.stop().await.expect("stops");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the drain waited {:?}",
        started.elapsed()
    );
    rig.wait_status(id, "fulfilled", Duration::from_secs(30))
        .await;
    assert_fulfilled_once(&rig, id).await;
    assert_eq!(charge(&rig.env.pool, id).await.expect("charge").1, 2);
    assert_eq!(rig.env.stock("SAGA-H1").await, 4);
    assert_eq!(rig.processed().await, 1);
    assert_eq!(rig.env.queue_ready(contracts::FULFIL_DLQ).await, 0);
    healthy.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_orders_of_one_product_never_oversell() {
    const ORDERS: usize = 200;
    let mut rig = Rig::new().await;
    rig.env.product("SAGA-HOT", 100, 50).await;
    let mut ids = Vec::new();
    for _ in 0..ORDERS {
        ids.push(rig.place("SAGA-HOT", 1).await);
    }
    for _ in 0..4 {
        rig.spawn_worker(|s| {
            s.prefetch = 20;
            s.payment_latency_ms = 20;
            s.data.database_max_connections = 5;
        });
    }
    rig.env.wait_all_final(Duration::from_secs(120)).await;
    let pool = &rig.env.pool;
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM orders WHERE status = 'fulfilled'"
        )
        .await,
        50
    );
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM orders WHERE status = 'rejected' AND reason = 'out_of_stock'"
        )
        .await,
        150
    );
    assert_eq!(rig.env.stock("SAGA-HOT").await, 0);
    assert_eq!(
        count(pool, "SELECT count(*) FROM payment_charges").await,
        50,
        "only reserved orders reach the gateway"
    );
    assert_eq!(rig.processed().await, ORDERS as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn declined_payments_give_the_reserved_stock_back() {
    const ORDERS: usize = 30;
    let mut rig = Rig::new().await;
    rig.env.product("SAGA-D1", 100, 100).await;
    for _ in 0..ORDERS {
        rig.place("SAGA-D1", 2).await;
    }
    rig.spawn_worker(|s| s.payment_decline_rate = 0.5);
    rig.env.wait_all_final(Duration::from_secs(60)).await;
    let pool = &rig.env.pool;
    let fulfilled = count(
        pool,
        "SELECT count(*) FROM orders WHERE status = 'fulfilled'",
    )
    .await;
    let declined = count(
        pool,
        "SELECT count(*) FROM orders WHERE status = 'rejected' AND reason = 'payment_declined'",
    )
    .await;
    assert_eq!(fulfilled + declined, ORDERS as i64);
    assert!(declined > 0 && fulfilled > 0, "{fulfilled} / {declined}");
    assert_eq!(rig.env.stock("SAGA-D1").await, 100 - 2 * fulfilled as i32);
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM payment_charges WHERE outcome = 'declined'"
        )
        .await,
        declined
    );
}

/// The sweeper of a running worker releases a reservation that lapsed; the message of
/// that order, delivered later, refunds the charge made before the crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sweeper_releases_a_lapsed_reservation_and_a_late_delivery_refunds() {
    // No relay: the order's message never reaches the worker, only the sweeper acts.
    let env = testkit::TestEnv::new().await;
    env.product("SAGA-S1", 100, 5).await;
    let (order, _) = data::store::orders::place(
        &env.pool,
        &contracts::PlaceOrder {
            email: "s@example.com".to_owned(),
            lines: vec![contracts::OrderLineRequest {
                sku: "SAGA-S1".to_owned(),
                quantity: 2,
            }],
        },
        None,
        None,
    )
    .await
    .expect("place");
    let id = order.id;
    // Reserved and charged, then the worker died while the answer was in flight.
    let hanging = PaymentGateway::new(&env.pool, Duration::ZERO, 0.0).with_hang_rate(1.0);
    let cut = tokio::time::timeout(
        Duration::from_millis(500),
        worker::fulfilment::fulfil(&env.pool, &hanging, Uuid::now_v7(), id, None),
    )
    .await;
    assert!(cut.is_err());
    assert_eq!(env.stock("SAGA-S1").await, 3);
    assert_eq!(
        charge(&env.pool, id).await,
        Some(("approved".to_owned(), 1, false))
    );
    sqlx::query("UPDATE orders SET reserved_until = now() - interval '1 second' WHERE id = $1")
        .bind(id)
        .execute(&env.pool)
        .await
        .expect("lapse");

    let worker = apps::worker(&env, |s| s.reservation_sweep_secs = 1);
    testkit::eventually(
        Duration::from_secs(30),
        "the reservation released",
        || async {
            (env.order_status(id).await
                == (
                    "rejected".to_owned(),
                    Some("reservation_expired".to_owned()),
                ))
                .then_some(())
        },
    )
    .await;
    assert_eq!(env.stock("SAGA-S1").await, 5, "stock back");
    assert_eq!(events(&env.pool, id, "OrderRejected").await, 1);
    assert_eq!(step(&env.pool, id).await, "rejected");
    worker.stop().await.expect("stops");

    // The order's message, late: the order stays rejected and the charge is refunded.
    let (message_id, body): (Uuid, serde_json::Value) = sqlx::query_as(
        "SELECT message_id, body FROM outbox WHERE kind = 'FulfilOrder' AND body->'payload'->>'order_id' = $1",
    )
    .bind(id.to_string())
    .fetch_one(&env.pool)
    .await
    .expect("command");
    let instant = PaymentGateway::new(&env.pool, Duration::ZERO, 0.0);
    let body = serde_json::to_vec(&body).expect("json");
    let d = handle_message(&env.pool, &instant, Some(&message_id.to_string()), &body).await;
    assert_eq!(
        d,
        Disposition::Ack(Some(Outcome::AlreadyFinal(
            contracts::OrderStatus::Rejected
        )))
    );
    assert_eq!(
        charge(&env.pool, id).await,
        Some(("approved".to_owned(), 1, true))
    );
    assert_eq!(env.stock("SAGA-S1").await, 5);
    assert_eq!(events(&env.pool, id, "OrderFulfilled").await, 0);
}

/// A settle that comes after the sweeper released the reservation (the answer took
/// longer than the reservation lasted) refunds the charge; the order stays rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_settle_after_the_reservation_lapsed_refunds_the_charge() {
    let rig = Rig::new().await;
    rig.env.product("SAGA-L1", 100, 5).await;
    let id = rig.place("SAGA-L1", 2).await;
    let (message_id, body) = rig.command_body(id).await;
    let slow = PaymentGateway::new(&rig.env.pool, Duration::from_millis(2500), 0.0);
    let pool = rig.env.pool.clone();
    let settle = tokio::spawn(async move {
        let saga = Saga::new(&pool, &slow).settings(SagaSettings {
            reservation_ttl: Duration::from_millis(500),
            payment_timeout: Duration::from_secs(10),
        });
        saga.handle(Some(&message_id.to_string()), &body).await
    });
    wait_step(&rig.env.pool, id, "reserved").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(sweeper::sweep(&rig.env.pool).await.expect("sweep"), 1);
    assert_eq!(step(&rig.env.pool, id).await, "rejected");
    assert_eq!(rig.env.stock("SAGA-L1").await, 5);

    let d = settle.await.expect("join");
    assert_eq!(
        d,
        Disposition::Ack(Some(Outcome::AlreadyFinal(
            contracts::OrderStatus::Rejected
        )))
    );
    assert_eq!(
        rig.env.order_status(id).await,
        (
            "rejected".to_owned(),
            Some("reservation_expired".to_owned())
        )
    );
    assert_eq!(
        charge(&rig.env.pool, id).await,
        Some(("approved".to_owned(), 1, true)),
        "charged, then refunded"
    );
    assert_eq!(rig.env.stock("SAGA-L1").await, 5);
    assert_eq!(events(&rig.env.pool, id, "OrderFulfilled").await, 0);
}

/// Orders of one product no longer queue behind each other's payments: four workers
/// with 200 ms payments finish clearly faster than one payment after another would.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_take_payments_of_one_product_side_by_side() {
    const ORDERS: usize = 80;
    const LATENCY: Duration = Duration::from_millis(200);
    let mut rig = Rig::new().await;
    rig.env.product("SAGA-T1", 100, 1000).await;
    for _ in 0..ORDERS {
        rig.place("SAGA-T1", 1).await;
    }
    testkit::eventually(Duration::from_secs(30), "the orders queued", || async {
        (rig.env.queue_ready(contracts::FULFIL_QUEUE).await as usize == ORDERS).then_some(())
    })
    .await;
    let started = Instant::now();
    for _ in 0..4 {
        rig.spawn_worker(|s| {
            s.payment_latency_ms = LATENCY.as_millis() as u64;
            s.data.database_max_connections = 4;
        });
    }
    rig.env.wait_all_final(Duration::from_secs(60)).await;
    let took = started.elapsed();
    let serialized = LATENCY * ORDERS as u32;
    assert!(
        took < serialized.mul_f64(0.6),
        "{ORDERS} orders took {took:?}; one after another they take {serialized:?}"
    );
    assert_eq!(rig.env.stock("SAGA-T1").await, 1000 - ORDERS as i32);
}

//! How the outbox relay is woken after a commit, against the real Postgres and RabbitMQ.
//! Its own test binary: in-memory wake-ups go to every relay of the same database in the
//! process, and the tests here count on their relays being woken by their own commits.

use std::time::Duration;

use contracts::{OrderLineRequest, PlaceOrder};
use data::relay::RelayConfig;
use tokio_util::sync::CancellationToken;

async fn place(env: &testkit::TestEnv, sku: &str) {
    let order = PlaceOrder {
        email: "w@example.com".to_owned(),
        lines: vec![OrderLineRequest {
            sku: sku.to_owned(),
            quantity: 1,
        }],
    };
    data::store::orders::place(&env.pool, &order, None, None)
        .await
        .expect("place");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_wake_the_relay_in_memory_and_through_notify() {
    let env = testkit::TestEnv::new().await;
    env.product("WAKE-1", 100, 1000).await;
    let stop = CancellationToken::new();
    // The poll would take an hour: anything published within seconds was woken.
    let config = RelayConfig {
        poll_interval: Duration::from_secs(3600),
        ..RelayConfig::default()
    };
    let relay = tokio::spawn(data::relay::run(
        env.pool.clone(),
        env.data.clone(),
        config,
        stop.clone(),
    ));
    // The relay's first round publishes nothing and then waits.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A commit in this process: woken in memory.
    place(&env, "WAKE-1").await;
    testkit::eventually(
        Duration::from_secs(5),
        "the order's command published",
        || async { (env.queue_ready(contracts::FULFIL_QUEUE).await == 1).then_some(()) },
    )
    .await;

    // A commit of another process (a row written by SQL alone) and its NOTIFY.
    sqlx::query(
        "INSERT INTO outbox (message_id, exchange, routing_key, kind, body) \
         VALUES (gen_random_uuid(), 'commands', 'orders.fulfil', 'FulfilOrder', \
                 jsonb_build_object('type', 'FulfilOrder'))",
    )
    .execute(&env.pool)
    .await
    .expect("insert");
    sqlx::query("SELECT pg_notify('strata_outbox', '')")
        .execute(&env.pool)
        .await
        .expect("notify");
    testkit::eventually(
        Duration::from_secs(5),
        "the other process's row published",
        || async { (env.queue_ready(contracts::FULFIL_QUEUE).await == 2).then_some(()) },
    )
    .await;

    stop.cancel();
    relay.await.expect("relay stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_takes_no_connection_from_the_pool_it_is_given() {
    let env = testkit::TestEnv::new().await;
    env.product("WAKE-2", 100, 1000).await;
    // The process's pool has one connection, and a request holds it.
    let busy_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(env.pool.connect_options().as_ref().clone())
        .await
        .expect("pool");
    let held = busy_pool.acquire().await.expect("the only connection");
    let stop = CancellationToken::new();
    let relay = tokio::spawn(data::relay::run(
        busy_pool.clone(),
        env.data.clone(),
        RelayConfig::default(),
        stop.clone(),
    ));
    place(&env, "WAKE-2").await;
    testkit::eventually(
        Duration::from_secs(10),
        "the order's command published while the pool was busy",
        || async { (env.queue_ready(contracts::FULFIL_QUEUE).await == 1).then_some(()) },
    )
    .await;
    drop(held);
    stop.cancel();
    relay.await.expect("relay stops");
}

//! Logic's outbox relay against the real Postgres and RabbitMQ: how it is woken after a
//! commit, and that relays side by side publish every message once. The tests count on
//! their relays being woken by their own commits alone, which holds beside the other tests
//! of this binary because each test works in a database of its own and in-process wake-ups
//! go only to relays of the same database.

use std::time::Duration;

use contracts::{OrderLineRequest, PlaceOrder};
use data::messaging::relay::RelayConfig;
use testkit::apps;

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
    // The poll would take an hour: anything published within seconds was woken.
    let relay = apps::relay(&env, |c| c.poll_interval = Duration::from_secs(3600));
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

    relay.stop().await;
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
    let relay = apps::relay_on(busy_pool.clone(), &env, |c| *c = RelayConfig::default());
    place(&env, "WAKE-2").await;
    testkit::eventually(
        Duration::from_secs(10),
        "the order's command published while the pool was busy",
        || async { (env.queue_ready(contracts::FULFIL_QUEUE).await == 1).then_some(()) },
    )
    .await;
    drop(held);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_relays_publish_every_message_exactly_once() {
    let env = testkit::TestEnv::new().await;
    env.product("REL-1", 100, 1000).await;
    for _ in 0..150 {
        place(&env, "REL-1").await;
    }
    let config = |c: &mut RelayConfig| {
        c.batch_size = 20;
        c.poll_interval = Duration::from_millis(50);
    };
    let relays = [apps::relay(&env, config), apps::relay(&env, config)];
    testkit::eventually(Duration::from_secs(30), "the outbox drained", || async {
        (data::messaging::outbox::backlog(&env.pool).await.ok()? == 0).then_some(())
    })
    .await;
    drop(relays);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        env.queue_ready(contracts::FULFIL_QUEUE).await,
        150,
        "each of the 150 commands is in the queue once"
    );
}

/// Outbox rows that no transaction holds, as another relay would claim them.
async fn claimable(env: &testkit::TestEnv) -> i64 {
    let mut tx = env.pool.begin().await.expect("begin");
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT id FROM outbox WHERE published_at IS NULL \
         FOR UPDATE SKIP LOCKED) AS free",
    )
    .fetch_one(&mut *tx)
    .await
    .expect("claim");
    tx.rollback().await.expect("rollback");
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_broker_goes_silent_releases_its_rows_within_the_confirm_timeout() {
    use secrecy::SecretString;
    use std::time::Instant;

    let env = testkit::TestEnv::new().await;
    env.product("SILENT-1", 100, 1000).await;
    let (proxy, via) = testkit::proxy::Proxy::in_front_of(env.data.amqp_url()).await;
    let mut data = env.data.clone();
    data.amqp_url = SecretString::from(via);
    let confirm_timeout = Duration::from_secs(2);
    let config = RelayConfig {
        poll_interval: Duration::from_millis(100),
        confirm_timeout,
        // Far longer than the test: only the confirm timeout can free the rows.
        heartbeat_secs: 600,
        ..RelayConfig::default()
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let relay = tokio::spawn(data::messaging::relay::run(
        env.pool.clone(),
        data,
        config,
        stop.clone(),
    ));
    place(&env, "SILENT-1").await;
    testkit::eventually(
        Duration::from_secs(10),
        "the first command published",
        || async { (env.queue_ready(contracts::FULFIL_QUEUE).await == 1).then_some(()) },
    )
    .await;

    // The broker stops answering; the relay claims the next rows (written at once, as
    // one batch) and waits for their confirms.
    proxy.black_hole();
    sqlx::query(
        "INSERT INTO outbox (message_id, exchange, routing_key, kind, body) \
         SELECT gen_random_uuid(), 'commands', 'orders.fulfil', 'FulfilOrder', \
                jsonb_build_object('type', 'FulfilOrder') \
         FROM generate_series(1, 5)",
    )
    .execute(&env.pool)
    .await
    .expect("insert");
    testkit::eventually(Duration::from_secs(5), "the rows claimed", || async {
        (claimable(&env).await == 0).then_some(())
    })
    .await;
    let claimed_at = Instant::now();
    testkit::eventually(
        confirm_timeout + Duration::from_secs(2),
        "the rows released",
        || async { (claimable(&env).await == 5).then_some(()) },
    )
    .await;
    eprintln!("rows released {:?} after the claim", claimed_at.elapsed());
    // Not claimed again while the broker stays silent (the relay cannot reconnect).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(claimable(&env).await, 5);

    proxy.restore();
    testkit::eventually(
        Duration::from_secs(20),
        "every command published",
        || async { (env.queue_ready(contracts::FULFIL_QUEUE).await == 6).then_some(()) },
    )
    .await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), relay)
        .await
        .expect("the relay stops")
        .expect("no panic");
}

#[tokio::test]
async fn processed_message_records_go_after_their_retention_and_recent_ones_stay() {
    let env = testkit::TestEnv::new().await;
    sqlx::query(
        "INSERT INTO processed_messages (consumer, message_id, processed_at) \
         SELECT 'fulfilment', gen_random_uuid(), now() - interval '8 days' \
         FROM generate_series(1, 7)",
    )
    .execute(&env.pool)
    .await
    .expect("old records");
    sqlx::query(
        "INSERT INTO processed_messages (consumer, message_id, processed_at) \
         SELECT 'fulfilment', gen_random_uuid(), now() - interval '6 days' \
         FROM generate_series(1, 3)",
    )
    .execute(&env.pool)
    .await
    .expect("recent records");
    // Batches of two: several statements.
    let pruned = data::store::processed::prune(&env.pool, Duration::from_secs(7 * 24 * 3600), 2)
        .await
        .expect("prune");
    assert_eq!(pruned, 7);
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM processed_messages WHERE processed_at > now() - interval '7 days'",
    )
    .fetch_one(&env.pool)
    .await
    .expect("count");
    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM processed_messages")
        .fetch_one(&env.pool)
        .await
        .expect("count");
    assert_eq!((left, all), (3, 3));
}

use std::time::Duration;

use contracts::{DeadLetterList, OrderStatus, RedriveResult};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use testkit::apps;

use crate::helpers::{ADMIN_TOKEN, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_are_listed_and_redriven_to_fulfilment() {
    let mut app = spawn_app().await;
    app.env.product("DLQ-1", 800, 5).await;

    // A worker whose database is gone fails every attempt until the delivery limit.
    let url = app.env.data.database_url.expose_secret().to_owned();
    let broken = apps::worker(&app.env, |s| {
        s.data.database_url = SecretString::from(format!("{url}_gone"));
        s.data.database_acquire_timeout_ms = 300;
        s.retry_delay_ms = 20;
    });

    let order = app.place_order("dlq@example.com", &[("DLQ-1", 2)]).await;
    let list: DeadLetterList =
        testkit::eventually(Duration::from_secs(60), "a dead letter", || async {
            let res = app
                .http
                .get(app.url("/api/v1/ops/dlq"))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .ok()?;
            let list: DeadLetterList = res.json().await.ok()?;
            (list.total == 1).then_some(list)
        })
        .await;
    drop(broken);
    let dead = &list.items[0];
    assert_eq!(dead.order_id, Some(order.id));
    assert_eq!(dead.kind.as_deref(), Some("FulfilOrder"));
    assert_eq!(dead.reason.as_deref(), Some("delivery_limit"));
    assert_eq!(dead.queue.as_deref(), Some(contracts::FULFIL_QUEUE));
    // Listing consumed nothing.
    let again: DeadLetterList = app
        .http
        .get(app.url("/api/v1/ops/dlq?limit=5"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(again.total, 1);
    assert_eq!(again.items[0].message_id, dead.message_id);

    let unauthorized = app
        .http
        .post(app.url("/api/v1/ops/dlq/redrive"))
        .send()
        .await
        .expect("POST");
    assert_eq!(unauthorized.status(), 401);

    app.spawn_worker(0);
    let res = app
        .http
        .post(app.url("/api/v1/ops/dlq/redrive"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({}))
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), 200);
    let result: RedriveResult = res.json().await.expect("json");
    assert_eq!((result.redriven, result.remaining), (1, 0));

    let done = app.wait_final(order.id, Duration::from_secs(30)).await;
    assert_eq!(done.status, OrderStatus::Fulfilled);
    assert_eq!(app.env.stock("DLQ-1").await, 3);
    assert_eq!(app.env.queue_ready(contracts::FULFIL_DLQ).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ops_stats_reads_the_queue_orders_and_cache() {
    let app = spawn_app().await;
    app.env.product("STAT-1", 500, 50).await;
    // No worker runs: the commands wait in the queue.
    for _ in 0..3 {
        app.place_order("stats@example.com", &[("STAT-1", 1)]).await;
    }
    app.get("/api/v1/products/STAT-1").await;
    app.get("/api/v1/products/STAT-1").await;

    let unauthorized = app.get("/api/v1/ops/stats").await;
    assert_eq!(unauthorized.status(), 401);

    let stats: contracts::OpsStats = testkit::eventually(
        Duration::from_secs(20),
        "three commands in the queue",
        || async {
            let stats: contracts::OpsStats = app
                .http
                .get(app.url("/api/v1/ops/stats"))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            // The management API samples every few seconds (until its first sample the
            // figures come from AMQP, without unacked); wait until it sees them.
            let queue = stats.queue.as_ref()?;
            (queue.ready == 3 && queue.unacked.is_some()).then_some(stats)
        },
    )
    .await;
    let queue = stats.queue.expect("queue figures");
    assert_eq!(
        queue.unacked,
        Some(0),
        "the management API gives unacked too"
    );
    assert_eq!(queue.consumers, 0);
    assert_eq!(stats.dlq_depth, Some(0));
    assert_eq!(stats.orders.pending, 3);
    assert_eq!((stats.orders.fulfilled, stats.orders.rejected), (0, 0));
    assert_eq!(stats.outbox_backlog, 0);
    assert!(
        stats.cache.hits >= 1 && stats.cache.misses >= 1,
        "{:?}",
        stats.cache
    );
    assert!(stats.autoscaler.is_none(), "no AUTOSCALER_URL configured");

    // Steps of the saga: still pending, and counted apart too.
    for step in ["reserved", "paid"] {
        sqlx::query(
            "UPDATE orders SET step = $1 WHERE id = \
             (SELECT id FROM orders WHERE step = 'pending' ORDER BY id LIMIT 1)",
        )
        .bind(step)
        .execute(&app.env.pool)
        .await
        .expect("moving an order on");
    }
    let stats: contracts::OpsStats = app
        .http
        .get(app.url("/api/v1/ops/stats"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("GET stats")
        .json()
        .await
        .expect("stats");
    let o = stats.orders;
    assert_eq!((o.pending, o.reserved, o.paid), (3, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dlq_count_is_exact_while_the_dlq_is_being_listed() {
    let app = spawn_app().await;
    // Declares the topology, then three dead letters straight into the DLQ.
    assert_eq!(app.env.queue_ready(contracts::FULFIL_DLQ).await, 0);
    let conn =
        data::messaging::broker::connect(app.env.data.amqp_url.expose_secret(), "strata-test")
            .await
            .expect("connecting to RabbitMQ");
    let channel = conn.create_channel().await.expect("channel");
    for n in 0..3 {
        channel
            .basic_publish(
                "".into(),
                contracts::FULFIL_DLQ.into(),
                lapin::options::BasicPublishOptions::default(),
                format!("{{\"n\":{n}}}").as_bytes(),
                lapin::BasicProperties::default(),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
    }
    let _ = conn.close(200, "done".into()).await;

    // A listing holds the messages it shows unacknowledged until it is done; counts taken
    // beside it must not miss them.
    let read = |path: &'static str| {
        let app = &app;
        async move {
            app.http
                .get(app.url(path))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .expect("GET")
                .json::<serde_json::Value>()
                .await
                .expect("json")
        }
    };
    for _ in 0..10 {
        let (a, b, stats, c) = tokio::join!(
            read("/api/v1/ops/dlq"),
            read("/api/v1/ops/dlq"),
            read("/api/v1/ops/stats"),
            read("/api/v1/ops/dlq"),
        );
        assert_eq!(stats["dlq_depth"], 3, "{stats}");
        for list in [a, b, c] {
            assert_eq!(list["total"], 3, "{list}");
            assert_eq!(list["items"].as_array().map(Vec::len), Some(3), "{list}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redrive_moves_only_the_dead_letters_present_when_it_starts() {
    const POISON: u32 = 20;
    let mut app = spawn_app().await;
    // Commands for orders that do not exist: every delivery is dead-lettered at once.
    let mut conn = app.env.pool.acquire().await.expect("connection");
    for _ in 0..POISON {
        let command = contracts::Envelope::new(
            contracts::FulfilOrder {
                order_id: uuid::Uuid::new_v4(),
            },
            None,
        );
        data::messaging::outbox::enqueue(
            &mut conn,
            contracts::COMMANDS_EXCHANGE,
            contracts::FULFIL_ROUTING_KEY,
            &command,
        )
        .await
        .expect("outbox row");
    }
    drop(conn);
    app.spawn_worker(0);
    testkit::eventually(Duration::from_secs(60), "every command dead", || async {
        (app.env.queue_ready(contracts::FULFIL_DLQ).await == POISON).then_some(())
    })
    .await;

    // The worker keeps running: each redriven message is back in the DLQ within
    // milliseconds, well before the redrive would reach the end of the queue.
    let started = std::time::Instant::now();
    let res = tokio::time::timeout(
        Duration::from_secs(60),
        app.http
            .post(app.url("/api/v1/ops/dlq/redrive"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"limit": 500}))
            .send(),
    )
    .await
    .expect("the redrive returns")
    .expect("POST");
    let took = started.elapsed();
    assert_eq!(res.status(), 200);
    let result: RedriveResult = res.json().await.expect("json");
    assert_eq!(
        result.redriven, POISON,
        "each dead letter moved once, none of them twice ({took:?})"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    testkit::eventually(Duration::from_secs(30), "all dead again", || async {
        (app.env.queue_ready(contracts::FULFIL_DLQ).await == POISON).then_some(())
    })
    .await;
    testkit::eventually(
        Duration::from_secs(30),
        "nothing left circulating",
        || async {
            (app.env.queue_counts(contracts::FULFIL_QUEUE).await == Some((0, 0))).then_some(())
        },
    )
    .await;
}

/// The console's function scale: consumers on each `fn.<name>` queue, null before the
/// queue exists, 1 while a handler process consumes it, 0 once it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ops_stats_give_the_scale_of_each_function() {
    let app = spawn_app().await;
    let scale = |stats: &serde_json::Value, name: &str| {
        stats["functions"]
            .as_array()
            .expect("functions")
            .iter()
            .find(|f| f["name"] == name)
            .map(|f| (f["queue"].clone(), f["consumers"].clone()))
            .expect("the function is listed")
    };
    let read = || async {
        app.http
            .get(app.url("/api/v1/ops/stats"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("GET")
            .json::<serde_json::Value>()
            .await
            .expect("json")
    };
    let stats = read().await;
    assert_eq!(
        scale(&stats, "loyalty-points"),
        (json!("fn.loyalty-points"), serde_json::Value::Null)
    );
    assert_eq!(
        stats["functions"].as_array().map(Vec::len),
        Some(contracts::FUNCTIONS.len())
    );

    let connection = data::messaging::broker::connect(app.env.data.amqp_url(), "strata-test-fn")
        .await
        .expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    data::messaging::subscriptions::declare_function(&channel, "loyalty-points", 5)
        .await
        .expect("declare");
    let consumer = channel
        .basic_consume(
            "fn.loyalty-points".into(),
            "test-handler".into(),
            lapin::options::BasicConsumeOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("consume");
    testkit::eventually(Duration::from_secs(20), "one consumer", || async {
        (scale(&read().await, "loyalty-points").1 == json!(1)).then_some(())
    })
    .await;
    drop(consumer);
    let _ = connection.close(200, "done".into()).await;
    testkit::eventually(Duration::from_secs(20), "no consumer", || async {
        (scale(&read().await, "loyalty-points").1 == json!(0)).then_some(())
    })
    .await;
    assert_eq!(
        scale(&read().await, "low-stock-alert").1,
        serde_json::Value::Null
    );
}

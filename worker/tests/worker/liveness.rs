//! A worker whose broker connection is cut or goes silent: it notices within seconds,
//! consumes again once the broker is back, fulfils every order once, and a stop returns
//! within the drain timeout even when the broker does not answer.

use std::time::{Duration, Instant};

use secrecy::SecretString;
use testkit::apps;
use testkit::proxy::Proxy;
use worker::health::Phase;

use crate::helpers::Rig;

/// A worker reaching RabbitMQ through `proxy_url`, with short heartbeats and timeouts.
fn worker_via(rig: &Rig, proxy_url: &str, drain_ms: u64) -> apps::Worker {
    let url = SecretString::from(proxy_url.to_owned());
    apps::worker(&rig.env, |s| {
        s.data.amqp_url = url;
        // Few connections: the shared Postgres serves other tests meanwhile.
        s.data.database_max_connections = 4;
        s.payment_latency_ms = 0;
        s.retry_delay_ms = 50;
        s.heartbeat_secs = 2;
        s.broker_timeout_ms = 2000;
        s.drain_timeout_ms = drain_ms;
    })
}

async fn wait_phase(worker: &apps::Worker, want: Phase, timeout: Duration) -> Duration {
    let start = Instant::now();
    testkit::eventually(timeout, &format!("the worker {want:?}"), || async {
        (worker.readiness.phase() == want).then_some(())
    })
    .await;
    start.elapsed()
}

async fn wait_consumers(rig: &Rig, want: u64) {
    testkit::eventually(
        Duration::from_secs(30),
        &format!("{want} consumer(s) on the queue"),
        || async {
            (rig.env.queue_consumers(contracts::FULFIL_QUEUE).await == Some(want)).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_broker_connection_is_replaced_and_a_stop_during_one_returns_in_time() {
    let rig = Rig::new().await;
    rig.env.product("LIVE-1", 100, 100).await;
    let (proxy, via) = Proxy::in_front_of(rig.env.data.amqp_url()).await;
    let drain = Duration::from_secs(5);
    let worker = worker_via(&rig, &via, drain.as_millis() as u64);
    wait_phase(&worker, Phase::Consuming, Duration::from_secs(30)).await;
    let first = rig.place("LIVE-1", 1).await;
    rig.wait_status(first, "fulfilled", Duration::from_secs(20))
        .await;

    // Nothing flows, nothing closes: only the missing heartbeats tell (2 × 2 s).
    proxy.black_hole();
    let noticed = wait_phase(&worker, Phase::Reconnecting, Duration::from_secs(15)).await;
    eprintln!("silent connection noticed after {noticed:?}");
    let mut during = Vec::new();
    for _ in 0..5 {
        during.push(rig.place("LIVE-1", 1).await);
    }
    proxy.restore();
    for id in &during {
        rig.wait_status(*id, "fulfilled", Duration::from_secs(30))
            .await;
    }
    wait_consumers(&rig, 1).await;

    // Stopped while the broker is silent: basic.cancel gets no answer, the stop returns
    // anyway.
    proxy.black_hole();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    tokio::time::timeout(drain + Duration::from_secs(5), worker.stop())
        .await
        .expect("the stop returns although the broker does not answer")
        .expect("the worker stops cleanly");
    let took = started.elapsed();
    eprintln!("stop with a silent broker took {took:?}");
    assert!(took <= drain + Duration::from_secs(1), "{took:?}");

    assert_eq!(rig.env.stock("LIVE-1").await, 94);
    assert_eq!(rig.processed().await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stop_right_after_a_cut_returns_at_once() {
    let rig = Rig::new().await;
    let (proxy, via) = Proxy::in_front_of(rig.env.data.amqp_url()).await;
    let worker = worker_via(&rig, &via, 5000);
    wait_phase(&worker, Phase::Consuming, Duration::from_secs(30)).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), worker.stop())
        .await
        .expect("the stop returns")
        .expect("the worker stops cleanly");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repeated_cuts_and_silences_while_orders_flow_fulfil_every_order_once() {
    const ORDERS: usize = 150;
    let rig = std::sync::Arc::new(Rig::new().await);
    for sku in ["CUT-A", "CUT-B", "CUT-C"] {
        rig.env.product(sku, 100, 1000).await;
    }
    let (proxy, via) = Proxy::in_front_of(rig.env.data.amqp_url()).await;
    let workers = [
        worker_via(&rig, &via, 10_000),
        worker_via(&rig, &via, 10_000),
    ];
    for w in &workers {
        wait_phase(w, Phase::Consuming, Duration::from_secs(30)).await;
    }

    let placing = {
        let rig = rig.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..ORDERS {
                ids.push(rig.place(["CUT-A", "CUT-B", "CUT-C"][i % 3], 1).await);
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            ids
        })
    };
    // Cuts of a few hundred milliseconds, and now and then a silence of a few seconds.
    for round in 0..16 {
        tokio::time::sleep(Duration::from_millis(200 + (round % 4) * 150)).await;
        if round % 5 == 4 {
            proxy.black_hole();
            tokio::time::sleep(Duration::from_secs(3)).await;
        } else {
            proxy.cut();
            tokio::time::sleep(Duration::from_millis(100 + (round % 3) * 100)).await;
        }
        proxy.restore();
    }
    let ids = placing.await.expect("placing orders");
    for id in &ids {
        rig.wait_status(*id, "fulfilled", Duration::from_secs(60))
            .await;
    }
    assert_eq!(
        rig.processed().await,
        ORDERS as i64,
        "each message applied once"
    );
    let stock: i64 = sqlx::query_scalar("SELECT sum(stock) FROM products")
        .fetch_one(&rig.env.pool)
        .await
        .expect("stock");
    assert_eq!(stock, 3000 - ORDERS as i64, "stock taken once per order");
    assert_eq!(rig.env.queue_ready(contracts::FULFIL_DLQ).await, 0);
    // Both workers consume again, and the broker counts their two consumers and no
    // other (a silenced connection's consumer stays until the broker's heartbeat ends it).
    for w in &workers {
        wait_phase(w, Phase::Consuming, Duration::from_secs(30)).await;
    }
    wait_consumers(&rig, 2).await;
    for w in workers {
        assert_eq!(w.readiness.phase(), Phase::Consuming);
        w.stop().await.expect("stops cleanly");
    }
}

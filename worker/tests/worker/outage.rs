//! A worker whose database is out of reach for longer than the queue's delivery limit
//! would last: its messages wait in the worker, not in the DLQ, and every order is
//! fulfilled once when Postgres is back; a stop meanwhile gives them back at once.

use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use testkit::apps;
use testkit::proxy::Proxy;
use worker::health::{DATABASE_UNAVAILABLE, Phase};

use crate::helpers::Rig;

fn worker_via(rig: &Rig, database_url: &str) -> apps::Worker {
    let url = SecretString::from(database_url.to_owned());
    apps::worker(&rig.env, |s| {
        s.data.database_url = url;
        s.data.database_acquire_timeout_ms = 500;
        s.payment_latency_ms = 0;
        // The delay of a return to the queue: the delivery limit lasted about
        // (limit + 1) × (this + the failed attempt).
        s.retry_delay_ms = 1000;
        s.outage_max_delay_ms = 1000;
        s.drain_timeout_ms = 5000;
    })
}

async fn wait_consuming(worker: &apps::Worker) {
    testkit::eventually(Duration::from_secs(30), "the worker consuming", || async {
        (worker.readiness.phase() == Phase::Consuming).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_longer_than_the_delivery_limit_sends_nothing_to_the_dlq() {
    const ORDERS: usize = 50;
    let rig = Rig::new().await;
    rig.env.product("OUT-1", 100, 100).await;
    let (proxy, via) = Proxy::in_front_of(rig.env.data.database_url.expose_secret()).await;
    let worker = worker_via(&rig, &via);
    wait_consuming(&worker).await;
    let first = rig.place("OUT-1", 1).await;
    rig.wait_status(first, "fulfilled", Duration::from_secs(20))
        .await;

    proxy.cut();
    let cut_at = Instant::now();
    let mut ids = Vec::new();
    for _ in 0..ORDERS {
        ids.push(rig.place("OUT-1", 1).await);
    }
    testkit::eventually(Duration::from_secs(15), "not ready", || async {
        (worker.readiness.state() == Err(DATABASE_UNAVAILABLE)).then_some(())
    })
    .await;
    // Six deliveries (limit 5, plus the first) of one second each and a failed attempt:
    // twelve seconds outlast that budget by far.
    tokio::time::sleep(Duration::from_secs(12).saturating_sub(cut_at.elapsed())).await;
    assert_eq!(rig.env.queue_ready(contracts::FULFIL_DLQ).await, 0);
    assert_eq!(worker.readiness.state(), Err(DATABASE_UNAVAILABLE));
    proxy.restore();

    for id in &ids {
        rig.wait_status(*id, "fulfilled", Duration::from_secs(60))
            .await;
    }
    testkit::eventually(Duration::from_secs(15), "ready again", || async {
        worker.readiness.state().is_ok().then_some(())
    })
    .await;
    assert_eq!(rig.processed().await, ORDERS as i64 + 1);
    assert_eq!(rig.env.stock("OUT-1").await, 100 - ORDERS as i32 - 1);
    assert_eq!(rig.env.queue_ready(contracts::FULFIL_DLQ).await, 0);
    worker.stop().await.expect("stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stop_during_a_database_outage_gives_the_messages_back_at_once() {
    let rig = Rig::new().await;
    rig.env.product("OUT-2", 100, 100).await;
    let (proxy, via) = Proxy::in_front_of(rig.env.data.database_url.expose_secret()).await;
    let worker = worker_via(&rig, &via);
    wait_consuming(&worker).await;
    proxy.cut();
    for _ in 0..3 {
        rig.place("OUT-2", 1).await;
    }
    testkit::eventually(Duration::from_secs(15), "not ready", || async {
        (worker.readiness.waiting_for_database() == 3).then_some(())
    })
    .await;
    let started = Instant::now();
    worker.stop().await.expect("stops cleanly");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // Back in the queue for the next worker, not in the DLQ.
    assert_eq!(rig.env.queue_ready(contracts::FULFIL_QUEUE).await, 3);
    assert_eq!(rig.env.queue_ready(contracts::FULFIL_DLQ).await, 0);
    drop(proxy);
}

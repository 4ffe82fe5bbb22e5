//! The whole loop with the process backend and the real worker binary: a burst of slow
//! orders scales workers up, the drained queue scales them back down, and every order is
//! fulfilled exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use autoscaler::Application;
use autoscaler::config::BackendKind;
use contracts::{FULFIL_DLQ, FULFIL_QUEUE};

use crate::helpers::{Rig, get_json, queue_stats, worker_bin};

const ORDERS: usize = 150;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_scales_workers_up_then_back_down_and_fulfils_every_order_once() {
    // The relay starts after the orders are placed: they reach the queue as one burst.
    let mut rig = Rig::without_relay().await;
    // One product per order: a worker holds its products' row locks while it charges the
    // payment, so orders of one product would be processed one at a time by any number
    // of workers.
    let skus: Vec<String> = (0..ORDERS).map(|i| format!("BURST-{i:03}")).collect();
    for sku in &skus {
        rig.env.product(sku, 100, 5).await;
    }
    let mut settings = rig.settings(BackendKind::Process);
    settings.worker_bin = Some(worker_bin());
    // One worker does an order per 300 ms: 150 orders are ~45 s of backlog for it.
    settings.worker_env = rig.worker_env(300);
    settings.min = 1;
    settings.max = 4;
    settings.target_backlog = 10;
    settings.poll_interval = Duration::from_millis(500);
    settings.scale_down_window = Duration::from_secs(6);
    settings.drain_timeout = Duration::from_secs(30);
    let app = Application::build(settings).expect("building the autoscaler");
    let status_url = format!("http://{}/status", app.address());
    let stop = app.stop_token();
    let _stop_on_panic = StopOnDrop(stop.clone());
    let running = tokio::spawn(app.run_until_stopped());

    let status = |v: &serde_json::Value, key: &str| v[key].as_u64().expect(key);
    testkit::eventually(Duration::from_secs(30), "one idle worker", || async {
        let s = get_json(&status_url).await;
        (status(&s, "current") == 1 && s["workers"]["running"] == 1).then_some(())
    })
    .await;

    // The most workers /status ever shows, watched from now on.
    let peak = Arc::new(AtomicU32::new(1));
    let watcher = tokio::spawn({
        let peak = peak.clone();
        let url = status_url.clone();
        async move {
            loop {
                let s = get_json(&url).await;
                let current = u32::try_from(status(&s, "current")).expect("u32");
                peak.fetch_max(current, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });

    rig.place_each(&skus).await;
    let burst = Instant::now();
    rig.start_relay();
    testkit::eventually(Duration::from_secs(60), "at least 3 workers", || async {
        (peak.load(Ordering::SeqCst) >= 3).then_some(())
    })
    .await;
    let scaled_up = burst.elapsed();

    rig.env.wait_all_final(Duration::from_secs(120)).await;
    let drained = burst.elapsed();
    // Back to one once the (lagging) statistics show an empty queue for a whole window.
    testkit::eventually(Duration::from_secs(45), "back to one worker", || async {
        let s = get_json(&status_url).await;
        (status(&s, "current") == 1
            && s["workers"]["running"] == 1
            && s["workers"]["draining"] == 0)
            .then_some(())
    })
    .await;
    let scaled_down = burst.elapsed();
    watcher.abort();
    eprintln!(
        "peak {} workers; >= 3 after {scaled_up:?}, queue drained after {drained:?}, \
         back to 1 after {scaled_down:?}",
        peak.load(Ordering::SeqCst)
    );

    // Exactly once: every order fulfilled, one ledger row per message, stock taken once.
    let orders = i64::try_from(ORDERS).expect("i64");
    assert_eq!(
        rig.count("SELECT count(*) FROM orders WHERE status = 'fulfilled'")
            .await,
        orders
    );
    assert_eq!(
        rig.count("SELECT count(*) FROM processed_messages").await,
        orders
    );
    assert_eq!(
        rig.count("SELECT count(*) FROM products WHERE sku LIKE 'BURST-%' AND stock = 4")
            .await,
        orders,
        "each product's stock taken exactly once"
    );
    assert_eq!(
        rig.env.queue_ready(FULFIL_DLQ).await,
        0,
        "nothing dead-lettered"
    );
    testkit::eventually(Duration::from_secs(15), "an empty queue", || async {
        (rig.env.queue_counts(FULFIL_QUEUE).await? == (0, 0)).then_some(())
    })
    .await;
    // Scale-in drained the workers: none was stopped holding a message, so the broker
    // never had to deliver one again.
    let stats = queue_stats(&rig, FULFIL_QUEUE).await;
    let redelivered = stats["message_stats"]["redeliver"].as_u64().unwrap_or(0);
    assert_eq!(redelivered, 0, "messages redelivered: {stats}");

    let s = get_json(&status_url).await;
    let reasons: Vec<&str> = s["last_decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .filter_map(|d| d["reason"].as_str())
        .collect();
    assert!(
        reasons.iter().any(|r| r.starts_with("scale down")),
        "{reasons:#?}"
    );

    // Stopping the autoscaler drains and stops its worker.
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(40), running)
        .await
        .expect("the autoscaler stops")
        .expect("no panic")
        .expect("clean stop");
}

/// Cancels the autoscaler if the test fails half-way (its workers are killed on drop too).
struct StopOnDrop(tokio_util::sync::CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

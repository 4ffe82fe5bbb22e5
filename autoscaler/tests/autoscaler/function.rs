//! A function subscriber scaled from zero (SNS -> Lambda) with the process backend and the
//! real worker binary: no process while `fn.loyalty-points` is empty, one started when a
//! message arrives, the message handled, and none again after the idle window. Prints the
//! time from the message's publication to its effect in Postgres (the cold start).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use autoscaler::Application;
use autoscaler::config::BackendKind;
use contracts::Envelope;
use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::helpers::{Rig, get_json, worker_bin};

const FUNCTION: &str = "loyalty-points";

/// Publishes an `order.fulfilled` envelope into `fn.<FUNCTION>` as the delivering
/// consumer of a function subscription does (default exchange, persistent, confirmed).
async fn publish_fulfilled(rig: &Rig, email: &str, total_cents: i64) -> Uuid {
    let conn = data::messaging::broker::connect(
        rig.env.data.amqp_url.expose_secret(),
        "strata-test-publisher",
    )
    .await
    .expect("connecting");
    let channel = conn.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let event = Envelope {
        message_id: Uuid::now_v7(),
        kind: "OrderFulfilled".to_owned(),
        schema_version: 1,
        occurred_at: chrono::Utc::now(),
        traceparent: None,
        attributes: [
            ("type".to_owned(), serde_json::json!("order.fulfilled")),
            ("total_cents".to_owned(), serde_json::json!(total_cents)),
        ]
        .into_iter()
        .collect(),
        payload: serde_json::json!({
            "order_id": Uuid::now_v7(),
            "total_cents": total_cents,
            "email": email,
            "lines": [{"sku": "KIT-1", "name": "Kit", "quantity": 1, "unit_price_cents": total_cents}],
        }),
    };
    let body = serde_json::to_vec(&event).expect("JSON");
    let queue = contracts::function_queue_name(FUNCTION);
    channel
        .basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            &body,
            BasicProperties::default()
                .with_message_id(event.message_id.to_string().into())
                .with_delivery_mode(2),
        )
        .await
        .expect("publish")
        .await
        .expect("confirmed");
    let _ = conn.close(200, "published".into()).await;
    event.message_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_scales_from_zero_to_one_and_back_to_zero() {
    let rig = Rig::without_relay().await;
    // The queue exists (a function subscription declares it), empty.
    {
        let conn = data::messaging::broker::connect(
            rig.env.data.amqp_url.expose_secret(),
            "strata-test-setup",
        )
        .await
        .expect("connecting");
        let channel = conn.create_channel().await.expect("channel");
        data::messaging::subscriptions::declare_function(
            &channel,
            FUNCTION,
            rig.env.data.delivery_limit,
        )
        .await
        .expect("declaring fn.loyalty-points");
        let _ = conn.close(200, "declared".into()).await;
    }
    let mut settings = rig.settings(BackendKind::Process);
    settings.worker_bin = Some(worker_bin());
    settings.worker_env = rig.worker_env(0);
    settings
        .worker_env
        .push(("WORKER_FUNCTION".to_owned(), FUNCTION.to_owned()));
    settings.queue = contracts::function_queue_name(FUNCTION);
    settings.min = 0;
    settings.max = 1;
    settings.poll_interval = Duration::from_millis(500);
    settings.scale_down_window = Duration::from_secs(5);
    settings.drain_timeout = Duration::from_secs(30);
    let app = Application::build(settings).expect("building the autoscaler");
    let status_url = format!("http://{}/status", app.address());
    let stop = app.stop_token();
    let _stop_on_panic = StopOnDrop(stop.clone());
    let running = tokio::spawn(app.run_until_stopped());

    // Empty queue: several decisions, and never a worker.
    let s = testkit::eventually(Duration::from_secs(30), "decisions at zero", || async {
        let s = get_json(&status_url).await;
        (s["last_decisions"].as_array().map_or(0, Vec::len) >= 4).then_some(s)
    })
    .await;
    assert_eq!(s["current"], 0, "{s}");
    assert_eq!(s["workers"]["running"], 0, "{s}");
    assert_eq!(s["workers"]["draining"], 0, "{s}");
    assert_eq!(
        rig.env
            .queue_consumers(&contracts::function_queue_name(FUNCTION))
            .await,
        Some(0)
    );

    // The most workers /status shows from now on.
    let peak = Arc::new(AtomicU32::new(0));
    let watcher = tokio::spawn({
        let (peak, url) = (peak.clone(), status_url.clone());
        async move {
            loop {
                let s = get_json(&url).await;
                let running = s["workers"]["running"].as_u64().unwrap_or(0);
                peak.fetch_max(u32::try_from(running).unwrap_or(u32::MAX), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });

    let published = Instant::now();
    let message_id = publish_fulfilled(&rig, "Fan@Example.com", 12_345).await;
    let points: i64 =
        testkit::eventually(Duration::from_secs(60), "the loyalty points", || async {
            sqlx::query_scalar("SELECT points FROM loyalty_points WHERE email = 'fan@example.com'")
                .fetch_optional(&rig.env.pool)
                .await
                .expect("reading loyalty_points")
        })
        .await;
    let handled = published.elapsed();
    assert_eq!(points, 123, "12,345 cents: 123 points");
    let recorded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM processed_messages WHERE consumer = 'fn.loyalty-points' \
         AND message_id = $1",
    )
    .bind(message_id)
    .fetch_one(&rig.env.pool)
    .await
    .expect("processed_messages");
    assert_eq!(recorded, 1);

    // Idle: back to zero after the window, the worker drained (exit 0), not killed.
    let s = testkit::eventually(Duration::from_secs(60), "back to zero", || async {
        let s = get_json(&status_url).await;
        (s["current"] == 0 && s["workers"]["running"] == 0 && s["workers"]["draining"] == 0)
            .then_some(s)
    })
    .await;
    let idle = published.elapsed();
    watcher.abort();
    assert_eq!(s["workers"]["drained"], 1, "{s}");
    assert_eq!(s["workers"]["killed"], 0, "{s}");
    // The worker ran for the whole window: the watcher saw it, and never a second one.
    assert_eq!(peak.load(Ordering::SeqCst), 1, "one worker, never more");
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
    // Nothing left behind: the message acked, nothing dead-lettered.
    assert_eq!(
        rig.env
            .queue_ready(&contracts::function_queue_name(FUNCTION))
            .await,
        0
    );
    assert_eq!(
        rig.env
            .queue_ready(&contracts::function_dlq_name(FUNCTION))
            .await,
        0
    );
    eprintln!(
        "function cold start: published -> handled in {:.2} s (poll 500 ms); back to 0 workers \
         {:.1} s after publishing (scale-down window 5 s)",
        handled.as_secs_f64(),
        idle.as_secs_f64()
    );

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

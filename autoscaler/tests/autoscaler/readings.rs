//! Reading the backlog from the real broker: the management API, the AMQP fallback, and
//! no reading at all.

use std::time::Duration;

use autoscaler::config::BackendKind;
use autoscaler::decision::Observation;
use autoscaler::metrics_source::{QueueMetrics, Source};
use contracts::FULFIL_QUEUE;
use secrecy::{ExposeSecret, SecretString};

use crate::helpers::Rig;

/// A rig with `n` orders waiting in `orders.fulfil` and no worker.
async fn backlog_of(n: usize) -> Rig {
    let rig = Rig::new().await;
    rig.env.product("READ-1", 100, 100).await;
    rig.place_many("READ-1", n).await;
    testkit::eventually(
        Duration::from_secs(15),
        "the messages published",
        || async {
            (rig.env.queue_ready(FULFIL_QUEUE).await == u32::try_from(n).ok()?).then_some(())
        },
    )
    .await;
    rig
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_exact_and_unacked_comes_from_the_management_api() {
    let rig = backlog_of(7).await;
    let source = tokio::sync::Mutex::new(
        QueueMetrics::new(&rig.settings(BackendKind::Process)).expect("source"),
    );
    // The API has statistics for a new queue a few seconds after it appears.
    let reading = testkit::eventually(Duration::from_secs(20), "a full reading", || async {
        let reading = source.lock().await.read().await;
        reading.filter(|r| r.source == Source::ExactReady)
    })
    .await;
    assert_eq!(
        reading.observation,
        Observation {
            ready: 7,
            unacked: Some(0)
        }
    );

    // A spike is counted at once, not when the API next samples the queue (every 5 s).
    rig.place_many("READ-1", 5).await;
    testkit::eventually(Duration::from_secs(15), "the spike published", || async {
        (rig.env.queue_ready(FULFIL_QUEUE).await == 12).then_some(())
    })
    .await;
    let reading = source.lock().await.read().await.expect("a reading");
    assert_eq!(reading.source, Source::ExactReady);
    assert_eq!(reading.observation.ready, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_amqp_count_the_management_api_gives_both_figures() {
    let rig = backlog_of(6).await;
    let mut settings = rig.settings(BackendKind::Process);
    // The rig's vhost (the API's URL names it) on a port nobody listens on.
    let vhost = settings
        .amqp_url
        .expose_secret()
        .rsplit_once('/')
        .map(|(_, vhost)| vhost.to_owned())
        .expect("a vhost in the URL");
    settings.amqp_url = SecretString::from(format!("amqp://guest:guest@127.0.0.1:1/{vhost}"));
    let source = tokio::sync::Mutex::new(QueueMetrics::new(&settings).expect("source"));
    let reading = testkit::eventually(Duration::from_secs(20), "an API reading", || async {
        let reading = source.lock().await.read().await;
        reading.filter(|r| r.observation.ready == 6)
    })
    .await;
    assert_eq!(reading.source, Source::ManagementApi);
    assert_eq!(reading.observation.unacked, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_management_api_the_amqp_count_is_a_ready_only_reading() {
    let rig = backlog_of(5).await;
    let mut settings = rig.settings(BackendKind::Process);
    settings.rabbitmq_api_url = "http://127.0.0.1:1".to_owned();
    let mut source = QueueMetrics::new(&settings).expect("source");
    for _ in 0..3 {
        // Twice more: the fallback connection is kept and reused.
        let reading = source.read().await.expect("a fallback reading");
        assert_eq!(reading.source, Source::AmqpPassive);
        assert_eq!(
            reading.observation,
            Observation {
                ready: 5,
                unacked: None
            }
        );
    }
    // Wrong management credentials are a failure too, not a zero.
    let mut settings = rig.settings(BackendKind::Process);
    settings.rabbitmq_api_password = SecretString::from("wrong".to_owned());
    let mut source = QueueMetrics::new(&settings).expect("source");
    let reading = source.read().await.expect("a fallback reading");
    assert_eq!(reading.source, Source::AmqpPassive);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reading_at_all_is_a_missing_metric() {
    let rig = Rig::new().await;
    // A queue that does not exist: 404 from the API, NOT_FOUND from the passive declare.
    let mut settings = rig.settings(BackendKind::Process);
    settings.queue = "no.such.queue".to_owned();
    let mut source = QueueMetrics::new(&settings).expect("source");
    assert_eq!(source.read().await, None);
    assert_eq!(source.read().await, None, "and again on a reopened channel");
    // A broker that cannot be reached at all.
    let mut settings = rig.settings(BackendKind::Process);
    settings.rabbitmq_api_url = "http://127.0.0.1:1".to_owned();
    settings.amqp_url = SecretString::from("amqp://guest:guest@127.0.0.1:1/%2f".to_owned());
    let mut source = QueueMetrics::new(&settings).expect("source");
    assert_eq!(source.read().await, None);
}

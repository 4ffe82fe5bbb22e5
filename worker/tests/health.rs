//! The worker's health endpoints against the real services: `/readyz` follows the broker
//! connection (cut and restored through a proxy), `/metrics` counts processed orders, and
//! the listener closes when the worker has stopped.
//!
//! A binary of its own: the metrics recorder is the process's, and the exact counts read
//! from `/metrics` would take in the deliveries of other tests' workers.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use contracts::{OrderLineRequest, PlaceOrder};
use secrecy::{ExposeSecret, SecretString};
use testkit::TestEnv;
use testkit::apps;
use testkit::proxy::Proxy;

const WAIT: Duration = Duration::from_secs(30);

/// `amqp_url` with its host and port replaced by `addr`; also the original host and port.
fn through(amqp_url: &str, addr: SocketAddr) -> (String, SocketAddr) {
    let at = amqp_url.find('@').expect("the test URL has credentials") + 1;
    let end = amqp_url[at..].find('/').map_or(amqp_url.len(), |i| at + i);
    let target = amqp_url[at..end]
        .to_socket_addrs()
        .expect("resolving the broker")
        .next()
        .expect("the broker has an address");
    (
        format!("{}{addr}{}", &amqp_url[..at], &amqp_url[end..]),
        target,
    )
}

/// Status code of a GET, or None when nothing answers.
async fn status(http: &reqwest::Client, url: &str) -> Option<u16> {
    http.get(url).send().await.ok().map(|r| r.status().as_u16())
}

async fn wait_status(http: &reqwest::Client, url: &str, want: u16) {
    testkit::eventually(WAIT, &format!("{url} to answer {want}"), || async {
        (status(http, url).await == Some(want)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_broker_connection_and_metrics_count_orders() {
    let env = TestEnv::new().await;
    env.product("HEALTH-1", 500, 10).await;
    let _relay = apps::relay(&env, |_| {});

    // The worker reaches RabbitMQ only through a proxy the test can cut; it starts cut.
    let direct = env.data.amqp_url.expose_secret().to_owned();
    let (_, broker) = through(&direct, "127.0.0.1:1".parse().unwrap());
    let proxy = Proxy::start(broker).await;
    let (via_proxy, _) = through(&direct, proxy.addr());
    proxy.cut();

    let worker = apps::worker(&env, |s| {
        s.data.amqp_url = SecretString::from(via_proxy);
        s.payment_latency_ms = 0;
        s.health_listen = Some("127.0.0.1:0".parse().unwrap());
    });
    let addr = worker.health_addr.expect("a health listener was asked for");
    assert_ne!(addr.port(), 0);

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let healthz = format!("http://{addr}/healthz");
    let readyz = format!("http://{addr}/readyz");
    let metrics = format!("http://{addr}/metrics");

    // Alive but not ready while the broker is out of reach.
    wait_status(&http, &healthz, 200).await;
    assert_eq!(status(&http, &readyz).await, Some(503));
    let body: serde_json::Value = http
        .get(&readyz)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "starting");

    proxy.restore();
    wait_status(&http, &readyz, 200).await;

    // An order goes through, and the counter shows it.
    let (order, _) = data::store::orders::place(
        &env.pool,
        &PlaceOrder {
            email: "health@example.com".to_owned(),
            lines: vec![OrderLineRequest {
                sku: "HEALTH-1".to_owned(),
                quantity: 1,
            }],
        },
        None,
        None,
    )
    .await
    .expect("placing an order");
    testkit::eventually(WAIT, "the order to be fulfilled", || async {
        (env.order_status(order.id).await.0 == "fulfilled").then_some(())
    })
    .await;
    let text = http
        .get(&metrics)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("strata_worker_messages_total{outcome=\"fulfilled\"} 1")),
        "{text}"
    );
    assert!(text.contains("strata_worker_consuming 1"), "{text}");

    // Losing the broker makes the worker unready until it has reconnected.
    proxy.cut();
    wait_status(&http, &readyz, 503).await;
    let body: serde_json::Value = http
        .get(&readyz)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "reconnecting");
    assert_eq!(status(&http, &healthz).await, Some(200));
    proxy.restore();
    wait_status(&http, &readyz, 200).await;

    // A stopped worker drains, returns, and closes its port.
    worker.stop().await.expect("the worker stops cleanly");
    assert_eq!(status(&http, &healthz).await, None);
}

#[tokio::test]
async fn no_port_without_health_listen() {
    let env = TestEnv::new().await;
    let mut settings = worker::WorkerSettings::with_data(env.data.clone());
    settings.health_listen = None;
    let worker = worker::Application::build(settings).expect("worker");
    assert_eq!(worker.health_addr(), None);
}

#[tokio::test]
async fn a_taken_health_address_is_an_error() {
    let env = TestEnv::new().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut settings = worker::WorkerSettings::with_data(env.data.clone());
    settings.health_listen = Some(taken.local_addr().unwrap());
    let err = worker::Application::build(settings)
        .err()
        .expect("binding a taken address fails");
    assert!(format!("{err:#}").contains("HEALTH_LISTEN"), "{err:#}");
}

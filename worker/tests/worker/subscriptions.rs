//! Delivery of the topics' events to subscriptions against the real services: RabbitMQ,
//! Postgres, HTTP receivers started here (healthy, failing, hanging) and a real SMTP
//! server (Python's aiosmtpd, installed by scripts/smtp-tools). Subscriptions are rows
//! inserted with SQL and queues declared as logic declares them; events are envelopes
//! published on `events` as the outbox relay publishes them.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use chrono::Utc;
use lapin::options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Connection};
use serde_json::{Value, json};
use testkit::{TestEnv, apps, eventually};
use tokio::process::{Child, Command};
use uuid::Uuid;
use worker::subscriptions::signature;

/// The attempts of these tests: 4 (3 retry tiers), the first wait 200 ms.
const MAX_ATTEMPTS: u32 = 4;
const RETRY_BASE_MS: u64 = 200;

// ---------------------------------------------------------------------------------------
// HTTP receivers

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// 200 at once.
    Healthy,
    /// 500 to the first `n` requests, then 200.
    FailFirst(usize),
    /// 500 to every request.
    Fail,
    /// Never answers.
    Hang,
}

#[derive(Debug, Clone)]
struct Hit {
    at: Instant,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Hit {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
            .unwrap_or("")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

struct ReceiverState {
    behaviour: Mutex<Behaviour>,
    hits: Mutex<Vec<Hit>>,
}

/// An HTTP server on 127.0.0.1 that records every request.
struct Receiver {
    base: String,
    state: Arc<ReceiverState>,
    handle: actix_web::dev::ServerHandle,
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<ReceiverState>,
) -> HttpResponse {
    let hit = Hit {
        at: Instant::now(),
        path: req.path().to_owned(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: body.to_vec(),
    };
    let n = {
        let mut hits = state.hits.lock().unwrap();
        hits.push(hit);
        hits.len()
    };
    let behaviour = *state.behaviour.lock().unwrap();
    match behaviour {
        Behaviour::Healthy => HttpResponse::Ok().finish(),
        Behaviour::FailFirst(k) if n <= k => HttpResponse::InternalServerError().finish(),
        Behaviour::FailFirst(_) => HttpResponse::Ok().finish(),
        Behaviour::Fail => HttpResponse::InternalServerError().finish(),
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            HttpResponse::Ok().finish()
        }
    }
}

impl Receiver {
    async fn start(behaviour: Behaviour) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a receiver");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let state = Arc::new(ReceiverState {
            behaviour: Mutex::new(behaviour),
            hits: Mutex::new(Vec::new()),
        });
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(1 << 20))
                .default_service(web::to(receive))
        })
        .listen(listener)
        .expect("listening")
        .workers(2)
        .disable_signals()
        .shutdown_timeout(0)
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Receiver {
            base,
            state,
            handle,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn set(&self, behaviour: Behaviour) {
        *self.state.behaviour.lock().unwrap() = behaviour;
    }

    fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    fn hits_on(&self, path: &str) -> Vec<Hit> {
        self.hits().into_iter().filter(|h| h.path == path).collect()
    }

    /// The events received on `path` (not the confirmation requests), by event id.
    fn events_on(&self, path: &str) -> HashMap<String, usize> {
        let mut seen = HashMap::new();
        for hit in self.hits_on(path) {
            if hit.header("strata-event-type") != "subscription_confirmation" {
                *seen
                    .entry(hit.header("strata-event-id").to_owned())
                    .or_insert(0) += 1;
            }
        }
        seen
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        tokio::spawn(async move { handle.stop(false).await });
    }
}

// ---------------------------------------------------------------------------------------
// SMTP server

/// aiosmtpd on a free port, writing each mail into a Maildir; killed when dropped.
struct SmtpServer {
    port: u16,
    dir: PathBuf,
    _child: Child,
}

impl SmtpServer {
    async fn start() -> SmtpServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        // Maildir creates the folder itself (and refuses one without its subfolders).
        let dir = std::env::temp_dir().join(format!("strata-mail-{}", Uuid::new_v4().simple()));
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&dir)
            .kill_on_drop(true)
            .spawn()
            .expect("python3 (scripts/smtp-tools installs aiosmtpd)");
        let server = SmtpServer {
            port,
            dir,
            _child: child,
        };
        eventually(
            Duration::from_secs(20),
            "aiosmtpd listening (scripts/smtp-tools installs it)",
            || async {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
            },
        )
        .await;
        server
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.join("new"))
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        files
    }

    /// Every mail received, parsed by Python's email package.
    async fn mails(&self) -> Vec<Mail> {
        let mut mails = Vec::new();
        for file in self.files() {
            mails.push(Mail::parse(&file).await);
        }
        mails
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A received mail: its headers of interest and its leaf parts (content type, text).
#[derive(Debug, serde::Deserialize)]
struct Mail {
    to: String,
    subject: String,
    event_id: Option<String>,
    parts: Vec<(String, String)>,
}

const PARSE_MAIL: &str = r#"
import email, json, sys
from email import policy
m = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=policy.default)
parts = [[p.get_content_type(), p.get_content()] for p in m.walk() if not p.is_multipart()]
print(json.dumps({'to': str(m['to']), 'subject': str(m['subject']),
                  'event_id': m['Strata-Event-Id'] and str(m['Strata-Event-Id']), 'parts': parts}))
"#;

impl Mail {
    async fn parse(file: &Path) -> Mail {
        let out = Command::new("python3")
            .args(["-c", PARSE_MAIL])
            .arg(file)
            .output()
            .await
            .expect("python3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("the parsed mail")
    }

    fn part(&self, content_type: &str) -> Option<&str> {
        self.parts
            .iter()
            .find(|(t, _)| t == content_type)
            .map(|(_, text)| text.as_str())
    }
}

// ---------------------------------------------------------------------------------------
// Subscriptions and events

struct Subscribed {
    id: Uuid,
    secret: String,
    token: String,
}

/// Inserts a subscription as logic's API does and declares its queues.
async fn subscribe(
    env: &TestEnv,
    protocol: &str,
    endpoint: &str,
    filter_policy: Option<Value>,
    raw_delivery: bool,
    confirmed: bool,
) -> Subscribed {
    let id = Uuid::now_v7();
    let secret = hex_secret();
    let token = hex_secret();
    sqlx::query(
        "INSERT INTO subscriptions (id, topic, protocol, endpoint, filter_policy, raw_delivery, \
         status, secret, confirm_token, owner, confirmed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'admin', CASE WHEN $10 THEN now() END)",
    )
    .bind(id)
    .bind("orders")
    .bind(protocol)
    .bind(endpoint)
    .bind(filter_policy)
    .bind(raw_delivery)
    .bind(if confirmed {
        "confirmed"
    } else {
        "pending_confirmation"
    })
    .bind(&secret)
    .bind(&token)
    .bind(confirmed)
    .execute(&env.pool)
    .await
    .expect("inserting a subscription");
    let (connection, channel) = open(env).await;
    data::messaging::subscriptions::declare(
        &channel,
        id,
        contracts::Topic::Orders,
        (MAX_ATTEMPTS - 1) as usize,
        env.data.delivery_limit,
    )
    .await
    .expect("declaring the subscription's queues");
    let _ = connection.close(200, "declared".into()).await;
    Subscribed { id, secret, token }
}

fn hex_secret() -> String {
    format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

async fn confirm(env: &TestEnv, id: Uuid) {
    sqlx::query(
        "UPDATE subscriptions SET status = 'confirmed', confirmed_at = now() WHERE id = $1",
    )
    .bind(id)
    .execute(&env.pool)
    .await
    .expect("confirming");
}

async fn open(env: &TestEnv) -> (Connection, Channel) {
    let connection = data::messaging::broker::connect(env.data.amqp_url(), "strata-test")
        .await
        .expect("connecting to RabbitMQ");
    let channel = connection.create_channel().await.expect("channel");
    (connection, channel)
}

/// An `order.*` event as the outbox relay publishes it.
fn order_event(event_type: &str, attributes: Value, payload: Value) -> (Uuid, Value) {
    let id = Uuid::now_v7();
    let mut attributes = attributes;
    attributes["type"] = json!(event_type);
    let kind = match event_type {
        "order.fulfilled" => "OrderFulfilled",
        "order.rejected" => "OrderRejected",
        _ => "OrderPlaced",
    };
    let envelope = json!({
        "message_id": id,
        "type": kind,
        "schema_version": 1,
        "occurred_at": Utc::now(),
        "attributes": attributes,
        "payload": payload,
    });
    (id, envelope)
}

/// Publishes envelopes on `events` with confirms.
async fn publish(env: &TestEnv, events: &[(&str, Value)]) {
    let (connection, channel) = open(env).await;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    for (routing_key, envelope) in events {
        let id = envelope["message_id"]
            .as_str()
            .expect("message id")
            .to_owned();
        channel
            .basic_publish(
                contracts::EVENTS_EXCHANGE.into(),
                (*routing_key).into(),
                BasicPublishOptions::default(),
                &serde_json::to_vec(envelope).expect("json"),
                BasicProperties::default()
                    .with_message_id(ShortString::from(id))
                    .with_content_type(ShortString::from("application/json"))
                    .with_delivery_mode(2),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
    }
    let _ = connection.close(200, "published".into()).await;
}

fn fulfilled_payload(order_id: Uuid) -> Value {
    json!({
        "order_id": order_id,
        "total_cents": 7_497,
        "email": "customer@example.com",
        "lines": [
            {"sku": "KIT-00042", "name": "Chef's knife", "quantity": 2, "unit_price_cents": 2_999},
            {"sku": "TOOL-00007", "name": "Whisk & spatula", "quantity": 1, "unit_price_cents": 1_499},
        ],
    })
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
struct Counts {
    delivered: i64,
    retried: i64,
    failed: i64,
    dead_lettered: i64,
    filtered: i64,
    last_error: Option<String>,
}

async fn counts(env: &TestEnv, id: Uuid) -> Counts {
    sqlx::query_as(
        "SELECT delivered, retried, failed, dead_lettered, filtered, last_error \
         FROM subscriptions WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&env.pool)
    .await
    .expect("reading the counters")
}

/// A worker delivering subscriptions with the tests' retry settings.
fn worker(env: &TestEnv, tweak: impl FnOnce(&mut worker::WorkerSettings)) -> apps::Worker {
    apps::worker(env, |s| {
        s.fifo_consumers = false;
        let sub = &mut s.subscriptions;
        sub.poll_ms = 100;
        sub.max_attempts = MAX_ATTEMPTS;
        sub.retry_base_ms = RETRY_BASE_MS;
        sub.timeout_ms = 2000;
        tweak(s);
    })
}

/// Messages of a queue, taken off it.
async fn drain_queue(env: &TestEnv, queue: &str) -> Vec<(BasicProperties, Vec<u8>)> {
    let (connection, channel) = open(env).await;
    let mut out = Vec::new();
    while let Some(message) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
    {
        out.push((message.delivery.properties, message.delivery.data));
    }
    let _ = connection.close(200, "drained".into()).await;
    out
}

/// Consumers of a queue, counted by the broker.
async fn consumers(env: &TestEnv, queue: &str) -> u32 {
    let (connection, channel) = open(env).await;
    let (_, consumers) = data::messaging::broker::queue_depth(&channel, queue)
        .await
        .expect("passive declare");
    let _ = connection.close(200, "counted".into()).await;
    consumers
}

fn verify(hit: &Hit, secret: &str) {
    let header = hit.header(contracts::SIGNATURE_HEADER);
    assert_eq!(
        signature::verify(secret, header, &hit.body, Utc::now().timestamp()),
        Ok(()),
        "the signature {header:?} verifies with the subscription's secret"
    );
    assert!(
        signature::verify("not-the-secret", header, &hit.body, Utc::now().timestamp()).is_err()
    );
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_event_fans_out_to_every_subscription_once_and_a_hanging_one_delays_none() {
    let env = TestEnv::new().await;
    let healthy = Receiver::start(Behaviour::Healthy).await;
    let hanging = Receiver::start(Behaviour::Hang).await;
    let enveloped = subscribe(&env, "http", &healthy.url("/enveloped"), None, false, true).await;
    let raw = subscribe(&env, "http", &healthy.url("/raw"), None, true, true).await;
    let stuck = subscribe(&env, "http", &hanging.url("/stuck"), None, false, true).await;
    let queue_name = format!("partner-feed-{}", Uuid::new_v4().simple());
    let queue = subscribe(&env, "queue", &queue_name, None, false, true).await;
    let function = subscribe(&env, "function", "loyalty-points", None, false, true).await;
    let _worker = worker(&env, |s| s.subscriptions.timeout_ms = 10_000);

    let events: Vec<(Uuid, Value)> = (0..5)
        .map(|i| {
            order_event(
                "order.fulfilled",
                json!({"total_cents": 1000 + i}),
                fulfilled_payload(Uuid::new_v4()),
            )
        })
        .collect();
    publish(
        &env,
        &events
            .iter()
            .map(|(_, e)| ("order.fulfilled", e.clone()))
            .collect::<Vec<_>>(),
    )
    .await;
    let ids: Vec<String> = events.iter().map(|(id, _)| id.to_string()).collect();

    eventually(
        Duration::from_secs(30),
        "every event at both healthy endpoints",
        || async {
            (healthy.events_on("/enveloped").len() == 5 && healthy.events_on("/raw").len() == 5)
                .then_some(())
        },
    )
    .await;
    // The hanging endpoint holds its first attempts (10 s each): none has failed yet, so
    // the healthy ones did not wait for it.
    let hanging_now = counts(&env, stuck.id).await;
    assert_eq!((hanging_now.delivered, hanging_now.failed), (0, 0));
    eventually(
        Duration::from_secs(10),
        "the hanging endpoint's requests",
        || async { (hanging.events_on("/stuck").len() == 5).then_some(()) },
    )
    .await;

    eventually(
        Duration::from_secs(20),
        "the counters of the healthy ones",
        || async {
            (counts(&env, enveloped.id).await.delivered == 5
                && counts(&env, raw.id).await.delivered == 5)
                .then_some(())
        },
    )
    .await;
    for hit in healthy.hits_on("/enveloped") {
        verify(&hit, &enveloped.secret);
        let body = hit.json();
        assert_eq!(body["type"], "order.fulfilled");
        assert_eq!(body["subscription_id"], enveloped.id.to_string());
        assert_eq!(body["id"].as_str(), Some(hit.header("strata-event-id")));
        assert!(ids.contains(&hit.header("strata-event-id").to_owned()));
        assert_eq!(body["attributes"]["type"], "order.fulfilled");
        assert_eq!(body["message"]["email"], "customer@example.com");
        assert!(body["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert_eq!(hit.header("content-type"), "application/json");
        assert_eq!(hit.header("strata-event-type"), "order.fulfilled");
    }
    for hit in healthy.hits_on("/raw") {
        verify(&hit, &raw.secret);
        assert_eq!(
            hit.json()["email"],
            "customer@example.com",
            "the payload alone"
        );
    }

    // The queue and the function got each event once too.
    eventually(
        Duration::from_secs(20),
        "the queue and function deliveries",
        || async {
            (counts(&env, queue.id).await.delivered == 5
                && counts(&env, function.id).await.delivered == 5)
                .then_some(())
        },
    )
    .await;
    let in_queue = drain_queue(&env, &queue_name).await;
    let mut queued: Vec<String> = in_queue
        .iter()
        .map(|(p, body)| {
            let body: Value = serde_json::from_slice(body).expect("json");
            let id = p.message_id().as_ref().expect("message id").to_string();
            assert_eq!(body["id"].as_str(), Some(id.as_str()));
            id
        })
        .collect();
    queued.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(queued, expected);
    let in_function = drain_queue(&env, &contracts::function_queue_name("loyalty-points")).await;
    let mut fed: Vec<String> = in_function
        .iter()
        .map(|(_, body)| {
            let envelope: Value = serde_json::from_slice(body).expect("json");
            assert_eq!(
                envelope["type"], "OrderFulfilled",
                "the event's own envelope"
            );
            envelope["message_id"].as_str().expect("id").to_owned()
        })
        .collect();
    fed.sort();
    assert_eq!(fed, expected);

    // Exactly once each, also a moment later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for path in ["/enveloped", "/raw"] {
        let seen = healthy.events_on(path);
        assert_eq!(seen.len(), 5);
        assert!(seen.values().all(|n| *n == 1), "{path}: {seen:?}");
    }
}

/// The gaps between attempts: each at least its wait, at most the wait with its jitter
/// (20 %) and the round trip through the broker and the receiver.
fn assert_schedule(hits: &[Hit], waits_ms: &[u64]) {
    let gaps: Vec<u128> = hits
        .windows(2)
        .map(|w| w[1].at.duration_since(w[0].at).as_millis())
        .collect();
    eprintln!("gaps between attempts: {gaps:?} ms for waits of {waits_ms:?} ms");
    assert_eq!(gaps.len(), waits_ms.len(), "gaps {gaps:?}");
    for (gap, wait) in gaps.iter().zip(waits_ms) {
        let (low, high) = (*wait as u128, (*wait as f64 * 1.2) as u128 + 400);
        assert!(
            (low..=high).contains(gap),
            "gaps {gaps:?}: {gap} ms is outside {low}..={high} ms for a wait of {wait} ms"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_attempts_follow_the_backoff_then_the_dlq_and_a_redrive_delivers() {
    let env = TestEnv::new().await;
    let flaky = Receiver::start(Behaviour::FailFirst(2)).await;
    let failing = Receiver::start(Behaviour::Fail).await;
    let recovering = subscribe(&env, "http", &flaky.url("/flaky"), None, false, true).await;
    let doomed = subscribe(&env, "http", &failing.url("/down"), None, false, true).await;
    let _worker = worker(&env, |_| {});
    let (event_id, event) = order_event(
        "order.placed",
        json!({}),
        json!({"order_id": Uuid::new_v4()}),
    );
    publish(&env, &[("order.placed", event)]).await;

    // Fails twice, delivered at the third attempt, 200 then 400 ms later.
    eventually(
        Duration::from_secs(20),
        "the flaky endpoint's third attempt",
        || async { (counts(&env, recovering.id).await.delivered == 1).then_some(()) },
    )
    .await;
    let hits = flaky.hits_on("/flaky");
    assert_eq!(hits.len(), 3);
    assert_schedule(&hits, &[RETRY_BASE_MS, RETRY_BASE_MS * 2]);
    for hit in &hits {
        assert_eq!(
            hit.header("strata-event-id"),
            event_id.to_string(),
            "the same event id"
        );
        verify(hit, &recovering.secret);
    }
    let c = counts(&env, recovering.id).await;
    assert_eq!(
        (c.delivered, c.retried, c.failed, c.dead_lettered),
        (1, 2, 2, 0)
    );
    assert_eq!(
        c.last_error.as_deref(),
        Some("HTTP 500 Internal Server Error")
    );

    // Fails every attempt: 200, 400, 800 ms apart, then the DLQ.
    let dlq = contracts::dlq_name(doomed.id);
    eventually(
        Duration::from_secs(20),
        "the last attempt in the DLQ",
        || async { (env.queue_ready(&dlq).await == 1).then_some(()) },
    )
    .await;
    let hits = failing.hits_on("/down");
    assert_eq!(hits.len(), MAX_ATTEMPTS as usize);
    assert_schedule(
        &hits,
        &[RETRY_BASE_MS, RETRY_BASE_MS * 2, RETRY_BASE_MS * 4],
    );
    eventually(Duration::from_secs(10), "the counters", || async {
        let c = counts(&env, doomed.id).await;
        ((c.delivered, c.retried, c.failed, c.dead_lettered) == (0, 3, 4, 1)).then_some(())
    })
    .await;
    assert_eq!(env.queue_ready(&contracts::queue_name(doomed.id)).await, 0);

    // The endpoint is back; the redrive delivers the dead letter as a first attempt.
    failing.set(Behaviour::Healthy);
    let (connection, channel) = open(&env).await;
    let moved = data::messaging::subscriptions::redrive(&channel, doomed.id)
        .await
        .expect("redrive");
    let _ = connection.close(200, "redriven".into()).await;
    assert_eq!(moved, 1);
    eventually(Duration::from_secs(20), "the redriven delivery", || async {
        (counts(&env, doomed.id).await.delivered == 1).then_some(())
    })
    .await;
    let hits = failing.hits_on("/down");
    assert_eq!(hits.len(), MAX_ATTEMPTS as usize + 1);
    assert_eq!(
        hits.last().unwrap().header("strata-event-id"),
        event_id.to_string()
    );
    assert_eq!(env.queue_ready(&dlq).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pending_subscription_gets_a_signed_confirmation_request_and_no_earlier_event() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start(Behaviour::Healthy).await;
    let pending = subscribe(&env, "http", &receiver.url("/hook"), None, false, false).await;
    let _worker = worker(&env, |s| {
        s.subscriptions.public_api_url = "http://logic.example:8081/".to_owned();
    });

    let request = eventually(
        Duration::from_secs(20),
        "the confirmation request",
        || async { receiver.hits_on("/hook").into_iter().next() },
    )
    .await;
    verify(&request, &pending.secret);
    assert_eq!(
        request.header("strata-event-type"),
        "subscription_confirmation"
    );
    let body = request.json();
    assert_eq!(body["type"], "subscription_confirmation");
    assert_eq!(body["subscription_id"], pending.id.to_string());
    assert_eq!(body["topic"], "orders");
    assert_eq!(
        body["confirm_url"],
        format!(
            "http://logic.example:8081/api/v1/subscriptions/{}/confirm?token={}",
            pending.id, pending.token
        )
    );
    let sent_at: Option<chrono::DateTime<Utc>> =
        sqlx::query_scalar("SELECT confirmation_sent_at FROM subscriptions WHERE id = $1")
            .bind(pending.id)
            .fetch_one(&env.pool)
            .await
            .expect("row");
    assert!(sent_at.is_some());

    // An event while pending waits in the queue; once confirmed, it is dropped (it was
    // published before the confirmation) and only the later one is delivered.
    let (early, early_event) = order_event("order.placed", json!({}), json!({"n": 1}));
    publish(&env, &[("order.placed", early_event)]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    confirm(&env, pending.id).await;
    let (late, late_event) = order_event("order.placed", json!({}), json!({"n": 2}));
    publish(&env, &[("order.placed", late_event)]).await;
    eventually(
        Duration::from_secs(20),
        "the event after the confirmation",
        || async {
            receiver
                .events_on("/hook")
                .contains_key(&late.to_string())
                .then_some(())
        },
    )
    .await;
    eventually(Duration::from_secs(10), "the queue emptied", || async {
        (env.queue_ready(&contracts::queue_name(pending.id)).await == 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = receiver.events_on("/hook");
    assert!(!events.contains_key(&early.to_string()), "{events:?}");
    assert_eq!(events.len(), 1);
    let confirmations = receiver
        .hits_on("/hook")
        .iter()
        .filter(|h| h.header("strata-event-type") == "subscription_confirmation")
        .count();
    assert_eq!(confirmations, 1, "not sent again before the resend delay");
    assert_eq!(counts(&env, pending.id).await.delivered, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_filter_policy_lets_through_only_what_it_matches() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start(Behaviour::Healthy).await;
    let fulfilled_only = subscribe(
        &env,
        "http",
        &receiver.url("/fulfilled"),
        Some(json!({"type": ["order.fulfilled"]})),
        false,
        true,
    )
    .await;
    let kitchen = subscribe(
        &env,
        "http",
        &receiver.url("/kitchen"),
        Some(json!({"category": [{"prefix": "Kit"}]})),
        false,
        true,
    )
    .await;
    let _worker = worker(&env, |_| {});
    let (a, a_event) = order_event("order.fulfilled", json!({"category": ["Tools"]}), json!({}));
    let (b, b_event) = order_event(
        "order.placed",
        json!({"category": ["Garden", "Kitchen"]}),
        json!({}),
    );
    let (c, c_event) = order_event("order.rejected", json!({"category": ["Toys"]}), json!({}));
    publish(
        &env,
        &[
            ("order.fulfilled", a_event),
            ("order.placed", b_event),
            ("order.rejected", c_event),
        ],
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "every event considered",
        || async {
            let (f, k) = (
                counts(&env, fulfilled_only.id).await,
                counts(&env, kitchen.id).await,
            );
            (f.delivered + f.filtered == 3 && k.delivered + k.filtered == 3).then_some((f, k))
        },
    )
    .await;
    let f = counts(&env, fulfilled_only.id).await;
    let k = counts(&env, kitchen.id).await;
    assert_eq!((f.delivered, f.filtered), (1, 2));
    assert_eq!((k.delivered, k.filtered), (1, 2));
    assert_eq!(
        receiver
            .events_on("/fulfilled")
            .into_keys()
            .collect::<Vec<_>>(),
        vec![a.to_string()]
    );
    assert_eq!(
        receiver
            .events_on("/kitchen")
            .into_keys()
            .collect::<Vec<_>>(),
        vec![b.to_string()]
    );
    assert!(!receiver.events_on("/kitchen").contains_key(&c.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_fulfilled_event_becomes_an_order_confirmation_mail_in_text_and_html() {
    let env = TestEnv::new().await;
    let smtp = SmtpServer::start().await;
    let subscriber = subscribe(&env, "email", "orders@shop.example", None, false, true).await;
    let pending = subscribe(&env, "email", "new@shop.example", None, false, false).await;
    let _worker = worker(&env, |s| {
        s.subscriptions.smtp_url = Some(smtp.url().into());
        s.subscriptions.public_api_url = "http://logic.example:8081".to_owned();
    });
    let order_id = Uuid::new_v4();
    let (event_id, event) = order_event("order.fulfilled", json!({}), fulfilled_payload(order_id));
    let (_, rejected) = order_event(
        "order.rejected",
        json!({"reason": "out_of_stock"}),
        json!({"order_id": order_id, "reason": "out_of_stock"}),
    );
    publish(
        &env,
        &[("order.fulfilled", event), ("order.rejected", rejected)],
    )
    .await;

    eventually(Duration::from_secs(30), "three mails", || async {
        (smtp.files().len() == 3).then_some(())
    })
    .await;
    let mails = smtp.mails().await;
    let to = |addr: &'static str| mails.iter().filter(move |m| m.to == addr);

    let confirmation = to("new@shop.example")
        .next()
        .expect("the confirmation request");
    let text = confirmation.part("text/plain").expect("text");
    assert!(
        text.contains(&format!(
            "http://logic.example:8081/api/v1/subscriptions/{}/confirm?token={}",
            pending.id, pending.token
        )),
        "{text}"
    );

    let order_mail = to("orders@shop.example")
        .find(|m| m.subject.contains("is confirmed"))
        .expect("the order confirmation");
    assert_eq!(
        order_mail.subject,
        format!("Your Strata order {order_id} is confirmed")
    );
    assert_eq!(
        order_mail.event_id.as_deref(),
        Some(event_id.to_string().as_str())
    );
    let text = order_mail.part("text/plain").expect("a text part");
    let html = order_mail.part("text/html").expect("an HTML part");
    for line in [
        "2 x Chef's knife (KIT-00042) at $29.99: $59.98",
        "1 x Whisk & spatula (TOOL-00007) at $14.99: $14.99",
        "Total: $74.97",
    ] {
        assert!(text.contains(line), "{line:?} in {text}");
    }
    for cell in [
        "<td>Chef&#39;s knife</td>",
        "<td>KIT-00042</td>",
        "Whisk &#38; spatula",
        "$74.97",
        &order_id.to_string(),
    ] {
        assert!(html.contains(cell), "{cell:?} in {html}");
    }

    let notification = to("orders@shop.example")
        .find(|m| m.subject.contains("order.rejected"))
        .expect("the notification of the other event");
    assert!(notification.part("text/html").is_none());
    assert!(
        notification
            .part("text/plain")
            .expect("text")
            .contains("out_of_stock")
    );
    eventually(Duration::from_secs(10), "the counters", || async {
        (counts(&env, subscriber.id).await.delivered == 2).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_subscription_loses_its_consumer_and_gets_nothing_more() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start(Behaviour::Healthy).await;
    let sub = subscribe(&env, "http", &receiver.url("/gone"), None, false, true).await;
    let _worker = worker(&env, |_| {});
    let queue = contracts::queue_name(sub.id);
    eventually(
        Duration::from_secs(20),
        "the subscription's consumer",
        || async { (consumers(&env, &queue).await == 1).then_some(()) },
    )
    .await;
    sqlx::query("UPDATE subscriptions SET status = 'deleted', deleted_at = now() WHERE id = $1")
        .bind(sub.id)
        .execute(&env.pool)
        .await
        .expect("deleting");
    eventually(Duration::from_secs(20), "the consumer stopped", || async {
        (consumers(&env, &queue).await == 0).then_some(())
    })
    .await;
    let (_, event) = order_event("order.placed", json!({}), json!({}));
    publish(&env, &[("order.placed", event)]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(env.queue_ready(&queue).await, 1, "left in its queue");
    assert!(receiver.hits().is_empty());
}

#[tokio::test]
async fn under_the_production_profile_no_delivery_reaches_a_private_address() {
    use worker::subscriptions::http::{HttpDelivery, Post};
    let receiver = Receiver::start(Behaviour::Healthy).await;
    let port = receiver.base.rsplit(':').next().expect("port").to_owned();
    let subscription = |endpoint: String| worker::subscriptions::store::Subscription {
        id: Uuid::now_v7(),
        topic: contracts::Topic::Orders,
        protocol: contracts::Protocol::Http,
        endpoint,
        filter_policy: None,
        raw_delivery: false,
        status: contracts::SubscriptionStatus::Confirmed,
        secret: Arc::from("secret"),
        confirm_token: "token".to_owned(),
        confirmed_at: Some(Utc::now()),
    };
    let production = HttpDelivery::new(Duration::from_secs(2), true).expect("client");
    let development = HttpDelivery::new(Duration::from_secs(2), false).expect("client");
    for endpoint in [
        format!("http://127.0.0.1:{port}/a"),
        format!("http://localhost:{port}/b"),
        format!("http://[::ffff:127.0.0.1]:{port}/c"),
    ] {
        let sub = subscription(endpoint.clone());
        let post = |s| Post {
            subscription: s,
            event_id: Uuid::now_v7(),
            event_type: "order.placed",
        };
        let err = production
            .post(post(&sub), b"{}".to_vec())
            .await
            .expect_err(&endpoint);
        assert!(err.contains("endpoint forbidden"), "{endpoint}: {err}");
        if !endpoint.contains("[::ffff") {
            development
                .post(post(&sub), b"{}".to_vec())
                .await
                .expect("development allows loopback");
        }
    }
    let paths: Vec<String> = receiver.hits().into_iter().map(|h| h.path).collect();
    assert_eq!(
        paths,
        vec!["/a", "/b"],
        "only the development client got through"
    );
}

// ---------------------------------------------------------------------------------------
// Figures

/// Figures, not a check: deliveries per second to 1 and to 10 healthy HTTP subscribers
/// (a backlog delivered by one worker; first to last receipt), and the time from an
/// `order.fulfilled` event published to its webhook's receipt and to its mail's arrival.
/// `cargo test -p worker --test worker subscriptions::figures -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement; run by hand"]
async fn figures() {
    for (subscribers, events, prefetch) in [(1usize, 2000usize, 8u16), (1, 2000, 32), (10, 500, 8)]
    {
        let env = TestEnv::new().await;
        let receiver = Receiver::start(Behaviour::Healthy).await;
        for i in 0..subscribers {
            subscribe(
                &env,
                "http",
                &receiver.url(&format!("/s{i}")),
                None,
                false,
                true,
            )
            .await;
        }
        let backlog: Vec<(&str, Value)> = (0..events)
            .map(|_| {
                (
                    "order.fulfilled",
                    order_event(
                        "order.fulfilled",
                        json!({}),
                        fulfilled_payload(Uuid::new_v4()),
                    )
                    .1,
                )
            })
            .collect();
        publish(&env, &backlog).await;
        let total = subscribers * events;
        let worker = worker(&env, |s| s.subscriptions.prefetch = prefetch);
        eventually(Duration::from_secs(600), "every delivery", || async {
            (receiver.hits().len() >= total).then_some(())
        })
        .await;
        let hits = receiver.hits();
        let first = hits.iter().map(|h| h.at).min().expect("hits");
        let last = hits.iter().map(|h| h.at).max().expect("hits");
        let secs = last.duration_since(first).as_secs_f64();
        println!(
            "{subscribers} subscriber(s), prefetch {prefetch}: {total} deliveries in {secs:.2} s = {:.0} deliveries/s",
            (total - 1) as f64 / secs
        );
        drop(worker);
    }

    let env = TestEnv::new().await;
    let receiver = Receiver::start(Behaviour::Healthy).await;
    let smtp = SmtpServer::start().await;
    subscribe(&env, "http", &receiver.url("/hook"), None, false, true).await;
    subscribe(&env, "email", "orders@shop.example", None, false, true).await;
    let _worker = worker(&env, |s| s.subscriptions.smtp_url = Some(smtp.url().into()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (mut webhook, mut mail) = (Vec::new(), Vec::new());
    for n in 1..=20 {
        let (_, event) = order_event(
            "order.fulfilled",
            json!({}),
            fulfilled_payload(Uuid::new_v4()),
        );
        let published = Instant::now();
        publish(&env, &[("order.fulfilled", event)]).await;
        // The mailbox is looked at every 2 ms; the webhook's receipt is timed by the receiver.
        let mail_at = loop {
            if smtp.files().len() == n {
                break Instant::now();
            }
            assert!(published.elapsed() < Duration::from_secs(20), "the mail");
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let hook_at = eventually(Duration::from_secs(20), "the webhook", || async {
            receiver.hits().get(n - 1).map(|h| h.at)
        })
        .await;
        webhook.push(hook_at.duration_since(published).as_secs_f64() * 1000.0);
        mail.push(mail_at.duration_since(published).as_secs_f64() * 1000.0);
    }
    for (what, mut ms) in [("webhook", webhook), ("mail", mail)] {
        ms.sort_by(f64::total_cmp);
        println!(
            "order.fulfilled published -> {what} received: median {:.0} ms, p95 {:.0} ms, max {:.0} ms (20 events, one at a time)",
            ms[ms.len() / 2],
            ms[ms.len() * 95 / 100],
            ms[ms.len() - 1]
        );
    }
}

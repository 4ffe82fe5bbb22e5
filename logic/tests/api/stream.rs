//! The event stream's shards against the real RabbitMQ and Postgres: the relay routes each
//! event to the shard of its partition key (Kinesis' MD5 ranges), in order per key, across
//! restarts of the relay; retention removes whole old segments; and the read API.

use std::collections::BTreeMap;
use std::time::Duration;

use contracts::{EVENTS_EXCHANGE, Envelope, OrderFulfilled, ProductChanged};
use data::messaging::outbox;
use data::stream::reader::{Position, Reader, Record, Waits};
use data::stream::{ShardMap, StreamSettings};
use serde_json::Value;
use testkit::{TestEnv, apps};

use crate::helpers::{ADMIN_TOKEN, TestApp, assert_error, spawn_app_with};
use uuid::Uuid;

/// Writes one event per key to the outbox; `n` goes into the event (total_cents for an
/// order, the sku's suffix for a product) so the test can check the order per key.
pub(crate) async fn enqueue(env: &TestEnv, orders: &[Uuid], skus: &[String], n: i64) {
    let mut tx = env.pool.begin().await.expect("begin");
    for (i, order_id) in orders.iter().enumerate() {
        let event = Envelope::new(
            OrderFulfilled {
                order_id: *order_id,
                total_cents: n,
                email: String::new(),
                lines: Vec::new(),
            },
            None,
        );
        outbox::enqueue(&mut tx, EVENTS_EXCHANGE, "order.fulfilled", &event)
            .await
            .expect("enqueue");
        if let Some(sku) = skus.get(i) {
            let mut event = Envelope::new(
                ProductChanged {
                    sku: sku.clone(),
                    category: None,
                },
                None,
            );
            event.attributes.insert("n".into(), n.into());
            outbox::enqueue(&mut tx, EVENTS_EXCHANGE, "product.changed", &event)
                .await
                .expect("enqueue");
        }
    }
    tx.commit().await.expect("commit");
}

pub(crate) async fn published(env: &TestEnv) {
    testkit::eventually(Duration::from_secs(20), "the outbox published", || async {
        (outbox::backlog(&env.pool).await.ok()? == 0).then_some(())
    })
    .await;
}

/// Waits for a busy machine: a test reads to the end, however slowly the broker answers.
pub(crate) fn patient() -> Waits {
    Waits {
        first: Duration::from_secs(5),
        idle: Duration::from_millis(500),
    }
}

/// Every record of every shard, TRIM_HORIZON on.
pub(crate) async fn all_records(env: &TestEnv, shards: u16) -> Vec<(u16, Record)> {
    let reader = Reader::open(env.data.amqp_url(), "test-reader")
        .await
        .expect("reader")
        .with_waits(patient());
    let mut all = Vec::new();
    for shard in 0..shards {
        let records = reader
            .read(shard, Position::TrimHorizon, 100_000)
            .await
            .expect("read");
        all.extend(records.into_iter().map(|r| (shard, r)));
    }
    reader.close().await;
    all
}

/// What the test wrote into an event to order it: an order's total, a product's `n`.
fn n_of(record: &Record) -> i64 {
    record
        .data
        .pointer("/payload/total_cents")
        .or_else(|| record.data.pointer("/attributes/n"))
        .and_then(|v| v.as_i64())
        .expect("n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_go_to_their_keys_shard_in_order_across_relay_restarts() {
    let env = TestEnv::new().await;
    let shards = env.data.stream.stream_shards;
    assert_eq!(shards, 4, "the default");
    let orders: Vec<Uuid> = (0..24).map(|_| Uuid::new_v4()).collect();
    let skus: Vec<String> = (0..12).map(|i| format!("SKU-{i:04}")).collect();

    // Three rounds, a relay started and stopped for each.
    for round in 0..3 {
        let relay = apps::relay(&env, |_| {});
        for k in 0..3 {
            enqueue(&env, &orders, &skus, round * 3 + k).await;
        }
        published(&env).await;
        relay.stop().await;
    }

    let records = all_records(&env, shards).await;
    assert_eq!(records.len(), 9 * (orders.len() + skus.len()));
    let map = ShardMap::new(shards);
    let mut per_key: BTreeMap<String, Vec<(u16, u64, i64)>> = BTreeMap::new();
    for (shard, record) in &records {
        let key = record.partition_key.clone().expect("a partition key");
        let expected_key = match record.kind.as_deref() {
            Some("OrderFulfilled") => record.data.pointer("/payload/order_id"),
            _ => record.data.pointer("/payload/sku"),
        };
        assert_eq!(Some(key.as_str()), expected_key.and_then(|v| v.as_str()));
        assert_eq!(*shard, map.shard_of(&key), "{key} is in shard {shard}");
        per_key
            .entry(key)
            .or_default()
            .push((*shard, record.sequence, n_of(record)));
    }
    assert_eq!(per_key.len(), orders.len() + skus.len());
    for (key, mut seen) in per_key {
        seen.sort_by_key(|(_, sequence, _)| *sequence);
        let ns: Vec<i64> = seen.iter().map(|(_, _, n)| *n).collect();
        assert_eq!(ns, (0..9).collect::<Vec<_>>(), "order of {key}");
    }
    let used: std::collections::BTreeSet<u16> = records.iter().map(|(s, _)| *s).collect();
    assert!(used.len() >= 3, "36 keys spread over the shards: {used:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_whole_old_segments() {
    let mut env = TestEnv::new().await;
    env.data.stream = StreamSettings {
        stream_shards: 1,
        stream_max_bytes: 20_000,
        stream_segment_bytes: 4_000,
        ..StreamSettings::default()
    };
    let app = stream_app(env).await;
    let env = &app.env;
    let orders: Vec<Uuid> = (0..50).map(|_| Uuid::new_v4()).collect();
    for n in 0..8 {
        enqueue(env, &orders, &[], n).await;
    }
    published(env).await;

    // 400 events of about 400 bytes: 160 kB through a shard of 20 kB. RabbitMQ 3.10: once
    // retention has removed segments, a shard not written to since can deliver nothing
    // from its start until its next write (docs/messaging.md), so one more event is
    // written until the shard reads again.
    let mut newest = 7;
    let records = loop {
        newest += 1;
        enqueue(env, &orders[..1], &[], newest).await;
        published(env).await;
        let records = all_records(env, 1).await;
        if !records.is_empty() || newest == 12 {
            break records;
        }
    };
    assert!(!records.is_empty(), "the shard reads nothing");
    assert!(records.len() < 400, "kept {} of 400", records.len());
    let first = &records[0].1;
    assert!(first.sequence > 0, "the oldest segments are gone");
    assert_eq!(
        n_of(&records.last().expect("last").1),
        newest,
        "the newest is kept"
    );
    get_error(
        &app,
        "/api/v1/streams/events/records?shard=0&from=AT_SEQUENCE_NUMBER&sequence=0",
        410,
        "sequence_expired",
    )
    .await;
    let horizon = get_json(
        &app,
        "/api/v1/streams/events/records?shard=0&from=TRIM_HORIZON",
    )
    .await;
    assert_eq!(sequences(&horizon)[0], first.sequence);
}

/// A logic app (with its relay) whose stream reads wait long enough for a busy machine.
async fn stream_app(env: TestEnv) -> TestApp {
    spawn_app_with(env, |s| {
        s.stream_read_wait_ms = 5000;
        s.stream_read_idle_ms = 500;
    })
    .await
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    let res = app
        .http
        .get(app.url(path))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status(), 200, "{path}");
    res.json().await.expect("JSON")
}

async fn get_error(app: &TestApp, path: &str, status: u16, code: &str) {
    let res = app
        .http
        .get(app.url(path))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("GET");
    assert_error(res, status, code).await;
}

fn sequences(body: &Value) -> Vec<u64> {
    body["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["sequence"].as_u64().expect("sequence"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_api_reads_a_shard_from_every_position() {
    let app = stream_app(TestEnv::new().await).await;
    let env = &app.env;
    // Keys of shard 1 only, so that every event below is in the shard read.
    let map = ShardMap::new(4);
    let orders: Vec<Uuid> = std::iter::repeat_with(Uuid::new_v4)
        .filter(|id| map.shard_of(&id.to_string()) == 1)
        .take(3)
        .collect();
    enqueue(env, &orders, &[], 0).await;
    enqueue(env, &orders, &[], 1).await;
    published(env).await;
    // Event times of the next round are all past this instant.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let round_two = chrono::Utc::now();
    enqueue(env, &orders, &[], 2).await;
    published(env).await;

    let shards = get_json(&app, "/api/v1/streams/events/shards").await;
    assert_eq!(shards["stream"], "events");
    let list = shards["shards"].as_array().expect("shards");
    assert_eq!(list.len(), 4);
    assert_eq!(list[0]["starting_hash_key"], "0");
    assert_eq!(list[3]["ending_hash_key"], u128::MAX.to_string());
    assert_eq!(list[1]["queue"], "events.shard.1");
    assert!(list[0]["first_sequence"].is_null() && list[0]["last_sequence"].is_null());

    let base = "/api/v1/streams/events/records?shard=1";
    let all = get_json(&app, &format!("{base}&from=TRIM_HORIZON&limit=1000")).await;
    let seqs = sequences(&all);
    assert_eq!(seqs.len(), 9);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(list[1]["first_sequence"].as_u64(), Some(seqs[0]));
    assert_eq!(list[1]["last_sequence"].as_u64(), Some(seqs[8]));
    assert_eq!(all["next_sequence"].as_u64(), Some(seqs[8] + 1));
    let first = &all["records"][0];
    assert_eq!(first["type"], "OrderFulfilled");
    assert_eq!(first["partition_key"], orders[0].to_string());
    assert_eq!(first["data"]["payload"]["order_id"], orders[0].to_string());
    assert!(first["timestamp"].is_string());

    // Pages of two, each going on from the last one's next_sequence.
    let mut paged = Vec::new();
    let mut page = get_json(&app, &format!("{base}&from=TRIM_HORIZON&limit=2")).await;
    loop {
        let got = sequences(&page);
        if got.is_empty() {
            break;
        }
        paged.extend(got);
        let next = page["next_sequence"].as_u64().expect("next");
        page = get_json(
            &app,
            &format!("{base}&from=AT_SEQUENCE_NUMBER&sequence={next}&limit=2"),
        )
        .await;
    }
    assert_eq!(paged, seqs);

    let at = get_json(
        &app,
        &format!("{base}&from=AT_SEQUENCE_NUMBER&sequence={}", seqs[4]),
    )
    .await;
    assert_eq!(sequences(&at), seqs[4..]);
    let after = get_json(
        &app,
        &format!("{base}&from=AFTER_SEQUENCE_NUMBER&sequence={}", seqs[4]),
    )
    .await;
    assert_eq!(sequences(&after), seqs[5..]);
    let since = get_json(
        &app,
        &format!(
            "{base}&from=AT_TIMESTAMP&timestamp={}",
            round_two.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ),
    )
    .await;
    assert_eq!(sequences(&since), seqs[6..], "the third round");

    // LATEST: nothing yet, and where the next record will be; then it comes.
    let latest = get_json(&app, &format!("{base}&from=LATEST")).await;
    assert!(sequences(&latest).is_empty());
    let next = latest["next_sequence"].as_u64().expect("next");
    assert_eq!(next, seqs[8] + 1);
    let at_end = get_json(
        &app,
        &format!("{base}&from=AT_SEQUENCE_NUMBER&sequence={next}"),
    )
    .await;
    assert!(sequences(&at_end).is_empty());
    assert_eq!(at_end["next_sequence"].as_u64(), Some(next));
    enqueue(env, &orders[..1], &[], 3).await;
    published(env).await;
    let new = get_json(
        &app,
        &format!("{base}&from=AT_SEQUENCE_NUMBER&sequence={next}"),
    )
    .await;
    assert_eq!(sequences(&new).len(), 1);
    assert_eq!(new["records"][0]["data"]["payload"]["total_cents"], 3);

    // Bad positions.
    let records = "/api/v1/streams/events/records";
    for (query, status, code) in [
        ("shard=1", 400, "invalid_position"),
        ("shard=1&from=OLDEST", 400, "invalid_position"),
        ("shard=1&from=AT_SEQUENCE_NUMBER", 400, "invalid_position"),
        (
            "shard=1&from=AFTER_SEQUENCE_NUMBER&sequence=-1",
            400,
            "invalid_position",
        ),
        (
            "shard=1&from=AT_SEQUENCE_NUMBER&sequence=x",
            400,
            "invalid_position",
        ),
        ("shard=1&from=AT_TIMESTAMP", 400, "invalid_position"),
        (
            "shard=1&from=AT_TIMESTAMP&timestamp=yesterday",
            400,
            "invalid_position",
        ),
        (
            "shard=1&from=TRIM_HORIZON&sequence=3",
            400,
            "invalid_position",
        ),
        ("shard=1&from=TRIM_HORIZON&limit=0", 400, "invalid_query"),
        ("shard=1&from=TRIM_HORIZON&limit=1001", 400, "invalid_query"),
        ("from=TRIM_HORIZON", 404, "unknown_shard"),
        ("shard=4&from=TRIM_HORIZON", 404, "unknown_shard"),
        ("shard=x&from=TRIM_HORIZON", 404, "unknown_shard"),
    ] {
        get_error(&app, &format!("{records}?{query}"), status, code).await;
    }
    get_error(
        &app,
        &format!(
            "{records}?shard=1&from=AT_SEQUENCE_NUMBER&sequence={}",
            seqs[8] + 1000
        ),
        400,
        "sequence_beyond_end",
    )
    .await;
    let anonymous = app
        .http
        .get(app.url(&format!("{records}?shard=1&from=TRIM_HORIZON")))
        .send()
        .await
        .expect("GET");
    assert_error(anonymous, 401, "unauthorized").await;
}

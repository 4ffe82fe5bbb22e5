//! The event stream's shards against the real RabbitMQ and Postgres: the relay routes each
//! event to the shard of its partition key (Kinesis' MD5 ranges), in order per key, across
//! restarts of the relay; retention removes whole old segments; and the read API.

use std::collections::BTreeMap;
use std::time::Duration;

use contracts::{EVENTS_EXCHANGE, Envelope, OrderFulfilled, ProductChanged};
use data::messaging::outbox;
use data::stream::reader::{Position, Reader, Record, Waits};
use data::stream::{ShardMap, StreamSettings};
use testkit::{TestEnv, apps};
use uuid::Uuid;

/// Writes one event per key to the outbox; `n` goes into the event (total_cents for an
/// order, the sku's suffix for a product) so the test can check the order per key.
async fn enqueue(env: &TestEnv, orders: &[Uuid], skus: &[String], n: i64) {
    let mut tx = env.pool.begin().await.expect("begin");
    for (i, order_id) in orders.iter().enumerate() {
        let event = Envelope::new(
            OrderFulfilled {
                order_id: *order_id,
                total_cents: n,
            },
            None,
        );
        outbox::enqueue(&mut tx, EVENTS_EXCHANGE, "order.fulfilled", &event)
            .await
            .expect("enqueue");
        if let Some(sku) = skus.get(i) {
            let mut event = Envelope::new(ProductChanged { sku: sku.clone() }, None);
            event.attributes.insert("n".into(), n.into());
            outbox::enqueue(&mut tx, EVENTS_EXCHANGE, "product.changed", &event)
                .await
                .expect("enqueue");
        }
    }
    tx.commit().await.expect("commit");
}

async fn published(env: &TestEnv) {
    testkit::eventually(Duration::from_secs(20), "the outbox published", || async {
        (outbox::backlog(&env.pool).await.ok()? == 0).then_some(())
    })
    .await;
}

/// Waits for a busy machine: a test reads to the end, however slowly the broker answers.
pub(crate) fn patient() -> Waits {
    Waits {
        first: Duration::from_secs(2),
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
    let relay = apps::relay(&env, |_| {});
    let orders: Vec<Uuid> = (0..50).map(|_| Uuid::new_v4()).collect();
    for n in 0..8 {
        enqueue(&env, &orders, &[], n).await;
    }
    published(&env).await;
    relay.stop().await;

    // 400 events of about 400 bytes: 160 kB through a shard of 20 kB.
    let records = all_records(&env, 1).await;
    assert!(!records.is_empty());
    assert!(records.len() < 400, "kept {} of 400", records.len());
    let first = &records[0].1;
    assert!(first.sequence > 0, "the oldest segments are gone");
    assert_eq!(
        n_of(&records.last().expect("last").1),
        7,
        "the newest is kept"
    );
}

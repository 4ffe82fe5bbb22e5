//! The stream's consumer library against the real RabbitMQ and Postgres: effects written
//! with the checkpoint are applied exactly once across a crash; instances split the shards
//! and a live one takes a dead one's over; a reset replays.

use std::sync::Arc;
use std::time::{Duration, Instant};

use data::stream::consumer::{self, ConsumerConfig, Handler};
use data::stream::leases;
use data::stream::reader::{Position, Record};
use sqlx::PgConnection;
use testkit::{TestEnv, apps};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::stream::{enqueue, published};

/// Writes one row per record: the effect whose count the tests check.
struct Effects {
    instance: &'static str,
    pause: Duration,
}

impl Handler for Effects {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        shard: u16,
        records: &[Record],
    ) -> anyhow::Result<()> {
        for record in records {
            sqlx::query(
                "INSERT INTO test_effects (message_id, shard, sequence, instance) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(record.message_id.as_deref())
            .bind(i32::from(shard))
            .bind(record.sequence as i64)
            .bind(self.instance)
            .execute(&mut *tx)
            .await?;
        }
        tokio::time::sleep(self.pause).await;
        Ok(())
    }
}

async fn effects_table(env: &TestEnv) {
    sqlx::query(
        "CREATE TABLE test_effects (message_id text, shard int, sequence bigint, instance text)",
    )
    .execute(&env.pool)
    .await
    .expect("create");
}

/// (rows, distinct message ids) of the effects.
async fn effects(env: &TestEnv) -> (i64, i64) {
    sqlx::query_as("SELECT count(*), count(DISTINCT message_id) FROM test_effects")
        .fetch_one(&env.pool)
        .await
        .expect("count")
}

async fn held_by(env: &TestEnv, instance: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM stream_leases WHERE application = 'test-app' AND owner = $1 \
         AND expires_at > now()",
    )
    .bind(instance)
    .fetch_one(&env.pool)
    .await
    .expect("leases")
}

fn config(instance: &str) -> ConsumerConfig {
    ConsumerConfig {
        instance: instance.to_owned(),
        lease_duration: Duration::from_secs(2),
        renew_interval: Duration::from_millis(300),
        max_batch: 10,
        retry_delay: Duration::from_millis(100),
        ..ConsumerConfig::new("test-app", 4)
    }
}

fn start(
    env: &TestEnv,
    name: &'static str,
    pause: Duration,
) -> (tokio::task::JoinHandle<()>, CancellationToken) {
    let cancel = CancellationToken::new();
    let task = tokio::spawn(consumer::run(
        env.pool.clone(),
        env.data.amqp_url().to_owned(),
        config(name),
        Arc::new(Effects {
            instance: name,
            pause,
        }),
        cancel.clone(),
    ));
    (
        tokio::spawn(async move {
            let _ = task.await;
        }),
        cancel,
    )
}

async fn publish(env: &TestEnv, events: usize) {
    let relay = apps::relay(env, |_| {});
    let orders: Vec<Uuid> = (0..events / 3).map(|_| Uuid::new_v4()).collect();
    for n in 0..3 {
        enqueue(env, &orders, &[], n).await;
    }
    published(env).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_neither_loses_nor_repeats_an_effect() {
    let env = TestEnv::new().await;
    effects_table(&env).await;
    publish(&env, 300).await;

    // An instance whose batches take a while is dropped mid-way: no lease given back, its
    // open transaction rolled back.
    let cancel = CancellationToken::new();
    let crashing = tokio::spawn(consumer::run(
        env.pool.clone(),
        env.data.amqp_url().to_owned(),
        config("a"),
        Arc::new(Effects {
            instance: "a",
            pause: Duration::from_millis(30),
        }),
        cancel,
    ));
    testkit::eventually(Duration::from_secs(30), "some effects", || async {
        (effects(&env).await.0 >= 60).then_some(())
    })
    .await;
    crashing.abort();
    let _ = crashing.await;
    let (applied, _) = effects(&env).await;
    assert!(applied < 300, "stopped mid-way: {applied}");

    let (b, stop_b) = start(&env, "b", Duration::ZERO);
    testkit::eventually(Duration::from_secs(60), "every effect", || async {
        (effects(&env).await.0 >= 300).then_some(())
    })
    .await;
    // Nothing more arrives later.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(effects(&env).await, (300, 300), "each effect exactly once");
    stop_b.cancel();
    b.await.expect("b");
    assert_eq!(
        held_by(&env, "b").await,
        0,
        "a clean stop gives the leases back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_split_the_shards_and_a_live_one_takes_over_a_dead_ones() {
    let env = TestEnv::new().await;
    effects_table(&env).await;
    // The shards exist before anything is published.
    publish(&env, 0).await;

    let cancel = CancellationToken::new();
    let dying = tokio::spawn(consumer::run(
        env.pool.clone(),
        env.data.amqp_url().to_owned(),
        config("a"),
        Arc::new(Effects {
            instance: "a",
            pause: Duration::ZERO,
        }),
        cancel,
    ));
    let (b, stop_b) = start(&env, "b", Duration::ZERO);
    testkit::eventually(Duration::from_secs(20), "two shards each", || async {
        (held_by(&env, "a").await == 2 && held_by(&env, "b").await == 2).then_some(())
    })
    .await;
    publish(&env, 120).await;
    testkit::eventually(Duration::from_secs(30), "every effect", || async {
        (effects(&env).await.0 >= 120).then_some(())
    })
    .await;
    let split: Vec<(String, i64)> =
        sqlx::query_as("SELECT instance, count(*) FROM test_effects GROUP BY 1 ORDER BY 1")
            .fetch_all(&env.pool)
            .await
            .expect("split");
    assert_eq!(split.len(), 2, "both instances applied records: {split:?}");

    // A dies without giving its leases back.
    dying.abort();
    let _ = dying.await;
    let died = Instant::now();
    testkit::eventually(Duration::from_secs(20), "b holds every shard", || async {
        (held_by(&env, "b").await == 4).then_some(())
    })
    .await;
    let takeover = died.elapsed();
    eprintln!("takeover after {takeover:?} (lease 2 s, renewal 300 ms)");

    // What comes now is applied by b, in every shard.
    publish(&env, 60).await;
    testkit::eventually(Duration::from_secs(30), "the new effects", || async {
        (effects(&env).await.0 >= 180).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(effects(&env).await, (180, 180));

    // Replay: back to the beginning, every effect once more.
    leases::reset(&env.pool, "test-app", 4, Position::TrimHorizon)
        .await
        .expect("reset");
    testkit::eventually(Duration::from_secs(30), "the replay", || async {
        (effects(&env).await.0 >= 360).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        effects(&env).await,
        (360, 180),
        "each effect twice after one replay"
    );
    stop_b.cancel();
    b.await.expect("b");
}

/// Records per second through the stream with 1 and 4 shards: the relay publishing them
/// into the shards, then one consumer instance applying them (one row per record, a
/// transaction per batch of up to 100). A measurement, not a test:
/// `cargo test -p logic --test api stream_throughput -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run it by name"]
async fn stream_throughput() {
    const EVENTS: usize = 6000;
    for shards in [1u16, 4] {
        let mut env = TestEnv::new().await;
        env.data.stream.stream_shards = shards;
        effects_table(&env).await;
        let orders: Vec<Uuid> = (0..EVENTS / 3).map(|_| Uuid::new_v4()).collect();
        for n in 0..3 {
            enqueue(&env, &orders, &[], n).await;
        }
        let started = Instant::now();
        let relay = apps::relay(&env, |_| {});
        published(&env).await;
        let publishing = started.elapsed();
        relay.stop().await;

        let started = Instant::now();
        let cancel = CancellationToken::new();
        let instance = tokio::spawn(consumer::run(
            env.pool.clone(),
            env.data.amqp_url().to_owned(),
            ConsumerConfig {
                max_batch: 100,
                prefetch: 500,
                ..ConsumerConfig::new("throughput", shards)
            },
            Arc::new(Effects {
                instance: "one",
                pause: Duration::ZERO,
            }),
            cancel.clone(),
        ));
        testkit::eventually(Duration::from_secs(300), "every record applied", || async {
            (effects(&env).await.0 >= EVENTS as i64).then_some(())
        })
        .await;
        let consuming = started.elapsed();
        cancel.cancel();
        let _ = instance.await;
        println!(
            "{shards} shard(s), {EVENTS} records: relay into the stream {:.0} records/s, one \
             consumer instance {:.0} records/s",
            EVENTS as f64 / publishing.as_secs_f64(),
            EVENTS as f64 / consuming.as_secs_f64()
        );
    }
}

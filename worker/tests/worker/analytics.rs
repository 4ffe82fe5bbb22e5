//! `worker analytics` against the real RabbitMQ and Postgres: windows by event time with
//! late events, exactly-once across a crash, replays that reproduce the windows, and two
//! real processes splitting the shards, one SIGKILLed.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use contracts::{
    EVENTS_EXCHANGE, Envelope, EventLine, MessageKind, OrderFulfilled, OrderPlaced, OrderRejected,
};
use data::messaging::outbox;
use data::stream::consumer::{self, ConsumerConfig, Handler};
use data::stream::reader::Record;
use secrecy::ExposeSecret;
use sqlx::PgConnection;
use testkit::{TestEnv, apps};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use worker::streams::analytics::{Analytics, Replay, store, windows::minute_of};

const APP: &str = "analytics";

/// An order event to publish, with its own event time.
enum Event {
    Placed(OrderPlaced),
    Fulfilled(OrderFulfilled),
    Rejected(OrderRejected),
}

fn line(sku: &str, category: &str, quantity: i32, unit_price_cents: i64) -> EventLine {
    EventLine {
        sku: sku.into(),
        name: String::new(),
        category: category.into(),
        quantity,
        unit_price_cents,
    }
}

fn total(lines: &[EventLine]) -> i64 {
    lines
        .iter()
        .map(|l| i64::from(l.quantity) * l.unit_price_cents)
        .sum()
}

fn placed(order_id: Uuid, lines: Vec<EventLine>) -> Event {
    Event::Placed(OrderPlaced {
        order_id,
        email: String::new(),
        total_cents: total(&lines),
        lines,
    })
}

fn fulfilled(order_id: Uuid, lines: Vec<EventLine>) -> Event {
    Event::Fulfilled(OrderFulfilled {
        order_id,
        total_cents: total(&lines),
        email: String::new(),
        lines,
    })
}

fn rejected(order_id: Uuid, lines: Vec<EventLine>) -> Event {
    Event::Rejected(OrderRejected {
        order_id,
        reason: "out_of_stock".into(),
        total_cents: total(&lines),
        email: String::new(),
        lines,
    })
}

async fn enqueue_one<T: MessageKind>(
    tx: &mut PgConnection,
    key: &str,
    payload: T,
    at: DateTime<Utc>,
) {
    let mut envelope = Envelope::new(payload, None);
    envelope.occurred_at = at;
    outbox::enqueue(tx, EVENTS_EXCHANGE, key, &envelope)
        .await
        .expect("enqueue");
}

/// Writes the events to the outbox, in this order, and waits until the relay published them.
async fn publish(env: &TestEnv, events: Vec<(DateTime<Utc>, Event)>) {
    let relay = apps::relay(env, |_| {});
    let mut tx = env.pool.begin().await.expect("begin");
    for (at, event) in events {
        match event {
            Event::Placed(p) => enqueue_one(&mut tx, "order.placed", p, at).await,
            Event::Fulfilled(f) => enqueue_one(&mut tx, "order.fulfilled", f, at).await,
            Event::Rejected(r) => enqueue_one(&mut tx, "order.rejected", r, at).await,
        }
    }
    tx.commit().await.expect("commit");
    testkit::eventually(Duration::from_secs(30), "the outbox published", || async {
        (outbox::backlog(&env.pool).await.ok()? == 0).then_some(())
    })
    .await;
    relay.stop().await;
}

/// A window: start, placed, placed_cents, fulfilled, revenue_cents, rejected, late_events.
type WindowRow = (DateTime<Utc>, i64, i64, i64, i64, i64, i64);
/// A minute's fulfilled count and revenue.
type Minute = (DateTime<Utc>, i64, i64);

/// Every window, category and product row of the application, in order: what replays
/// must reproduce.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    windows: Vec<WindowRow>,
    categories: Vec<(DateTime<Utc>, String, i64, i64)>,
    products: Vec<(DateTime<Utc>, String, i64, i64)>,
}

async fn snapshot(env: &TestEnv) -> Snapshot {
    Snapshot {
        windows: sqlx::query_as(
            "SELECT window_start, placed, placed_cents, fulfilled, revenue_cents, rejected, \
                 late_events FROM analytics_windows WHERE application = $1 ORDER BY 1",
        )
        .bind(APP)
        .fetch_all(&env.pool)
        .await
        .expect("windows"),
        categories: sqlx::query_as(
            "SELECT window_start, category, placed, revenue_cents \
             FROM analytics_window_categories WHERE application = $1 ORDER BY 1, 2",
        )
        .bind(APP)
        .fetch_all(&env.pool)
        .await
        .expect("categories"),
        products: sqlx::query_as(
            "SELECT window_start, sku, units, revenue_cents FROM analytics_window_products \
             WHERE application = $1 ORDER BY 1, 2",
        )
        .bind(APP)
        .fetch_all(&env.pool)
        .await
        .expect("products"),
    }
}

/// Waits until the windows are `expected` and stay so (nothing counted twice later).
async fn settle_at(env: &TestEnv, expected: &Snapshot, what: &str) {
    testkit::eventually(Duration::from_secs(60), what, || async {
        (snapshot(env).await == *expected).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(snapshot(env).await, *expected, "{what}, and nothing more");
}

fn config(shards: u16) -> ConsumerConfig {
    ConsumerConfig {
        lease_duration: Duration::from_secs(2),
        renew_interval: Duration::from_millis(300),
        max_batch: 10,
        retry_delay: Duration::from_millis(100),
        ..ConsumerConfig::new(APP, shards)
    }
}

/// The analytics handler, pausing after each batch: a crash then finds batches in flight.
struct Slow(Analytics, Duration);

impl Handler for Slow {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        shard: u16,
        records: &[Record],
    ) -> anyhow::Result<()> {
        self.0.handle(tx, shard, records).await?;
        tokio::time::sleep(self.1).await;
        Ok(())
    }
}

fn start(
    env: &TestEnv,
    shards: u16,
    lateness: Duration,
    pause: Duration,
) -> (
    tokio::task::JoinHandle<anyhow::Result<()>>,
    CancellationToken,
) {
    let cancel = CancellationToken::new();
    let task = tokio::spawn(consumer::run(
        env.pool.clone(),
        env.data.amqp_url().to_owned(),
        config(shards),
        Arc::new(Slow(Analytics::new(APP, lateness), pause)),
        cancel.clone(),
    ));
    (task, cancel)
}

fn w(start: DateTime<Utc>, figures: (i64, i64, i64, i64, i64, i64)) -> WindowRow {
    let (placed, placed_cents, fulfilled, revenue, rejected, late) = figures;
    (
        start,
        placed,
        placed_cents,
        fulfilled,
        revenue,
        rejected,
        late,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_by_event_time_count_late_events_and_replays_reproduce_them() {
    let mut env = TestEnv::new().await;
    // One shard: the order of the records, and so each event's lateness, is the order
    // of publication.
    env.data.stream.stream_shards = 1;
    let b = minute_of(Utc::now()) - TimeDelta::minutes(10);
    let s = |secs: i64| b + TimeDelta::seconds(secs);
    let (o1, o2, o3, o4, o5) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let kit = |q| line("KIT-1", "Kitchen", q, 1000);
    let lamp = |q| line("LAMP-1", "Lamps", q, 5000);
    publish(
        &env,
        vec![
            (s(10), placed(o1, vec![kit(2)])),
            (s(20), fulfilled(o1, vec![kit(2)])),
            (s(70), placed(o2, vec![lamp(1)])),
            (s(80), rejected(o2, vec![lamp(1)])),
            (s(130), placed(o3, vec![kit(1), lamp(1)])),
            (s(150), fulfilled(o3, vec![kit(1), lamp(1)])),
        ],
    )
    .await;
    // The shard's watermark is now b+150 s - 60 s = b+90 s.
    publish(
        &env,
        vec![
            // Within the lateness: counted in b+1 min.
            (
                s(100),
                fulfilled(o4, vec![line("KIT-2", "Kitchen", 3, 1000)]),
            ),
            // Beyond it: a late event of b+0.
            (s(50), fulfilled(o5, vec![kit(9)])),
        ],
    )
    .await;

    let (m0, m1, m2) = (b, s(60), s(120));
    let expected = Snapshot {
        windows: vec![
            w(m0, (1, 2000, 1, 2000, 0, 1)),
            w(m1, (1, 5000, 1, 3000, 1, 0)),
            w(m2, (1, 6000, 1, 6000, 0, 0)),
        ],
        categories: vec![
            (m0, "Kitchen".into(), 1, 2000),
            (m1, "Kitchen".into(), 0, 3000),
            (m1, "Lamps".into(), 1, 0),
            (m2, "Kitchen".into(), 1, 1000),
            (m2, "Lamps".into(), 1, 5000),
        ],
        products: vec![
            (m0, "KIT-1".into(), 2, 2000),
            (m1, "KIT-2".into(), 3, 3000),
            (m2, "KIT-1".into(), 1, 1000),
            (m2, "LAMP-1".into(), 1, 5000),
        ],
    };
    let (task, cancel) = start(&env, 1, Duration::from_secs(60), Duration::ZERO);
    settle_at(&env, &expected, "the windows of the events").await;
    let watermark: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT watermark FROM analytics_shards WHERE application = $1")
            .bind(APP)
            .fetch_one(&env.pool)
            .await
            .expect("watermark");
    assert_eq!(watermark, Some(s(90)));

    // Replay from TRIM_HORIZON: everything cleared and recomputed, the same windows.
    store::replay(&env.pool, APP, 1, Replay::TrimHorizon)
        .await
        .expect("replay");
    settle_at(
        &env,
        &expected,
        "the windows after a replay from TRIM_HORIZON",
    )
    .await;

    // Replay from a timestamp inside b+1: b+1 and b+2 are recomputed, b+0 kept (its late
    // event, read again after the start, is not counted twice).
    store::replay(&env.pool, APP, 1, Replay::From(s(75)))
        .await
        .expect("replay");
    let kept: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM analytics_windows WHERE application = $1 AND window_start >= $2",
    )
    .bind(APP)
    .bind(m1)
    .fetch_one(&env.pool)
    .await
    .expect("count");
    assert!(kept <= 2);
    settle_at(&env, &expected, "the windows after a replay from b+1 min").await;
    cancel.cancel();
    task.await.expect("join").expect("the instance");
}

/// `n` fulfilled orders, event times spread over five minutes in publication order, and
/// the windows they make (no late event under an hour's lateness).
fn spread(
    start: DateTime<Utc>,
    n: usize,
    first_price: i64,
) -> (Vec<(DateTime<Utc>, Event)>, Vec<Minute>) {
    let mut events = Vec::new();
    let mut per_minute: std::collections::BTreeMap<DateTime<Utc>, (i64, i64)> = Default::default();
    for i in 0..n {
        let at = start + TimeDelta::milliseconds((i as i64) * 300_000 / n as i64);
        let price = first_price + i as i64;
        events.push((
            at,
            fulfilled(Uuid::new_v4(), vec![line("SPREAD-1", "Garden", 1, price)]),
        ));
        let e = per_minute.entry(minute_of(at)).or_default();
        e.0 += 1;
        e.1 += price;
    }
    (
        events,
        per_minute
            .into_iter()
            .map(|(m, (c, r))| (m, c, r))
            .collect(),
    )
}

async fn fulfilled_windows(env: &TestEnv) -> Vec<Minute> {
    sqlx::query_as(
        "SELECT window_start, fulfilled, revenue_cents FROM analytics_windows \
         WHERE application = $1 ORDER BY 1",
    )
    .bind(APP)
    .fetch_all(&env.pool)
    .await
    .expect("windows")
}

fn add_up(a: &[Minute], b: &[Minute]) -> Vec<Minute> {
    let mut sum: std::collections::BTreeMap<DateTime<Utc>, (i64, i64)> = Default::default();
    for (m, c, r) in a.iter().chain(b) {
        let e = sum.entry(*m).or_default();
        e.0 += c;
        e.1 += r;
    }
    sum.into_iter().map(|(m, (c, r))| (m, c, r)).collect()
}

async fn counted(env: &TestEnv) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(sum(fulfilled), 0)::bigint FROM analytics_windows WHERE application = $1",
    )
    .bind(APP)
    .fetch_one(&env.pool)
    .await
    .expect("sum")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_way_neither_loses_nor_double_counts_an_event() {
    let env = TestEnv::new().await;
    let (events, expected) = spread(minute_of(Utc::now()) - TimeDelta::minutes(20), 300, 100);
    publish(&env, events).await;

    let (crashing, _never) = start(
        &env,
        4,
        Duration::from_secs(3600),
        Duration::from_millis(30),
    );
    testkit::eventually(Duration::from_secs(30), "some events counted", || async {
        (counted(&env).await >= 60).then_some(())
    })
    .await;
    // Dropped mid-way: no lease given back, the open transaction rolled back.
    crashing.abort();
    let _ = crashing.await;
    assert!(counted(&env).await < 300, "stopped mid-way");

    let (task, cancel) = start(&env, 4, Duration::from_secs(3600), Duration::ZERO);
    testkit::eventually(Duration::from_secs(60), "every event counted", || async {
        (fulfilled_windows(&env).await == expected).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fulfilled_windows(&env).await, expected, "each event once");
    cancel.cancel();
    task.await.expect("join").expect("the instance");
}

fn analytics_process(env: &TestEnv, instance: &str) -> Child {
    let data = &env.data;
    Command::new(env!("CARGO_BIN_EXE_worker"))
        .arg("analytics")
        .env("DATABASE_URL", data.database_url.expose_secret())
        .env("AMQP_URL", data.amqp_url.expose_secret())
        .env("REDIS_URL", data.redis_url.expose_secret())
        .env("STREAM_SHARDS", data.stream.stream_shards.to_string())
        .env("ANALYTICS_INSTANCE", instance)
        .env("ANALYTICS_LEASE_SECS", "3")
        .env("ANALYTICS_RENEW_MS", "500")
        .env("ANALYTICS_ALLOWED_LATENESS_SECS", "3600")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("starting worker analytics")
}

async fn held_by(env: &TestEnv, instance: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM stream_leases WHERE application = $1 AND owner = $2 \
         AND expires_at > now()",
    )
    .bind(APP)
    .bind(instance)
    .fetch_one(&env.pool)
    .await
    .expect("leases")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_split_the_shards_and_one_takes_over_when_the_other_is_sigkilled() {
    let env = TestEnv::new().await;
    // The shards exist before the processes start.
    publish(&env, Vec::new()).await;
    let mut a = analytics_process(&env, "proc-a");
    let mut b = analytics_process(&env, "proc-b");
    testkit::eventually(Duration::from_secs(60), "two shards each", || async {
        (held_by(&env, "proc-a").await == 2 && held_by(&env, "proc-b").await == 2).then_some(())
    })
    .await;

    let start = minute_of(Utc::now()) - TimeDelta::minutes(30);
    let (first, first_windows) = spread(start, 400, 100);
    let publishing = publish(&env, first);
    let killing = async {
        testkit::eventually(Duration::from_secs(60), "some events counted", || async {
            (counted(&env).await >= 50).then_some(())
        })
        .await;
        a.kill().await.expect("SIGKILL");
        Instant::now()
    };
    let ((), killed) = tokio::join!(publishing, killing);
    testkit::eventually(Duration::from_secs(30), "b holds every shard", || async {
        (held_by(&env, "proc-b").await == 4).then_some(())
    })
    .await;
    let takeover = killed.elapsed();
    eprintln!("takeover by the surviving process after {takeover:?} (lease 3 s, renewal 500 ms)");

    let (second, second_windows) = spread(start + TimeDelta::minutes(10), 200, 1000);
    publish(&env, second).await;
    let expected = add_up(&first_windows, &second_windows);
    testkit::eventually(Duration::from_secs(90), "every event counted", || async {
        (fulfilled_windows(&env).await == expected).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        fulfilled_windows(&env).await,
        expected,
        "each event exactly once"
    );
    let status = std::process::Command::new("kill")
        .args(["-TERM", &b.id().expect("pid").to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), b.wait())
        .await
        .expect("b stops on SIGTERM")
        .expect("wait");
    assert!(exit.success(), "{exit:?}");
    assert_eq!(
        held_by(&env, "proc-b").await,
        0,
        "a clean stop gives the leases back"
    );
}

/// The analytics handler, recording for each record how long after its event time the
/// window row changed (`clock_timestamp()` in the batch's transaction).
struct Timed(Analytics);

impl Handler for Timed {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        shard: u16,
        records: &[Record],
    ) -> anyhow::Result<()> {
        self.0.handle(tx, shard, records).await?;
        let times: Vec<DateTime<Utc>> = records.iter().filter_map(|r| r.timestamp).collect();
        sqlx::query(
            "INSERT INTO test_lag (lag_ms) \
             SELECT extract(epoch FROM clock_timestamp() - t) * 1000 \
             FROM unnest($1::timestamptz[]) AS t",
        )
        .bind(&times)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

/// Event time → window row updated, under a modest load: 20 orders a second for 30 s
/// placed into the outbox with the event time of that moment, the relay running, one
/// instance on four shards. A measurement, not a test:
/// `cargo test -p worker --test worker analytics_lag -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run it by name"]
async fn analytics_lag() {
    const RATE: u64 = 20;
    const SECONDS: u64 = 30;
    let env = TestEnv::new().await;
    sqlx::query("CREATE TABLE test_lag (lag_ms double precision)")
        .execute(&env.pool)
        .await
        .expect("table");
    publish(&env, Vec::new()).await;
    let relay = apps::relay(&env, |_| {});
    let cancel = CancellationToken::new();
    let instance = tokio::spawn(consumer::run(
        env.pool.clone(),
        env.data.amqp_url().to_owned(),
        ConsumerConfig::new(APP, 4),
        Arc::new(Timed(Analytics::new(APP, Duration::from_secs(60)))),
        cancel.clone(),
    ));
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / RATE));
    for i in 0..RATE * SECONDS {
        tick.tick().await;
        let mut tx = env.pool.begin().await.expect("begin");
        let event = OrderFulfilled {
            order_id: Uuid::new_v4(),
            total_cents: 100 + i as i64,
            email: String::new(),
            lines: vec![line("LAG-1", "Garden", 1, 100 + i as i64)],
        };
        enqueue_one(&mut tx, "order.fulfilled", event, Utc::now()).await;
        tx.commit().await.expect("commit");
    }
    let total = (RATE * SECONDS) as i64;
    testkit::eventually(Duration::from_secs(120), "every event counted", || async {
        (counted(&env).await >= total).then_some(())
    })
    .await;
    let (median, p99, max): (f64, f64, f64) = sqlx::query_as(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag_ms), \
                percentile_cont(0.99) WITHIN GROUP (ORDER BY lag_ms), max(lag_ms) FROM test_lag",
    )
    .fetch_one(&env.pool)
    .await
    .expect("figures");
    println!(
        "{total} events at {RATE}/s: event time -> window row updated: median {median:.0} ms, \
         p99 {p99:.0} ms, max {max:.0} ms (relay, stream, one analytics instance, 4 shards)"
    );
    cancel.cancel();
    let _ = instance.await;
    relay.stop().await;
}

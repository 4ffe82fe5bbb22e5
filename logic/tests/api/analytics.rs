//! The ops views of the event stream: `GET /api/v1/ops/analytics` over the windows
//! `worker analytics` keeps, and `GET /api/v1/ops/stream` over the shards, checkpoints and
//! leases.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use data::stream::leases;
use data::stream::reader::{Position, Reader};
use serde_json::Value;
use testkit::{TestEnv, apps};
use uuid::Uuid;

use crate::helpers::{ADMIN_TOKEN, TestApp, assert_error, spawn_app, spawn_app_with};
use crate::stream::{enqueue, patient, published};

/// The current minute, at least a few seconds before it ends (the test's requests then
/// see the same current minute).
async fn this_minute() -> DateTime<Utc> {
    let left = 60 - Utc::now().timestamp().rem_euclid(60);
    if left < 5 {
        tokio::time::sleep(Duration::from_secs(left as u64 + 1)).await;
    }
    let now = Utc::now();
    DateTime::from_timestamp(now.timestamp().div_euclid(60) * 60, 0).expect("minute")
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let res = app
        .http
        .get(app.url(path))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.expect("JSON"))
}

async fn window(app: &TestApp, start: DateTime<Utc>, figures: [i64; 6]) {
    sqlx::query(
        "INSERT INTO analytics_windows (application, window_start, placed, placed_cents, \
             fulfilled, revenue_cents, rejected, late_events) \
         VALUES ('analytics', $1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(start)
    .bind(figures[0])
    .bind(figures[1])
    .bind(figures[2])
    .bind(figures[3])
    .bind(figures[4])
    .bind(figures[5])
    .execute(&app.env.pool)
    .await
    .expect("window");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_shows_the_last_minutes_oldest_first_with_gaps_as_zeros() {
    let app = spawn_app().await;
    let now = this_minute().await;
    let old = now - TimeDelta::minutes(2);
    window(&app, old, [4, 4000, 3, 3000, 1, 2]).await;
    window(&app, now, [1, 100, 0, 0, 0, 0]).await;
    // Outside the three minutes asked for.
    window(&app, now - TimeDelta::minutes(5), [9, 9, 9, 9, 9, 9]).await;
    for (sku, units, cents) in [
        ("A", 1, 100),
        ("B", 2, 900),
        ("C", 3, 500),
        ("D", 1, 50),
        ("E", 1, 40),
        ("F", 9, 30),
    ] {
        sqlx::query("INSERT INTO analytics_window_products VALUES ('analytics', $1, $2, $3, $4)")
            .bind(old)
            .bind(sku)
            .bind(units)
            .bind(cents)
            .execute(&app.env.pool)
            .await
            .expect("product");
    }
    sqlx::query(
        "INSERT INTO analytics_window_categories VALUES ('analytics', $1, 'Lamps', 1, 900), \
         ('analytics', $1, 'Kitchen', 3, 2100)",
    )
    .bind(old)
    .execute(&app.env.pool)
    .await
    .expect("categories");
    // Four shards (the default), each with a watermark: the view's is the lowest.
    for shard in 0..4 {
        sqlx::query(
            "INSERT INTO analytics_shards (application, shard, max_event_time, watermark) \
             VALUES ('analytics', $1, $2, $3)",
        )
        .bind(shard)
        .bind(now + TimeDelta::seconds(i64::from(shard)))
        .bind(now - TimeDelta::seconds(60 - i64::from(shard)))
        .execute(&app.env.pool)
        .await
        .expect("shard");
    }

    let (status, body) = get(&app, "/api/v1/ops/analytics?minutes=3").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["application"], "analytics");
    let windows = body["windows"].as_array().expect("windows");
    assert_eq!(windows.len(), 3);
    let start = |w: &Value| {
        w["start"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap()
    };
    assert_eq!(start(&windows[0]), old);
    assert_eq!(start(&windows[2]), now);
    let first = &windows[0];
    assert_eq!(
        (
            first["placed"].as_i64(),
            first["fulfilled"].as_i64(),
            first["revenue_cents"].as_i64()
        ),
        (Some(4), Some(3), Some(3000))
    );
    assert_eq!(first["rejection_rate"], 0.25);
    assert_eq!(first["late_events"], 2);
    let skus: Vec<&str> = first["top_products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["sku"].as_str().unwrap())
        .collect();
    assert_eq!(skus, ["B", "C", "A", "D", "E"], "five, by revenue");
    assert_eq!(first["categories"][0]["category"], "Kitchen");
    // A minute without events is zeros, with no rate.
    assert_eq!(windows[1]["placed"], 0);
    assert_eq!(windows[1]["rejection_rate"], Value::Null);
    assert_eq!(windows[1]["updated_at"], Value::Null);
    assert_eq!(windows[2]["rejection_rate"], Value::Null);
    assert_eq!(body["late_events"], 2);
    let watermark: DateTime<Utc> = body["watermark"].as_str().unwrap().parse().unwrap();
    assert_eq!(watermark, now - TimeDelta::seconds(60));
    assert_eq!(body["shards"].as_array().unwrap().len(), 4);

    // The default is 15 minutes; another application has none of these.
    let (_, body) = get(&app, "/api/v1/ops/analytics").await;
    assert_eq!(body["windows"].as_array().unwrap().len(), 15);
    let (_, body) = get(&app, "/api/v1/ops/analytics?application=other&minutes=2").await;
    assert_eq!(body["windows"][0]["placed"], 0);
    assert_eq!(body["watermark"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_views_want_the_admin_token_good_parameters_and_get() {
    let app = spawn_app().await;
    for path in ["/api/v1/ops/analytics", "/api/v1/ops/stream"] {
        let res = app.http.get(app.url(path)).send().await.unwrap();
        assert_error(res, 401, "unauthorized").await;
        let res = app
            .http
            .get(app.url(path))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_error(res, 401, "unauthorized").await;
        let res = app
            .http
            .post(app.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["allow"], "GET");
        assert_error(res, 405, "method_not_allowed").await;
    }
    for minutes in ["0", "1441", "abc", "-1", "2.5", ""] {
        let res = app
            .http
            .get(app.url(&format!("/api/v1/ops/analytics?minutes={minutes}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_error(res, 400, "invalid_query").await;
    }
    let (status, _) = get(&app, "/api/v1/ops/analytics?minutes=1440").await;
    assert_eq!(status, 200);
    let (_, doc) = get(&app, "/api/v1/openapi.json").await;
    for path in ["/api/v1/ops/analytics", "/api/v1/ops/stream"] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} documented");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_view_shows_lengths_checkpoints_lags_and_lease_holders() {
    // Patient reads of the shards' bounds, for a busy machine.
    let app = spawn_app_with(TestEnv::new().await, |s| {
        s.stream_read_wait_ms = 5000;
        s.stream_read_idle_ms = 500;
    })
    .await;
    let env = &app.env;
    let relay = apps::relay(env, |_| {});
    let orders: Vec<Uuid> = (0..40).map(|_| Uuid::new_v4()).collect();
    enqueue(env, &orders, &[], 0).await;
    published(env).await;
    relay.stop().await;

    let reader = Reader::open(env.data.amqp_url(), "test-bounds")
        .await
        .expect("reader")
        .with_waits(patient());
    let bounds = reader.bounds(0).await.expect("bounds");
    reader.close().await;
    let (first, last) = (bounds.first.expect("first"), bounds.last.expect("last"));
    assert!(last > first, "shard 0 has several records");

    leases::ensure(&env.pool, "analytics", 4)
        .await
        .expect("ensure");
    let taken = leases::take_free(&env.pool, "analytics", "inst-1", Duration::from_secs(60), 4)
        .await
        .expect("take");
    assert_eq!(taken.len(), 4);
    let mut conn = env.pool.acquire().await.expect("conn");
    leases::save(&mut conn, "analytics", 0, Position::AfterSequence(first))
        .await
        .expect("checkpoint");
    leases::save(&mut conn, "archive", 1, Position::TrimHorizon)
        .await
        .expect("checkpoint");
    drop(conn);

    let (status, body) = get(&app, "/api/v1/ops/stream").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stream"], "events");
    assert_eq!(body["broker_reachable"], true);
    let shards = body["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 4);
    let zero = &shards[0];
    assert_eq!(zero["queue"], "events.shard.0");
    assert_eq!(zero["first_sequence"], first);
    assert_eq!(zero["last_sequence"], last);
    assert_eq!(zero["length"], last + 1 - first);
    let analytics = &zero["applications"][0];
    assert_eq!(analytics["application"], "analytics");
    assert_eq!(analytics["checkpoint"], "after_sequence");
    assert_eq!(analytics["checkpoint_sequence"], first);
    assert_eq!(analytics["lag"], last - first);
    assert_eq!(analytics["holder"], "inst-1");
    assert!(analytics["lease_expires_at"].is_string());
    // An application with a checkpoint and no lease: nobody holds it.
    let archive = shards[1]["applications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["application"] == "archive")
        .expect("archive in shard 1");
    assert_eq!(archive["holder"], Value::Null);
    assert_eq!(archive["checkpoint"], "trim_horizon");
    // Shard 2: held, never read.
    assert_eq!(shards[2]["applications"][0]["checkpoint"], Value::Null);
    assert_eq!(shards[2]["applications"][0]["lag"], Value::Null);
}

//! Postgres dropping logic's connections: a request served on a connection the server
//! ended is repeated on a fresh one when that is safe, and a database out of reach is a
//! 503 with Retry-After and a stable code, never a 500.

use std::time::{Duration, Instant};

use contracts::Order;
use secrecy::{ExposeSecret, SecretString};
use sqlx::Connection;
use testkit::proxy::Proxy;

use crate::helpers::{TestApp, assert_error, order_body, spawn_app, spawn_app_with};

/// Ends every backend of the test's database but the one asking, as an administrator
/// (or a fast shutdown) does: each gets 57P01 "terminating connection due to administrator
/// command". Only this test's database: the services are shared. Returns at once when
/// those backends are gone, well within the second after which logic's pool pings an idle
/// connection before handing it out (the relay reconnects meanwhile: new backends).
async fn terminate_backends(app: &TestApp) -> usize {
    let mut admin = sqlx::PgConnection::connect(app.env.data.database_url.expose_secret())
        .await
        .expect("admin connection");
    let ended: Vec<i32> = sqlx::query_scalar(
        "WITH others AS MATERIALIZED (SELECT pid FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()) \
         SELECT pid FROM others WHERE pg_terminate_backend(pid)",
    )
    .bind(&app.env.database)
    .fetch_all(&mut admin)
    .await
    .expect("pg_terminate_backend");
    let start = Instant::now();
    loop {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)")
                .bind(&ended)
                .fetch_one(&mut admin)
                .await
                .expect("counting backends");
        if left == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "backends still there"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = admin.close().await;
    ended.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_on_connections_the_server_ended_are_served_on_fresh_ones() {
    let app = spawn_app().await;
    app.env.product("CONN-1", 500, 1000).await;
    let placed = app.place_order("conn@example.com", &[("CONN-1", 1)]).await;
    let path = format!("/api/v1/orders/{}", placed.id);
    for round in 0..3 {
        // Fill logic's pool with connections used a moment ago (a connection idle for a
        // second or more is pinged before use; these are not).
        let reads = (0..6).map(|_| app.get(&path));
        for res in futures_util::future::join_all(reads).await {
            assert_eq!(res.status(), 200);
        }
        let ended = terminate_backends(&app).await;
        assert!(ended > 0, "logic held connections");

        // A read on pooled connections the server has ended.
        let res = app.get(&path).await;
        assert_eq!(
            res.status(),
            200,
            "round {round}: {}",
            res.text().await.unwrap_or_default()
        );
        // Again, for the write alone.
        for res in futures_util::future::join_all((0..6).map(|_| app.get(&path))).await {
            assert_eq!(res.status(), 200);
        }
        assert!(terminate_backends(&app).await > 0);
        let res = app
            .post_order(&order_body("conn@example.com", &[("CONN-1", 1)]), None)
            .await;
        assert_eq!(
            res.status(),
            202,
            "round {round}: {}",
            res.text().await.unwrap_or_default()
        );
        let order: Order = res.json().await.expect("json");
        assert_eq!(app.order(order.id).await.id, order.id);
    }
    // The test's own pool lost its connections too: count on a new one.
    let mut conn = sqlx::PgConnection::connect(app.env.data.database_url.expose_secret())
        .await
        .expect("connection");
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    let _ = conn.close().await;
    assert_eq!(orders, 4, "each accepted order written once");
    // Each request met a connection the server had ended and was repeated on a fresh one
    // (the counters are the process's: other tests can only add to them).
    let metrics = app.metrics().await;
    for what in ["orders.get", "orders.place"] {
        let retries = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("strata_db_retries_total{{what=\"{what}\"}} ")))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        assert!(retries >= 3.0, "{what}: {retries} retries\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_database_is_a_503_with_retry_after_never_a_500() {
    let env = testkit::TestEnv::new().await;
    env.product("CONN-2", 500, 10).await;
    let proxy = Proxy::start("127.0.0.1:5432".parse().expect("addr")).await;
    let direct = env.data.database_url.expose_secret().to_owned();
    let via_proxy = direct.replace("127.0.0.1:5432", &proxy.addr().to_string());
    assert_ne!(direct, via_proxy, "the test database is on 127.0.0.1:5432");
    let app = spawn_app_with(env, |s| {
        s.data.database_url = SecretString::from(via_proxy.clone());
        s.data.database_acquire_timeout_ms = 500;
    })
    .await;
    let placed = app.place_order("cut@example.com", &[("CONN-2", 1)]).await;

    proxy.cut();
    for _ in 0..3 {
        let res = app.get(&format!("/api/v1/orders/{}", placed.id)).await;
        assert_eq!(
            res.headers().get("Retry-After").map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
        assert_error(res, 503, "service_unavailable").await;
        let res = app
            .post_order(
                &order_body("cut@example.com", &[("CONN-2", 1)]),
                Some("cut-key-1"),
            )
            .await;
        assert_eq!(
            res.headers().get("Retry-After").map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
        assert_error(res, 503, "service_unavailable").await;
    }

    // Back: the client's retry with the same key places the order once.
    proxy.restore();
    let res = testkit::eventually(Duration::from_secs(15), "the database back", || async {
        let res = app
            .post_order(
                &order_body("cut@example.com", &[("CONN-2", 1)]),
                Some("cut-key-1"),
            )
            .await;
        (res.status() == 202).then_some(res)
    })
    .await;
    let order: Order = res.json().await.expect("json");
    let again = app
        .post_order(
            &order_body("cut@example.com", &[("CONN-2", 1)]),
            Some("cut-key-1"),
        )
        .await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.json::<Order>().await.expect("json").id, order.id);
}

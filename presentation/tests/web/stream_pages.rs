//! The console's views of the event stream: the analytics page with its live JSON route
//! and script, and the stream's shard table, through a real logic on the test's services.

use chrono::{DateTime, Utc};

use crate::helpers::{OPS_PASSWORD, spawn_shop_with, with_ops};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_analytics_and_stream_pages_show_logics_figures_and_update_from_json() {
    let shop = spawn_shop_with(with_ops).await;
    let c = &shop.client;
    // Before a login: the pages send to the login, the JSON says 401.
    assert_eq!(c.get("/ops/analytics").await.location(), "/ops/login");
    assert_eq!(c.get("/ops/stream").await.location(), "/ops/login");
    let res = c
        .http
        .get(c.url("/ops/analytics.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    let now = Utc::now();
    let minute = DateTime::from_timestamp(now.timestamp().div_euclid(60) * 60, 0).unwrap();
    sqlx::query(
        "INSERT INTO analytics_windows (application, window_start, placed, placed_cents, \
             fulfilled, revenue_cents, rejected, late_events) \
         VALUES ('analytics', $1, 7, 7000, 3, 123456, 1, 2)",
    )
    .bind(minute)
    .execute(&shop.env.pool)
    .await
    .expect("window");
    sqlx::query("INSERT INTO analytics_window_products VALUES ('analytics', $1, 'KIT-9', 4, 4000)")
        .bind(minute)
        .execute(&shop.env.pool)
        .await
        .expect("product");

    assert_eq!(c.ops_login("admin", OPS_PASSWORD).await.status, 303);
    let page = c.get("/ops/analytics").await;
    assert_eq!(page.status, 200, "{}", page.body);
    for text in [
        "$1,234.56",
        "25.0%",
        "KIT-9 (4 units",
        "/static/ops_analytics.js",
        "href=\"/ops/stream\"",
        "data-source=\"/ops/analytics.json",
    ] {
        assert!(page.body.contains(text), "{text} in {}", page.body);
    }
    assert!(!page.body.contains("<script>"), "no inline script");

    let res = c
        .http
        .get(c.url("/ops/analytics.json?minutes=5"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let view: contracts::AnalyticsView = res.json().await.expect("the view");
    assert_eq!(view.windows.len(), 5);
    let last = view.windows.last().unwrap();
    assert_eq!((last.placed, last.revenue_cents), (7, 123_456));
    let res = c
        .http
        .get(c.url("/ops/analytics.json?minutes=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    let script = c.get("/static/ops_analytics.js").await;
    assert_eq!(script.status, 200);
    assert!(
        script.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(script.body.contains("/ops/analytics") || script.body.contains("data-source"));

    let page = c.get("/ops/stream").await;
    assert_eq!(page.status, 200, "{}", page.body);
    for shard in 0..4 {
        assert!(
            page.body.contains(&format!("events.shard.{shard}")),
            "shard {shard} in {}",
            page.body
        );
    }
}

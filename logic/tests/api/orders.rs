use std::time::Duration;

use contracts::OrderStatus;
use futures_util::future::join_all;

use crate::helpers::{order_body, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_placed_over_http_is_fulfilled_by_a_worker() {
    let mut app = spawn_app().await;
    app.env.product("LAMP-1", 2500, 5).await;
    app.spawn_worker(10);

    let res = app
        .post_order(&order_body("ada@example.com", &[("LAMP-1", 2)]), None)
        .await;
    assert_eq!(res.status(), 202);
    let location = res
        .headers()
        .get("location")
        .expect("Location header")
        .to_str()
        .expect("ascii")
        .to_owned();
    let order: contracts::Order = res.json().await.expect("order");
    assert_eq!(order.status, OrderStatus::Pending);
    assert_eq!(order.total_cents, 5000);
    assert_eq!(location, format!("/api/v1/orders/{}", order.id));
    assert_eq!(order.lines[0].unit_price_cents, 2500);

    let done = app.wait_final(order.id, Duration::from_secs(20)).await;
    assert_eq!(done.status, OrderStatus::Fulfilled);
    assert_eq!(done.reason, None);
    assert_eq!(app.env.stock("LAMP-1").await, 3);
    assert!(done.updated_at >= done.created_at);

    let metrics = app.metrics().await;
    assert!(
        metrics.contains("strata_messages_published_total"),
        "{metrics}"
    );
    assert!(metrics.contains("strata_orders_placed_total"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_orders_for_ten_units_never_oversell() {
    let mut app = spawn_app().await;
    app.env.product("RARE-1", 1000, 10).await;
    app.spawn_worker(0);
    app.spawn_worker(0);

    let body = order_body("buyer@example.com", &[("RARE-1", 1)]);
    let placed = join_all((0..50).map(|_| app.post_order(&body, None))).await;
    for res in placed {
        assert_eq!(res.status(), 202);
    }
    app.env.wait_all_final(Duration::from_secs(60)).await;

    let counts: Vec<(String, Option<String>, i64)> = sqlx::query_as(
        "SELECT status, reason, count(*) FROM orders GROUP BY status, reason ORDER BY status",
    )
    .fetch_all(&app.env.pool)
    .await
    .expect("counts");
    assert_eq!(
        counts,
        vec![
            ("fulfilled".to_owned(), None, 10),
            ("rejected".to_owned(), Some("out_of_stock".to_owned()), 40),
        ]
    );
    assert_eq!(app.env.stock("RARE-1").await, 0);
}

#[tokio::test]
async fn an_idempotency_key_replays_the_same_order_and_rejects_a_different_body() {
    let app = spawn_app().await;
    app.env.product("MUG-1", 900, 50).await;
    let body = order_body("kim@example.com", &[("MUG-1", 1)]);

    let first = app.post_order(&body, Some("checkout-42")).await;
    assert_eq!(first.status(), 202);
    let first: contracts::Order = first.json().await.expect("order");

    let again = app.post_order(&body, Some("checkout-42")).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: contracts::Order = again.json().await.expect("order");
    assert_eq!(again.id, first.id);

    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&app.env.pool)
        .await
        .expect("count");
    assert_eq!(orders, 1, "a replay creates nothing");
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE kind = 'FulfilOrder'")
        .fetch_one(&app.env.pool)
        .await
        .expect("count");
    assert_eq!(outbox, 1, "a replay publishes nothing");

    let other = order_body("kim@example.com", &[("MUG-1", 2)]);
    crate::helpers::assert_error(
        app.post_order(&other, Some("checkout-42")).await,
        422,
        "idempotency_key_reused",
    )
    .await;

    // Concurrent first uses of one key also make one order.
    let body = order_body("lee@example.com", &[("MUG-1", 3)]);
    let racing = join_all((0..8).map(|_| app.post_order(&body, Some("race-key")))).await;
    let mut ids = std::collections::HashSet::new();
    for res in racing {
        assert_eq!(res.status(), 202);
        ids.insert(res.json::<contracts::Order>().await.expect("order").id);
    }
    assert_eq!(ids.len(), 1);
}

#[tokio::test]
async fn catalog_listing_search_and_categories() {
    let app = spawn_app().await;
    logic::seed::seed(&app.env.pool, 400).await.expect("seed");

    let page: contracts::ProductPage = app
        .get("/api/v1/products?per_page=100&page=2")
        .await
        .json()
        .await
        .expect("page");
    assert_eq!((page.page, page.per_page, page.total), (2, 100, 400));
    assert_eq!(page.items.len(), 100);

    let cats: contracts::CategoryList = app
        .get("/api/v1/categories")
        .await
        .json()
        .await
        .expect("cats");
    assert_eq!(cats.items.len(), 20);
    assert!(cats.items.iter().all(|c| c.product_count == 20));

    let kitchen: contracts::ProductPage = app
        .get("/api/v1/products?category=Kitchen&per_page=100")
        .await
        .json()
        .await
        .expect("page");
    assert_eq!(kitchen.total, 20);
    assert!(kitchen.items.iter().all(|p| p.category == "Kitchen"));

    let probe = &kitchen.items[0];
    let word = probe
        .name
        .split(' ')
        .next_back()
        .expect("a word")
        .to_lowercase();
    let found: contracts::ProductPage = app
        .get(&format!("/api/v1/products?q={word}&per_page=100"))
        .await
        .json()
        .await
        .expect("page");
    assert!(found.total >= 1);
    assert!(found.items.iter().all(|p| {
        p.name.to_lowercase().contains(&word) || p.description.to_lowercase().contains(&word)
    }));

    let nothing: contracts::ProductPage = app
        .get("/api/v1/products?q=%25%25no-such-thing")
        .await
        .json()
        .await
        .expect("page");
    assert_eq!(nothing.total, 0);
}

#[tokio::test]
async fn openapi_describes_every_route() {
    let app = spawn_app().await;
    let doc: serde_json::Value = app
        .get("/api/v1/openapi.json")
        .await
        .json()
        .await
        .expect("json");
    let paths = doc["paths"].as_object().expect("paths");
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/products",
        "/api/v1/products/{sku}",
        "/api/v1/categories",
        "/api/v1/orders",
        "/api/v1/orders/{id}",
        "/api/v1/openapi.json",
        "/api/v1/streams/events/shards",
        "/api/v1/streams/events/records",
    ] {
        assert!(paths.contains_key(path), "missing {path}");
    }
    assert!(doc["paths"]["/api/v1/products/{sku}"]["patch"].is_object());
    assert!(doc["components"]["schemas"]["Order"].is_object());
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["OrderStep"]["enum"],
        serde_json::json!(["pending", "reserved", "paid", "fulfilled", "rejected"])
    );
    assert_eq!(
        schemas["RejectReason"]["enum"],
        serde_json::json!(["out_of_stock", "payment_declined", "reservation_expired"])
    );
    let product = &doc["paths"]["/api/v1/products/{sku}"]["get"]["responses"]["200"];
    assert!(product["headers"]["X-Stock"].is_object(), "{product}");
    assert!(doc["components"]["securitySchemes"]["admin_token"].is_object());
}

use serde_json::json;

use crate::helpers::{ADMIN_TOKEN, assert_error, order_body, spawn_app};

#[tokio::test]
async fn every_bad_order_input_gets_its_own_code() {
    let app = spawn_app().await;
    app.env.product("PEN-1", 300, 100).await;
    let post = |body: serde_json::Value| app.post_order_owned(body);

    assert_error(
        post(order_body("not-an-email", &[("PEN-1", 1)])).await,
        422,
        "invalid_email",
    )
    .await;
    assert_error(
        post(order_body("a@example.com", &[("NOPE-404", 1)])).await,
        422,
        "unknown_sku",
    )
    .await;
    assert_error(
        post(order_body("a@example.com", &[("PEN-1", 0)])).await,
        422,
        "invalid_quantity",
    )
    .await;
    assert_error(
        post(order_body("a@example.com", &[("PEN-1", 101)])).await,
        422,
        "invalid_quantity",
    )
    .await;
    assert_error(
        post(order_body("a@example.com", &[])).await,
        422,
        "no_lines",
    )
    .await;
    let many: Vec<String> = (0..51).map(|i| format!("X-{i}")).collect();
    let lines: Vec<(&str, i32)> = many.iter().map(|s| (s.as_str(), 1)).collect();
    assert_error(
        post(order_body("a@example.com", &lines)).await,
        422,
        "too_many_lines",
    )
    .await;
    assert_error(
        post(order_body("a@example.com", &[("PEN-1", 1), ("PEN-1", 2)])).await,
        422,
        "duplicate_sku",
    )
    .await;
    assert_error(
        post(json!({"email": "a@example.com"})).await,
        400,
        "malformed_json",
    )
    .await;
    assert_error(
        post(json!({"email": "a@example.com", "lines": [{"sku": "PEN-1", "quantity": "two"}]}))
            .await,
        400,
        "malformed_json",
    )
    .await;

    let raw = |body: &'static str, content_type: &'static str| {
        app.http
            .post(app.url("/api/v1/orders"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    assert_error(
        raw("{\"email\": ", "application/json").await.expect("send"),
        400,
        "malformed_json",
    )
    .await;
    assert_error(
        raw("email=a", "text/plain").await.expect("send"),
        415,
        "unsupported_media_type",
    )
    .await;

    let huge =
        json!({"email": "a@example.com", "lines": [{"sku": "x".repeat(70 * 1024), "quantity": 1}]});
    assert_error(post(huge).await, 413, "payload_too_large").await;

    assert_error(
        app.http
            .post(app.url("/api/v1/orders"))
            .header("Idempotency-Key", "has spaces")
            .json(&order_body("a@example.com", &[("PEN-1", 1)]))
            .send()
            .await
            .expect("send"),
        400,
        "invalid_idempotency_key",
    )
    .await;

    let none: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&app.env.pool)
        .await
        .expect("count");
    assert_eq!(none, 0, "no bad request wrote anything");
}

#[tokio::test]
async fn lookups_and_admin_calls_fail_cleanly() {
    let app = spawn_app().await;
    app.env.product("PEN-2", 300, 100).await;

    assert_error(
        app.get("/api/v1/orders/not-a-uuid").await,
        400,
        "invalid_order_id",
    )
    .await;
    assert_error(
        app.get("/api/v1/orders/0191f1f0-0000-7000-8000-000000000000")
            .await,
        404,
        "order_not_found",
    )
    .await;
    assert_error(
        app.get("/api/v1/products/NOPE-1").await,
        404,
        "product_not_found",
    )
    .await;
    assert_error(
        app.get("/api/v1/products?per_page=101").await,
        400,
        "invalid_query",
    )
    .await;
    assert_error(
        app.get("/api/v1/products?page=0").await,
        400,
        "invalid_query",
    )
    .await;
    assert_error(
        app.get("/api/v1/products?page=abc").await,
        400,
        "invalid_query",
    )
    .await;
    assert_error(app.get("/no/such/route").await, 404, "not_found").await;
    assert_error(
        app.http
            .delete(app.url("/api/v1/orders"))
            .send()
            .await
            .expect("send"),
        405,
        "method_not_allowed",
    )
    .await;
    for path in [
        "/api/v1/streams/events/shards",
        "/api/v1/streams/events/records",
        "/api/v1/subscriptions/x/confirm",
    ] {
        assert_error(
            app.http.delete(app.url(path)).send().await.expect("send"),
            405,
            "method_not_allowed",
        )
        .await;
    }

    let patch = json!({"price_cents": 100});
    assert_error(
        app.patch_product("PEN-2", &patch, None).await,
        401,
        "unauthorized",
    )
    .await;
    assert_error(
        app.patch_product("PEN-2", &patch, Some("wrong")).await,
        401,
        "unauthorized",
    )
    .await;
    assert_error(
        app.patch_product("PEN-2", &json!({"price_cents": 0}), Some(ADMIN_TOKEN))
            .await,
        422,
        "invalid_product_patch",
    )
    .await;
    assert_error(
        app.patch_product("PEN-2", &json!({"stock": -1}), Some(ADMIN_TOKEN))
            .await,
        422,
        "invalid_product_patch",
    )
    .await;
    assert_error(
        app.patch_product(
            "PEN-2",
            &json!({"price_cents": 100_000_001}),
            Some(ADMIN_TOKEN),
        )
        .await,
        422,
        "invalid_product_patch",
    )
    .await;
    let unchanged = app
        .patch_product("PEN-2", &json!({}), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(unchanged.status(), 200, "an empty patch changes nothing");
    assert_error(
        app.get("/api/v1/products?q=a%00b").await,
        400,
        "invalid_query",
    )
    .await;
    assert_error(
        app.get("/api/v1/products/a%00b").await,
        404,
        "product_not_found",
    )
    .await;
    assert_error(
        app.patch_product("PEN-2", &json!({"colour": "red"}), Some(ADMIN_TOKEN))
            .await,
        400,
        "malformed_json",
    )
    .await;
    assert_error(
        app.patch_product("NOPE-2", &patch, Some(ADMIN_TOKEN)).await,
        404,
        "product_not_found",
    )
    .await;
    assert_eq!(app.env.stock("PEN-2").await, 100);

    let ok = app
        .patch_product(
            "PEN-2",
            &json!({"price_cents": 450, "stock": 7}),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(ok.status(), 200);
    let product: contracts::Product = ok.json().await.expect("product");
    assert_eq!((product.price_cents, product.stock), (450, 7));
}

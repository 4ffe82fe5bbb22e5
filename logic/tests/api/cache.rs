use secrecy::SecretString;
use serde_json::json;

use crate::helpers::{ADMIN_TOKEN, spawn_app, spawn_app_with};

fn cache_header(res: &reqwest::Response) -> String {
    res.headers()["x-cache"].to_str().expect("ascii").to_owned()
}

#[tokio::test]
async fn the_second_read_is_a_hit_and_an_update_invalidates() {
    let app = spawn_app().await;
    app.env.product("BOWL-1", 1200, 8).await;

    let first = app.get("/api/v1/products/BOWL-1").await;
    assert_eq!(cache_header(&first), "miss");
    let second = app.get("/api/v1/products/BOWL-1").await;
    assert_eq!(cache_header(&second), "hit");
    let cached: contracts::Product = second.json().await.expect("product");
    assert_eq!(cached.price_cents, 1200);

    let res = app
        .patch_product("BOWL-1", &json!({"price_cents": 1500}), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(res.status(), 200);
    let after = app.get("/api/v1/products/BOWL-1").await;
    assert_eq!(
        cache_header(&after),
        "miss",
        "the update dropped the cached copy"
    );
    let fresh: contracts::Product = after.json().await.expect("product");
    assert_eq!(fresh.price_cents, 1500);

    // Listings are invalidated too (their keys carry the catalog generation).
    let list: contracts::ProductPage = app
        .get("/api/v1/products?category=Test")
        .await
        .json()
        .await
        .expect("page");
    assert_eq!(list.items[0].price_cents, 1500);
    app.patch_product("BOWL-1", &json!({"price_cents": 1600}), Some(ADMIN_TOKEN))
        .await;
    let list: contracts::ProductPage = app
        .get("/api/v1/products?category=Test")
        .await
        .json()
        .await
        .expect("page");
    assert_eq!(list.items[0].price_cents, 1600);

    let metrics = app.metrics().await;
    // The second read is answered by the near cache once its subscription is up, else by
    // Redis.
    assert!(
        metrics.contains("strata_cache_requests_total{result=\"hit\"}")
            || metrics.contains("strata_near_cache_requests_total{result=\"hit\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("strata_cache_requests_total{result=\"miss\"}"));
}

#[tokio::test]
async fn reads_succeed_when_redis_is_unreachable() {
    let env = testkit::TestEnv::new().await;
    env.product("CUP-1", 700, 4).await;
    let app = spawn_app_with(env, |s| {
        // Nothing listens on port 1.
        s.data.redis_url = SecretString::from("redis://127.0.0.1:1".to_owned());
    })
    .await;
    for _ in 0..3 {
        let res = app.get("/api/v1/products/CUP-1").await;
        assert_eq!(res.status(), 200);
        assert_eq!(cache_header(&res), "bypass");
    }
    assert_eq!(app.get("/api/v1/products").await.status(), 200);
    assert_eq!(app.get("/api/v1/categories").await.status(), 200);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("strata_cache_unavailable_total"),
        "{metrics}"
    );
    let ready: serde_json::Value = app.get("/readyz").await.json().await.expect("json");
    assert_eq!(ready["status"], "ready", "Redis is not required: {ready}");
}

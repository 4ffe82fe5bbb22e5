//! The inventory feed's API: validation (nothing queued on bad input), deduplication
//! inside and after the five-minute window, the history, product reads seeing the new
//! stock, the partitions' view.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, TestApp, spawn_app};

async fn adjust(app: &TestApp, body: &Value, key: Option<&str>) -> (u16, Value) {
    let mut req = app
        .http
        .post(app.url("/api/v1/inventory/adjustments"))
        .bearer_auth(ADMIN_TOKEN)
        .json(body);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    let res = req.send().await.expect("POST");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn queued(app: &TestApp) -> (i64, i64) {
    let outbox: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE kind = 'ApplyAdjustment'")
            .fetch_one(&app.env.pool)
            .await
            .expect("count");
    let adjustments: i64 = sqlx::query_scalar("SELECT count(*) FROM inventory_adjustments")
        .fetch_one(&app.env.pool)
        .await
        .expect("count");
    (outbox, adjustments)
}

async fn history(app: &TestApp, sku: &str) -> Value {
    app.get(&format!("/api/v1/inventory/{sku}/adjustments"))
        .await
        .json()
        .await
        .expect("JSON")
}

#[tokio::test]
async fn bad_adjustments_get_a_json_error_and_queue_nothing() {
    let app = spawn_app().await;
    app.env.product("INV-1", 100, 5).await;
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"sku": "NOPE-1", "op": "add", "quantity": 1}),
            422,
            "unknown_sku",
        ),
        (
            json!({"sku": "bad sku", "op": "add", "quantity": 1}),
            422,
            "unknown_sku",
        ),
        (
            json!({"sku": "INV-1", "op": "add", "quantity": -6}),
            422,
            "stock_out_of_range",
        ),
        (
            json!({"sku": "INV-1", "op": "set", "quantity": -1}),
            422,
            "invalid_adjustment",
        ),
        (
            json!({"sku": "INV-1", "op": "add", "quantity": 0}),
            422,
            "invalid_adjustment",
        ),
        (
            json!({"sku": "INV-1", "op": "set", "quantity": 1_000_000_001i64}),
            422,
            "invalid_adjustment",
        ),
        (
            json!({"sku": "INV-1", "op": "add", "quantity": 1, "reason": "x".repeat(201)}),
            422,
            "invalid_adjustment",
        ),
        (
            json!({"sku": "INV-1", "op": "mul", "quantity": 1}),
            400,
            "malformed_json",
        ),
        (json!({"sku": "INV-1", "op": "add"}), 400, "malformed_json"),
        (
            json!({"sku": "INV-1", "op": "add", "quantity": 1, "extra": true}),
            400,
            "malformed_json",
        ),
        (
            json!({"sku": "INV-1", "op": "add", "quantity": 1.5}),
            400,
            "malformed_json",
        ),
        (json!(["INV-1", "add", 1]), 400, "malformed_json"),
        (
            json!({"sku": "INV-1", "op": "add", "quantity": 1, "reason": "x".repeat(70_000)}),
            413,
            "payload_too_large",
        ),
    ];
    for (body, status, code) in cases {
        let (got, answer) = adjust(&app, &body, None).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{body}");
    }
    // Without the admin token.
    let res = app
        .http
        .post(app.url("/api/v1/inventory/adjustments"))
        .json(&json!({"sku": "INV-1", "op": "add", "quantity": 1}))
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status().as_u16(), 401);
    assert_eq!(queued(&app).await, (0, 0), "nothing queued");
    // The refusals are in the audit trail.
    let rejected: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'inventory.adjust' AND outcome <> 'success'",
    )
    .fetch_one(&app.env.pool)
    .await
    .expect("count");
    assert_eq!(rejected, 14);
}

#[tokio::test]
async fn the_projection_counts_adjustments_not_applied_yet() {
    let app = spawn_app().await;
    app.env.product("INV-2", 100, 5).await;
    // No worker: both stay pending; the second would take the projected stock below 0.
    let (s, _) = adjust(
        &app,
        &json!({"sku": "INV-2", "op": "add", "quantity": -4}),
        None,
    )
    .await;
    assert_eq!(s, 202);
    let (s, body) = adjust(
        &app,
        &json!({"sku": "INV-2", "op": "add", "quantity": -2}),
        None,
    )
    .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (422, Some("stock_out_of_range"))
    );
    let (s, _) = adjust(
        &app,
        &json!({"sku": "INV-2", "op": "set", "quantity": 0}),
        None,
    )
    .await;
    assert_eq!(s, 202);
    assert_eq!(queued(&app).await, (2, 2));
}

#[tokio::test]
async fn a_duplicate_inside_the_window_answers_the_first_id_and_is_applied_once() {
    let mut app = spawn_app().await;
    app.env.product("INV-3", 100, 10).await;
    app.spawn_worker(0);
    let body = json!({"sku": "INV-3", "op": "add", "quantity": 5});
    let (s1, first) = adjust(&app, &body, Some("supplier-batch-1")).await;
    let (s2, second) = adjust(
        &app,
        &json!({"sku": "INV-3", "op": "add", "quantity": 7}),
        Some("supplier-batch-1"),
    )
    .await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(first["duplicate"], false);
    assert_eq!(second["duplicate"], true);
    assert_eq!(second["id"], first["id"]);
    // Without a key the body's hash is the deduplication id: equal bodies are one adjustment.
    let (_, a) = adjust(
        &app,
        &json!({"op": "add", "sku": "INV-3", "quantity": 2}),
        None,
    )
    .await;
    let (_, b) = adjust(
        &app,
        &json!({"sku": "INV-3", "quantity": 2, "op": "add"}),
        None,
    )
    .await;
    assert_eq!(
        (a["duplicate"].as_bool(), b["duplicate"].as_bool()),
        (Some(false), Some(true))
    );
    assert_eq!(a["id"], b["id"]);
    testkit::eventually(Duration::from_secs(20), "two applied", || async {
        (history(&app, "INV-3").await["total"] == 2).then_some(())
    })
    .await;
    assert_eq!(app.env.stock("INV-3").await, 17, "each applied once");

    // Past the window the same key is a new adjustment (the record is aged, not waited for).
    sqlx::query("UPDATE inventory_dedup SET accepted_at = now() - interval '301 seconds' WHERE dedup_id = 'supplier-batch-1'")
        .execute(&app.env.pool)
        .await
        .expect("aging");
    let (_, third) = adjust(&app, &body, Some("supplier-batch-1")).await;
    assert_eq!(third["duplicate"], false);
    assert_ne!(third["id"], first["id"]);
    assert_eq!(third["sequence"], 3);
    testkit::eventually(Duration::from_secs(20), "the third applied", || async {
        (history(&app, "INV-3").await["total"] == 3).then_some(())
    })
    .await;
    let page = history(&app, "INV-3").await;
    let items = page["items"].as_array().expect("items");
    let seen: Vec<(i64, i64, &str)> = items
        .iter()
        .map(|i| {
            (
                i["sequence"].as_i64().unwrap(),
                i["stock_after"].as_i64().unwrap(),
                i["dedup_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen[0], (1, 15, "supplier-batch-1"));
    assert_eq!((seen[1].0, seen[1].1), (2, 17));
    assert_eq!(seen[2], (3, 22, "supplier-batch-1"));
}

#[tokio::test]
async fn product_reads_see_the_adjusted_stock_and_the_history_pages() {
    let mut app = spawn_app().await;
    app.env.product("INV-4", 100, 10).await;
    // Cached before the change.
    let before: Value = app
        .get("/api/v1/products/INV-4")
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(before["stock"], 10);
    let _ = app.get("/api/v1/products/INV-4").await;
    app.spawn_worker(0);
    for q in [3, -2, 4] {
        let (s, _) = adjust(&app, &json!({"sku": "INV-4", "op": "add", "quantity": q, "reason": "count", "supplier_ref": "PO-9"}), None).await;
        assert_eq!(s, 202);
    }
    testkit::eventually(Duration::from_secs(20), "three applied", || async {
        (history(&app, "INV-4").await["total"] == 3).then_some(())
    })
    .await;
    testkit::eventually(
        Duration::from_secs(5),
        "the product read shows 15",
        || async {
            let p: Value = app.get("/api/v1/products/INV-4").await.json().await.ok()?;
            (p["stock"] == 15).then_some(())
        },
    )
    .await;
    let page: Value = app
        .get("/api/v1/inventory/INV-4/adjustments?page=2&per_page=2")
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(page["total"], 3);
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["items"][0]["sequence"], 3);
    assert_eq!(page["items"][0]["reason"], "count");
    assert_eq!(page["items"][0]["supplier_ref"], "PO-9");
    let missing = app.get("/api/v1/inventory/NOPE-9/adjustments").await;
    assert_eq!(missing.status().as_u16(), 404);
    let bad = app
        .get("/api/v1/inventory/INV-4/adjustments?per_page=101")
        .await;
    assert_eq!(bad.status().as_u16(), 400);
}

#[tokio::test]
async fn the_partitions_view_shows_each_partition_and_its_holder() {
    let mut app = spawn_app().await;
    app.spawn_worker(0);
    let denied = app.get("/api/v1/ops/fifo").await;
    assert_eq!(denied.status().as_u16(), 401);
    let view: Value =
        testkit::eventually(Duration::from_secs(30), "every partition held", || async {
            let view: Value = app
                .http
                .get(app.url("/api/v1/ops/fifo"))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let all_held = view["partitions"]
                .as_array()?
                .iter()
                .all(|p| p["active_consumer"].is_string());
            // The API has statistics of a queue a few seconds after it was declared.
            (all_held && view["dlq_depth"].is_u64()).then_some(view)
        })
        .await;
    let partitions = view["partitions"].as_array().expect("partitions");
    assert_eq!(partitions.len(), 8);
    assert_eq!(partitions[3]["queue"], "inventory.fifo.p3");
    assert!(
        partitions[3]["active_consumer"]
            .as_str()
            .unwrap()
            .ends_with(".p3")
    );
    assert_eq!(view["dlq_depth"], 0);
    assert_eq!(view["broker_reachable"], true);
}

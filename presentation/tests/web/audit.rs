//! The audit trail in the ops console: entries made through logic's API and through the
//! console itself, filters, pages of the form's own mistakes, and the login in front.

use crate::helpers::{LOGIC_ADMIN_TOKEN, OPS_PASSWORD, Shop, spawn_shop_with, with_ops};

/// The rows of the entries table, each as its cells' text.
fn rows(html: &str) -> Vec<Vec<String>> {
    let table = html
        .split("id=\"audit-entries\"")
        .nth(1)
        .and_then(|t| t.split("<tbody>").nth(1))
        .and_then(|t| t.split("</tbody>").next())
        .expect("the entries table");
    table
        .split("<tr>")
        .skip(1)
        .map(|row| {
            row.split("<td")
                .skip(1)
                .map(|cell| {
                    let inner = cell.split_once('>').map_or("", |(_, rest)| rest);
                    let text = inner.split("</td>").next().unwrap_or("");
                    // Drop inner tags (the outcome pill).
                    let mut out = String::new();
                    let mut in_tag = false;
                    for ch in text.chars() {
                        match ch {
                            '<' => in_tag = true,
                            '>' => in_tag = false,
                            c if !in_tag => out.push(c),
                            _ => {}
                        }
                    }
                    // Askama escapes with numeric entities.
                    out.replace("&#34;", "\"")
                        .replace("&#39;", "'")
                        .replace("&#60;", "<")
                        .replace("&#62;", ">")
                        .replace("&#38;", "&")
                })
                .collect()
        })
        .collect()
}

async fn admin_patch(shop: &Shop, sku: &str, body: serde_json::Value, token: Option<&str>) {
    let mut req = reqwest::Client::new()
        .patch(format!("{}/api/v1/products/{sku}", shop.logic_base))
        .json(&body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("PATCH");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_lists_filters_and_adds_to_the_audit_trail() {
    let shop = spawn_shop_with(with_ops).await;
    shop.product("AUD-P1", "Audit Lamp", "Lighting", 4500, 9)
        .await;
    let c = &shop.client;

    // The page is behind the login.
    let page = c.get("/ops/audit").await;
    assert_eq!(page.status, 303);
    assert_eq!(page.location(), "/ops/login");

    admin_patch(
        &shop,
        "AUD-P1",
        serde_json::json!({"price_cents": 4200}),
        Some(LOGIC_ADMIN_TOKEN),
    )
    .await;
    admin_patch(&shop, "AUD-P1", serde_json::json!({"stock": 0}), None).await;
    // An order through the shop's own checkout is recorded as anonymous.
    c.add_to_cart("AUD-P1", 2).await;
    let form = c.get("/checkout").await;
    let (token, key) = (form.input("csrf_token"), form.input("idempotency_key"));
    let placed = c
        .post(
            "/checkout",
            &[
                ("csrf_token", &token),
                ("idempotency_key", &key),
                ("email", "audit@example.com"),
            ],
        )
        .await;
    assert_eq!(placed.status, 303, "{}", placed.body);

    assert_eq!(c.ops_login("admin", OPS_PASSWORD).await.status, 303);
    let page = c.get("/ops/audit").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("href=\"/ops/audit\""),
        "linked from the nav"
    );
    let all = rows(&page.body);
    assert_eq!(all.len(), 3, "{all:?}");
    // Newest first: the order, the refused change, the change.
    assert_eq!(&all[0][1..3], ["anonymous", "order.place"]);
    assert!(all[0][3].starts_with("order:"), "{all:?}");
    assert_eq!(all[0][4], "success");
    assert_eq!(
        &all[1][1..6],
        [
            "anonymous",
            "product.update",
            "product:AUD-P1",
            "denied",
            "unauthorized"
        ]
    );
    assert_eq!(
        &all[2][1..6],
        ["admin", "product.update", "product:AUD-P1", "success", "–"]
    );
    assert!(all[2][8].contains("4200"), "the change is shown: {all:?}");
    assert!(!page.body.contains(LOGIC_ADMIN_TOKEN));

    let filtered = rows(
        &c.get("/ops/audit?action=product.update&outcome=success")
            .await
            .body,
    );
    assert_eq!(filtered.len(), 1);
    assert_eq!(filtered[0][1], "admin");
    let by_actor = rows(
        &c.get("/ops/audit?actor=anonymous&since=2000-01-01+00%3A00")
            .await
            .body,
    );
    assert_eq!(by_actor.len(), 2);
    let none = rows(&c.get("/ops/audit?until=2000-01-01T00%3A00").await.body);
    assert!(none.is_empty());

    // The console's own redrive is recorded as the admin's.
    let token = c.get("/ops").await.input("csrf_token");
    let redrive = c.post("/ops/dlq/redrive", &[("csrf_token", &token)]).await;
    assert_eq!(redrive.status, 303);
    let latest = rows(&c.get("/ops/audit?action=dlq.redrive").await.body);
    assert_eq!(latest.len(), 1);
    assert_eq!(
        &latest[0][1..5],
        ["admin", "dlq.redrive", "queue:orders.fulfil.dlq", "success"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_filter_is_explained_next_to_its_field() {
    let shop = spawn_shop_with(with_ops).await;
    let c = &shop.client;
    assert_eq!(c.ops_login("admin", OPS_PASSWORD).await.status, 303);
    let page = c
        .get("/ops/audit?since=tomorrow&action=product.delete")
        .await;
    assert_eq!(page.status, 400);
    assert!(
        page.body.contains("A date and time in UTC"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Pick an action from the list."));
    // What was typed is shown back, escaped.
    let page = c.get("/ops/audit?until=%3Cscript%3E").await;
    assert_eq!(page.status, 400);
    assert!(page.body.contains("&#60;script&#62;") || page.body.contains("&lt;script&gt;"));
    assert!(!page.body.contains("<script>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_the_trail_link_to_each_other_with_the_filters() {
    let shop = spawn_shop_with(with_ops).await;
    shop.product("AUD-P2", "Paged Mug", "Kitchen", 900, 9).await;
    for i in 0..53 {
        admin_patch(
            &shop,
            "AUD-P2",
            serde_json::json!({"stock": i}),
            Some(LOGIC_ADMIN_TOKEN),
        )
        .await;
    }
    let c = &shop.client;
    assert_eq!(c.ops_login("admin", OPS_PASSWORD).await.status, 303);
    let first = c.get("/ops/audit?target=product%3AAUD-P2").await;
    assert_eq!(rows(&first.body).len(), 50);
    assert!(first.body.contains("Showing 1–50 of 53"), "{}", first.body);
    let next = "/ops/audit?target=product%3AAUD-P2&#38;page=2";
    assert!(first.body.contains(next), "{}", first.body);
    let second = c.get(&next.replace("&#38;", "&")).await;
    let rest = rows(&second.body);
    assert_eq!(rest.len(), 3);
    // The oldest change is last.
    assert!(rest[2][8].contains("\"stock\":0"), "{rest:?}");
    assert!(second.body.contains("Showing 51–53 of 53"));
}

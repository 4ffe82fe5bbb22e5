//! The audit trail: every mutating call leaves exactly one entry with its actor, action,
//! target, outcome, request id and trace id; a successful change and its entry commit
//! together; `GET /api/v1/audit` lists, filters and pages the trail for the admin only.

use std::collections::HashSet;

use contracts::trace::TraceParent;
use contracts::{AuditEntry, AuditOutcome, AuditPage, Order};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, TestApp, assert_error, order_body, spawn_app};

/// What one call answered, with the ids the audit entry must carry.
struct Call {
    status: u16,
    body: Value,
    request_id: String,
    trace_id: String,
}

impl TestApp {
    /// Sends a request with a fresh `traceparent`; returns the answer and its ids.
    async fn call(&self, req: reqwest::RequestBuilder) -> Call {
        let trace = TraceParent::new_root();
        let res = req
            .header("traceparent", trace.to_string())
            .send()
            .await
            .expect("request");
        let status = res.status().as_u16();
        let request_id = res
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .expect("an X-Request-Id header")
            .to_owned();
        let body = res.json().await.unwrap_or(Value::Null);
        Call {
            status,
            body,
            request_id,
            trace_id: trace.trace_id_hex(),
        }
    }

    fn patch(&self, sku: &str, body: Value, token: Option<&str>) -> reqwest::RequestBuilder {
        let req = self
            .http
            .patch(self.url(&format!("/api/v1/products/{sku}")))
            .json(&body);
        match token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    fn order_req(&self, body: Value, key: Option<&str>) -> reqwest::RequestBuilder {
        let req = self.http.post(self.url("/api/v1/orders")).json(&body);
        match key {
            Some(key) => req.header("Idempotency-Key", key),
            None => req,
        }
    }

    fn redrive(&self, token: Option<&str>) -> reqwest::RequestBuilder {
        let req = self.http.post(self.url("/api/v1/ops/dlq/redrive"));
        match token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    /// `GET /api/v1/audit` with the admin token and this query string.
    async fn audit(&self, query: &str) -> AuditPage {
        let res = self
            .http
            .get(self.url(&format!("/api/v1/audit?{query}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("GET /audit");
        assert_eq!(res.status(), 200, "{query}");
        res.json().await.expect("audit page JSON")
    }

    /// Asserts that the last call added exactly one entry.
    async fn one_more(&self, rows: &mut i64) {
        *rows += 1;
        assert_eq!(self.audit_rows().await, *rows, "exactly one entry per call");
    }

    async fn audit_rows(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM audit_log")
            .fetch_one(&self.env.pool)
            .await
            .expect("counting audit entries")
    }

    /// The one entry of a request, found by its id; fails unless there is exactly one.
    async fn entry_of(&self, call: &Call) -> AuditEntry {
        let page = self.audit(&format!("request_id={}", call.request_id)).await;
        assert_eq!(page.total, 1, "one entry per call: {:?}", page.items);
        let entry = page.items.into_iter().next().expect("an entry");
        assert_eq!(
            entry.request_id.map(|id| id.to_string()),
            Some(call.request_id.clone())
        );
        assert_eq!(entry.trace_id.as_deref(), Some(call.trace_id.as_str()));
        entry
    }

    /// Sends the request, asserts its status, that it added exactly one entry to the trail
    /// and that this entry has the expected fields; returns the answer and the entry.
    async fn expect_entry(
        &self,
        req: reqwest::RequestBuilder,
        rows: &mut i64,
        status: u16,
        expected: Expected<'_>,
    ) -> (Call, AuditEntry) {
        let call = self.call(req).await;
        assert_eq!(call.status, status, "{}", call.body);
        self.one_more(rows).await;
        let entry = self.entry_of(&call).await;
        assert_entry(&entry, &expected);
        (call, entry)
    }

    async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&self.env.pool)
            .await
            .expect("counting rows")
    }
}

/// The fields an audit entry must have.
struct Expected<'a> {
    actor: &'a str,
    action: &'a str,
    target: Option<&'a str>,
    outcome: AuditOutcome,
    error_code: Option<&'a str>,
}

fn assert_entry(entry: &AuditEntry, expected: &Expected<'_>) {
    assert_eq!(entry.actor, expected.actor, "{entry:?}");
    assert_eq!(entry.action, expected.action, "{entry:?}");
    assert_eq!(entry.target.as_deref(), expected.target, "{entry:?}");
    assert_eq!(entry.outcome, expected.outcome, "{entry:?}");
    assert_eq!(
        entry.error_code.as_deref(),
        expected.error_code,
        "{entry:?}"
    );
    assert!(entry.detail.is_object(), "{entry:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutating_call_leaves_exactly_one_entry_with_its_fields() {
    let app = spawn_app().await;
    app.env.product("AUD-1", 1000, 10).await;
    let mut rows = 0;

    // A product change by the admin.
    let (_, entry) = app
        .expect_entry(
            app.patch("AUD-1", json!({"price_cents": 1250}), Some(ADMIN_TOKEN)),
            &mut rows,
            200,
            Expected {
                actor: "admin",
                action: "product.update",
                target: Some("product:AUD-1"),
                outcome: AuditOutcome::Success,
                error_code: None,
            },
        )
        .await;
    assert_eq!(entry.detail, json!({"changes": {"price_cents": 1250}}));

    // The same change without a token or with a wrong one: denied; invalid values and an
    // unknown sku: rejected.
    #[rustfmt::skip]
    let refused = [
        (None, "AUD-1", json!({"price_cents": 1}), 401, "anonymous", AuditOutcome::Denied, "unauthorized"),
        (Some("not-the-token"), "AUD-1", json!({"price_cents": 1}), 401, "anonymous", AuditOutcome::Denied, "unauthorized"),
        (Some(ADMIN_TOKEN), "AUD-1", json!({"price_cents": 0}), 422, "admin", AuditOutcome::Rejected, "invalid_product_patch"),
        (Some(ADMIN_TOKEN), "AUD-404", json!({"stock": 1}), 404, "admin", AuditOutcome::Rejected, "product_not_found"),
    ];
    for (token, sku, body, status, actor, outcome, code) in refused {
        let target = format!("product:{sku}");
        let expected = Expected {
            actor,
            action: "product.update",
            target: Some(&target),
            outcome,
            error_code: Some(code),
        };
        app.expect_entry(app.patch(sku, body, token), &mut rows, status, expected)
            .await;
    }
    assert_eq!(
        app.env.stock("AUD-1").await,
        10,
        "refused changes changed nothing"
    );

    // An order: anonymous, recorded with the order it made.
    let call = app
        .call(app.order_req(order_body("a@example.com", &[("AUD-1", 2)]), Some("key-1")))
        .await;
    assert_eq!(call.status, 202, "{}", call.body);
    app.one_more(&mut rows).await;
    let order: Order = serde_json::from_value(call.body.clone()).expect("order");
    let entry = app.entry_of(&call).await;
    let target = format!("order:{}", order.id);
    assert_entry(
        &entry,
        &Expected {
            actor: "anonymous",
            action: "order.place",
            target: Some(&target),
            outcome: AuditOutcome::Success,
            error_code: None,
        },
    );
    assert_eq!(entry.detail["total_cents"], 2500);
    assert_eq!(entry.detail["lines"], 1);
    // Its replay under the same key: a call of its own, which made nothing new.
    let (_, entry) = app
        .expect_entry(
            app.order_req(order_body("a@example.com", &[("AUD-1", 2)]), Some("key-1")),
            &mut rows,
            202,
            Expected {
                actor: "anonymous",
                action: "order.place",
                target: Some(&target),
                outcome: AuditOutcome::Success,
                error_code: None,
            },
        )
        .await;
    assert_eq!(entry.detail, json!({"replayed": true}));
    assert_eq!(app.count("orders").await, 1);
    // A refused order.
    app.expect_entry(
        app.order_req(
            order_body("a@example.com", &[("AUD-1", 1), ("NOPE-1", 1)]),
            None,
        ),
        &mut rows,
        422,
        Expected {
            actor: "anonymous",
            action: "order.place",
            target: None,
            outcome: AuditOutcome::Rejected,
            error_code: Some("unknown_sku"),
        },
    )
    .await;
    app.expect_entry(
        app.order_req(json!([1, 2]), None),
        &mut rows,
        400,
        Expected {
            actor: "anonymous",
            action: "order.place",
            target: None,
            outcome: AuditOutcome::Rejected,
            error_code: Some("malformed_json"),
        },
    )
    .await;

    // A redrive of an empty dead-letter queue, and one without the token.
    let (_, entry) = app
        .expect_entry(
            app.redrive(Some(ADMIN_TOKEN)),
            &mut rows,
            200,
            Expected {
                actor: "admin",
                action: "dlq.redrive",
                target: Some("queue:orders.fulfil.dlq"),
                outcome: AuditOutcome::Success,
                error_code: None,
            },
        )
        .await;
    assert_eq!(
        entry.detail,
        json!({"limit": 10000, "redriven": 0, "remaining": 0})
    );
    app.expect_entry(
        app.redrive(None),
        &mut rows,
        401,
        Expected {
            actor: "anonymous",
            action: "dlq.redrive",
            target: Some("queue:orders.fulfil.dlq"),
            outcome: AuditOutcome::Denied,
            error_code: Some("unauthorized"),
        },
    )
    .await;
    app.expect_entry(
        app.redrive(Some(ADMIN_TOKEN)).json(&json!({"limit": 0})),
        &mut rows,
        422,
        Expected {
            actor: "admin",
            action: "dlq.redrive",
            target: Some("queue:orders.fulfil.dlq"),
            outcome: AuditOutcome::Rejected,
            error_code: Some("invalid_redrive"),
        },
    )
    .await;

    // Reads are not recorded.
    app.get("/api/v1/products/AUD-1").await;
    app.get(&format!("/api/v1/orders/{}", order.id)).await;
    app.audit("").await;
    assert_eq!(app.audit_rows().await, rows);
}

/// Makes every successful entry fail to insert, as a full disk or a broken trigger would.
async fn break_success_entries(app: &TestApp) {
    for statement in [
        "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'audit entries refused for the test'; END $$",
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log FOR EACH ROW \
         WHEN (NEW.outcome = 'success') EXECUTE FUNCTION refuse_audit()",
    ] {
        sqlx::query(statement)
            .execute(&app.env.pool)
            .await
            .expect("installing the trigger");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_whose_entry_cannot_be_written_is_not_made() {
    let app = spawn_app().await;
    app.env.product("AUD-2", 500, 7).await;
    break_success_entries(&app).await;

    let call = app
        .call(app.patch(
            "AUD-2",
            json!({"stock": 99, "name": "Renamed"}),
            Some(ADMIN_TOKEN),
        ))
        .await;
    assert_eq!(call.status, 500, "{}", call.body);
    assert_eq!(call.body["error"]["code"], "internal_error");
    assert_eq!(
        app.env.stock("AUD-2").await,
        7,
        "the update was rolled back"
    );
    let name: String = sqlx::query_scalar("SELECT name FROM products WHERE sku = 'AUD-2'")
        .fetch_one(&app.env.pool)
        .await
        .expect("name");
    assert_eq!(name, "Product AUD-2");

    let order = app
        .call(app.order_req(order_body("b@example.com", &[("AUD-2", 1)]), Some("key-2")))
        .await;
    assert_eq!(order.status, 500, "{}", order.body);
    for table in ["orders", "order_lines", "idempotency_keys", "outbox"] {
        assert_eq!(app.count(table).await, 0, "nothing half-written in {table}");
    }

    // Each failed call is still recorded, on its own, as failed.
    assert_eq!(app.audit_rows().await, 2);
    let entry = app.entry_of(&call).await;
    assert_entry(
        &entry,
        &Expected {
            actor: "admin",
            action: "product.update",
            target: Some("product:AUD-2"),
            outcome: AuditOutcome::Failed,
            error_code: Some("internal_error"),
        },
    );
    let entry = app.entry_of(&order).await;
    assert_entry(
        &entry,
        &Expected {
            actor: "anonymous",
            action: "order.place",
            target: None,
            outcome: AuditOutcome::Failed,
            error_code: Some("internal_error"),
        },
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_order_leaves_only_its_entry() {
    let app = spawn_app().await;
    app.env.product("AUD-3", 500, 7).await;
    let call = app
        .call(app.order_req(
            order_body("c@example.com", &[("AUD-3", 1), ("GONE-1", 1)]),
            Some("key-3"),
        ))
        .await;
    assert_eq!(call.status, 422);
    for table in ["orders", "order_lines", "idempotency_keys", "outbox"] {
        assert_eq!(app.count(table).await, 0, "nothing half-written in {table}");
    }
    assert_eq!(app.audit_rows().await, 1);
    // The key was not used up: the corrected order goes through under it.
    let call = app
        .call(app.order_req(order_body("c@example.com", &[("AUD-3", 1)]), Some("key-3")))
        .await;
    assert_eq!(call.status, 202);
    assert_eq!(app.count("orders").await, 1);
    assert_eq!(app.audit_rows().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trail_is_listed_newest_first_filtered_and_paged() {
    let app = spawn_app().await;
    app.env.product("AUD-4", 700, 50).await;
    app.env.product("AUD-5", 900, 50).await;
    let mut calls = Vec::new();
    for i in 0..3 {
        let req = app.order_req(order_body("d@example.com", &[("AUD-4", 1 + i)]), None);
        calls.push(app.call(req).await);
    }
    for price in [800, 850] {
        let req = app.patch("AUD-5", json!({"price_cents": price}), Some(ADMIN_TOKEN));
        calls.push(app.call(req).await);
    }
    calls.push(
        app.call(app.patch("AUD-5", json!({"stock": 1}), None))
            .await,
    );
    calls.push(
        app.call(app.patch("AUD-4", json!({"stock": 3}), Some(ADMIN_TOKEN)))
            .await,
    );
    assert_eq!(app.audit_rows().await, 7);

    let all = app.audit("").await;
    assert_eq!(
        (all.total, all.items.len(), all.page, all.per_page),
        (7, 7, 1, 50)
    );
    // Newest first: the calls in reverse order.
    let listed: Vec<String> = all
        .items
        .iter()
        .map(|e| e.request_id.expect("request id").to_string())
        .collect();
    let made: Vec<String> = calls.iter().rev().map(|c| c.request_id.clone()).collect();
    assert_eq!(listed, made);
    assert!(all.items.windows(2).all(|w| w[0].at >= w[1].at));

    let count = |page: AuditPage| (page.total, page.items.len());
    assert_eq!(count(app.audit("action=order.place").await), (3, 3));
    assert_eq!(count(app.audit("action=product.update").await), (4, 4));
    assert_eq!(count(app.audit("action=dlq.redrive").await), (0, 0));
    assert_eq!(count(app.audit("actor=admin").await), (3, 3));
    assert_eq!(count(app.audit("actor=anonymous").await), (4, 4));
    assert_eq!(count(app.audit("target=product:AUD-5").await), (3, 3));
    assert_eq!(count(app.audit("outcome=denied").await), (1, 1));
    assert_eq!(
        count(
            app.audit("actor=admin&target=product:AUD-5&outcome=success")
                .await
        ),
        (2, 2)
    );
    let trace = &calls[4].trace_id;
    let by_trace = app.audit(&format!("trace_id={trace}")).await;
    assert_eq!(by_trace.total, 1);
    assert_eq!(
        by_trace.items[0].detail,
        json!({"changes": {"price_cents": 850}})
    );

    // Time windows: since is inclusive, until exclusive.
    let oldest_first: Vec<&AuditEntry> = all.items.iter().rev().collect();
    let third = oldest_first[2].at.to_rfc3339();
    let since = app.audit(&format!("since={}", urlencode(&third))).await;
    assert_eq!(since.total, 5);
    let until = app.audit(&format!("until={}", urlencode(&third))).await;
    assert_eq!(until.total, 2);
    let window = app
        .audit(&format!(
            "since={}&until={}",
            urlencode(&third),
            urlencode(&oldest_first[4].at.to_rfc3339())
        ))
        .await;
    assert_eq!(window.total, 2);
    assert_eq!(count(app.audit("since=2999-01-01T00:00:00Z").await), (0, 0));
    assert_eq!(
        count(app.audit("until=2999-01-01T00:00:00%2B02:00").await),
        (7, 7)
    );

    // Pages of 3: every entry once, in the same order as the whole list.
    let mut paged = Vec::new();
    for page in 1..=3 {
        let p = app.audit(&format!("per_page=3&page={page}")).await;
        assert_eq!((p.total, p.page, p.per_page), (7, page, 3));
        paged.extend(p.items.into_iter().map(|e| e.id));
    }
    assert_eq!(paged.len(), 7);
    assert_eq!(paged.iter().collect::<HashSet<_>>().len(), 7);
    assert_eq!(paged, all.items.iter().map(|e| e.id).collect::<Vec<_>>());
    assert!(app.audit("per_page=3&page=4").await.items.is_empty());
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn invalid_filters_are_refused_with_a_code() {
    let app = spawn_app().await;
    for query in [
        "action=product.delete",
        "outcome=maybe",
        "since=yesterday",
        "until=2026-13-01T00:00:00Z",
        "since=2026-01-01",
        "request_id=not-a-uuid",
        "trace_id=XYZ",
        "trace_id=",
        "action=",
        "since=",
        "since=2026-01-01%2012:00:00Z",
        "request_id=0123456789abcdef0123456789abcdef",
        "request_id=%7B01234567-89ab-cdef-0123-456789abcdef%7D",
        "trace_id=4BF92F3577B34DA6A3CE929D0E0E4736",
        "actor=a%00b",
        &format!("target={}", "t".repeat(201)),
        "page=0",
        "page=abc",
        "per_page=0",
        "per_page=101",
        "per_page=-1",
    ] {
        let res = app
            .http
            .get(app.url(&format!("/api/v1/audit?{query}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("GET");
        assert_error(res, 400, "invalid_query").await;
    }
}

#[tokio::test]
async fn the_trail_needs_the_admin_token() {
    let app = spawn_app().await;
    let anonymous = app.get("/api/v1/audit").await;
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    assert_error(anonymous, 401, "unauthorized").await;
    let wrong = app
        .http
        .get(app.url("/api/v1/audit"))
        .bearer_auth("wrong")
        .send()
        .await
        .expect("GET");
    assert_error(wrong, 401, "unauthorized").await;
    // Asking with a bad filter but no token is still 401: nothing is said before auth.
    let res = app.get("/api/v1/audit?action=nope").await;
    assert_error(res, 401, "unauthorized").await;
    let res = app
        .http
        .delete(app.url("/api/v1/audit"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(res.headers()["allow"], "GET");
    assert_error(res, 405, "method_not_allowed").await;
}

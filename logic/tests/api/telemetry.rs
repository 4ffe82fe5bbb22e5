//! Per-request telemetry: the trace and request ids in the answer headers, and the
//! request metrics under the matched route.

use contracts::trace::TraceParent;

use crate::helpers::spawn_app;

/// The value of the sample with exactly these labels, if `/metrics` has it.
fn sample(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(name_and_labels)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

#[tokio::test]
async fn answers_name_the_trace_and_the_request() {
    let app = spawn_app().await;
    app.env.product("TELE-1", 900, 3).await;
    let incoming = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .expect("valid");

    for _ in 0..2 {
        let res = app
            .http
            .get(app.url("/api/v1/products/TELE-1"))
            .header("traceparent", incoming.to_string())
            .send()
            .await
            .expect("GET");
        assert_eq!(res.status(), 200);
        let joined = TraceParent::parse(res.headers()["traceresponse"].to_str().expect("ascii"))
            .expect("traceresponse is a traceparent");
        assert_eq!(joined.trace_id, incoming.trace_id, "the caller's trace");
        assert_ne!(joined.parent_id, incoming.parent_id, "a span of its own");
        let id = res.headers()["x-request-id"].to_str().expect("ascii");
        let id = uuid::Uuid::parse_str(id).expect("X-Request-Id is a UUID");
        assert_eq!(id.hyphenated().to_string(), res.headers()["x-request-id"]);
    }

    // Without a traceparent: a new trace; errors and unknown paths carry the headers too.
    for path in [
        "/api/v1/products/TELE-1",
        "/api/v1/products/NOPE-404",
        "/no/such/path",
    ] {
        let res = app.get(path).await;
        let own = TraceParent::parse(res.headers()["traceresponse"].to_str().expect("ascii"))
            .expect("traceresponse is a traceparent");
        assert_ne!(own.trace_id, incoming.trace_id, "{path}");
        assert!(res.headers().contains_key("x-request-id"), "{path}");
    }
}

#[tokio::test]
async fn requests_are_counted_under_the_matched_route() {
    let app = spawn_app().await;
    app.env.product("TELE-2", 900, 3).await;
    let ok =
        r#"strata_http_requests_total{method="GET",route="/api/v1/products/{sku}",status="200"}"#;
    let not_found =
        r#"strata_http_requests_total{method="GET",route="/api/v1/products/{sku}",status="404"}"#;
    let unmatched = r#"strata_http_requests_total{method="GET",route="unmatched",status="404"}"#;
    let duration = r#"strata_http_request_duration_seconds_count{method="GET",route="/api/v1/products/{sku}"}"#;
    let before = app.metrics().await;
    let count = |metrics: &str, key: &str| sample(metrics, key).unwrap_or(0.0);

    for _ in 0..3 {
        assert_eq!(app.get("/api/v1/products/TELE-2").await.status(), 200);
    }
    assert_eq!(app.get("/api/v1/products/NOPE-404").await.status(), 404);
    assert_eq!(app.get("/no/such/path").await.status(), 404);

    // The recorder is shared by every app of this test binary: other tests add to the
    // same series, so the counts grow by at least this test's requests.
    let after = app.metrics().await;
    assert!(count(&after, ok) >= count(&before, ok) + 3.0, "{after}");
    assert!(
        count(&after, not_found) >= count(&before, not_found) + 1.0,
        "{after}"
    );
    assert!(
        count(&after, unmatched) >= count(&before, unmatched) + 1.0,
        "{after}"
    );
    assert!(
        count(&after, duration) >= count(&before, duration) + 4.0,
        "{after}"
    );
    assert!(
        !after.contains("route=\"/api/v1/products/TELE-2\""),
        "the route label is the pattern, not the path"
    );
}

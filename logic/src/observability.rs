//! Request telemetry: a root span per request carrying the W3C trace id, Prometheus
//! metrics of requests and latencies, and the `/metrics` exposition.

use std::sync::OnceLock;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{Error, HttpMessage};
use contracts::trace::TraceParent;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RequestId, RootSpanBuilder};

/// The process-wide Prometheus recorder (installed once, shared by every app in a test).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("strata_http_request_duration_seconds".to_owned()),
                &[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ],
            )
            .expect("static bucket list is valid");
        let handle = match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is installed (an embedding program's): render our own copy.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        };
        describe();
        handle
    })
}

fn describe() {
    metrics::describe_counter!(
        "strata_http_requests_total",
        "HTTP requests by route and status"
    );
    metrics::describe_histogram!(
        "strata_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request latency by route"
    );
    metrics::describe_counter!(
        "strata_cache_requests_total",
        "Read-cache lookups by result (hit or miss)"
    );
    metrics::describe_counter!(
        "strata_cache_unavailable_total",
        "Cache operations that could not reach Redis (served from Postgres instead)"
    );
    metrics::describe_gauge!(
        "strata_outbox_backlog",
        "Outbox messages not yet confirmed by the broker"
    );
    metrics::describe_counter!(
        "strata_messages_published_total",
        "Messages published to RabbitMQ and confirmed, by type"
    );
    metrics::describe_counter!("strata_orders_placed_total", "Orders accepted (202)");
}

/// Root span with the trace id of the incoming `traceparent` (or of a new trace). The
/// request's own span context is stored in the request extensions for handlers.
pub struct TracedRootSpan;

impl RootSpanBuilder for TracedRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let incoming = request
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(TraceParent::parse);
        let context = incoming.map_or_else(TraceParent::new_root, |p| p.child());
        request.extensions_mut().insert(context);
        let trace_id = context.trace_id_hex();
        tracing_actix_web::root_span!(request, trace_id = %trace_id)
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

/// The request's trace context, as set by [`TracedRootSpan`].
pub fn trace_context(req: &actix_web::HttpRequest) -> TraceParent {
    req.extensions()
        .get::<TraceParent>()
        .copied()
        .unwrap_or_else(TraceParent::new_root)
}

/// Records count and latency per route, and answers with a `traceresponse` header so a
/// caller can see which trace its request joined, and `X-Request-Id` (the id in the logs and
/// the audit trail).
pub async fn record<B: MessageBody>(
    req: ServiceRequest,
    next: actix_web::middleware::Next<B>,
) -> Result<ServiceResponse<B>, Error> {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let mut res = next.call(req).await?;
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let status = res.status().as_u16().to_string();
    metrics::counter!("strata_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("strata_http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    let request_id = res.request().extensions().get::<RequestId>().copied();
    if let Some(id) = request_id
        && let Ok(value) = HeaderValue::from_str(&id.to_string())
    {
        res.headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    let context = res.request().extensions().get::<TraceParent>().copied();
    if let Some(context) = context
        && let Ok(value) = HeaderValue::from_str(&context.to_string())
    {
        res.headers_mut()
            .insert(HeaderName::from_static("traceresponse"), value);
    }
    Ok(res)
}

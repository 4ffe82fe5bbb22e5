//! Request spans carrying a W3C trace context, and this tier's Prometheus metrics.

use std::sync::OnceLock;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{Error, HttpMessage};
use contracts::trace::TraceParent;
use metrics_exporter_prometheus::PrometheusRecorder;
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};

/// This tier's own recorder. It is not installed globally, so that it keeps working when
/// another tier shares the process (the tests run logic in-process too).
pub fn recorder() -> &'static PrometheusRecorder {
    static RECORDER: OnceLock<PrometheusRecorder> = OnceLock::new();
    RECORDER.get_or_init(|| {
        service::metrics::Prometheus::new()
            .buckets(&[
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ])
            .local(|| {
                metrics::describe_counter!("strata_http_requests_total", "HTTP requests by route");
                metrics::describe_histogram!(
                    "strata_http_request_duration_seconds",
                    metrics::Unit::Seconds,
                    "HTTP request latency by route"
                );
                metrics::describe_counter!(
                    "strata_logic_calls_total",
                    "Calls to the logic API by operation and outcome"
                );
                metrics::describe_counter!(
                    "strata_product_copies_served_total",
                    "Products served from this tier's copy, kept while logic's stock \
                     freshness lasts, instead of a call to logic"
                );
            })
    })
}

/// Runs `f` with this tier's recorder as the target of the `metrics` macros.
pub fn with_metrics(f: impl FnOnce()) {
    metrics::with_local_recorder(recorder(), f);
}

/// Starts a new trace per request: the public edge does not adopt a caller's trace id.
/// The context goes into the request extensions so calls to logic can carry a child of it.
pub struct EdgeRootSpan;

impl RootSpanBuilder for EdgeRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let context = TraceParent::new_root();
        request.extensions_mut().insert(context);
        let trace_id = context.trace_id_text();
        tracing_actix_web::root_span!(request, trace_id = %trace_id)
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

/// The request's trace context, as set by [`EdgeRootSpan`].
pub fn trace_context(req: &actix_web::HttpRequest) -> TraceParent {
    req.extensions()
        .get::<TraceParent>()
        .copied()
        .unwrap_or_else(TraceParent::new_root)
}

/// Counts requests and latency per route and names the trace in a `traceresponse` header.
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
    with_metrics(|| {
        metrics::counter!("strata_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status).increment(1);
        metrics::histogram!("strata_http_request_duration_seconds", "method" => method, "route" => route)
            .record(start.elapsed().as_secs_f64());
    });
    let context = res.request().extensions().get::<TraceParent>().copied();
    if let Some(context) = context
        && let Ok(value) = HeaderValue::from_bytes(context.header_text().as_bytes())
    {
        res.headers_mut()
            .insert(HeaderName::from_static("traceresponse"), value);
    }
    Ok(res)
}

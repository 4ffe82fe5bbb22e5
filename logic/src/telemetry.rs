//! Request telemetry: a root span per request carrying the W3C trace id, Prometheus
//! metrics of requests and latencies, the `traceresponse` and `X-Request-Id` headers, and
//! the `/metrics` exposition.
//!
//! One middleware ([`Telemetry`]) does all of it per request. Its costs are on the path of
//! every request, the cached product read foremost, which otherwise costs little more
//! than the kernel's work on the socket.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::OnceLock;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{HeaderName, HeaderValue, USER_AGENT};
use actix_web::http::{Method, StatusCode, Version};
use actix_web::{Error, HttpMessage, HttpRequest, ResponseError};
use contracts::trace::TraceParent;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::PrometheusHandle;
use service::metrics::Prometheus;
use tracing::field::{Empty, display};
use tracing::{Instrument, Span};
use uuid::Uuid;

/// The process's Prometheus recorder with logic's metric descriptions (installed once,
/// shared by every app in a test).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        Prometheus::new()
            .buckets_for(
                "strata_http_request_duration_seconds",
                &[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ],
            )
            .install(describe)
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

/// The id of one request: in the `X-Request-Id` answer header, in the root span (so in
/// every log line of the request) and in the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId(pub Uuid);

/// The request's trace context, as set by [`Telemetry`].
pub fn trace_context(req: &HttpRequest) -> TraceParent {
    req.extensions()
        .get::<TraceParent>()
        .copied()
        .unwrap_or_else(TraceParent::new_root)
}

/// The request's id, as set by [`Telemetry`].
pub fn request_id(req: &HttpRequest) -> Option<Uuid> {
    req.extensions().get::<RequestId>().map(|id| id.0)
}

/// The `route` label of a request that matched no route.
const UNMATCHED: &str = "unmatched";

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const TRACERESPONSE: HeaderName = HeaderName::from_static("traceresponse");

/// Per request: a root span with the trace id of the incoming `traceparent` (or of a new
/// trace) and a new request id, both also in the request extensions for handlers; the
/// request's count and latency under its route; a `traceresponse` header, so a caller can
/// see which trace its request joined, and `X-Request-Id`; and a log event for a failed
/// request (a warning for a client error, an error otherwise).
///
/// The subscriber's fmt layer writes every field given at span creation into a string right
/// away, for every request, although it prints them only when an event happens inside the
/// request. So the span starts with what identifies the request in such an event (method,
/// target, trace id, request id); the route, the status, the error and the connection's
/// details are recorded when a request fails, before its error event. The route is known
/// only after routing, from the matched resource; matching it before would run the
/// router's regex a second time per request.
pub struct Telemetry;

impl<S, B> Transform<S, ServiceRequest> for Telemetry
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = TelemetryService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(TelemetryService { service }))
    }
}

pub struct TelemetryService<S> {
    service: S,
}

impl<S, B> Service<ServiceRequest> for TelemetryService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>>>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let start = Instant::now();
        let method = req.method().clone();
        let context = req
            .headers()
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(TraceParent::parse)
            .map_or_else(TraceParent::new_root, |p| p.child());
        let request_id = RequestId(Uuid::new_v4());
        {
            let mut extensions = req.extensions_mut();
            extensions.insert(context);
            extensions.insert(request_id);
        }
        let span = root_span(&req, &context, request_id);
        let response = span.in_scope(|| self.service.call(req));
        let finish_span = span.clone();
        Box::pin(
            async move {
                let outcome = response.await;
                finish(outcome, &finish_span, start, &method, context, request_id)
            }
            .instrument(span),
        )
    }
}

fn root_span(req: &ServiceRequest, context: &TraceParent, request_id: RequestId) -> Span {
    let mut id_buf = Uuid::encode_buffer();
    let request_id = request_id.0.hyphenated().encode_lower(&mut id_buf);
    let target = req.uri().path_and_query().map_or("", |p| p.as_str());
    tracing::info_span!(
        "HTTP request",
        http.method = %req.method(),
        http.target = %target,
        trace_id = %context.trace_id_text(),
        request_id = %request_id,
        http.route = Empty,
        http.status_code = Empty,
        http.flavor = Empty,
        http.scheme = Empty,
        http.host = Empty,
        http.client_ip = Empty,
        http.user_agent = Empty,
        otel.name = Empty,
        otel.kind = Empty,
        otel.status_code = Empty,
        exception.message = Empty,
        exception.details = Empty,
    )
}

/// Metrics, headers and, for a failure, the span's details and the error event.
fn finish<B>(
    outcome: Result<ServiceResponse<B>, Error>,
    span: &Span,
    start: Instant,
    method: &Method,
    context: TraceParent,
    request_id: RequestId,
) -> Result<ServiceResponse<B>, Error> {
    let seconds = start.elapsed().as_secs_f64();
    let mut res = match outcome {
        Ok(res) => res,
        Err(err) => {
            let error = err.as_response_error();
            let status = error.status_code();
            observe(method, UNMATCHED, status, seconds);
            record_failure(span, None, status, error);
            return Err(err);
        }
    };
    // After routing this reads the matched resource; it does not match the path again.
    let route = res.request().match_pattern();
    let route = route.as_deref().unwrap_or(UNMATCHED);
    let status = res.status();
    observe(method, route, status, seconds);
    if status.is_client_error() || status.is_server_error() || res.response().error().is_some() {
        let request = Some((res.request(), route));
        match res.response().error() {
            Some(error) => record_failure(span, request, status, error.as_response_error()),
            None => record_status(span, request, status),
        }
    }
    let mut id_buf = Uuid::encode_buffer();
    let id = request_id.0.hyphenated().encode_lower(&mut id_buf);
    let headers = res.headers_mut();
    if let Ok(value) = HeaderValue::from_str(id) {
        headers.insert(X_REQUEST_ID, value);
    }
    if let Ok(value) = HeaderValue::from_bytes(context.header_text().as_bytes()) {
        headers.insert(TRACERESPONSE, value);
    }
    Ok(res)
}

/// A failed request's span fields that only its error event needs, then the event.
fn record_failure(
    span: &Span,
    request: Option<(&HttpRequest, &str)>,
    status: StatusCode,
    error: &dyn ResponseError,
) {
    span.record("exception.message", display(error));
    span.record("exception.details", tracing::field::debug(error));
    record_status(span, request, status);
    if status.is_client_error() {
        tracing::warn!("Error encountered while processing the incoming HTTP request: {error:?}");
    } else {
        tracing::error!("Error encountered while processing the incoming HTTP request: {error:?}");
    }
}

fn record_status(span: &Span, request: Option<(&HttpRequest, &str)>, status: StatusCode) {
    if let Some((request, route)) = request {
        let connection = request.connection_info();
        let user_agent = request
            .headers()
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        span.record("http.route", display(route));
        span.record(
            "otel.name",
            display(format_args!("{} {route}", request.method())),
        );
        span.record("http.flavor", display(http_flavor(request.version())));
        span.record("http.scheme", display(connection.scheme()));
        span.record("http.host", display(connection.host()));
        span.record(
            "http.client_ip",
            display(connection.realip_remote_addr().unwrap_or("")),
        );
        span.record("http.user_agent", display(user_agent));
    }
    span.record("otel.kind", "server");
    span.record("http.status_code", status.as_u16());
    span.record(
        "otel.status_code",
        if status.is_server_error() {
            "ERROR"
        } else {
            "OK"
        },
    );
}

fn http_flavor(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_11 => "1.1",
        Version::HTTP_2 => "2.0",
        Version::HTTP_3 => "3.0",
        _ => "other",
    }
}

/// The metric handles of one route and method: the latency histogram and a counter per
/// status seen.
struct RouteMetrics {
    method: Method,
    duration: Histogram,
    requests: Vec<(StatusCode, Counter)>,
}

thread_local! {
    /// Handles by route, each worker thread its own: looking a handle up by its labels in
    /// the recorder (label vectors of owned strings, hashed) costs more per request than
    /// the request's own bookkeeping. The set is bounded by routes x methods x statuses.
    static HANDLES: RefCell<HashMap<String, Vec<RouteMetrics>>> = RefCell::new(HashMap::new());
}

/// Counts the request and records its latency, under its route, method and status.
fn observe(method: &Method, route: &str, status: StatusCode, seconds: f64) {
    HANDLES.with_borrow_mut(|handles| {
        if !handles.contains_key(route) {
            handles.insert(route.to_owned(), Vec::new());
        }
        let by_method = handles.get_mut(route).expect("inserted above");
        let index = match by_method.iter().position(|m| m.method == *method) {
            Some(index) => index,
            None => {
                by_method.push(RouteMetrics {
                    method: method.clone(),
                    duration: metrics::histogram!(
                        "strata_http_request_duration_seconds",
                        "method" => method.as_str().to_owned(),
                        "route" => route.to_owned()
                    ),
                    requests: Vec::new(),
                });
                by_method.len() - 1
            }
        };
        let entry = &mut by_method[index];
        entry.duration.record(seconds);
        let index = match entry.requests.iter().position(|(s, _)| *s == status) {
            Some(index) => index,
            None => {
                entry.requests.push((
                    status,
                    metrics::counter!(
                        "strata_http_requests_total",
                        "method" => method.as_str().to_owned(),
                        "route" => route.to_owned(),
                        "status" => status.as_str().to_owned()
                    ),
                ));
                entry.requests.len() - 1
            }
        };
        entry.requests[index].1.increment(1);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_cached_per_route_method_and_status() {
        let get = Method::GET;
        for _ in 0..3 {
            observe(&get, "/test/{a}", StatusCode::OK, 0.001);
        }
        observe(&get, "/test/{a}", StatusCode::NOT_FOUND, 0.001);
        observe(&Method::PATCH, "/test/{a}", StatusCode::OK, 0.001);
        observe(&get, UNMATCHED, StatusCode::NOT_FOUND, 0.001);
        HANDLES.with_borrow(|handles| {
            let route = &handles["/test/{a}"];
            assert_eq!(route.len(), 2, "GET and PATCH");
            assert_eq!(route[0].method, Method::GET);
            assert_eq!(route[0].requests.len(), 2, "200 and 404");
            assert_eq!(route[1].requests.len(), 1);
            assert_eq!(handles[UNMATCHED].len(), 1);
        });
    }
}

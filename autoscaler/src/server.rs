//! The autoscaler's small HTTP surface: `/healthz`, `/status` (JSON) and `/metrics`
//! (Prometheus text).

use std::net::TcpListener;
use std::sync::{Arc, OnceLock};

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, get, web};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::status::StatusBoard;

/// The process-wide Prometheus recorder (installed once; tests start several apps).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => handle,
            // Another recorder is installed (an embedding program's): render our own copy.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        };
        describe();
        handle
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!(
        "strata_autoscaler_queue_messages",
        "Messages of the scaled queue at the last reading, by state (ready, unacked)"
    );
    describe_gauge!(
        "strata_autoscaler_metric_available",
        "1 when the last reading succeeded, 0 when the decision had no metric"
    );
    describe_gauge!(
        "strata_autoscaler_metric_ready_only",
        "1 when the last reading came from the AMQP fallback (ready count only)"
    );
    describe_gauge!(
        "strata_autoscaler_workers_current",
        "Workers running before the last decision"
    );
    describe_gauge!(
        "strata_autoscaler_workers_desired",
        "Workers wanted by the last decision"
    );
    describe_gauge!(
        "strata_autoscaler_workers_draining",
        "Workers told to stop that are finishing their in-flight messages"
    );
    describe_counter!(
        "strata_autoscaler_decisions_total",
        "Decisions by action (up, down, hold)"
    );
    describe_counter!(
        "strata_autoscaler_metric_failures_total",
        "Failed queue readings by source (management_api, amqp)"
    );
    describe_counter!(
        "strata_autoscaler_worker_starts_total",
        "Worker processes started"
    );
    describe_counter!(
        "strata_autoscaler_worker_exits_total",
        "Worker exits by kind (drained, killed after the drain timeout, unexpected)"
    );
    describe_counter!(
        "strata_autoscaler_workers_replaced_total",
        "Workers that died on their own and were started again"
    );
}

#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

#[get("/status")]
async fn status(board: web::Data<StatusBoard>) -> HttpResponse {
    HttpResponse::Ok().json(board.snapshot())
}

#[get("/metrics")]
async fn metrics_text() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(prometheus().render())
}

/// Starts serving on `listener`; signals are handled by the application.
pub fn serve(listener: TcpListener, board: Arc<StatusBoard>) -> std::io::Result<Server> {
    prometheus();
    let board = web::Data::from(board);
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(board.clone())
            .service(healthz)
            .service(status)
            .service(metrics_text)
    })
    .listen(listener)?
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .run())
}

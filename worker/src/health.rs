//! The worker's optional HTTP surface (`HEALTH_LISTEN`): `/healthz` while the process
//! runs, `/readyz` while the consumer is connected and consuming, `/metrics` in the
//! Prometheus text format. Container platforms probe the first two; nothing else listens.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, get, web};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Where the consumer is in its life; only `Consuming` is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Not yet connected to the broker.
    Starting = 0,
    /// Consuming `orders.fulfil`.
    Consuming = 1,
    /// The connection failed or ended; retrying with backoff.
    Reconnecting = 2,
    /// Told to stop: finishing in-flight messages, taking no new ones.
    Draining = 3,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Consuming => "consuming",
            Phase::Reconnecting => "reconnecting",
            Phase::Draining => "draining",
        }
    }
}

/// The consumer's phase, shared between the consumer and the HTTP handlers.
#[derive(Debug, Default)]
pub struct Readiness(AtomicU8);

impl Readiness {
    pub fn set(&self, phase: Phase) {
        self.0.store(phase as u8, Ordering::Release);
        metrics::gauge!("strata_worker_consuming").set(if phase == Phase::Consuming {
            1.0
        } else {
            0.0
        });
    }

    pub fn phase(&self) -> Phase {
        match self.0.load(Ordering::Acquire) {
            1 => Phase::Consuming,
            2 => Phase::Reconnecting,
            3 => Phase::Draining,
            _ => Phase::Starting,
        }
    }
}

/// The process-wide Prometheus recorder (installed once; tests start several workers).
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
    metrics::describe_counter!(
        "strata_worker_messages_total",
        "Deliveries of orders.fulfil by outcome (fulfilled, rejected, duplicate, already_final, retry, dead_lettered)"
    );
    metrics::describe_gauge!(
        "strata_worker_in_flight",
        "Deliveries being processed (at most the prefetch)"
    );
    metrics::describe_gauge!(
        "strata_worker_consuming",
        "1 while the consumer is connected and consuming, 0 otherwise"
    );
}

#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

#[get("/readyz")]
async fn readyz(readiness: web::Data<Readiness>) -> HttpResponse {
    let phase = readiness.phase();
    let body = serde_json::json!({"status": phase.name()});
    if phase == Phase::Consuming {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

#[get("/metrics")]
async fn metrics_text() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(prometheus().render())
}

/// Starts serving on `listener`; the worker handles signals and stops the server itself.
pub fn serve(listener: TcpListener, readiness: Arc<Readiness>) -> std::io::Result<Server> {
    prometheus();
    let readiness = web::Data::from(readiness);
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(readiness.clone())
            .service(healthz)
            .service(readyz)
            .service(metrics_text)
    })
    .listen(listener)?
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .run())
}

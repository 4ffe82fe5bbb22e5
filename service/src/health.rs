//! The health endpoints of a binary that is not a web server (the worker, the
//! autoscaler): `/healthz` while the process runs, `/readyz` from the binary's own check,
//! `/metrics` in the Prometheus text format, plus whatever routes the binary adds.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpResponse, HttpServer, web};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::task::JoinHandle;

/// What `/readyz` answers: `Ok(status)` is 200, `Err(status)` is 503, both with
/// `{"status": status}`.
pub type ReadyCheck = Arc<dyn Fn() -> Result<&'static str, &'static str> + Send + Sync>;

/// The endpoints, before they are started.
pub struct HealthServer {
    listener: TcpListener,
    metrics: PrometheusHandle,
    ready: ReadyCheck,
    routes: Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>,
    shutdown_timeout: Duration,
}

/// The running endpoints.
pub struct RunningHealthServer {
    handle: ServerHandle,
    task: JoinHandle<std::io::Result<()>>,
}

impl HealthServer {
    /// Endpoints on `listener`, rendering `metrics`; ready until told otherwise.
    pub fn new(listener: TcpListener, metrics: PrometheusHandle) -> Self {
        HealthServer {
            listener,
            metrics,
            ready: Arc::new(|| Ok("ready")),
            routes: Arc::new(|_| {}),
            shutdown_timeout: Duration::from_secs(1),
        }
    }

    /// The check behind `/readyz`.
    pub fn ready_check(mut self, ready: ReadyCheck) -> Self {
        self.ready = ready;
        self
    }

    /// More routes of the binary's own (the autoscaler's `/status`).
    pub fn routes(
        mut self,
        routes: impl Fn(&mut web::ServiceConfig) + Send + Sync + 'static,
    ) -> Self {
        self.routes = Arc::new(routes);
        self
    }

    /// How long a stop waits for requests in flight.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Starts serving on one thread. Signals are the binary's: stop it with
    /// [`RunningHealthServer::stop`].
    pub fn start(self) -> std::io::Result<RunningHealthServer> {
        let HealthServer {
            listener,
            metrics,
            ready,
            routes,
            shutdown_timeout,
        } = self;
        let metrics = web::Data::new(metrics);
        let ready = web::Data::new(ready);
        let server: Server = HttpServer::new(move || {
            let routes = routes.clone();
            App::new()
                .app_data(metrics.clone())
                .app_data(ready.clone())
                .route("/healthz", web::get().to(healthz))
                .route("/readyz", web::get().to(readyz))
                .route("/metrics", web::get().to(render))
                .configure(move |config| routes(config))
        })
        .listen(listener)?
        .workers(1)
        .disable_signals()
        .shutdown_timeout(shutdown_timeout.as_secs())
        .run();
        Ok(RunningHealthServer {
            handle: server.handle(),
            task: tokio::spawn(server),
        })
    }
}

impl RunningHealthServer {
    /// Stops accepting, lets requests in flight finish, and waits for the server's end.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        let _ = self.task.await;
    }

    /// Resolves when the server ends by itself (it should not), with its result.
    pub async fn ended(&mut self) -> anyhow::Result<()> {
        (&mut self.task).await??;
        Ok(())
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn readyz(ready: web::Data<ReadyCheck>) -> HttpResponse {
    match (ready.get_ref())() {
        Ok(status) => HttpResponse::Ok().json(serde_json::json!({ "status": status })),
        Err(status) => {
            HttpResponse::ServiceUnavailable().json(serde_json::json!({ "status": status }))
        }
    }
}

async fn render(metrics: web::Data<PrometheusHandle>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(crate::metrics::CONTENT_TYPE)
        .body(metrics.render())
}

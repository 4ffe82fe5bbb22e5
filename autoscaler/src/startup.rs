//! Building and running the autoscaler: settings checked, backend chosen, health
//! endpoints and `/status` bound, control loop started; the stop token (SIGINT/SIGTERM in
//! `main`) stops the loop and drains the workers.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use anyhow::Context;
use service::health::HealthServer;
use tokio_util::sync::CancellationToken;

use crate::AutoscalerSettings;
use crate::backend::{AnyBackend, ComposeBackend, ComposeConfig, ProcessBackend, ProcessConfig};
use crate::config::BackendKind;
use crate::controller::Controller;
use crate::decision::Decider;
use crate::metrics_source::QueueMetrics;
use crate::status::StatusBoard;

pub struct Application {
    server: HealthServer,
    address: SocketAddr,
    controller: Controller,
    status: Arc<StatusBoard>,
    stop: CancellationToken,
    /// (most workers, reserve) to check against Postgres before anything starts.
    budget: Option<(u32, u32)>,
}

impl Application {
    /// Checks the settings, binds the listener (port 0 picks a free one) and prepares the
    /// backend. Nothing is started before `run_until_stopped`.
    pub fn build(settings: AutoscalerSettings) -> anyhow::Result<Self> {
        let settings = settings.resolve_files()?;
        let policy = settings.policy();
        policy.validate().map_err(anyhow::Error::msg)?;
        let backend = match settings.backend {
            BackendKind::Process => {
                let worker_bin = settings.worker_bin()?;
                anyhow::ensure!(
                    worker_bin.is_file(),
                    "worker executable {} not found (set --worker-bin / WORKER_BIN)",
                    worker_bin.display()
                );
                AnyBackend::Process(ProcessBackend::new(ProcessConfig {
                    worker_bin,
                    worker_env: settings.worker_env.clone(),
                    drain_timeout: settings.drain_timeout,
                }))
            }
            BackendKind::Compose => AnyBackend::Compose(ComposeBackend::new(ComposeConfig {
                bin: settings.compose_bin.clone(),
                files: settings.compose_files.clone(),
                project: settings.compose_project.clone(),
                service: settings.compose_service.clone(),
                // Scale-in waits for compose to stop containers (their grace period).
                command_timeout: settings.drain_timeout + std::time::Duration::from_secs(30),
            })),
        };
        let status = Arc::new(StatusBoard::new(&settings));
        let listener = TcpListener::bind(settings.listen)
            .with_context(|| format!("binding {}", settings.listen))?;
        let address = listener.local_addr()?;
        let board = web::Data::from(status.clone());
        let server = HealthServer::new(listener, crate::telemetry::prometheus())
            .routes(move |config| {
                config
                    .app_data(board.clone())
                    .route("/status", web::get().to(status_json));
            })
            .shutdown_timeout(Duration::from_secs(5));
        let controller = Controller {
            backend,
            source: QueueMetrics::new(&settings)?,
            decider: Decider::new(policy),
            poll_interval: settings.poll_interval,
            status: status.clone(),
        };
        tracing::info!(
            backend = ?settings.backend,
            queue = %settings.queue,
            min = settings.min,
            max = settings.max,
            target_backlog = settings.target_backlog,
            poll_interval = ?settings.poll_interval,
            scale_down_window = ?settings.scale_down_window,
            %address,
            "autoscaler ready"
        );
        Ok(Application {
            server,
            address,
            controller,
            status,
            stop: CancellationToken::new(),
            budget: settings
                .db_budget_check
                .then_some((settings.max, settings.db_reserve)),
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// What `/status` shows, without HTTP.
    pub fn status(&self) -> Arc<StatusBoard> {
        self.status.clone()
    }

    /// Cancelling this token stops the autoscaler as a signal would.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Uses `stop` as the stop token (the one `main` wired to the signals).
    pub fn with_stop_token(mut self, stop: CancellationToken) -> Self {
        self.stop = stop;
        self
    }

    /// Runs until the stop token is cancelled: then the loop stops, the workers of the
    /// process backend drain and exit, and the HTTP server stops.
    /// First of all, with the budget check on, `worker check-budget` must pass: a fleet
    /// that could exhaust Postgres' connections is refused before any worker starts.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        if let Some((max, reserve)) = self.budget {
            let fits = self
                .controller
                .backend
                .check_budget(max, reserve)
                .await
                .context("the Postgres connection budget check failed")?;
            tracing::info!(check = %fits, "Postgres connection budget");
        }
        let stop = self.stop.clone();
        let mut server = self.server.start()?;
        let controller = tokio::spawn(self.controller.run(stop.clone()));
        tokio::select! {
            result = server.ended() => {
                // The HTTP server ended by itself: stop scaling too, draining the workers.
                stop.cancel();
                let drained = controller.await.context("the control loop panicked")?;
                result.context("the HTTP server failed")?;
                return drained;
            }
            _ = stop.cancelled() => {}
        }
        tracing::info!("stopping: draining the workers");
        let drained = controller.await.context("the control loop panicked")?;
        server.stop().await;
        drained
    }
}

/// `/status`: the last decisions and readings, as JSON.
async fn status_json(board: web::Data<StatusBoard>) -> HttpResponse {
    HttpResponse::Ok().json(board.snapshot())
}

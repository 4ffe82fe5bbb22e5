//! Building and running the autoscaler: settings checked, backend chosen, HTTP surface
//! bound, control loop started; SIGINT/SIGTERM stop the loop and drain the workers.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::Server;
use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::AutoscalerSettings;
use crate::backend::{AnyBackend, ComposeBackend, ComposeConfig, ProcessBackend, ProcessConfig};
use crate::config::BackendKind;
use crate::controller::Controller;
use crate::decision::Decider;
use crate::metrics_source::QueueMetrics;
use crate::status::StatusBoard;

pub struct Application {
    server: Server,
    address: SocketAddr,
    controller: Controller,
    status: Arc<StatusBoard>,
    stop: CancellationToken,
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
        let server = crate::server::serve(listener, status.clone())?;
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

    /// Runs until SIGINT/SIGTERM or the stop token: then the loop stops, the workers of
    /// the process backend drain and exit, and the HTTP server stops.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let stop = self.stop.clone();
        let mut server = tokio::spawn(self.server);
        let controller = tokio::spawn(self.controller.run(stop.clone()));
        tokio::select! {
            result = &mut server => {
                // The HTTP server ended by itself: stop scaling too, draining the workers.
                stop.cancel();
                let drained = controller.await.context("the control loop panicked")?;
                result.context("the HTTP server panicked")??;
                return drained;
            }
            _ = shutdown_signal(&stop) => {}
        }
        tracing::info!("stopping: draining the workers");
        stop.cancel();
        let drained = controller.await.context("the control loop panicked")?;
        handle.stop(true).await;
        server.await.context("the HTTP server panicked")??;
        drained
    }
}

/// Resolves on SIGINT, SIGTERM, or when the token is cancelled.
async fn shutdown_signal(stop: &CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = stop.cancelled() => {}
    }
}

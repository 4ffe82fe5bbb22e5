//! Building and running the worker: the pool, the payment gateway, the health endpoints,
//! the wake-ups of the outbox relay, and the consumer; a stop drains in-flight messages.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use service::health::HealthServer;
use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::WorkerSettings;
use crate::consumer::Consumer;
use crate::fulfilment::PaymentGateway;
use crate::health::{Phase, Readiness};
use crate::inventory::FifoConsumers;

pub struct Application {
    consumer: Consumer,
    fifo: FifoConsumers,
    pool: PgPool,
    stop: CancellationToken,
    readiness: Arc<Readiness>,
    /// Bound by `build` when `HEALTH_LISTEN` is set; served by `run_until_stopped`.
    health: Option<HealthServer>,
    health_addr: Option<SocketAddr>,
}

impl Application {
    /// Checks the settings, builds the pool (connections open on first use) and binds the
    /// health endpoints' listener. Nothing is consumed before `run_until_stopped`.
    pub fn build(settings: WorkerSettings) -> anyhow::Result<Self> {
        let data = settings.data.clone().resolve_files()?;
        let pool = data::store::db::pool(&data)?;
        let gateway = PaymentGateway {
            latency: Duration::from_millis(settings.payment_latency_ms),
            decline_rate: settings.payment_decline_rate.clamp(0.0, 1.0),
        };
        let readiness = Arc::new(Readiness::default());
        let health = settings
            .health_listen
            .map(|addr| {
                let listener = TcpListener::bind(addr)
                    .with_context(|| format!("binding HEALTH_LISTEN {addr}"))?;
                anyhow::Ok(
                    HealthServer::new(listener, crate::telemetry::prometheus())
                        .ready_check(readiness.clone().check()),
                )
            })
            .transpose()?;
        let health_addr = health.as_ref().map(HealthServer::local_addr).transpose()?;
        // One permit per pooled connection: how many messages are processed at once.
        let slots = Arc::new(Semaphore::new(data.database_max_connections.max(1) as usize));
        let stop = CancellationToken::new();
        let settings = Arc::new(WorkerSettings { data, ..settings });
        let fifo = FifoConsumers::new(settings.clone(), pool.clone(), stop.clone());
        let consumer = Consumer {
            settings,
            pool: pool.clone(),
            gateway,
            slots,
            readiness: readiness.clone(),
            stop: stop.clone(),
        };
        Ok(Application {
            consumer,
            fifo,
            pool,
            stop,
            readiness,
            health,
            health_addr,
        })
    }

    /// The bound address of `/healthz`, `/readyz` and `/metrics` (port 0 resolved), when
    /// `HEALTH_LISTEN` is set.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health_addr
    }

    /// Where the consumer is (what `/readyz` reports).
    pub fn readiness(&self) -> Arc<Readiness> {
        self.readiness.clone()
    }

    /// Uses `stop` as the stop token (the one `main` wired to the signals).
    pub fn with_stop_token(mut self, stop: CancellationToken) -> Self {
        self.consumer.stop = stop.clone();
        self.fifo.stop = stop.clone();
        self.stop = stop;
        self
    }

    /// Cancelling this token drains and stops the worker as SIGTERM does.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Consumes until the stop token is cancelled, then stops taking messages, finishes
    /// and acks what is in flight, and returns.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let health = match self.health {
            Some(server) => {
                let running = server.start()?;
                tracing::info!(address = ?self.health_addr, "health endpoints listening");
                Some(running)
            }
            None => None,
        };
        // The wake-ups of the relays after each commit, sent by a task of their own; it
        // stops after the drain, so the last commits are announced too.
        let notifier_stop = CancellationToken::new();
        let notifier = tokio::spawn(data::messaging::outbox::notifier(
            self.pool.clone(),
            notifier_stop.clone(),
        ));
        tokio::join!(self.consumer.run(), self.fifo.run());
        self.readiness.set(Phase::Draining);
        notifier_stop.cancel();
        let _ = notifier.await;
        self.pool.close().await;
        if let Some(health) = health {
            health.stop().await;
        }
        tracing::info!("worker stopped");
        Ok(())
    }
}

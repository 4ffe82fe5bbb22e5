//! Building and running the worker: the pool, the payment gateway, the health endpoints,
//! the outbox relay (or the wake-ups of other relays), and the consumer; a stop drains
//! in-flight messages.

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use service::health::HealthServer;
use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use data::messaging::relay::RelayConfig;

use crate::WorkerSettings;
use crate::consumer::Consumer;
use crate::fulfilment::PaymentGateway;
use crate::functions::{Function, FunctionConsumer};
use crate::health::{Phase, Readiness};
use crate::inventory::FifoConsumers;
use crate::subscriptions::Subscriptions;

pub struct Application {
    consumer: Consumer,
    fifo: FifoConsumers,
    /// `--function <name>`: this process runs only that handler.
    function: Option<FunctionConsumer>,
    /// None when `SUBSCRIPTIONS_DELIVERY` is off.
    subscriptions: Option<Subscriptions>,
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
        settings.check()?;
        let function = settings
            .function
            .as_deref()
            .map(Function::parse)
            .transpose()?;
        let gateway = PaymentGateway::new(
            &pool,
            Duration::from_millis(settings.payment_latency_ms),
            settings.payment_decline_rate,
        )
        .with_hang_rate(settings.payment_hang_rate);
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
        // One permit per pooled connection: how many saga steps run at once (a payment in
        // flight holds none).
        let slots = Arc::new(Semaphore::new(data.database_max_connections.max(1) as usize));
        let stop = CancellationToken::new();
        let settings = Arc::new(WorkerSettings { data, ..settings });
        let fifo = FifoConsumers::new(settings.clone(), pool.clone(), stop.clone());
        let function = function.map(|function| FunctionConsumer {
            function,
            settings: settings.clone(),
            pool: pool.clone(),
            readiness: readiness.clone(),
            stop: stop.clone(),
        });
        // A function worker runs its handler only: no subscription manager.
        let subscriptions = if function.is_some() {
            None
        } else {
            Subscriptions::new(&settings, pool.clone(), stop.clone())?
        };
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
            function,
            subscriptions,
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
        if let Some(function) = &mut self.function {
            function.stop = stop.clone();
        }
        if let Some(subscriptions) = &mut self.subscriptions {
            subscriptions.stop = stop.clone();
        }
        self.stop = stop;
        self
    }

    /// Cancelling this token drains and stops the worker as SIGTERM does.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Consumes until the stop token is cancelled, then stops taking messages, finishes
    /// and acks what is in flight, and returns. From the stop on, everything (the drain,
    /// the relay's last batches, closing the pool) fits in the drain timeout:
    /// whatever still runs then is abandoned, its messages left to the broker to
    /// redeliver.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let health = match self.health {
            Some(server) => {
                let running = server.start()?;
                tracing::info!(address = ?self.health_addr, "health endpoints listening");
                Some(running)
            }
            None => None,
        };
        // This worker's relay publishes its events (woken in memory by each commit, no
        // NOTIFY); without one, a notifier wakes the other processes' relays. Either stops
        // after the drain, so the last commits are published (or announced) too.
        let publishing_stop = CancellationToken::new();
        let relay = &self.consumer.settings.relay;
        let mut publishing = if relay.outbox_relay {
            tokio::spawn(data::messaging::relay::run(
                self.pool.clone(),
                self.consumer.settings.data.clone(),
                RelayConfig {
                    listen: false,
                    wait_first: true,
                    ..relay.config("strata-worker-relay")
                },
                publishing_stop.clone(),
            ))
        } else {
            tokio::spawn(data::messaging::outbox::notifier(
                self.pool.clone(),
                publishing_stop.clone(),
            ))
        };
        let drain_timeout = self.consumer.settings.drain_timeout();
        let stop = self.stop.clone();
        let stopped_at = OnceLock::new();
        let deadline = async {
            stop.cancelled().await;
            let at = *stopped_at.get_or_init(Instant::now);
            tokio::time::sleep_until(at + drain_timeout).await;
        };
        // The consumers (the orders, the FIFO partitions, the subscriptions) and the
        // sweeper, boxed, so that dropping them below aborts the message tasks they still
        // hold (and returns their pooled connections) before the pool is closed.
        let sweeper = crate::fulfilment::sweeper::run(
            self.pool.clone(),
            self.consumer.settings.reservation_sweep(),
            stop.clone(),
        );
        let subscriptions = async {
            if let Some(subscriptions) = self.subscriptions {
                subscriptions.run().await;
            }
        };
        let function = self.function.as_ref();
        let mut run = Box::pin(async {
            match function {
                Some(function) => function.run().await,
                None => {
                    tokio::join!(self.consumer.run(), self.fifo.run(), sweeper, subscriptions);
                }
            }
        });
        tokio::pin!(deadline);
        let drained = tokio::select! {
            _ = &mut run => true,
            _ = &mut deadline => false,
        };
        if !drained {
            tracing::warn!(
                ?drain_timeout,
                waiting_for_database = self.readiness.waiting_for_database(),
                "drain timed out; abandoning what is still in flight (the broker redelivers it)"
            );
        }
        drop(run);
        self.readiness.set(Phase::Draining);
        publishing_stop.cancel();
        // What remains of the drain timeout, and at least a moment for the last batch or
        // wake-up; rows left then wait for another relay.
        let end = *stopped_at.get_or_init(Instant::now) + drain_timeout;
        let rest = |floor: Duration| end.saturating_duration_since(Instant::now()).max(floor);
        if tokio::time::timeout(rest(Duration::from_millis(200)), &mut publishing)
            .await
            .is_err()
        {
            publishing.abort();
        }
        if tokio::time::timeout(rest(Duration::from_millis(200)), self.pool.close())
            .await
            .is_err()
        {
            tracing::warn!("the database pool did not close in time");
        }
        if let Some(health) = health {
            health.stop().await;
        }
        tracing::info!(drained, "worker stopped");
        Ok(())
    }
}

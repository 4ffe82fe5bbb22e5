//! The fulfilment consumer: connection with reconnect, prefetch, one task per delivery,
//! ack after commit, and a drain on shutdown.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use backon::{BackoffBuilder, ExponentialBuilder};
use contracts::trace::TraceParent;
use contracts::{Envelope, FULFIL_QUEUE, FulfilOrder, MessageKind};
use data::fulfil::{self, FulfilError, Outcome};
use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::WorkerSettings;
use crate::health::{Phase, Readiness};
use crate::payment::PaymentGateway;

/// What to do with a delivery once handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Done (or a duplicate): ack.
    Ack(Option<Outcome>),
    /// Transient failure: put it back; the delivery limit bounds the retries.
    Retry(String),
    /// It can never succeed: dead-letter it at once.
    DeadLetter(String),
}

pub struct Worker {
    settings: WorkerSettings,
    pool: PgPool,
    payment: PaymentGateway,
    stop: CancellationToken,
    /// One permit per pooled connection: how many messages are processed at once.
    slots: Arc<Semaphore>,
    readiness: Arc<Readiness>,
    /// Bound by `build` when `HEALTH_LISTEN` is set; served by `run_until_stopped`.
    health_listener: Option<TcpListener>,
    health_addr: Option<SocketAddr>,
}

fn header_text(headers: Option<&FieldTable>, name: &str) -> Option<String> {
    match headers?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// Handles one `FulfilOrder` message body: the single-step entry point that the consumer
/// uses and tests drive directly. `message_id` is the AMQP message-id property when set.
pub async fn handle_message(
    pool: &PgPool,
    payment: &PaymentGateway,
    message_id: Option<&str>,
    body: &[u8],
) -> Disposition {
    let envelope: Envelope<FulfilOrder> = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(err) => return Disposition::DeadLetter(format!("unreadable message: {err}")),
    };
    if envelope.kind != FulfilOrder::KIND {
        return Disposition::DeadLetter(format!("unexpected message type {}", envelope.kind));
    }
    if envelope.schema_version > FulfilOrder::SCHEMA_VERSION {
        return Disposition::DeadLetter(format!(
            "unsupported schema version {}",
            envelope.schema_version
        ));
    }
    let message_id = match message_id.map(Uuid::parse_str) {
        Some(Ok(id)) => id,
        Some(Err(_)) => return Disposition::DeadLetter("message-id is not a UUID".to_owned()),
        None => envelope.message_id,
    };
    let traceparent = envelope
        .traceparent
        .as_deref()
        .and_then(TraceParent::parse)
        .map(|p| p.child().to_string());
    let order_id = envelope.payload.order_id;
    let result = fulfil::fulfil(pool, message_id, order_id, traceparent, |total| {
        payment.charge(total)
    })
    .await;
    match result {
        Ok(outcome) => {
            let label = match &outcome {
                Outcome::Fulfilled => "fulfilled",
                Outcome::Rejected(_) => "rejected",
                Outcome::Duplicate => "duplicate",
                Outcome::AlreadyFinal(_) => "already_final",
            };
            metrics::counter!("strata_worker_messages_total", "outcome" => label).increment(1);
            tracing::info!(order.id = %order_id, message.id = %message_id, outcome = ?outcome, "order processed");
            Disposition::Ack(Some(outcome))
        }
        Err(err @ FulfilError::UnknownOrder(_)) => Disposition::DeadLetter(err.to_string()),
        Err(err) => {
            debug_assert!(!err.is_permanent());
            Disposition::Retry(format!("{err:#}"))
        }
    }
}

impl Worker {
    pub fn build(settings: WorkerSettings) -> anyhow::Result<Self> {
        let data = settings.data.clone().resolve_files()?;
        let pool = data::db::pool(&data)?;
        let payment = PaymentGateway {
            latency: Duration::from_millis(settings.payment_latency_ms),
            decline_rate: settings.payment_decline_rate.clamp(0.0, 1.0),
        };
        let health_listener = settings
            .health_listen
            .map(|addr| {
                TcpListener::bind(addr).with_context(|| format!("binding HEALTH_LISTEN {addr}"))
            })
            .transpose()?;
        let health_addr = health_listener
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()?;
        let slots = Arc::new(Semaphore::new(data.database_max_connections.max(1) as usize));
        Ok(Worker {
            settings: WorkerSettings { data, ..settings },
            pool,
            payment,
            stop: CancellationToken::new(),
            slots,
            readiness: Arc::new(Readiness::default()),
            health_listener,
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

    /// Uses `stop` as the stop token (e.g. one already wired to signals by `main`).
    pub fn with_stop_token(mut self, stop: CancellationToken) -> Self {
        self.stop = stop;
        self
    }

    /// Cancelling this token drains and stops the worker as SIGTERM does.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Consumes until SIGINT/SIGTERM (or the stop token), then stops taking messages,
    /// finishes and acks what is in flight, and returns.
    pub async fn run_until_stopped(mut self) -> anyhow::Result<()> {
        let health = match self.health_listener.take() {
            Some(listener) => {
                let server = crate::health::serve(listener, self.readiness.clone())?;
                tracing::info!(address = ?self.health_addr, "health endpoints listening");
                Some((server.handle(), tokio::spawn(server)))
            }
            None => None,
        };
        let stop = self.stop.clone();
        // The wake-ups of the relays after each commit, sent by a task of their own; it
        // stops after the drain, so the last commits are announced too.
        let notifier_stop = CancellationToken::new();
        let notifier = tokio::spawn(data::outbox::notifier(
            self.pool.clone(),
            notifier_stop.clone(),
        ));
        let signals = tokio::spawn({
            let stop = stop.clone();
            async move {
                wait_for_signal(&stop).await;
                stop.cancel();
            }
        });
        let backoff_builder = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(5))
            .without_max_times();
        let mut backoff = backoff_builder.build();
        while !stop.is_cancelled() {
            match self.consume_session(&mut backoff, &backoff_builder).await {
                Ok(()) => {}
                Err(err) => {
                    tracing::warn!(
                        error = format!("{err:#}"),
                        "consumer session ended; reconnecting"
                    );
                }
            }
            if stop.is_cancelled() {
                break;
            }
            let delay = backoff.next().unwrap_or(Duration::from_secs(5));
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(delay) => {}
            }
        }
        signals.abort();
        self.readiness.set(Phase::Draining);
        notifier_stop.cancel();
        let _ = notifier.await;
        self.pool.close().await;
        if let Some((handle, server)) = health {
            handle.stop(true).await;
            let _ = server.await;
        }
        tracing::info!("worker stopped");
        Ok(())
    }

    /// One connection's life: declare, consume, and on stop drain. Returns Ok after a clean
    /// drain, Err when the broker connection failed or ended.
    async fn consume_session(
        &self,
        backoff: &mut backon::ExponentialBackoff,
        backoff_builder: &ExponentialBuilder,
    ) -> anyhow::Result<()> {
        let data = &self.settings.data;
        let connection = data::broker::connect(data.amqp_url(), "strata-worker")
            .await
            .context("connecting to RabbitMQ")?;
        let channel = connection.create_channel().await?;
        data::broker::declare_topology(&channel, data.delivery_limit)
            .await
            .context("declaring the topology")?;
        channel
            .basic_qos(self.settings.prefetch.max(1), BasicQosOptions::default())
            .await?;
        let mut consumer = channel
            .basic_consume(
                FULFIL_QUEUE.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        *backoff = backoff_builder.build();
        self.readiness.set(Phase::Consuming);
        tracing::info!(
            prefetch = self.settings.prefetch,
            "consuming {FULFIL_QUEUE}"
        );

        let mut in_flight = JoinSet::new();
        let outcome: anyhow::Result<()> = loop {
            tokio::select! {
                _ = self.stop.cancelled() => break Ok(()),
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    in_flight_gauge(in_flight.len());
                    if let Err(err) = done {
                        tracing::error!(error = %err, "message task panicked");
                    }
                }
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => {
                        in_flight.spawn(self.process(delivery));
                        in_flight_gauge(in_flight.len());
                    }
                    Some(Err(err)) => break Err(anyhow::Error::new(err).context("consumer failed")),
                    None => break Err(anyhow::anyhow!("the broker ended the consumer")),
                }
            }
        };

        self.readiness.set(if outcome.is_ok() {
            Phase::Draining
        } else {
            Phase::Reconnecting
        });
        if outcome.is_ok() {
            // Stop taking messages, then take what the broker already sent us: every
            // delivery is processed and acked before the channel closes.
            let tag = consumer.tag();
            if let Err(err) = channel
                .basic_cancel(tag, BasicCancelOptions::default())
                .await
            {
                tracing::warn!(error = %err, "basic.cancel failed");
            }
            while let Ok(Some(Ok(delivery))) =
                tokio::time::timeout(Duration::from_millis(200), consumer.next()).await
            {
                in_flight.spawn(self.process(delivery));
            }
            tracing::info!(in_flight = in_flight.len(), "draining in-flight messages");
        }
        while let Some(done) = in_flight.join_next().await {
            in_flight_gauge(in_flight.len());
            if let Err(err) = done {
                tracing::error!(error = %err, "message task panicked");
            }
        }
        let _ = channel.close(200, "worker stopping".into()).await;
        let _ = connection.close(200, "worker stopping".into()).await;
        outcome
    }

    fn process(&self, delivery: Delivery) -> impl Future<Output = ()> + Send + 'static {
        let pool = self.pool.clone();
        let slots = self.slots.clone();
        let payment = self.payment.clone();
        let retry_delay = Duration::from_millis(self.settings.retry_delay_ms);
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.to_string());
        let trace_id = header_text(
            delivery.properties.headers().as_ref(),
            contracts::TRACEPARENT_HEADER,
        )
        .as_deref()
        .and_then(TraceParent::parse)
        .map(|p| p.trace_id_hex())
        .unwrap_or_default();
        let span = tracing::info_span!(
            "fulfil",
            message.id = message_id.as_deref().unwrap_or(""),
            trace_id = %trace_id,
            redelivered = delivery.redelivered
        );
        async move {
            // Prefetched beyond the pool, a message waits here for a connection, without
            // the pool's acquire timeout.
            let slot = slots.acquire_owned().await;
            let disposition =
                handle_message(&pool, &payment, message_id.as_deref(), &delivery.data).await;
            drop(slot);
            let result = match disposition {
                Disposition::Ack(_) => delivery.ack(BasicAckOptions::default()).await,
                Disposition::Retry(reason) => {
                    tracing::warn!(%reason, "transient failure; the message goes back to the queue");
                    metrics::counter!("strata_worker_messages_total", "outcome" => "retry")
                        .increment(1);
                    tokio::time::sleep(retry_delay).await;
                    delivery
                        .nack(BasicNackOptions {
                            multiple: false,
                            requeue: true,
                        })
                        .await
                }
                Disposition::DeadLetter(reason) => {
                    tracing::error!(%reason, "poison message; dead-lettering it");
                    metrics::counter!("strata_worker_messages_total", "outcome" => "dead_lettered")
                        .increment(1);
                    delivery
                        .nack(BasicNackOptions {
                            multiple: false,
                            requeue: false,
                        })
                        .await
                }
            };
            if let Err(err) = result {
                // The broker will redeliver; the processed-messages ledger makes that harmless.
                tracing::warn!(error = %err, "could not settle the delivery");
            }
        }
        .instrument(span)
    }
}

fn in_flight_gauge(n: usize) {
    metrics::gauge!("strata_worker_in_flight").set(n as f64);
}

/// Installs the SIGTERM and SIGINT handlers now and returns a token they cancel. `main`
/// calls it first thing, so that a worker told to stop while still starting (an
/// autoscaler changing its mind) drains and exits 0 instead of dying by the default action.
pub fn stop_on_signals() -> std::io::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: draining"),
            _ = int.recv() => tracing::info!("SIGINT: draining"),
        }
        token.cancel();
    });
    Ok(stop)
}

async fn wait_for_signal(stop: &CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = stop.cancelled() => {}
    }
}

//! The delivery loop of `orders.fulfil`: a connection with reconnect and backoff,
//! prefetch, one task per delivery bounded by the pool, ack after the commit, and a drain
//! when the stop token is cancelled.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use backon::{BackoffBuilder, ExponentialBuilder};
use contracts::FULFIL_QUEUE;
use contracts::trace::TraceParent;
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

use crate::WorkerSettings;
use crate::fulfilment::{Disposition, PaymentGateway, handle_message};
use crate::health::{Phase, Readiness};
use crate::telemetry::in_flight as in_flight_gauge;

/// The consumer of one worker process.
pub struct Consumer {
    pub(crate) settings: Arc<WorkerSettings>,
    pub(crate) pool: PgPool,
    pub(crate) gateway: PaymentGateway,
    /// One permit per pooled connection: how many messages are processed at once.
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) readiness: Arc<Readiness>,
    pub(crate) stop: CancellationToken,
}

fn header_text(headers: Option<&FieldTable>, name: &str) -> Option<String> {
    match headers?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

impl Consumer {
    /// Consumes until the stop token is cancelled, reconnecting with backoff whenever the
    /// broker connection fails or ends; returns after the drain.
    pub async fn run(&self) {
        let stop = &self.stop;
        let backoff_builder = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(5))
            .without_max_times();
        let mut backoff = backoff_builder.build();
        while !stop.is_cancelled() {
            if let Err(err) = self.consume_session(&mut backoff, &backoff_builder).await {
                tracing::warn!(
                    error = format!("{err:#}"),
                    "consumer session ended; reconnecting"
                );
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
    }

    /// One connection's life: declare, consume, and on stop drain. Returns Ok after a clean
    /// drain, Err when the broker connection failed or ended.
    async fn consume_session(
        &self,
        backoff: &mut backon::ExponentialBackoff,
        backoff_builder: &ExponentialBuilder,
    ) -> anyhow::Result<()> {
        let data = &self.settings.data;
        let connection = data::messaging::broker::connect(data.amqp_url(), "strata-worker")
            .await
            .context("connecting to RabbitMQ")?;
        let channel = connection.create_channel().await?;
        data::messaging::broker::declare_topology(&channel, data.delivery_limit)
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
        let gateway = self.gateway.clone();
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
                handle_message(&pool, &gateway, message_id.as_deref(), &delivery.data).await;
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

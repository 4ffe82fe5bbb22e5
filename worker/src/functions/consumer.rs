//! The consumer of `fn.<name>`: one connection and channel, messages handled one at a
//! time (the prefetch only keeps the next ones at hand), each acked after its commit. A
//! stop cancels the consumer, handles what the broker had already sent, and closes; a lost
//! connection is replaced with backoff (unacked messages return to the queue and are
//! recognised by their message id).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use contracts::Envelope;
use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions,
};
use lapin::types::FieldTable;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::{Function, HandlerSettings, Outcome};
use crate::WorkerSettings;
use crate::consumer::bounded;
use crate::health::{Phase, Readiness};

/// After a stop, how long deliveries the broker sent before the cancel are waited for.
const LATE_DELIVERIES: Duration = Duration::from_millis(200);

/// The only consumer of a `worker --function <name>` process.
pub struct FunctionConsumer {
    pub(crate) function: Function,
    pub(crate) settings: Arc<WorkerSettings>,
    pub(crate) pool: PgPool,
    pub(crate) readiness: Arc<Readiness>,
    pub(crate) stop: CancellationToken,
}

/// What to do with a delivery once handled.
enum Settle {
    Ack,
    /// Back to the queue after a pause (counts against the delivery limit).
    Retry,
    /// Into `fn.<name>.dlq`: retrying cannot help.
    DeadLetter,
}

impl FunctionConsumer {
    /// Consumes until the stop token is cancelled, reconnecting with backoff; returns once
    /// the message in hand (and those already sent) are handled.
    pub async fn run(&self) {
        let builder = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(5))
            .with_jitter()
            .without_max_times();
        let mut backoff = builder.build();
        while !self.stop.is_cancelled() {
            match self.session().await {
                Ok(()) => break,
                Err(err) => {
                    self.readiness.set(Phase::Reconnecting);
                    tracing::warn!(
                        function = self.function.name(),
                        error = format!("{err:#}"),
                        "function consumer's session ended; reconnecting"
                    );
                }
            }
            let delay = backoff.next().unwrap_or(Duration::from_secs(5));
            tokio::select! {
                _ = self.stop.cancelled() => {}
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn session(&self) -> anyhow::Result<()> {
        let settings = &self.settings;
        let limit = settings.broker_timeout();
        let queue = self.function.queue();
        let connection_name = format!("strata-worker {queue}");
        let connection = tokio::select! {
            _ = self.stop.cancelled() => return Ok(()),
            connection = bounded(
                limit,
                "connecting to RabbitMQ",
                data::messaging::broker::connect_with_heartbeat(
                    settings.data.amqp_url(),
                    &connection_name,
                    settings.heartbeat_secs,
                ),
            ) => connection?,
        };
        let channel = bounded(limit, "opening a channel", connection.create_channel()).await?;
        bounded(
            limit,
            "declaring the function's queue",
            data::messaging::subscriptions::declare_function(
                &channel,
                self.function.name(),
                settings.data.delivery_limit,
            ),
        )
        .await?;
        bounded(
            limit,
            "basic.qos",
            channel.basic_qos(settings.prefetch.max(1), BasicQosOptions::default()),
        )
        .await?;
        let mut deliveries = bounded(
            limit,
            "basic.consume",
            channel.basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;
        self.readiness.set(Phase::Consuming);
        tracing::info!(function = self.function.name(), "consuming {queue}");
        loop {
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => break,
                next = deliveries.next() => match next {
                    Some(Ok(delivery)) => self.handle(delivery).await?,
                    Some(Err(err)) => return Err(err).context("the consumer failed"),
                    None => anyhow::bail!("the broker ended the consumer of {queue}"),
                }
            }
        }
        // Drain: no new messages; the ones the broker sent before the cancel are handled.
        self.readiness.set(Phase::Draining);
        bounded(
            limit,
            "basic.cancel",
            channel.basic_cancel(deliveries.tag(), BasicCancelOptions::default()),
        )
        .await?;
        while let Ok(Some(Ok(delivery))) =
            tokio::time::timeout(LATE_DELIVERIES, deliveries.next()).await
        {
            self.handle(delivery).await?;
        }
        let _ = bounded(
            limit,
            "closing",
            connection.close(200, "worker stopping".into()),
        )
        .await;
        Ok(())
    }

    /// Handles one delivery and settles it; an error is a broker call that failed.
    async fn handle(&self, delivery: Delivery) -> anyhow::Result<()> {
        let limit = self.settings.broker_timeout();
        match self.apply(&delivery).await {
            Settle::Ack => {
                bounded(limit, "basic.ack", delivery.ack(BasicAckOptions::default())).await?;
            }
            Settle::Retry => {
                tokio::select! {
                    _ = self.stop.cancelled() => {}
                    _ = tokio::time::sleep(self.settings.retry_delay()) => {}
                }
                let requeue = BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                };
                bounded(limit, "basic.nack", delivery.nack(requeue)).await?;
            }
            Settle::DeadLetter => {
                let options = BasicRejectOptions { requeue: false };
                bounded(limit, "basic.reject", delivery.reject(options)).await?;
            }
        }
        Ok(())
    }

    async fn apply(&self, delivery: &Delivery) -> Settle {
        let name = self.function.name();
        let count = |outcome: &'static str| {
            metrics::counter!("strata_function_messages_total", "function" => name, "outcome" => outcome)
                .increment(1);
        };
        let Ok(event) = serde_json::from_slice::<Envelope<serde_json::Value>>(&delivery.data)
        else {
            tracing::warn!(function = name, "unreadable message; dead-lettered");
            count("dead_lettered");
            return Settle::DeadLetter;
        };
        let started = Instant::now();
        let handler = HandlerSettings {
            low_stock_threshold: self.settings.low_stock_threshold,
        };
        // Postgres out of reach says nothing about the event: hold it and try again in
        // place, so an outage spends none of the delivery limit.
        let stop = self.stop.clone();
        let outcome = (|| super::handle(&self.pool, self.function, &event, handler))
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(self.settings.outage_max_delay())
                    .with_jitter()
                    .without_max_times(),
            )
            .sleep(move |pause| {
                let stop = stop.clone();
                async move {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            })
            .when(|err| data::store::retry::is_unavailable(err) && !self.stop.is_cancelled())
            .notify(|err, pause| {
                metrics::counter!("strata_worker_database_retries_total").increment(1);
                tracing::warn!(function = name, error = %err, ?pause,
                    "database out of reach; holding the message and trying again");
            })
            .await;
        let took = started.elapsed();
        match outcome {
            Ok(Some(Outcome::Applied)) => {
                count("applied");
                tracing::info!(function = name, message.id = %event.message_id, ?took, "handled");
                Settle::Ack
            }
            Ok(Some(Outcome::Skipped(why))) => {
                count("skipped");
                tracing::info!(function = name, message.id = %event.message_id, why, "skipped");
                Settle::Ack
            }
            Ok(None) => {
                count("duplicate");
                tracing::debug!(function = name, message.id = %event.message_id, "seen before");
                Settle::Ack
            }
            Err(err) => {
                count("retry");
                tracing::warn!(function = name, message.id = %event.message_id, error = %err,
                    "the handler failed; the message goes back to the queue");
                Settle::Retry
            }
        }
    }
}

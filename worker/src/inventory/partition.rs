//! One partition's consumer: a channel with a prefetch of 1, messages handled one at a
//! time in queue order, the ack after the commit. Handing the partition back (when this
//! worker is active on more than its share) cancels the consumer after the message in
//! hand is acked, then registers again, at the end of the line of waiting consumers.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use backon::{ExponentialBuilder, Retryable};

use contracts::{ApplyAdjustment, Envelope, partition_queue};
use data::store::inventory::{self, Applied};
use futures_lite::StreamExt;
use lapin::Channel;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions,
};
use lapin::types::FieldTable;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::WorkerSettings;

pub(super) struct Partition {
    pub index: u16,
    pub tag: String,
    pub pool: PgPool,
    pub settings: Arc<WorkerSettings>,
    pub hand_back: Arc<Notify>,
    pub stop: CancellationToken,
}

/// What to do with a delivery once handled.
enum Settle {
    Ack,
    /// Back to the queue (a transient failure): delivered again, dead-lettered past the
    /// delivery limit.
    Retry,
    /// Straight to the dead-letter queue: retrying cannot help.
    DeadLetter,
}

impl Partition {
    pub async fn run(self, channel: Channel) -> anyhow::Result<()> {
        channel.basic_qos(1, BasicQosOptions::default()).await?;
        let queue = partition_queue(self.index);
        loop {
            let mut consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    self.tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            let handing_back = loop {
                tokio::select! {
                    biased;
                    _ = self.stop.cancelled() => break false,
                    _ = self.hand_back.notified() => break true,
                    next = consumer.next() => match next {
                        Some(Ok(delivery)) => self.handle(delivery).await?,
                        Some(Err(err)) => return Err(err.into()),
                        None => anyhow::bail!("the broker ended the consumer of {queue}"),
                    }
                }
            };
            // Stop taking messages; one the broker sent before the cancel is still ours
            // (in order) and is handled before the partition goes to the next consumer.
            let limit = self.settings.broker_timeout();
            tokio::time::timeout(
                limit,
                channel.basic_cancel(self.tag.as_str().into(), BasicCancelOptions::default()),
            )
            .await
            .context("basic.cancel: timed out")??;
            while let Ok(Some(Ok(delivery))) =
                tokio::time::timeout(Duration::from_millis(200), consumer.next()).await
            {
                self.handle(delivery).await?;
            }
            if !handing_back {
                let _ = tokio::time::timeout(limit, channel.close(200, "stopping".into())).await;
                return Ok(());
            }
            tracing::info!(partition = self.index, "handed the partition back");
            metrics::counter!("strata_fifo_hand_backs_total").increment(1);
            // Let the next waiting consumer become active before registering again.
            tokio::select! {
                _ = self.stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    async fn handle(&self, delivery: Delivery) -> anyhow::Result<()> {
        let settle = self.apply(&delivery).await;
        match settle {
            Settle::Ack => {
                delivery.ack(BasicAckOptions::default()).await?;
            }
            Settle::Retry => {
                tokio::select! {
                    _ = self.stop.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_millis(self.settings.retry_delay_ms)) => {}
                }
                delivery
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    })
                    .await?;
            }
            Settle::DeadLetter => {
                metrics::counter!("strata_fifo_dead_lettered_total").increment(1);
                delivery
                    .reject(BasicRejectOptions { requeue: false })
                    .await?;
            }
        }
        Ok(())
    }

    async fn apply(&self, delivery: &Delivery) -> Settle {
        let command = match serde_json::from_slice::<Envelope<ApplyAdjustment>>(&delivery.data) {
            Ok(envelope) if envelope.kind == "ApplyAdjustment" => envelope.payload,
            _ => {
                tracing::warn!(
                    partition = self.index,
                    "unreadable FIFO message; dead-lettered"
                );
                return Settle::DeadLetter;
            }
        };
        // Postgres out of reach says nothing about the adjustment: hold it and try again in
        // place (as the orders' consumer does), so an outage spends none of the delivery
        // limit; the wait ends when Postgres answers, or on a stop or a lost connection
        // (then the message goes back, or the broker has returned it already).
        let stop = self.stop.clone();
        let outcome = (|| inventory::apply(&self.pool, &command))
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
                tracing::warn!(partition = self.index, error = %err, ?pause,
                    "database out of reach; holding the adjustment and trying again");
            })
            .await;
        match outcome {
            Ok(Applied::Applied(n)) => {
                metrics::counter!("strata_fifo_adjustments_applied_total").increment(n as u64);
                Settle::Ack
            }
            Ok(Applied::AlreadyApplied) => Settle::Ack,
            Ok(Applied::Unknown) => {
                tracing::warn!(
                    partition = self.index,
                    adjustment = %command.adjustment_id,
                    "unknown adjustment; dead-lettered"
                );
                Settle::DeadLetter
            }
            Err(err) => {
                tracing::warn!(
                    partition = self.index,
                    adjustment = %command.adjustment_id,
                    error = %err,
                    "applying an adjustment failed; retrying"
                );
                Settle::Retry
            }
        }
    }
}

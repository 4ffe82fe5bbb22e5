//! One delivery's life: its saga run step by step (each database step waits for a slot,
//! a pooled connection, and gives it back; a payment in flight holds none), attempted
//! again in place while Postgres is out of reach, under a visibility deadline, then
//! settled (ack, nack to the queue, or dead-letter), every settlement bounded.
//!
//! Waiting out an outage in place, holding the message, keeps the delivery limit for
//! messages that fail by themselves: a return to the queue would count one delivery per
//! attempt and send valid orders to the DLQ after a few seconds of outage. It also keeps
//! outages off the requeue path, where RabbitMQ 3.10's quorum queues grant a consumer
//! extra credit each time a requeued message is dead-lettered (fixed in 3.11).
//!
//! The visibility deadline ([`Visibility`]) bounds the work, not the outage: it is
//! suspended while the delivery pauses for the database and starts afresh with the next
//! attempt. Past the deadline the work is dropped (its transaction rolls back, its slot is
//! freed) and the message goes back to the queue for another worker; that return counts
//! against the delivery limit, as a receive does against SQS's `maxReceiveCount`.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use contracts::trace::TraceParent;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::{AMQPValue, FieldTable};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Consumer, bounded};
use crate::fulfilment::{Disposition, Saga};
use crate::health::DatabaseWait;
use crate::visibility::Visibility;

/// The first pause after a failed attempt during an outage (they double from there).
const FIRST_OUTAGE_DELAY: Duration = Duration::from_millis(200);

fn header_text(headers: Option<&FieldTable>, name: &str) -> Option<String> {
    match headers?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// Why a message stopped waiting for the database without an answer.
enum GaveUp {
    /// Postgres is out of reach: wait and try again.
    Unavailable(String),
    /// The worker is stopping, or the delivery's channel is gone.
    Interrupted,
}

impl Consumer {
    /// The task of one delivery. `lost` fires when its session's connection is given up.
    pub(super) fn process(
        &self,
        delivery: Delivery,
        lost: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        let pool = self.pool.clone();
        let slots = self.slots.clone();
        let gateway = self.gateway.clone();
        let readiness = self.readiness.clone();
        let stop = self.stop.clone();
        let retry_delay = self.settings.retry_delay();
        let outage_max_delay = self.settings.outage_max_delay();
        let limit = self.settings.broker_timeout();
        let saga_settings = self.settings.saga();
        let visibility = Visibility::new(
            self.settings.visibility_timeout(),
            self.settings.visibility_max(),
        );
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
            let wait = DatabaseWait::new(readiness);
            let attempts = AtomicU64::new(0);
            let (pool, slots, gateway, body) = (&pool, &slots, &gateway, &delivery.data);
            let (message_id, stop_ref, lost_ref) = (message_id.as_deref(), &stop, &lost);
            let visibility = &visibility;
            let attempt = move || async move {
                if stop_ref.is_cancelled() || lost_ref.is_cancelled() {
                    return Err(GaveUp::Interrupted);
                }
                visibility.restart();
                // Prefetched beyond the pool, a message waits for a slot at each step,
                // without the pool's acquire timeout.
                let saga = Saga::new(pool, gateway)
                    .settings(saga_settings)
                    .slots(slots)
                    .visibility(visibility);
                match saga.handle(message_id, body).await {
                    Disposition::Unavailable(reason) => Err(GaveUp::Unavailable(reason)),
                    other => Ok(other),
                }
            };
            let work = attempt
                .retry(
                    ExponentialBuilder::default()
                        .with_min_delay(FIRST_OUTAGE_DELAY)
                        .with_max_delay(outage_max_delay)
                        .with_jitter()
                        .without_max_times(),
                )
                .sleep(interruptible_sleep(stop.clone(), lost.clone()))
                .when(|gave_up| matches!(gave_up, GaveUp::Unavailable(_)))
                .notify(|gave_up, pause| {
                    let GaveUp::Unavailable(reason) = gave_up else {
                        return;
                    };
                    visibility.suspend();
                    wait.note();
                    metrics::counter!("strata_worker_database_retries_total").increment(1);
                    let n = attempts.fetch_add(1, Ordering::Relaxed);
                    if n.is_multiple_of(10) {
                        tracing::warn!(%reason, attempts = n + 1, ?pause,
                            "database out of reach; holding the message and trying again");
                    }
                });
            let outcome = tokio::select! {
                outcome = work => Some(outcome),
                () = visibility.expired() => None,
            };
            drop(wait);
            let Some(outcome) = outcome else {
                metrics::counter!("strata_worker_visibility_expired_total").increment(1);
                metrics::counter!("strata_worker_messages_total", "outcome" => "expired")
                    .increment(1);
                tracing::warn!("visibility deadline passed; the work is dropped and the message goes back to the queue");
                if !lost.is_cancelled()
                    && let Err(err) = give_back(&delivery, limit).await
                {
                    tracing::warn!(error = format!("{err:#}"), "could not settle the delivery");
                }
                return;
            };
            let result = match outcome {
                Ok(Disposition::Ack(_)) => {
                    bounded(limit, "basic.ack", delivery.ack(BasicAckOptions::default()))
                        .await
                        .map(drop)
                }
                Ok(Disposition::Retry(reason)) => {
                    tracing::warn!(%reason, "transient failure; the message goes back to the queue");
                    metrics::counter!("strata_worker_messages_total", "outcome" => "retry")
                        .increment(1);
                    tokio::select! {
                        _ = tokio::time::sleep(retry_delay) => {}
                        _ = stop.cancelled() => {}
                    }
                    give_back(&delivery, limit).await
                }
                Ok(Disposition::DeadLetter(reason)) => {
                    tracing::error!(%reason, "poison message; dead-lettering it");
                    metrics::counter!("strata_worker_messages_total", "outcome" => "dead_lettered")
                        .increment(1);
                    bounded(
                        limit,
                        "basic.nack",
                        delivery.nack(BasicNackOptions {
                            multiple: false,
                            requeue: false,
                        }),
                    )
                    .await
                    .map(drop)
                }
                // Stopping mid-outage: the message goes back for another worker (or this
                // one, restarted). A lost channel has returned it already.
                Ok(Disposition::Unavailable(_)) | Err(_) if !lost.is_cancelled() => {
                    metrics::counter!("strata_worker_messages_total", "outcome" => "given_back")
                        .increment(1);
                    give_back(&delivery, limit).await
                }
                Ok(Disposition::Unavailable(_)) | Err(_) => Ok(()),
            };
            if let Err(err) = result {
                // The broker will redeliver; the processed-messages ledger makes that harmless.
                tracing::warn!(
                    error = format!("{err:#}"),
                    "could not settle the delivery"
                );
            }
        }
        .instrument(span)
    }
}

/// A pause between attempts that a stop or a lost connection cuts short.
fn interruptible_sleep(
    stop: CancellationToken,
    lost: CancellationToken,
) -> impl Fn(Duration) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    move |pause| {
        let (stop, lost) = (stop.clone(), lost.clone());
        Box::pin(async move {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.cancelled() => {}
                _ = lost.cancelled() => {}
            }
        })
    }
}

/// Puts a delivery back at the head of the queue.
async fn give_back(delivery: &Delivery, limit: Duration) -> anyhow::Result<()> {
    bounded(
        limit,
        "basic.nack",
        delivery.nack(BasicNackOptions {
            multiple: false,
            requeue: true,
        }),
    )
    .await
    .map(drop)
}

//! The consumer of one subscription: its own channel (publisher confirms on, prefetch
//! `SUBSCRIPTION_PREFETCH`) on `sub.<id>`, one task per message. A message is dropped if
//! it was published before the confirmation, filtered by the policy, then delivered by
//! protocol within `SUBSCRIPTION_TIMEOUT_MS`. A failed attempt is put in the retry queue
//! of its attempt (or, after the last, in the DLQ), and only once the broker confirmed
//! that copy is the message acked: nothing is lost, and a crash in between delivers twice
//! at most (receivers deduplicate on `Strata-Event-Id`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use contracts::filter::FilterPolicy;
use contracts::{Protocol, queue_name};
use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use uuid::Uuid;

use super::Shared;
use super::counters::Outcome;
use super::event::Event;
use super::http::Post;
use super::publish::{self, Destination};
use super::store::Subscription;
use crate::consumer::bounded;

/// After a stop, how long deliveries the broker sent before the cancel are waited for.
const LATE_DELIVERIES: Duration = Duration::from_millis(200);

/// A subscription with its filter policy parsed once.
struct Prepared {
    subscription: Subscription,
    /// `Err`: a policy the API should not have let through; every delivery then fails
    /// (and ends in the DLQ, kept) rather than reach a receiver unfiltered.
    filter: Result<Option<FilterPolicy>, String>,
}

impl Prepared {
    fn new(subscription: Subscription) -> Arc<Self> {
        let filter = subscription
            .filter_policy
            .as_ref()
            .filter(|p| !p.is_null())
            .map(FilterPolicy::parse)
            .transpose()
            .map_err(|e| e.to_string());
        Arc::new(Prepared {
            subscription,
            filter,
        })
    }
}

/// Consumes `sub.<id>` until `stop` fires (then drains what is in flight) or the channel
/// or consumer ends; the manager starts it again while the subscription is confirmed.
pub async fn run(
    shared: Arc<Shared>,
    connection: Arc<Connection>,
    mut subscription: watch::Receiver<Subscription>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let limit = shared.broker_timeout;
    let mut current = Prepared::new(subscription.borrow_and_update().clone());
    let id = current.subscription.id;
    let channel = bounded(limit, "opening a channel", connection.create_channel()).await?;
    let mut deliveries = match open(&shared, &channel, id).await {
        Ok(deliveries) => deliveries,
        Err(err) => {
            close(&channel, limit).await;
            return Err(err);
        }
    };
    let destination = Arc::new(Destination::new(connection, shared.delivery_limit));
    tracing::info!(subscription.id = %id, protocol = current.subscription.protocol.as_str(), "delivering");
    let mut in_flight = JoinSet::new();
    let ended = loop {
        tokio::select! {
            _ = stop.cancelled() => break None,
            changed = subscription.changed() => match changed {
                Ok(()) => current = Prepared::new(subscription.borrow_and_update().clone()),
                Err(_) => break None,
            },
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            next = deliveries.next() => match next {
                Some(Ok(delivery)) => {
                    let task = handle(shared.clone(), channel.clone(), destination.clone(), current.clone(), delivery);
                    in_flight.spawn(task.instrument(tracing::info_span!("subscription", subscription.id = %id)));
                }
                Some(Err(err)) => break Some(format!("consumer failed: {err}")),
                None => break Some("the broker ended the consumer".to_owned()),
            }
        }
    };
    let cancelled = ended.is_none()
        && bounded(
            limit,
            "basic.cancel",
            channel.basic_cancel(deliveries.tag(), BasicCancelOptions::default()),
        )
        .await
        .is_ok();
    if cancelled {
        // Stopped: no new message. Those the broker sent before the cancel are handled
        // too (closing the channel would return them, counted against the delivery limit).
        while let Ok(Some(Ok(delivery))) =
            tokio::time::timeout(LATE_DELIVERIES, deliveries.next()).await
        {
            let task = handle(
                shared.clone(),
                channel.clone(),
                destination.clone(),
                current.clone(),
                delivery,
            );
            in_flight
                .spawn(task.instrument(tracing::info_span!("subscription", subscription.id = %id)));
        }
    }
    // Those in flight finish, each bounded by the attempt timeout.
    while in_flight.join_next().await.is_some() {}
    close(&channel, limit).await;
    match ended {
        None => Ok(()),
        Some(reason) => Err(anyhow::anyhow!(reason)),
    }
}

/// Confirms, prefetch and the consumer of `sub.<id>` on the subscription's channel.
async fn open(shared: &Shared, channel: &Channel, id: Uuid) -> anyhow::Result<lapin::Consumer> {
    let limit = shared.broker_timeout;
    bounded(
        limit,
        "confirm.select",
        channel.confirm_select(ConfirmSelectOptions::default()),
    )
    .await?;
    bounded(
        limit,
        "basic.qos",
        channel.basic_qos(shared.settings.prefetch.max(1), BasicQosOptions::default()),
    )
    .await?;
    bounded(
        limit,
        "basic.consume",
        channel.basic_consume(
            queue_name(id).as_str().into(),
            format!("strata-sub-{id}").as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
}

async fn close(channel: &Channel, limit: Duration) {
    if channel.status().connected() {
        let _ = bounded(
            limit,
            "closing the channel",
            channel.close(200, "stopping".into()),
        )
        .await;
    }
}

/// The life of one message.
async fn handle(
    shared: Arc<Shared>,
    channel: Channel,
    destination: Arc<Destination>,
    prepared: Arc<Prepared>,
    delivery: Delivery,
) {
    let subscription = &prepared.subscription;
    let protocol = subscription.protocol;
    let counters = &shared.counters;
    let attempt = publish::attempt_of(&delivery);
    let event = match Event::decode(&delivery) {
        Ok(event) => event,
        Err(reason) => {
            // Another attempt would not read it better.
            tracing::warn!(%reason, "unreadable message; dead-lettering it");
            let sent =
                publish::dead_letter(&channel, subscription, &delivery, None, attempt, &reason)
                    .await;
            settle(&delivery, sent, || {
                counters.record(
                    subscription.id,
                    protocol,
                    Outcome::DeadLettered,
                    Some(&reason),
                )
            })
            .await;
            return;
        }
    };
    if subscription
        .confirmed_at
        .is_some_and(|confirmed| event.occurred_at < confirmed)
    {
        counters.record(subscription.id, protocol, Outcome::BeforeConfirmation, None);
        ack(&delivery).await;
        return;
    }
    let started = Instant::now();
    let result = match &prepared.filter {
        Ok(Some(policy)) if !policy.matches(&event.attributes) => {
            counters.record(subscription.id, protocol, Outcome::Filtered, None);
            ack(&delivery).await;
            return;
        }
        Ok(_) => {
            let timeout = shared.settings.timeout();
            tokio::time::timeout(
                timeout,
                deliver(
                    &shared,
                    &channel,
                    &destination,
                    subscription,
                    &event,
                    &delivery,
                ),
            )
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
        }
        Err(invalid) => Err(invalid.clone()),
    };
    metrics::histogram!("strata_subscription_attempt_seconds", "protocol" => protocol.as_str())
        .record(started.elapsed().as_secs_f64());
    let error = match result {
        Ok(()) => {
            counters.record(subscription.id, protocol, Outcome::Delivered, None);
            ack(&delivery).await;
            return;
        }
        Err(error) => error,
    };
    let event_type = Some(event.event_type.as_str());
    if attempt < shared.settings.max_attempts {
        let delay = publish::backoff(shared.settings.retry_base(), attempt);
        tracing::info!(event.id = %event.id, attempt, ?delay, %error, "delivery failed; retrying later");
        let sent = publish::retry(
            &channel,
            subscription,
            &delivery,
            event_type,
            attempt,
            delay,
        )
        .await;
        settle(&delivery, sent, || {
            counters.record(subscription.id, protocol, Outcome::Retried, Some(&error))
        })
        .await;
    } else {
        tracing::warn!(event.id = %event.id, attempt, %error, "last attempt failed; dead-lettering");
        let sent = publish::dead_letter(
            &channel,
            subscription,
            &delivery,
            event_type,
            attempt,
            &error,
        )
        .await;
        settle(&delivery, sent, || {
            counters.record(
                subscription.id,
                protocol,
                Outcome::DeadLettered,
                Some(&error),
            )
        })
        .await;
    }
}

/// One attempt by protocol.
async fn deliver(
    shared: &Shared,
    channel: &Channel,
    destination: &Destination,
    subscription: &Subscription,
    event: &Event,
    delivery: &Delivery,
) -> Result<(), String> {
    match subscription.protocol {
        Protocol::Http | Protocol::Https => {
            let post = Post {
                subscription,
                event_id: event.id,
                event_type: &event.event_type,
            };
            let body = event.body(subscription.id, subscription.raw_delivery);
            shared.http.post(post, body).await
        }
        Protocol::Email => shared.mailer.deliver(subscription, event).await,
        Protocol::Queue => destination.queue(channel, subscription, event).await,
        Protocol::Function => destination.function(channel, subscription, delivery).await,
    }
}

/// After a copy was published (retry queue or DLQ): ack and count once the broker
/// confirmed it; otherwise give the message back to `sub.<id>` a moment later (another
/// attempt, counted by the broker against the queue's delivery limit).
async fn settle(delivery: &Delivery, sent: Result<(), String>, count: impl FnOnce()) {
    match sent {
        Ok(()) => {
            count();
            ack(delivery).await;
        }
        Err(error) => {
            tracing::warn!(%error, "could not move the message; it goes back to the queue");
            tokio::time::sleep(Duration::from_millis(500)).await;
            if let Err(err) = delivery
                .nack(BasicNackOptions {
                    multiple: false,
                    requeue: true,
                })
                .await
            {
                tracing::warn!(error = %err, "could not return the message; the broker will");
            }
        }
    }
}

async fn ack(delivery: &Delivery) {
    if let Err(err) = delivery.ack(BasicAckOptions::default()).await {
        // The channel is gone: the broker delivers the message again (a duplicate, which
        // receivers recognise by its event id).
        tracing::warn!(error = %err, "could not ack a delivery");
    }
}

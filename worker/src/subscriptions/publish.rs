//! Publishing from a subscription's consumer, always confirmed by the broker before the
//! delivery it comes from is acked: the queue and function deliveries, and the copies of
//! a failed delivery in a retry queue (with its expiration) or in the DLQ.

use std::sync::Arc;
use std::time::Duration;

use contracts::{dlq_name, function_queue_name, retry_queue_name};
use data::messaging::subscriptions::{ATTEMPT_HEADER, LAST_ERROR_HEADER};
use lapin::message::Delivery;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use rand::Rng;
use tokio::sync::Mutex;

use super::event::{EVENT_TYPE_HEADER, Event};
use super::store::Subscription;

/// Publishes with `mandatory` and waits for the broker's confirm: Ok only when a queue
/// took the message.
pub async fn confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<(), String> {
    let confirm = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            body,
            properties,
        )
        .await
        .map_err(|e| format!("publishing to {routing_key}: {e}"))?
        .await
        .map_err(|e| format!("publishing to {routing_key}: {e}"))?;
    match confirm {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        Confirmation::Ack(Some(_)) => Err(format!("no queue {routing_key}")),
        Confirmation::Nack(_) => Err(format!("the broker refused the message for {routing_key}")),
    }
}

/// The wait before attempt `attempt + 1` (1-based `attempt`): `base * 2^(attempt-1)`, plus
/// a jitter of up to 20 %.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let exact = base.saturating_mul(1 << attempt.saturating_sub(1).min(20));
    let jitter = rand::rng().random_range(0.0..0.2);
    exact + exact.mul_f64(jitter)
}

/// The attempt a delivery is at: its attempt header, 1 without one.
pub fn attempt_of(delivery: &Delivery) -> u32 {
    let value = delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(ATTEMPT_HEADER).cloned());
    let n = match value {
        Some(AMQPValue::LongLongInt(n)) => n,
        Some(AMQPValue::LongInt(n)) => i64::from(n),
        Some(AMQPValue::LongUInt(n)) => i64::from(n),
        Some(AMQPValue::ShortInt(n)) => i64::from(n),
        Some(AMQPValue::ShortUInt(n)) => i64::from(n),
        Some(AMQPValue::ShortShortInt(n)) => i64::from(n),
        Some(AMQPValue::ShortShortUInt(n)) => i64::from(n),
        _ => 1,
    };
    u32::try_from(n.max(1)).unwrap_or(u32::MAX)
}

/// The delivery's properties with `extra` headers set; the broker's dead-lettering records
/// are kept (the history of the attempts).
fn with_headers(delivery: &Delivery, extra: &[(&str, AMQPValue)]) -> BasicProperties {
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    for (k, v) in extra {
        headers.insert(ShortString::from(*k), v.clone());
    }
    delivery.properties.clone().with_headers(headers)
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

/// Puts a copy of a failed delivery in the retry queue of its attempt, to come back into
/// `sub.<id>` after `delay` as attempt `attempt + 1`.
pub async fn retry(
    channel: &Channel,
    subscription: &Subscription,
    delivery: &Delivery,
    event_type: Option<&str>,
    attempt: u32,
    delay: Duration,
) -> Result<(), String> {
    let mut extra = vec![(
        ATTEMPT_HEADER,
        AMQPValue::LongLongInt(i64::from(attempt) + 1),
    )];
    if let Some(t) = event_type {
        extra.push((EVENT_TYPE_HEADER, text(t)));
    }
    let properties = with_headers(delivery, &extra)
        .with_expiration(ShortString::from(delay.as_millis().max(1).to_string()));
    let queue = retry_queue_name(subscription.id, attempt.saturating_sub(1) as usize);
    confirmed(channel, "", &queue, &delivery.data, properties).await
}

/// Puts a copy of a delivery that failed its last attempt (or cannot be read) in the
/// subscription's DLQ, with the error in a header.
pub async fn dead_letter(
    channel: &Channel,
    subscription: &Subscription,
    delivery: &Delivery,
    event_type: Option<&str>,
    attempt: u32,
    error: &str,
) -> Result<(), String> {
    let mut extra = vec![
        (ATTEMPT_HEADER, AMQPValue::LongLongInt(i64::from(attempt))),
        (
            LAST_ERROR_HEADER,
            text(&error.chars().take(1000).collect::<String>()),
        ),
    ];
    if let Some(t) = event_type {
        extra.push((EVENT_TYPE_HEADER, text(t)));
    }
    let properties = with_headers(delivery, &extra);
    let queue = dlq_name(subscription.id);
    confirmed(channel, "", &queue, &delivery.data, properties).await
}

/// Where the queue and function deliveries of one subscription go, declared once (the
/// first message declares while the others wait).
pub struct Destination {
    connection: Arc<Connection>,
    delivery_limit: u32,
    declared: Mutex<bool>,
}

impl Destination {
    pub fn new(connection: Arc<Connection>, delivery_limit: u32) -> Self {
        Destination {
            connection,
            delivery_limit,
            declared: Mutex::new(false),
        }
    }

    /// A `queue` delivery: the body HTTP would send, into the durable queue named by the
    /// endpoint (a quorum queue, declared when missing; an existing queue is used as it is).
    pub async fn queue(
        &self,
        channel: &Channel,
        subscription: &Subscription,
        event: &Event,
    ) -> Result<(), String> {
        let queue = subscription.endpoint.as_str();
        {
            let mut declared = self.declared.lock().await;
            if !*declared {
                self.declare_queue(queue)
                    .await
                    .map_err(|e| format!("declaring queue {queue}: {e}"))?;
                *declared = true;
            }
        }
        let mut headers = FieldTable::default();
        headers.insert(
            ShortString::from("strata-event-type"),
            text(&event.event_type),
        );
        headers.insert(
            ShortString::from("strata-subscription-id"),
            text(&subscription.id.to_string()),
        );
        let properties = BasicProperties::default()
            .with_message_id(ShortString::from(event.id.to_string()))
            .with_type(ShortString::from(event.event_type.as_str()))
            .with_content_type(ShortString::from("application/json"))
            .with_delivery_mode(2)
            .with_timestamp(event.occurred_at.timestamp().max(0) as u64)
            .with_headers(headers);
        let body = event.body(subscription.id, subscription.raw_delivery);
        let sent = confirmed(channel, "", queue, &body, properties).await;
        if sent.is_err() {
            // Deleted meanwhile, perhaps: the next attempt declares it again.
            *self.declared.lock().await = false;
        }
        sent
    }

    /// A `function` delivery: the event's envelope as it was published on `events` (the
    /// handlers read Strata's envelopes), into `fn.<name>`.
    pub async fn function(
        &self,
        channel: &Channel,
        subscription: &Subscription,
        delivery: &Delivery,
    ) -> Result<(), String> {
        let name = subscription.endpoint.as_str();
        {
            let mut declared = self.declared.lock().await;
            if !*declared {
                let scratch = self
                    .connection
                    .create_channel()
                    .await
                    .map_err(|e| e.to_string())?;
                data::messaging::subscriptions::declare_function(
                    &scratch,
                    name,
                    self.delivery_limit,
                )
                .await
                .map_err(|e| format!("declaring fn.{name}: {e}"))?;
                let _ = scratch.close(200, "declared".into()).await;
                *declared = true;
            }
        }
        // The envelope's own properties (message id, type, trace context), without the
        // attempts' and the broker's headers.
        let mut headers = FieldTable::default();
        if let Some(old) = delivery.properties.headers() {
            for (k, v) in old.inner() {
                if !k.as_str().starts_with("x-") {
                    headers.insert(k.clone(), v.clone());
                }
            }
        }
        let properties = delivery
            .properties
            .clone()
            .with_headers(headers)
            .with_delivery_mode(2);
        let sent = confirmed(
            channel,
            "",
            &function_queue_name(name),
            &delivery.data,
            properties,
        )
        .await;
        if sent.is_err() {
            *self.declared.lock().await = false;
        }
        sent
    }

    /// Declares a durable quorum queue; one of that name that exists with other
    /// arguments (another application's) is used as it is. Uses channels of its own,
    /// since a refused declaration closes its channel.
    async fn declare_queue(&self, name: &str) -> lapin::Result<()> {
        let channel = self.connection.create_channel().await?;
        let mut arguments = FieldTable::default();
        arguments.insert(ShortString::from("x-queue-type"), text("quorum"));
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        if channel
            .queue_declare(name.into(), durable, arguments)
            .await
            .is_ok()
        {
            let _ = channel.close(200, "declared".into()).await;
            return Ok(());
        }
        let probe = self.connection.create_channel().await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        probe
            .queue_declare(name.into(), passive, FieldTable::default())
            .await?;
        let _ = probe.close(200, "exists".into()).await;
        Ok(())
    }
}

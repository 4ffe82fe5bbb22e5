//! An event as a subscription's consumer sees it: the envelope published on `events`,
//! read without knowing its payload's type, and the body each protocol sends.

use chrono::{DateTime, SecondsFormat, Utc};
use contracts::{Attributes, EVENTS_EXCHANGE};
use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

/// Header carrying the event type on the copies in the retry queues and the DLQ, whose
/// routing key is the queue's name, not the event type.
pub const EVENT_TYPE_HEADER: &str = "x-strata-event-type";

#[derive(Deserialize)]
struct Envelope {
    message_id: Uuid,
    #[serde(rename = "type")]
    kind: String,
    occurred_at: DateTime<Utc>,
    #[serde(default)]
    attributes: Attributes,
    #[serde(default)]
    payload: Value,
}

/// A decoded event.
#[derive(Debug, Clone)]
pub struct Event {
    /// The envelope's message id: `Strata-Event-Id`, what receivers deduplicate on.
    pub id: Uuid,
    /// The event type (`order.fulfilled`), the routing key it was published with.
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    /// The attributes the filter policy tests; `type` is always there.
    pub attributes: Attributes,
    pub payload: Value,
}

pub fn header_text(headers: Option<&FieldTable>, name: &str) -> Option<String> {
    match headers?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

impl Event {
    /// Reads a delivery of `sub.<id>`. The event type is the `type` attribute, else the
    /// header the retry copies carry, else the routing key of a message straight from
    /// `events`, else the envelope's kind.
    pub fn decode(delivery: &Delivery) -> Result<Event, String> {
        let envelope: Envelope = serde_json::from_slice(&delivery.data)
            .map_err(|e| format!("not an event envelope: {e}"))?;
        let from_events = delivery.exchange.as_str() == EVENTS_EXCHANGE;
        let event_type = envelope
            .attributes
            .get("type")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| header_text(delivery.properties.headers().as_ref(), EVENT_TYPE_HEADER))
            .or_else(|| from_events.then(|| delivery.routing_key.as_str().to_owned()))
            .unwrap_or(envelope.kind);
        let mut attributes = envelope.attributes;
        attributes
            .entry("type".to_owned())
            .or_insert_with(|| Value::String(event_type.clone()));
        Ok(Event {
            id: envelope.message_id,
            event_type,
            occurred_at: envelope.occurred_at,
            attributes,
            payload: envelope.payload,
        })
    }

    /// The body of an HTTP or queue delivery: the payload alone (`raw`), or the envelope
    /// `{"type", "id", "timestamp", "subscription_id", "attributes", "message"}`.
    pub fn body(&self, subscription_id: Uuid, raw: bool) -> Vec<u8> {
        let value = if raw {
            self.payload.clone()
        } else {
            json!({
                "type": self.event_type,
                "id": self.id,
                "timestamp": self.occurred_at.to_rfc3339_opts(SecondsFormat::Millis, true),
                "subscription_id": subscription_id,
                "attributes": self.attributes,
                "message": self.payload,
            })
        };
        serde_json::to_vec(&value).expect("JSON values serialise")
    }
}

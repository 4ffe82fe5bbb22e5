//! Envelopes of the messages on the broker: commands to workers and events to subscribers.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use uuid::Uuid;

/// Exchange that carries commands for the workers (direct).
pub const COMMANDS_EXCHANGE: &str = "commands";
/// Topic exchange that fans domain events out to every bound subscriber.
pub const EVENTS_EXCHANGE: &str = "events";
/// Work queue of the fulfilment workers.
pub const FULFIL_QUEUE: &str = "orders.fulfil";
/// Routing key of fulfilment commands on the commands exchange.
pub const FULFIL_ROUTING_KEY: &str = "orders.fulfil";
/// Dead-letter exchange and queue of `orders.fulfil`.
pub const FULFIL_DLX: &str = "orders.fulfil.dlx";
pub const FULFIL_DLQ: &str = "orders.fulfil.dlq";

/// AMQP header carrying the envelope's schema version.
pub const SCHEMA_VERSION_HEADER: &str = "schema-version";
/// AMQP header carrying the W3C trace context.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// A message as it travels: identity and metadata around a typed payload. The same fields
/// are mirrored into AMQP properties (message-id, type, timestamp) and headers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub message_id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub schema_version: u32,
    pub occurred_at: DateTime<Utc>,
    /// W3C trace context of the request that caused this message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// What a subscription's filter policy tests (SNS's message attributes): `type` (the
    /// event type, e.g. `order.fulfilled`) and the event's own, such as `total_cents` or
    /// `category`. Values are strings, numbers, booleans or arrays of strings. Commands
    /// carry none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: Attributes,
    pub payload: T,
}

/// Message attributes: name -> string, number, boolean or array of strings.
pub type Attributes = BTreeMap<String, serde_json::Value>;

/// A payload type names its message type and schema version once.
pub trait MessageKind: Serialize + DeserializeOwned {
    const KIND: &'static str;
    const SCHEMA_VERSION: u32;

    /// The attributes a filter policy can test; none unless the kind says otherwise.
    fn attributes(&self) -> Attributes {
        Attributes::new()
    }
}

impl<T: MessageKind> Envelope<T> {
    pub fn new(payload: T, traceparent: Option<String>) -> Self {
        Envelope {
            message_id: Uuid::now_v7(),
            kind: T::KIND.to_owned(),
            schema_version: T::SCHEMA_VERSION,
            occurred_at: Utc::now(),
            traceparent,
            attributes: payload.attributes(),
            payload,
        }
    }
}

/// Command: fulfil the order (reserve stock, charge payment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfilOrder {
    pub order_id: Uuid,
}

impl MessageKind for FulfilOrder {
    const KIND: &'static str = "FulfilOrder";
    const SCHEMA_VERSION: u32 = 1;
}

/// Event: the order was fulfilled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFulfilled {
    pub order_id: Uuid,
    pub total_cents: i64,
}

impl MessageKind for OrderFulfilled {
    const KIND: &'static str = "OrderFulfilled";
    const SCHEMA_VERSION: u32 = 1;
}

/// Event: the order was rejected, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRejected {
    pub order_id: Uuid,
    pub reason: String,
}

impl MessageKind for OrderRejected {
    const KIND: &'static str = "OrderRejected";
    const SCHEMA_VERSION: u32 = 1;
}

/// Event: a product changed (price, stock, text); caches drop their copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductChanged {
    pub sku: String,
}

impl MessageKind for ProductChanged {
    const KIND: &'static str = "ProductChanged";
    const SCHEMA_VERSION: u32 = 1;
}

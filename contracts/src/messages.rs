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
/// Stream that keeps every domain event for replay.
pub const EVENTS_STREAM: &str = "events.log";

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

/// A line of an order as its events carry it: what a confirmation mail shows, and the
/// category a filter policy tests. Fields added after schema 1 default when absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLine {
    pub sku: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub category: String,
    pub quantity: i32,
    pub unit_price_cents: i64,
}

/// The attributes every order event shares: `type`, `order_id`, `total_cents`, `category`
/// (the lines' categories, each once, sorted), `sku` (the lines' skus), `line_count` and
/// `email_domain` (the part after `@`, lower case; never the address itself).
fn order_attributes(
    event_type: &str,
    order_id: Uuid,
    total_cents: i64,
    email: &str,
    lines: &[EventLine],
) -> Attributes {
    let mut categories: Vec<&str> = lines
        .iter()
        .map(|l| l.category.as_str())
        .filter(|c| !c.is_empty())
        .collect();
    categories.sort_unstable();
    categories.dedup();
    let skus: Vec<&str> = lines.iter().map(|l| l.sku.as_str()).collect();
    let mut a = Attributes::new();
    a.insert("type".into(), event_type.into());
    a.insert("order_id".into(), order_id.to_string().into());
    a.insert("total_cents".into(), total_cents.into());
    a.insert("category".into(), categories.into());
    a.insert("sku".into(), skus.into());
    a.insert("line_count".into(), lines.len().into());
    if let Some((_, domain)) = email.rsplit_once('@') {
        a.insert("email_domain".into(), domain.to_ascii_lowercase().into());
    }
    a
}

/// Event `order.placed`: the order was accepted (written in the order's own transaction).
/// Logic builds its envelope in SQL, from the prices and categories read there; a test
/// checks that what SQL writes is what [`MessageKind::attributes`] says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order_id: Uuid,
    pub email: String,
    pub total_cents: i64,
    pub lines: Vec<EventLine>,
}

impl MessageKind for OrderPlaced {
    const KIND: &'static str = "OrderPlaced";
    const SCHEMA_VERSION: u32 = 1;

    fn attributes(&self) -> Attributes {
        order_attributes(
            "order.placed",
            self.order_id,
            self.total_cents,
            &self.email,
            &self.lines,
        )
    }
}

/// Event `order.fulfilled`: the order was fulfilled. Carries what an order confirmation
/// mail needs (`email`, `lines`; absent from events written before they existed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFulfilled {
    pub order_id: Uuid,
    pub total_cents: i64,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub lines: Vec<EventLine>,
}

impl MessageKind for OrderFulfilled {
    const KIND: &'static str = "OrderFulfilled";
    const SCHEMA_VERSION: u32 = 1;

    fn attributes(&self) -> Attributes {
        order_attributes(
            "order.fulfilled",
            self.order_id,
            self.total_cents,
            &self.email,
            &self.lines,
        )
    }
}

/// Event `order.rejected`: the order was rejected, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRejected {
    pub order_id: Uuid,
    pub reason: String,
    #[serde(default)]
    pub total_cents: i64,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub lines: Vec<EventLine>,
}

impl MessageKind for OrderRejected {
    const KIND: &'static str = "OrderRejected";
    const SCHEMA_VERSION: u32 = 1;

    fn attributes(&self) -> Attributes {
        let mut a = order_attributes(
            "order.rejected",
            self.order_id,
            self.total_cents,
            &self.email,
            &self.lines,
        );
        a.insert("reason".into(), self.reason.clone().into());
        a
    }
}

/// Event `product.changed`: a product changed (price, stock, text); caches drop their
/// copy. `category` when the writer knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductChanged {
    pub sku: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

impl MessageKind for ProductChanged {
    const KIND: &'static str = "ProductChanged";
    const SCHEMA_VERSION: u32 = 1;

    fn attributes(&self) -> Attributes {
        let mut a = Attributes::new();
        a.insert("type".into(), "product.changed".into());
        a.insert("sku".into(), self.sku.clone().into());
        if let Some(category) = &self.category {
            a.insert("category".into(), category.clone().into());
        }
        a
    }
}

/// Event `inventory.adjusted`: the worker applied one supplier adjustment (`op` `set` or
/// `add` of `quantity`) and the sku's stock became `stock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryAdjusted {
    pub adjustment_id: Uuid,
    pub sku: String,
    pub sequence: i64,
    pub op: String,
    pub quantity: i64,
    pub stock: i64,
}

impl MessageKind for InventoryAdjusted {
    const KIND: &'static str = "InventoryAdjusted";
    const SCHEMA_VERSION: u32 = 1;

    fn attributes(&self) -> Attributes {
        let mut a = Attributes::new();
        a.insert("type".into(), "inventory.adjusted".into());
        a.insert("sku".into(), self.sku.clone().into());
        a.insert("op".into(), self.op.clone().into());
        a.insert("quantity".into(), self.quantity.into());
        a.insert("stock".into(), self.stock.into());
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: &str, category: &str) -> EventLine {
        EventLine {
            sku: sku.into(),
            name: format!("{sku} name"),
            category: category.into(),
            quantity: 2,
            unit_price_cents: 1500,
        }
    }

    #[test]
    fn order_events_carry_their_attributes() {
        let id = Uuid::nil();
        let fulfilled = OrderFulfilled {
            order_id: id,
            total_cents: 6000,
            email: "Ann@Example.COM".into(),
            lines: vec![
                line("KIT-1", "Kitchen"),
                line("LAMP-1", "Lamps"),
                line("KIT-2", "Kitchen"),
            ],
        };
        let a = fulfilled.attributes();
        assert_eq!(a["type"], "order.fulfilled");
        assert_eq!(a["total_cents"], 6000);
        assert_eq!(a["category"], serde_json::json!(["Kitchen", "Lamps"]));
        assert_eq!(a["sku"], serde_json::json!(["KIT-1", "LAMP-1", "KIT-2"]));
        assert_eq!(a["line_count"], 3);
        assert_eq!(a["email_domain"], "example.com");
        assert_eq!(a["order_id"], id.to_string());

        let rejected = OrderRejected {
            order_id: id,
            reason: "out_of_stock".into(),
            total_cents: 100,
            email: "a@b.io".into(),
            lines: vec![],
        };
        assert_eq!(rejected.attributes()["reason"], "out_of_stock");
        assert_eq!(rejected.attributes()["type"], "order.rejected");
    }

    #[test]
    fn an_envelope_takes_the_attributes_of_its_payload() {
        let e = Envelope::new(
            ProductChanged {
                sku: "KIT-1".into(),
                category: Some("Kitchen".into()),
            },
            None,
        );
        assert_eq!(e.attributes["type"], "product.changed");
        assert_eq!(e.attributes["category"], "Kitchen");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["attributes"]["sku"], "KIT-1");
    }

    #[test]
    fn events_written_before_the_new_fields_still_read() {
        let old = serde_json::json!({"order_id": Uuid::nil(), "total_cents": 5});
        let f: OrderFulfilled = serde_json::from_value(old.clone()).unwrap();
        assert!(f.lines.is_empty() && f.email.is_empty());
        let r: OrderRejected =
            serde_json::from_value(serde_json::json!({"order_id": Uuid::nil(), "reason": "x"}))
                .unwrap();
        assert_eq!(r.total_cents, 0);
        let p: ProductChanged = serde_json::from_value(serde_json::json!({"sku": "A"})).unwrap();
        assert_eq!(p.category, None);
    }
}

//! Subscriptions to the event topics (SNS's role): the names every tier agrees on. The
//! API bodies live in [`crate::api`]; the filter-policy language in [`crate::filter`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::messages::Attributes;

/// A topic: a named set of event types on the `events` exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Topic {
    /// `order.placed`, `order.fulfilled`, `order.rejected`.
    Orders,
    /// `product.changed`, `inventory.adjusted`.
    Catalog,
}

impl Topic {
    pub const ALL: &'static [Topic] = &[Topic::Orders, Topic::Catalog];

    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Orders => "orders",
            Topic::Catalog => "catalog",
        }
    }

    pub fn parse(s: &str) -> Option<Topic> {
        Topic::ALL.iter().copied().find(|t| t.as_str() == s)
    }

    /// The binding keys of the topic on the `events` topic exchange.
    pub fn binding_keys(self) -> &'static [&'static str] {
        match self {
            Topic::Orders => &["order.*"],
            Topic::Catalog => &["product.*", "inventory.*"],
        }
    }

    /// The routing keys of the topic as a regular expression, for the broker's topic
    /// permissions (`rabbitmqctl set_topic_permissions`).
    pub fn routing_key_regex(self) -> &'static str {
        match self {
            Topic::Orders => r"^order\.",
            Topic::Catalog => r"^(product|inventory)\.",
        }
    }

    /// The topic an event type (a routing key on `events`) belongs to.
    pub fn of_event_type(event_type: &str) -> Option<Topic> {
        let prefix = event_type.split('.').next()?;
        match prefix {
            "order" => Some(Topic::Orders),
            "product" | "inventory" => Some(Topic::Catalog),
            _ => None,
        }
    }
}

/// How a subscription's events leave Strata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Protocol {
    /// A signed POST to an `http://` URL.
    Http,
    /// A signed POST to an `https://` URL.
    Https,
    /// A mail over SMTP to the endpoint's address.
    Email,
    /// A message in a durable queue of the endpoint's name, for other applications.
    Queue,
    /// A handler compiled into the worker binary, fed by its own queue `fn.<name>`.
    Function,
}

impl Protocol {
    pub const ALL: &'static [Protocol] = &[
        Protocol::Http,
        Protocol::Https,
        Protocol::Email,
        Protocol::Queue,
        Protocol::Function,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Email => "email",
            Protocol::Queue => "queue",
            Protocol::Function => "function",
        }
    }

    pub fn parse(s: &str) -> Option<Protocol> {
        Protocol::ALL.iter().copied().find(|p| p.as_str() == s)
    }

    /// Whether the endpoint must confirm before deliveries flow (SNS's confirmation); queue
    /// and function endpoints are Strata's own and are confirmed at creation.
    pub fn needs_confirmation(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Https | Protocol::Email)
    }
}

/// The life of a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum SubscriptionStatus {
    PendingConfirmation,
    Confirmed,
    Deleted,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::PendingConfirmation => "pending_confirmation",
            SubscriptionStatus::Confirmed => "confirmed",
            SubscriptionStatus::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<SubscriptionStatus> {
        match s {
            "pending_confirmation" => Some(SubscriptionStatus::PendingConfirmation),
            "confirmed" => Some(SubscriptionStatus::Confirmed),
            "deleted" => Some(SubscriptionStatus::Deleted),
            _ => None,
        }
    }
}

/// Body of `POST /api/v1/subscriptions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateSubscription {
    /// `orders` (the default) or `catalog`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Topic>))]
    pub topic: Option<String>,
    /// `http`, `https`, `email`, `queue` or `function`.
    #[cfg_attr(feature = "openapi", schema(value_type = Protocol))]
    pub protocol: String,
    /// A URL (http/https), a mail address (email), a queue name (queue) or a function's
    /// name (function: `loyalty-points`, `low-stock-alert`).
    pub endpoint: String,
    /// SNS filter-policy syntax on the events' attributes; absent: every event of the topic.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub filter_policy: Option<serde_json::Value>,
    /// true: the event's payload alone; false (default): the envelope.
    #[serde(default)]
    pub raw_delivery: bool,
}

/// A subscription with its delivery counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Subscription {
    pub id: Uuid,
    pub topic: Topic,
    pub protocol: Protocol,
    pub endpoint: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub filter_policy: Option<serde_json::Value>,
    pub raw_delivery: bool,
    pub status: SubscriptionStatus,
    /// The HMAC-SHA256 key (hex) of the `Strata-Signature` header: http/https only, and
    /// only in the answer that created the subscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The principal that created it (`admin` or a topic-policy principal).
    pub owner: String,
    pub created_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    /// Events delivered (2xx, mail accepted, message confirmed).
    pub delivered: i64,
    /// Failed attempts sent to a retry tier.
    pub retried: i64,
    /// Failed attempts.
    pub failed: i64,
    /// Events that failed every attempt, now in the subscription's DLQ.
    pub dead_lettered: i64,
    /// Events the filter policy did not match.
    pub filtered: i64,
    pub last_error: Option<String>,
    pub last_delivery_at: Option<DateTime<Utc>>,
    /// Messages in `sub.<id>.dlq`; null when the broker's management API did not answer.
    pub dlq_depth: Option<u64>,
}

/// `GET /api/v1/subscriptions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubscriptionList {
    pub items: Vec<Subscription>,
}

/// Body of `POST /api/v1/topics/{topic}/messages` (SNS Publish).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// The event type, a routing key of the topic (`order.*` for orders; `product.*`,
    /// `inventory.*` for catalog).
    #[serde(rename = "type")]
    pub kind: String,
    /// Message attributes for filter policies: strings, numbers, booleans or arrays of
    /// strings and numbers; at most 10. `type` is set to the event type.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub attributes: Attributes,
    /// The payload subscribers get.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub message: serde_json::Value,
}

/// Answer of `POST /api/v1/topics/{topic}/messages`: accepted into the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Published {
    pub message_id: Uuid,
    pub topic: Topic,
    #[serde(rename = "type")]
    pub kind: String,
}

/// Answer of `GET /api/v1/subscriptions/{id}/confirm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Confirmed {
    pub id: Uuid,
    pub status: SubscriptionStatus,
    pub confirmed_at: DateTime<Utc>,
}

/// One message of a subscription's DLQ (peeked, not consumed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubscriptionDeadLetter {
    pub message_id: Option<String>,
    /// The event type (the routing key it was published with).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The headers as text (the last error and the attempt count among them).
    pub headers: std::collections::BTreeMap<String, String>,
    /// The body as text (cut at 2 KiB).
    pub body: String,
}

/// `GET /api/v1/subscriptions/{id}/dlq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubscriptionDeadLetters {
    pub queue: String,
    pub total: u32,
    pub items: Vec<SubscriptionDeadLetter>,
}

/// The handlers compiled into the worker binary that a `function` subscription can name.
pub const FUNCTIONS: &[&str] = &["loyalty-points", "low-stock-alert"];

/// The header of every HTTP delivery and confirmation request:
/// `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub const SIGNATURE_HEADER: &str = "Strata-Signature";

/// The subscription's main queue: bound to the topic's keys on `events`; its consumer
/// applies the filter policy and delivers.
pub fn queue_name(id: Uuid) -> String {
    format!("sub.{id}")
}

/// The retry tier `tier` (0-based) of a subscription: messages wait there until their
/// expiration, then are dead-lettered back into the main queue.
pub fn retry_queue_name(id: Uuid, tier: usize) -> String {
    format!("sub.{id}.retry.{tier}")
}

/// The subscription's dead-letter queue: deliveries that failed every attempt.
pub fn dlq_name(id: Uuid) -> String {
    format!("sub.{id}.dlq")
}

/// The queue a function handler consumes.
pub fn function_queue_name(function: &str) -> String {
    format!("fn.{function}")
}

/// The dead-letter queue of a function handler.
pub fn function_dlq_name(function: &str) -> String {
    format!("fn.{function}.dlq")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_belong_to_their_topic() {
        assert_eq!(Topic::of_event_type("order.fulfilled"), Some(Topic::Orders));
        assert_eq!(
            Topic::of_event_type("product.changed"),
            Some(Topic::Catalog)
        );
        assert_eq!(
            Topic::of_event_type("inventory.adjusted"),
            Some(Topic::Catalog)
        );
        assert_eq!(Topic::of_event_type("payment.taken"), None);
        for p in Protocol::ALL {
            assert_eq!(Protocol::parse(p.as_str()), Some(*p));
        }
    }
}

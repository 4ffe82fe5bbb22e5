//! Subscriptions to the event topics (SNS's role): the names every tier agrees on. The
//! API bodies live in [`crate::api`]; the filter-policy language in [`crate::filter`].

use serde::{Deserialize, Serialize};
use uuid::Uuid;

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

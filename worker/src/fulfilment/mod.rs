//! What a worker does to an order: one `FulfilOrder` message is read, checked and turned
//! into the fulfilment transaction, which charges the payment gateway; the answer says
//! what becomes of the delivery.

pub mod payment;
pub mod transaction;

use contracts::trace::TraceParent;
use contracts::{Envelope, FulfilOrder, MessageKind};
use sqlx::PgPool;
use uuid::Uuid;

pub use payment::{Gateway, Payment, PaymentGateway};
pub use transaction::{FulfilError, Outcome, fulfil};

/// What to do with a delivery once handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Done (or a duplicate): ack.
    Ack(Option<Outcome>),
    /// Postgres is out of reach: nothing is wrong with the message. Hold it and try again
    /// in place (the delivery limit is not spent on an outage).
    Unavailable(String),
    /// Transient failure of the work itself (a lock or statement timeout): put it back;
    /// the delivery limit bounds the retries.
    Retry(String),
    /// It can never succeed: dead-letter it at once.
    DeadLetter(String),
}

/// Handles one `FulfilOrder` message body: the single-step entry point that the consumer
/// uses and tests drive directly. `message_id` is the AMQP message-id property when set.
pub async fn handle_message(
    pool: &PgPool,
    gateway: &impl Gateway,
    message_id: Option<&str>,
    body: &[u8],
) -> Disposition {
    let envelope: Envelope<FulfilOrder> = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(err) => return Disposition::DeadLetter(format!("unreadable message: {err}")),
    };
    if envelope.kind != FulfilOrder::KIND {
        return Disposition::DeadLetter(format!("unexpected message type {}", envelope.kind));
    }
    if envelope.schema_version > FulfilOrder::SCHEMA_VERSION {
        return Disposition::DeadLetter(format!(
            "unsupported schema version {}",
            envelope.schema_version
        ));
    }
    let message_id = match message_id.map(Uuid::parse_str) {
        Some(Ok(id)) => id,
        Some(Err(_)) => return Disposition::DeadLetter("message-id is not a UUID".to_owned()),
        None => envelope.message_id,
    };
    let traceparent = envelope
        .traceparent
        .as_deref()
        .and_then(TraceParent::parse)
        .map(|p| p.child().to_string());
    let order_id = envelope.payload.order_id;
    match fulfil(pool, gateway, message_id, order_id, traceparent).await {
        Ok(outcome) => {
            let label = match &outcome {
                Outcome::Fulfilled => "fulfilled",
                Outcome::Rejected(_) => "rejected",
                Outcome::Duplicate => "duplicate",
                Outcome::AlreadyFinal(_) => "already_final",
            };
            metrics::counter!("strata_worker_messages_total", "outcome" => label).increment(1);
            tracing::info!(order.id = %order_id, message.id = %message_id, outcome = ?outcome, "order processed");
            Disposition::Ack(Some(outcome))
        }
        Err(err @ FulfilError::UnknownOrder(_)) => Disposition::DeadLetter(err.to_string()),
        Err(FulfilError::Database(err)) if data::store::retry::is_unavailable(&err) => {
            Disposition::Unavailable(format!("{err:#}"))
        }
        Err(err) => {
            debug_assert!(!err.is_permanent());
            Disposition::Retry(format!("{err:#}"))
        }
    }
}

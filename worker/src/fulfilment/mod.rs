//! What a worker does to an order: one `FulfilOrder` message is read, checked and turned
//! into the fulfilment saga ([`saga`]: reserve, charge, settle, each step short and
//! idempotent); the answer says what becomes of the delivery. [`sweeper`] releases
//! reservations that lapsed.

pub mod payment;
pub mod saga;
mod steps;
pub mod sweeper;

use contracts::trace::TraceParent;
use contracts::{Envelope, FulfilOrder, MessageKind, OrderStatus};
use sqlx::PgPool;
use uuid::Uuid;

pub use payment::{Gateway, GatewayError, Payment, PaymentGateway};
pub use saga::{Saga, SagaSettings, fulfil};
pub use steps::CONSUMER;

/// What happened to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Fulfilled,
    Rejected(String),
    /// This message id was processed before: nothing changed.
    Duplicate,
    /// The order was already final: nothing changed. A copy of an applied message whose
    /// record was pruned meets this (redriven copies keep their message id), and so does
    /// any other command for a final order, or a settle that came after the reservation
    /// lapsed (its charge refunded).
    AlreadyFinal(OrderStatus),
}

#[derive(Debug, thiserror::Error)]
pub enum FulfilError {
    /// The message names an order that does not exist: retrying cannot help.
    #[error("order {0} does not exist")]
    UnknownOrder(Uuid),
    /// Postgres failed; the message should come back and be retried.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The gateway gave no answer after a few attempts; the charge is idempotent, so the
    /// message comes back and tries again.
    #[error(transparent)]
    Payment(#[from] GatewayError),
    /// The order is at a step this message cannot move on (someone changed it by hand).
    #[error("{0}")]
    Unexpected(String),
}

impl FulfilError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, FulfilError::UnknownOrder(_))
    }

    /// Postgres is out of reach (the simulated gateway's ledger is in it too).
    fn is_unavailable(&self) -> bool {
        match self {
            FulfilError::Database(err) | FulfilError::Payment(GatewayError::Ledger(err)) => {
                data::store::retry::is_unavailable(err)
            }
            _ => false,
        }
    }
}

/// What to do with a delivery once handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Done (or a duplicate): ack.
    Ack(Option<Outcome>),
    /// Postgres is out of reach: nothing is wrong with the message. Hold it and try again
    /// in place (the delivery limit is not spent on an outage).
    Unavailable(String),
    /// Transient failure of the work itself (a lock or statement timeout, a payment
    /// without answer): put it back; the delivery limit bounds the retries.
    Retry(String),
    /// It can never succeed: dead-letter it at once.
    DeadLetter(String),
}

/// Handles one `FulfilOrder` message body with the default saga settings: the
/// single-step entry point that tests drive directly. `message_id` is the AMQP message-id
/// property when set.
pub async fn handle_message(
    pool: &PgPool,
    gateway: &impl Gateway,
    message_id: Option<&str>,
    body: &[u8],
) -> Disposition {
    Saga::new(pool, gateway).handle(message_id, body).await
}

impl<G: Gateway> Saga<'_, G> {
    /// Handles one `FulfilOrder` message body (what the consumer calls).
    pub async fn handle(&self, message_id: Option<&str>, body: &[u8]) -> Disposition {
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
            Some(Err(_)) => {
                return Disposition::DeadLetter("message-id is not a UUID".to_owned());
            }
            None => envelope.message_id,
        };
        let traceparent = envelope
            .traceparent
            .as_deref()
            .and_then(TraceParent::parse)
            .map(|p| p.child().to_string());
        let order_id = envelope.payload.order_id;
        match self.fulfil(message_id, order_id, traceparent).await {
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
            Err(err) if err.is_unavailable() => Disposition::Unavailable(format!("{err:#}")),
            Err(err) => {
                debug_assert!(!err.is_permanent());
                Disposition::Retry(format!("{err:#}"))
            }
        }
    }
}

//! The fulfilment transaction a worker runs for one `FulfilOrder` message: dedup by message
//! id, reserve stock without oversell, charge payment, set the status, record the message
//! as processed and announce the outcome, all in ONE Postgres transaction.

use contracts::{EVENTS_EXCHANGE, Envelope, OrderFulfilled, OrderRejected, OrderStatus};
use data::messaging::outbox;
use sqlx::{Connection, PgPool};
use uuid::Uuid;

use super::payment::{Gateway, Payment};

/// Name under which the fulfilment consumer records processed messages.
pub const CONSUMER: &str = "fulfilment";

/// What happened to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Fulfilled,
    Rejected(String),
    /// This message id was processed before: nothing changed.
    Duplicate,
    /// The order was already final: nothing changed. A copy of an applied message whose
    /// record was pruned meets this (redriven copies keep their message id), and so does
    /// any other command for a final order.
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
}

impl FulfilError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, FulfilError::UnknownOrder(_))
    }
}

/// The first statement of the transaction: records the message as processed (a
/// concurrent copy of the same message waits on this unique key until we commit), then,
/// only if it is new, locks the order and, only if the order is not final yet, its
/// products, in sku order so concurrent workers never deadlock. NO KEY UPDATE, not UPDATE:
/// the key is never changed here, and this lock mode leaves the KEY SHARE locks that order
/// placement takes (through the order_lines foreign key) free, so placing an order never
/// waits on a payment in progress nor deadlocks with it. `bench/pgbench/fulfil.sql` runs
/// the same statements.
const CLAIM: &str = "\
WITH first AS (
    INSERT INTO processed_messages (consumer, message_id) VALUES ($1, $2)
    ON CONFLICT DO NOTHING
    RETURNING true AS first
),
the_order AS (
    SELECT status, total_cents FROM orders
    WHERE id = $3 AND EXISTS (SELECT FROM first)
    FOR UPDATE
),
the_lines AS (
    SELECT l.sku, l.quantity, p.stock FROM order_lines l
    JOIN products p ON p.sku = l.sku
    WHERE l.order_id = $3 AND EXISTS (SELECT FROM the_order WHERE status = 'pending')
    ORDER BY l.sku
    FOR NO KEY UPDATE OF p
)
SELECT EXISTS (SELECT FROM first) AS first_time,
       (SELECT status FROM the_order) AS status,
       (SELECT total_cents FROM the_order) AS total_cents,
       ARRAY(SELECT sku FROM the_lines ORDER BY sku) AS skus,
       ARRAY(SELECT quantity FROM the_lines ORDER BY sku) AS quantities,
       ARRAY(SELECT stock FROM the_lines ORDER BY sku) AS stocks";

/// The second statement: takes the stock (no line when the order is rejected), sets the
/// status and writes the outcome's event to the outbox. The arrays come in through
/// sub-selects so that the plan does not depend on their length and Postgres keeps one
/// generic plan instead of planning the statement anew for every message.
const SETTLE: &str = "\
WITH stock AS (
    UPDATE products p SET stock = p.stock - l.quantity, updated_at = now()
    FROM unnest((SELECT $1::text[]), (SELECT $2::int[])) AS l (sku, quantity)
    WHERE p.sku = l.sku
),
settled AS (
    UPDATE orders SET status = $3, step = $3, reason = $4, updated_at = now() WHERE id = $5
)
INSERT INTO outbox (message_id, exchange, routing_key, kind, body, traceparent)
VALUES ($6, $7, $8, $9, $10, $11)";

#[derive(sqlx::FromRow)]
struct Claim {
    first_time: bool,
    status: Option<String>,
    total_cents: Option<i64>,
    skus: Vec<String>,
    quantities: Vec<i32>,
    stocks: Vec<i32>,
}

/// Runs the fulfilment transaction. The gateway is charged only when every line is in
/// stock, while the product rows are locked, so concurrent workers can never oversell.
#[tracing::instrument(skip(pool, gateway, traceparent), fields(outcome))]
pub async fn fulfil(
    pool: &PgPool,
    gateway: &impl Gateway,
    message_id: Uuid,
    order_id: Uuid,
    traceparent: Option<String>,
) -> Result<Outcome, FulfilError> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let claim: Claim = sqlx::query_as(CLAIM)
        .bind(CONSUMER)
        .bind(message_id)
        .bind(order_id)
        .fetch_one(&mut *tx)
        .await?;
    if !claim.first_time {
        tx.rollback().await?;
        return Ok(Outcome::Duplicate);
    }
    let (Some(status), Some(total_cents)) = (claim.status, claim.total_cents) else {
        tx.rollback().await?;
        return Err(FulfilError::UnknownOrder(order_id));
    };
    let status = OrderStatus::parse(&status).unwrap_or(OrderStatus::Pending);
    if status.is_final() {
        tx.commit().await?;
        return Ok(Outcome::AlreadyFinal(status));
    }

    let in_stock = claim
        .quantities
        .iter()
        .zip(&claim.stocks)
        .all(|(quantity, stock)| stock >= quantity);
    let outcome = if !in_stock {
        Outcome::Rejected("out_of_stock".to_owned())
    } else {
        match gateway.charge(total_cents).await {
            Payment::Declined => Outcome::Rejected("payment_declined".to_owned()),
            Payment::Approved => Outcome::Fulfilled,
        }
    };

    let no_lines: (Vec<String>, Vec<i32>) = (Vec::new(), Vec::new());
    let (taken, status, reason, event) = match &outcome {
        Outcome::Fulfilled => (
            (claim.skus, claim.quantities),
            OrderStatus::Fulfilled,
            None,
            Event::Fulfilled(Envelope::new(
                OrderFulfilled {
                    order_id,
                    total_cents,
                },
                traceparent,
            )),
        ),
        Outcome::Rejected(reason) => (
            no_lines,
            OrderStatus::Rejected,
            Some(reason.as_str()),
            Event::Rejected(Envelope::new(
                OrderRejected {
                    order_id,
                    reason: reason.clone(),
                },
                traceparent,
            )),
        ),
        Outcome::Duplicate | Outcome::AlreadyFinal(_) => unreachable!("settled above"),
    };
    let message = match &event {
        Event::Fulfilled(e) => outbox::Message::new(EVENTS_EXCHANGE, "order.fulfilled", e)?,
        Event::Rejected(e) => outbox::Message::new(EVENTS_EXCHANGE, "order.rejected", e)?,
    };
    let settle = sqlx::query(SETTLE)
        .bind(&taken.0)
        .bind(&taken.1)
        .bind(status.as_str())
        .bind(reason)
        .bind(order_id);
    outbox::bind_message!(settle, message)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    outbox::announce(pool, &mut conn).await;
    tracing::Span::current().record("outcome", tracing::field::debug(&outcome));
    Ok(outcome)
}

enum Event {
    Fulfilled(Envelope<OrderFulfilled>),
    Rejected(Envelope<OrderRejected>),
}

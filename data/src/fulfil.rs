//! The fulfilment transaction a worker runs for one `FulfilOrder` message: dedup by message
//! id, reserve stock without oversell, charge payment, set the status, record the message
//! as processed and announce the outcome, all in ONE Postgres transaction.

use std::future::Future;

use contracts::{EVENTS_EXCHANGE, Envelope, OrderFulfilled, OrderRejected, OrderStatus};
use sqlx::PgPool;
use uuid::Uuid;

use crate::outbox;

/// Name under which the fulfilment consumer records processed messages.
pub const CONSUMER: &str = "fulfilment";

/// What the payment gateway answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payment {
    Approved,
    Declined,
}

/// What happened to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Fulfilled,
    Rejected(String),
    /// This message id was processed before: nothing changed.
    Duplicate,
    /// The order was already final (e.g. a redriven copy under a new id): nothing changed.
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

/// Runs the fulfilment transaction. `charge` is called only when every line is in stock,
/// while the product rows are locked, so concurrent workers can never oversell.
#[tracing::instrument(skip(pool, charge, traceparent), fields(outcome))]
pub async fn fulfil<F, Fut>(
    pool: &PgPool,
    message_id: Uuid,
    order_id: Uuid,
    traceparent: Option<String>,
    charge: F,
) -> Result<Outcome, FulfilError>
where
    F: FnOnce(i64) -> Fut,
    Fut: Future<Output = Payment>,
{
    let mut tx = pool.begin().await?;
    // A concurrent copy of the same message waits on this unique key until we commit.
    let first_time = sqlx::query(
        "INSERT INTO processed_messages (consumer, message_id) VALUES ($1, $2) \
         ON CONFLICT DO NOTHING",
    )
    .bind(CONSUMER)
    .bind(message_id)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !first_time {
        tx.rollback().await?;
        return Ok(Outcome::Duplicate);
    }

    let order: Option<(String, i64)> =
        sqlx::query_as("SELECT status, total_cents FROM orders WHERE id = $1 FOR UPDATE")
            .bind(order_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((status, total_cents)) = order else {
        tx.rollback().await?;
        return Err(FulfilError::UnknownOrder(order_id));
    };
    let status = OrderStatus::parse(&status).unwrap_or(OrderStatus::Pending);
    if status.is_final() {
        tx.commit().await?;
        return Ok(Outcome::AlreadyFinal(status));
    }

    // Lock the products in a fixed order (by sku) so concurrent workers never deadlock.
    // NO KEY UPDATE, not UPDATE: the key is never changed here, and this lock mode leaves
    // the KEY SHARE locks that order placement takes (through the order_lines foreign key)
    // free, so placing an order never waits on a payment in progress nor deadlocks with it.
    let lines: Vec<(String, i32, i32)> = sqlx::query_as(
        "SELECT l.sku, l.quantity, p.stock FROM order_lines l \
         JOIN products p ON p.sku = l.sku \
         WHERE l.order_id = $1 ORDER BY l.sku FOR NO KEY UPDATE OF p",
    )
    .bind(order_id)
    .fetch_all(&mut *tx)
    .await?;
    let in_stock = lines.iter().all(|(_, quantity, stock)| stock >= quantity);

    let outcome = if !in_stock {
        Outcome::Rejected("out_of_stock".to_owned())
    } else {
        match charge(total_cents).await {
            Payment::Declined => Outcome::Rejected("payment_declined".to_owned()),
            Payment::Approved => {
                let skus: Vec<&str> = lines.iter().map(|(s, _, _)| s.as_str()).collect();
                let quantities: Vec<i32> = lines.iter().map(|(_, q, _)| *q).collect();
                sqlx::query(
                    "UPDATE products p SET stock = p.stock - l.quantity, updated_at = now() \
                     FROM unnest($1::text[], $2::int[]) AS l(sku, quantity) \
                     WHERE p.sku = l.sku",
                )
                .bind(&skus)
                .bind(&quantities)
                .execute(&mut *tx)
                .await?;
                Outcome::Fulfilled
            }
        }
    };

    match &outcome {
        Outcome::Fulfilled => {
            sqlx::query("UPDATE orders SET status = 'fulfilled', updated_at = now() WHERE id = $1")
                .bind(order_id)
                .execute(&mut *tx)
                .await?;
            let event = Envelope::new(
                OrderFulfilled {
                    order_id,
                    total_cents,
                },
                traceparent,
            );
            outbox::enqueue(&mut tx, EVENTS_EXCHANGE, "order.fulfilled", &event).await?;
        }
        Outcome::Rejected(reason) => {
            sqlx::query(
                "UPDATE orders SET status = 'rejected', reason = $2, updated_at = now() \
                 WHERE id = $1",
            )
            .bind(order_id)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
            let event = Envelope::new(
                OrderRejected {
                    order_id,
                    reason: reason.clone(),
                },
                traceparent,
            );
            outbox::enqueue(&mut tx, EVENTS_EXCHANGE, "order.rejected", &event).await?;
        }
        Outcome::Duplicate | Outcome::AlreadyFinal(_) => {}
    }
    tx.commit().await?;
    tracing::Span::current().record("outcome", tracing::field::debug(&outcome));
    Ok(outcome)
}

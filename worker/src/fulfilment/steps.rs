//! The saga's short transactions, each one idempotent: it locks the order, looks at its
//! step and moves it on only from the step it expects, so a replay after a crash between
//! any two of them finds the work done and goes on from there.
//!
//! Lock order everywhere: the order row, then its products in sku order (what the reserve,
//! the compensation and the sweeper take), so concurrent workers and sweepers never
//! deadlock. Product locks are held for one short transaction, never across a payment.

use contracts::{
    EVENTS_EXCHANGE, Envelope, EventLine, OrderFulfilled, OrderRejected, OrderStatus, OrderStep,
};
use data::messaging::outbox;
use sqlx::PgConnection;
use uuid::Uuid;

use super::FulfilError;

/// Name under which the fulfilment consumer records processed messages.
pub const CONSUMER: &str = "fulfilment";

/// Locks the order and, only when it is at step `$2`, its products, in sku order. NO KEY
/// UPDATE, not UPDATE: the key is never changed here, and this lock mode leaves the KEY
/// SHARE locks that order placement takes (through the order_lines foreign key) free, so
/// placing an order never waits on a reservation in progress nor deadlocks with it.
/// `bench/pgbench/fulfil.sql` runs the same statements.
const LOCK: &str = "\
WITH the_order AS (
    SELECT step, reason, total_cents FROM orders WHERE id = $1 FOR UPDATE
),
the_lines AS (
    SELECT l.sku, l.quantity, p.stock FROM order_lines l
    JOIN products p ON p.sku = l.sku
    WHERE l.order_id = $1 AND EXISTS (SELECT FROM the_order WHERE step = $2::text)
    ORDER BY l.sku
    FOR NO KEY UPDATE OF p
)
SELECT (SELECT step FROM the_order) AS step,
       (SELECT reason FROM the_order) AS reason,
       (SELECT total_cents FROM the_order) AS total_cents,
       ARRAY(SELECT sku FROM the_lines ORDER BY sku) AS skus,
       ARRAY(SELECT quantity FROM the_lines ORDER BY sku) AS quantities,
       ARRAY(SELECT stock FROM the_lines ORDER BY sku) AS stocks";

/// The reservation: takes the stock and holds it until `reserved_until`. The arrays come
/// in through sub-selects so that the plan does not depend on their length and Postgres
/// keeps one generic plan instead of planning the statement anew for every message.
const TAKE: &str = "\
WITH stock AS (
    UPDATE products p SET stock = p.stock - l.quantity, updated_at = now()
    FROM unnest((SELECT $1::text[]), (SELECT $2::int[])) AS l (sku, quantity)
    WHERE p.sku = l.sku
)
UPDATE orders SET step = 'reserved', reserved_until = now() + make_interval(secs => $3),
       updated_at = now()
WHERE id = $4";

/// A final step: records the message as processed (none for the sweeper), gives stock
/// back (no line when nothing was taken, or when it is kept), sets step and status, and
/// writes the outcome's event to the outbox.
const FINISH: &str = "\
WITH recorded AS (
    INSERT INTO processed_messages (consumer, message_id)
    SELECT $1, $2 WHERE $2::uuid IS NOT NULL
    ON CONFLICT DO NOTHING
),
stock AS (
    UPDATE products p SET stock = p.stock + l.quantity, updated_at = now()
    FROM unnest((SELECT $3::text[]), (SELECT $4::int[])) AS l (sku, quantity)
    WHERE p.sku = l.sku
),
settled AS (
    UPDATE orders SET status = $5, step = $5, reason = $6, reserved_until = NULL,
           updated_at = now()
    WHERE id = $7
)
INSERT INTO outbox (message_id, exchange, routing_key, kind, body, traceparent)
VALUES ($8, $9, $10, $11, $12, $13)";

/// What the final event tells of the order: the address, the total and the lines with the
/// products' names and categories (the confirmation mail and the filter attributes).
const DETAILS: &str = "\
SELECT o.email, o.total_cents, l.sku, p.name, p.category, l.quantity, l.unit_price_cents
FROM orders o
JOIN order_lines l ON l.order_id = o.id
JOIN products p ON p.sku = l.sku
WHERE o.id = $1
ORDER BY l.line_no";

/// A message met an order that is final already: recorded, so that the same message
/// again is known as a duplicate.
const RECORD: &str = "\
INSERT INTO processed_messages (consumer, message_id) VALUES ($1, $2)
ON CONFLICT DO NOTHING
RETURNING true";

/// The order as locked.
#[derive(sqlx::FromRow)]
pub(super) struct Locked {
    step: Option<String>,
    pub reason: Option<String>,
    pub total_cents: Option<i64>,
    pub skus: Vec<String>,
    pub quantities: Vec<i32>,
    pub stocks: Vec<i32>,
}

impl Locked {
    pub fn step(&self) -> OrderStep {
        self.step
            .as_deref()
            .and_then(OrderStep::parse)
            .unwrap_or(OrderStep::Pending)
    }

    pub fn in_stock(&self) -> bool {
        self.quantities
            .iter()
            .zip(&self.stocks)
            .all(|(quantity, stock)| stock >= quantity)
    }
}

/// Locks order `order_id`, and its products when it is at `products_at`.
pub(super) async fn lock(
    conn: &mut PgConnection,
    order_id: Uuid,
    products_at: Option<OrderStep>,
) -> Result<Locked, FulfilError> {
    let locked: Locked = sqlx::query_as(LOCK)
        .bind(order_id)
        .bind(products_at.map(OrderStep::as_str))
        .fetch_one(conn)
        .await?;
    if locked.step.is_none() {
        return Err(FulfilError::UnknownOrder(order_id));
    }
    Ok(locked)
}

/// Takes the locked lines' stock and moves the order to `reserved` for `ttl`.
pub(super) async fn take(
    conn: &mut PgConnection,
    order_id: Uuid,
    locked: &Locked,
    ttl: std::time::Duration,
) -> sqlx::Result<()> {
    sqlx::query(TAKE)
        .bind(&locked.skus)
        .bind(&locked.quantities)
        .bind(ttl.as_secs_f64())
        .bind(order_id)
        .execute(conn)
        .await
        .map(drop)
}

/// How an order ends.
pub(super) enum Ending<'a> {
    Fulfilled {
        total_cents: i64,
    },
    /// Rejected for `reason`; `give_back` holds the stock the order had reserved.
    Rejected {
        reason: &'a str,
        give_back: Option<&'a Locked>,
    },
}

/// Writes the order's final step, its event and (given a message id) the message record.
pub(super) async fn finish(
    conn: &mut PgConnection,
    message_id: Option<Uuid>,
    order_id: Uuid,
    ending: Ending<'_>,
    traceparent: Option<String>,
) -> Result<(), FulfilError> {
    let none: (Vec<String>, Vec<i32>) = (Vec::new(), Vec::new());
    let details = details(conn, order_id).await?;
    let (step, reason, lines, event) = match ending {
        Ending::Fulfilled { total_cents } => (
            OrderStep::Fulfilled,
            None,
            (&none.0, &none.1),
            Event::Fulfilled(Envelope::new(
                OrderFulfilled {
                    order_id,
                    total_cents,
                    email: details.email,
                    lines: details.lines,
                },
                traceparent,
            )),
        ),
        Ending::Rejected { reason, give_back } => (
            OrderStep::Rejected,
            Some(reason),
            give_back.map_or((&none.0, &none.1), |l| (&l.skus, &l.quantities)),
            Event::Rejected(Envelope::new(
                OrderRejected {
                    order_id,
                    reason: reason.to_owned(),
                    total_cents: details.total_cents,
                    email: details.email,
                    lines: details.lines,
                },
                traceparent,
            )),
        ),
    };
    let message = match &event {
        Event::Fulfilled(e) => outbox::Message::new(EVENTS_EXCHANGE, "order.fulfilled", e)?,
        Event::Rejected(e) => outbox::Message::new(EVENTS_EXCHANGE, "order.rejected", e)?,
    };
    let query = sqlx::query(FINISH)
        .bind(CONSUMER)
        .bind(message_id)
        .bind(lines.0)
        .bind(lines.1)
        .bind(step.as_str())
        .bind(reason)
        .bind(order_id);
    outbox::bind_message!(query, message).execute(conn).await?;
    Ok(())
}

/// The order as its final event describes it.
struct Details {
    email: String,
    total_cents: i64,
    lines: Vec<EventLine>,
}

async fn details(conn: &mut PgConnection, order_id: Uuid) -> sqlx::Result<Details> {
    let rows: Vec<(String, i64, String, String, String, i32, i64)> = sqlx::query_as(DETAILS)
        .bind(order_id)
        .fetch_all(conn)
        .await?;
    let (email, total_cents) = rows.first().map(|r| (r.0.clone(), r.1)).unwrap_or_default();
    let lines = rows
        .into_iter()
        .map(
            |(_, _, sku, name, category, quantity, unit_price_cents)| EventLine {
                sku,
                name,
                category,
                quantity,
                unit_price_cents,
            },
        )
        .collect();
    Ok(Details {
        email,
        total_cents,
        lines,
    })
}

/// Records a message that met a final order: true when it is new (the order was made
/// final by another message, or by the sweeper), false when this very message was
/// processed before.
pub(super) async fn record(conn: &mut PgConnection, message_id: Uuid) -> sqlx::Result<bool> {
    let new: Option<bool> = sqlx::query_scalar(RECORD)
        .bind(CONSUMER)
        .bind(message_id)
        .fetch_optional(conn)
        .await?;
    Ok(new.is_some())
}

/// The final status of a step known to be final.
pub(super) fn final_status(step: OrderStep) -> OrderStatus {
    step.status()
}

enum Event {
    Fulfilled(Envelope<OrderFulfilled>),
    Rejected(Envelope<OrderRejected>),
}

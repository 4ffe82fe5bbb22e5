//! Orders in Postgres: placing one (order, lines, idempotency key and outbox message in one
//! transaction) and reading one back.

use chrono::{DateTime, Utc};
use contracts::{
    AuditAction, COMMANDS_EXCHANGE, Envelope, FULFIL_ROUTING_KEY, FulfilOrder, Order, OrderLine,
    OrderPlaced, OrderStatus, OrderStep, PlaceOrder,
};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::messaging::outbox;
use crate::store::audit::{self, Caller, Record};
use crate::store::retry;

#[derive(Debug, thiserror::Error)]
pub enum PlaceOrderError {
    #[error("unknown sku {0}")]
    UnknownSku(String),
    #[error("the idempotency key was used with a different request")]
    IdempotencyKeyReused,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Whether a placement created the order or replayed an earlier one under the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Created,
    Replayed,
}

/// A stable fingerprint of an order request, for comparing replays of an idempotency key.
pub fn request_hash(order: &PlaceOrder) -> String {
    let canonical = serde_json::to_vec(order).unwrap_or_default();
    hex::encode(Sha256::digest(&canonical))
}

#[derive(sqlx::FromRow)]
struct OrderRow {
    id: Uuid,
    email: String,
    step: String,
    reason: Option<String>,
    total_cents: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// Places a validated order: prices come from the catalog now, stock is reserved later by
/// the worker. With an idempotency key, a replay of the same request returns the first
/// order and creates nothing.
pub async fn place(
    pool: &PgPool,
    order: &PlaceOrder,
    idempotency_key: Option<&str>,
    traceparent: Option<String>,
) -> Result<(Order, Placement), PlaceOrderError> {
    place_as(pool, order, idempotency_key, traceparent, None).await
}

/// [`place`], recording the placement in the audit trail: a new order's entry is written in
/// the same transaction as the order and its outbox message; a replay gets its own entry.
/// A refused placement writes nothing here (the caller records the refusal).
pub async fn place_recorded(
    pool: &PgPool,
    order: &PlaceOrder,
    idempotency_key: Option<&str>,
    traceparent: Option<String>,
    caller: &Caller,
) -> Result<(Order, Placement), PlaceOrderError> {
    place_as(pool, order, idempotency_key, traceparent, Some(caller)).await
}

/// Places an order in ONE statement, so one round trip to Postgres: the prices are read,
/// and only when every sku exists and the idempotency key (if any) is new are the order,
/// its lines, the key, the outbox messages (the `order.placed` event, then the
/// `FulfilOrder` command: relays publish in outbox order, so the event goes out no later
/// than the command, and so before every event the command causes, whichever relay
/// publishes those) and the audit entry inserted. A statement is a
/// transaction of its own: all of it commits or none. The answer says which case it was.
/// `bench/pgbench/place.sql` runs the same statement.
///
/// The arrays come in through sub-selects so that the plan does not depend on their
/// length: Postgres then settles on one generic plan per connection after five executions.
/// Passed directly, their length made every custom plan look cheaper than the generic one,
/// and the statement was planned anew on every order.
///
/// The `order.placed` envelope comes in built by [`OrderPlaced`] without what only the
/// catalog knows (`$18`); the statement adds the total, the lines with their names and
/// categories, and the attributes made of them, exactly as `OrderPlaced::attributes` would
/// (a test compares the two).
const PLACE: &str = "\
WITH line AS (
    SELECT i.line_no, i.sku, i.quantity, p.price_cents, p.name, p.category
    FROM unnest((SELECT $2::smallint[]), (SELECT $3::text[]), (SELECT $4::int[]))
        AS i (line_no, sku, quantity)
    JOIN products p ON p.sku = i.sku
),
priced AS (
    SELECT count(*) = cardinality($3::text[]) AS complete,
           coalesce(sum(quantity::bigint * price_cents), 0)::bigint AS total,
           array_agg(sku ORDER BY line_no) AS skus,
           array_agg(price_cents ORDER BY line_no) AS prices,
           coalesce(jsonb_agg(jsonb_build_object('sku', sku, 'name', name,
               'category', category, 'quantity', quantity, 'unit_price_cents', price_cents)
               ORDER BY line_no), '[]') AS event_lines,
           coalesce(jsonb_agg(DISTINCT category COLLATE \"C\"
               ORDER BY category COLLATE \"C\"), '[]') AS categories,
           coalesce(jsonb_agg(sku ORDER BY line_no), '[]') AS event_skus,
           count(*) AS line_count
    FROM line
),
-- A concurrent request with the same key waits here until the first one commits.
new_key AS (
    INSERT INTO idempotency_keys (key, request_hash, order_id)
    SELECT $5::text, $6::text, $1::uuid FROM priced WHERE complete AND $5::text IS NOT NULL
    ON CONFLICT (key) DO NOTHING
    RETURNING order_id
),
go AS (
    SELECT total FROM priced
    WHERE complete AND ($5::text IS NULL OR EXISTS (SELECT FROM new_key))
),
placed AS (
    INSERT INTO orders (id, email, total_cents) SELECT $1::uuid, $7::text, total FROM go
    RETURNING status, created_at, updated_at
),
lines AS (
    INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price_cents)
    SELECT $1::uuid, line_no, sku, quantity, price_cents FROM line
    WHERE EXISTS (SELECT FROM go)
),
message AS (
    INSERT INTO outbox (message_id, exchange, routing_key, kind, body, traceparent)
    SELECT ($18::jsonb ->> 'message_id')::uuid, 'events', 'order.placed', 'OrderPlaced',
           $18::jsonb
           || jsonb_build_object('payload', ($18::jsonb -> 'payload')
                  || jsonb_build_object('total_cents', go.total, 'lines', p.event_lines))
           || jsonb_build_object('attributes', ($18::jsonb -> 'attributes')
                  || jsonb_build_object('total_cents', go.total, 'category', p.categories,
                         'sku', p.event_skus, 'line_count', p.line_count)),
           $13::text
    FROM go, priced p
    UNION ALL
    SELECT $8::uuid, $9::text, $10::text, $11::text, $12::jsonb, $13::text FROM go
),
audit AS (
    INSERT INTO audit_log (actor, action, target, outcome, request_id, trace_id, detail)
    SELECT $14::text, 'order.place', 'order:' || $1::uuid, 'success', $15::uuid, $16::text,
           $17::jsonb || jsonb_build_object('total_cents', total)
    FROM go WHERE $14::text IS NOT NULL
)
SELECT priced.complete, priced.total, priced.skus, priced.prices,
       placed.status, placed.created_at, placed.updated_at
FROM priced LEFT JOIN placed ON true";

#[derive(sqlx::FromRow)]
struct PlaceRow {
    complete: bool,
    total: i64,
    skus: Option<Vec<String>>,
    prices: Option<Vec<i64>>,
    status: Option<String>,
    created_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
}

#[tracing::instrument(skip(pool, order, traceparent, caller), fields(order.id))]
async fn place_as(
    pool: &PgPool,
    order: &PlaceOrder,
    idempotency_key: Option<&str>,
    traceparent: Option<String>,
    caller: Option<&Caller>,
) -> Result<(Order, Placement), PlaceOrderError> {
    let line_nos: Vec<i16> = (1..=order.lines.len() as i16).collect();
    let skus: Vec<&str> = order.lines.iter().map(|l| l.sku.as_str()).collect();
    let quantities: Vec<i32> = order.lines.iter().map(|l| l.quantity).collect();
    let hash = idempotency_key.map(|_| request_hash(order));
    let id = Uuid::now_v7();
    tracing::Span::current().record("order.id", tracing::field::display(id));
    let placed = Envelope::new(
        OrderPlaced {
            order_id: id,
            email: order.email.clone(),
            total_cents: 0,
            lines: Vec::new(),
        },
        traceparent.clone(),
    );
    let placed = serde_json::to_value(&placed).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let command = Envelope::new(FulfilOrder { order_id: id }, traceparent);
    let message = outbox::Message::new(COMMANDS_EXCHANGE, FULFIL_ROUTING_KEY, &command)?;
    let detail = serde_json::json!({
        "lines": order.lines.len(),
        "idempotency_key": idempotency_key.is_some(),
    });

    // The statement commits by itself: repeated on a fresh connection only when the
    // server answered that it ended the session, which it does before a commit, never
    // after (see `retry`). A connection that broke mid-answer leaves the outcome unknown:
    // the error goes back (503) and the client retries with its Idempotency-Key.
    let (line_nos, skus, quantities, hash, message, detail, placed) = (
        &line_nos,
        &skus,
        &quantities,
        &hash,
        &message,
        &detail,
        &placed,
    );
    let (row, mut conn) = retry::once_more(
        pool,
        "orders.place",
        retry::session_ended_by_server,
        move |mut conn| async move {
            let place = sqlx::query_as(PLACE)
                .bind(id)
                .bind(line_nos)
                .bind(skus)
                .bind(quantities)
                .bind(idempotency_key)
                .bind(hash)
                .bind(&order.email);
            let row: PlaceRow = outbox::bind_message!(place, message)
                .bind(caller.map(|c| c.actor.as_str()))
                .bind(caller.and_then(|c| c.request_id))
                .bind(caller.and_then(|c| c.trace_id.as_deref()))
                .bind(detail)
                .bind(placed)
                .fetch_one(&mut *conn)
                .await?;
            sqlx::Result::Ok((row, conn))
        },
    )
    .await?;

    if !row.complete {
        let found = row.skus.unwrap_or_default();
        let missing = order
            .lines
            .iter()
            .find(|l| !found.contains(&l.sku))
            .map_or_else(String::new, |l| l.sku.clone());
        return Err(PlaceOrderError::UnknownSku(missing));
    }
    let (Some(status), Some(created_at), Some(updated_at)) =
        (row.status, row.created_at, row.updated_at)
    else {
        // Every sku exists but nothing was inserted: the key was used before.
        drop(conn);
        let key = idempotency_key.ok_or(sqlx::Error::RowNotFound)?;
        return replay(pool, key, hash.as_deref().unwrap_or_default(), caller).await;
    };
    outbox::announce(pool, &mut conn).await;

    let status = OrderStatus::parse(&status)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown order status {status}").into()))?;
    let prices = row.prices.unwrap_or_default();
    let placed = Order {
        id,
        status,
        step: OrderStep::Pending,
        reason: None,
        email: order.email.clone(),
        lines: order
            .lines
            .iter()
            .zip(prices)
            .map(|(l, unit_price_cents)| OrderLine {
                sku: l.sku.clone(),
                quantity: l.quantity,
                unit_price_cents,
            })
            .collect(),
        total_cents: row.total,
        created_at,
        updated_at,
    };
    Ok((placed, Placement::Created))
}

/// The answer to a request whose idempotency key is taken: the first order when the
/// request is the same, an error when it is not.
async fn replay(
    pool: &PgPool,
    key: &str,
    hash: &str,
    caller: Option<&Caller>,
) -> Result<(Order, Placement), PlaceOrderError> {
    let (stored_hash, order_id): (String, Uuid) =
        sqlx::query_as("SELECT request_hash, order_id FROM idempotency_keys WHERE key = $1")
            .bind(key)
            .fetch_one(pool)
            .await?;
    if stored_hash != hash {
        return Err(PlaceOrderError::IdempotencyKeyReused);
    }
    let existing = get(pool, order_id).await?.ok_or(sqlx::Error::RowNotFound)?;
    if let Some(caller) = caller {
        let entry = Record::success(
            caller,
            AuditAction::OrderPlace,
            Some(format!("order:{order_id}")),
            serde_json::json!({"replayed": true}),
        );
        audit::record_alone(pool, &entry).await?;
    }
    Ok((existing, Placement::Replayed))
}

#[tracing::instrument(skip(pool))]
pub async fn get(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<Order>> {
    retry::read(pool, "orders.get", move |mut conn| async move {
        fetch(&mut conn, id).await
    })
    .await
}

async fn fetch(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Order>> {
    let row: Option<OrderRow> = sqlx::query_as(
        "SELECT id, email, step, reason, total_cents, created_at, updated_at \
         FROM orders WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let lines: Vec<(String, i32, i64)> = sqlx::query_as(
        "SELECT sku, quantity, unit_price_cents FROM order_lines \
         WHERE order_id = $1 ORDER BY line_no",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let step = OrderStep::parse(&row.step)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown order step {}", row.step).into()))?;
    Ok(Some(Order {
        id: row.id,
        status: step.status(),
        step,
        reason: row.reason,
        email: row.email,
        lines: lines
            .into_iter()
            .map(|(sku, quantity, unit_price_cents)| OrderLine {
                sku,
                quantity,
                unit_price_cents,
            })
            .collect(),
        total_cents: row.total_cents,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }))
}

//! Orders in Postgres: placing one (order, lines, idempotency key and outbox message in one
//! transaction) and reading one back.

use chrono::{DateTime, Utc};
use contracts::{
    AuditAction, COMMANDS_EXCHANGE, Envelope, FULFIL_ROUTING_KEY, FulfilOrder, Order, OrderLine,
    OrderStatus, PlaceOrder,
};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::audit::{self, Caller, Record};
use crate::outbox;

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
    status: String,
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

#[tracing::instrument(skip(pool, order, traceparent, caller), fields(order.id))]
async fn place_as(
    pool: &PgPool,
    order: &PlaceOrder,
    idempotency_key: Option<&str>,
    traceparent: Option<String>,
    caller: Option<&Caller>,
) -> Result<(Order, Placement), PlaceOrderError> {
    let skus: Vec<String> = order.lines.iter().map(|l| l.sku.clone()).collect();
    let mut tx = pool.begin().await?;
    let prices: Vec<(String, i64)> =
        sqlx::query_as("SELECT sku, price_cents FROM products WHERE sku = ANY($1)")
            .bind(&skus)
            .fetch_all(&mut *tx)
            .await?;
    let price_of = |sku: &str| prices.iter().find(|(s, _)| s == sku).map(|(_, p)| *p);
    let mut unit_prices = Vec::with_capacity(order.lines.len());
    for line in &order.lines {
        match price_of(&line.sku) {
            Some(price) => unit_prices.push(price),
            None => return Err(PlaceOrderError::UnknownSku(line.sku.clone())),
        }
    }
    let total: i64 = order
        .lines
        .iter()
        .zip(&unit_prices)
        .map(|(l, p)| i64::from(l.quantity) * p)
        .sum();

    let id = Uuid::now_v7();
    tracing::Span::current().record("order.id", tracing::field::display(id));
    sqlx::query("INSERT INTO orders (id, email, total_cents) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(&order.email)
        .bind(total)
        .execute(&mut *tx)
        .await?;
    let line_nos: Vec<i16> = (1..=order.lines.len() as i16).collect();
    let quantities: Vec<i32> = order.lines.iter().map(|l| l.quantity).collect();
    sqlx::query(
        "INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price_cents) \
         SELECT $1, * FROM unnest($2::smallint[], $3::text[], $4::int[], $5::bigint[])",
    )
    .bind(id)
    .bind(&line_nos)
    .bind(&skus)
    .bind(&quantities)
    .bind(&unit_prices)
    .execute(&mut *tx)
    .await?;

    if let Some(key) = idempotency_key {
        let hash = request_hash(order);
        // A concurrent request with the same key waits here until the first commits.
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (key, request_hash, order_id) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(&hash)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            let (stored_hash, order_id): (String, Uuid) = sqlx::query_as(
                "SELECT request_hash, order_id FROM idempotency_keys WHERE key = $1",
            )
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
            return Ok((existing, Placement::Replayed));
        }
    }

    let command = Envelope::new(FulfilOrder { order_id: id }, traceparent);
    outbox::enqueue(&mut tx, COMMANDS_EXCHANGE, FULFIL_ROUTING_KEY, &command).await?;
    if let Some(caller) = caller {
        let entry = Record::success(
            caller,
            AuditAction::OrderPlace,
            Some(format!("order:{id}")),
            serde_json::json!({
                "lines": order.lines.len(),
                "total_cents": total,
                "idempotency_key": idempotency_key.is_some(),
            }),
        );
        audit::record(&mut tx, &entry).await?;
    }
    // Read back inside the transaction: once it commits, nothing can fail any more.
    let placed = fetch(&mut tx, id).await?.ok_or(sqlx::Error::RowNotFound)?;
    tx.commit().await?;
    Ok((placed, Placement::Created))
}

#[tracing::instrument(skip(pool))]
pub async fn get(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<Order>> {
    let mut conn = pool.acquire().await?;
    fetch(&mut conn, id).await
}

async fn fetch(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Order>> {
    let row: Option<OrderRow> = sqlx::query_as(
        "SELECT id, email, status, reason, total_cents, created_at, updated_at \
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
    let status = OrderStatus::parse(&row.status).ok_or_else(|| {
        sqlx::Error::Decode(format!("unknown order status {}", row.status).into())
    })?;
    Ok(Some(Order {
        id: row.id,
        status,
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

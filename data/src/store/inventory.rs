//! The inventory feed in Postgres: accepting an adjustment (deduplication record, the
//! sku's next sequence, the adjustment and its outbox message in ONE transaction),
//! applying a sku's adjustments strictly by sequence, and reading the applied history.

use chrono::{DateTime, Utc};
use contracts::{
    AdjustmentOp, AdjustmentRequest, AppliedAdjustment, ApplyAdjustment, AuditAction,
    DEDUP_WINDOW_SECS, EVENTS_EXCHANGE, Envelope, INVENTORY_EXCHANGE, InventoryAdjusted,
    MAX_STOCK_LEVEL, ProductChanged, partition_of, partition_queue,
};
use sqlx::{Connection, PgPool};
use uuid::Uuid;

use crate::messaging::outbox;
use crate::store::audit::{self, Caller, Record};

#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("unknown sku {0}")]
    UnknownSku(String),
    /// The stock the sku would have once every accepted adjustment is applied leaves
    /// 0..=MAX_STOCK_LEVEL.
    #[error("the stock of {sku} would become {result}, outside 0..={MAX_STOCK_LEVEL}")]
    StockOutOfRange { sku: String, result: i64 },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The deduplication id of a request without an `Idempotency-Key`: the SHA-256 (hex) of
/// its JSON body written out again compactly with sorted keys, so spacing and key order do
/// not make two equal requests different.
pub fn content_dedup_id(body: &serde_json::Value) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(body.to_string().as_bytes()))
}

/// What an accept did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub id: Uuid,
    pub sequence: i64,
    pub duplicate: bool,
}

/// The stock a sku will have after its pending adjustments (oldest first) are applied to
/// `stock`, as a consumer applies them (an out-of-range result is refused, the stock
/// unchanged).
pub fn projected_stock(stock: i64, pending: &[(AdjustmentOp, i64)]) -> i64 {
    pending.iter().fold(stock, |s, (op, q)| {
        let next = op.apply(s, *q);
        if (0..=MAX_STOCK_LEVEL).contains(&next) {
            next
        } else {
            s
        }
    })
}

/// Accepts a validated adjustment under `dedup_id`, in one transaction:
/// 1. the deduplication record: a row of the last five minutes with this id makes this a
///    duplicate (the first adjustment's id is returned, nothing is written); a concurrent
///    request with the same id waits on the row until the first commits or rolls back;
/// 2. the sku's next sequence, under the lock of its `inventory_groups` row (accepts of one
///    sku are serialised; the lock is held to the commit, so sequence `n` commits before
///    `n + 1` is handed out);
/// 3. the projected stock (current stock plus the pending adjustments and this one) must
///    stay within 0..=MAX_STOCK_LEVEL;
/// 4. the adjustment, its `ApplyAdjustment` message to the sku's partition (outbox) and the
///    audit entry.
pub async fn accept(
    pool: &PgPool,
    request: &AdjustmentRequest,
    dedup_id: &str,
    partitions: u16,
    traceparent: Option<String>,
    caller: &Caller,
) -> Result<Accepted, AcceptError> {
    let id = Uuid::now_v7();
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let fresh: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO inventory_dedup (dedup_id, adjustment_id) VALUES ($1, $2) \
         ON CONFLICT (dedup_id) DO UPDATE \
           SET adjustment_id = EXCLUDED.adjustment_id, accepted_at = now() \
           WHERE inventory_dedup.accepted_at < now() - make_interval(secs => $3) \
         RETURNING adjustment_id",
    )
    .bind(dedup_id)
    .bind(id)
    .bind(DEDUP_WINDOW_SECS as f64)
    .fetch_optional(&mut *tx)
    .await?;
    if fresh.is_none() {
        let (first, sequence): (Uuid, i64) = sqlx::query_as(
            "SELECT d.adjustment_id, a.sequence FROM inventory_dedup d \
             JOIN inventory_adjustments a ON a.id = d.adjustment_id WHERE d.dedup_id = $1",
        )
        .bind(dedup_id)
        .fetch_one(&mut *tx)
        .await?;
        let entry = Record::success(
            caller,
            AuditAction::InventoryAdjust,
            Some(format!("adjustment:{first}")),
            serde_json::json!({ "duplicate": true, "dedup_id": dedup_id }),
        );
        audit::record(&mut tx, &entry).await?;
        tx.commit().await?;
        return Ok(Accepted {
            id: first,
            sequence,
            duplicate: true,
        });
    }
    let sequence: Option<i64> = sqlx::query_scalar(
        "INSERT INTO inventory_groups (sku, last_sequence) \
         SELECT sku, 1 FROM products WHERE sku = $1 \
         ON CONFLICT (sku) DO UPDATE SET last_sequence = inventory_groups.last_sequence + 1 \
         RETURNING last_sequence",
    )
    .bind(&request.sku)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(sequence) = sequence else {
        return Err(AcceptError::UnknownSku(request.sku.clone()));
    };
    // One statement, one snapshot: the stock and the adjustments not yet applied to it.
    let (stock, ops, quantities): (i64, Vec<String>, Vec<i64>) = sqlx::query_as(
        "SELECT p.stock::bigint, \
           ARRAY(SELECT op FROM inventory_adjustments \
                 WHERE sku = $1 AND status = 'pending' ORDER BY sequence), \
           ARRAY(SELECT quantity FROM inventory_adjustments \
                 WHERE sku = $1 AND status = 'pending' ORDER BY sequence) \
         FROM products p WHERE p.sku = $1",
    )
    .bind(&request.sku)
    .fetch_one(&mut *tx)
    .await?;
    let pending: Vec<(AdjustmentOp, i64)> = ops
        .iter()
        .zip(quantities)
        .filter_map(|(op, q)| AdjustmentOp::parse(op).map(|op| (op, q)))
        .collect();
    let before = projected_stock(stock, &pending);
    let result = request.op.apply(before, request.quantity);
    if !(0..=MAX_STOCK_LEVEL).contains(&result) {
        return Err(AcceptError::StockOutOfRange {
            sku: request.sku.clone(),
            result,
        });
    }
    let partition = partition_of(&request.sku, partitions);
    sqlx::query(
        "INSERT INTO inventory_adjustments \
           (id, sku, sequence, op, quantity, dedup_id, reason, supplier_ref) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(&request.sku)
    .bind(sequence)
    .bind(request.op.as_str())
    .bind(request.quantity)
    .bind(dedup_id)
    .bind(&request.reason)
    .bind(&request.supplier_ref)
    .execute(&mut *tx)
    .await?;
    let command = Envelope::new(
        ApplyAdjustment {
            adjustment_id: id,
            sku: request.sku.clone(),
            sequence,
        },
        traceparent,
    );
    outbox::enqueue(
        &mut tx,
        INVENTORY_EXCHANGE,
        &partition_queue(partition),
        &command,
    )
    .await?;
    let entry = Record::success(
        caller,
        AuditAction::InventoryAdjust,
        Some(format!("adjustment:{id}")),
        serde_json::json!({
            "sku": request.sku, "op": request.op.as_str(), "quantity": request.quantity,
            "sequence": sequence, "dedup_id": dedup_id, "partition": partition,
        }),
    );
    audit::record(&mut tx, &entry).await?;
    tx.commit().await?;
    outbox::announce(pool, &mut conn).await;
    Ok(Accepted {
        id,
        sequence,
        duplicate: false,
    })
}

/// What applying a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Adjustments applied (or refused) now, this one and any earlier ones of the sku that
    /// had not been applied yet.
    Applied(usize),
    /// Its sequence was applied before (a redelivery, or it was applied along with a later
    /// message): nothing changed.
    AlreadyApplied,
    /// No such adjustment with this sku and sequence: the message is not one of ours.
    Unknown,
}

#[derive(sqlx::FromRow)]
struct PendingRow {
    id: Uuid,
    sequence: i64,
    op: String,
    quantity: i64,
}

/// Most adjustments one transaction applies beyond the message's own sequence.
const APPLY_BATCH: i64 = 200;

/// Applies `command`'s sku through its sequence, in ONE transaction under the lock of the
/// sku's group row: every adjustment after the last applied one, by sequence, up to the
/// newest one committed (at most [`APPLY_BATCH`] past the message's), each either
/// applied to the stock or (out of 0..=MAX_STOCK_LEVEL, since orders took stock after it was
/// accepted) refused; then the new stock, the applied sequence, an `inventory.adjusted`
/// event per applied adjustment and a `product.changed` event (caches drop the product). Sequences are handed out under the same row's lock
/// and commit in order, so the committed adjustments are always 1..=n without a gap: a
/// message whose adjustment was applied with an earlier or later one (a backlog, or a
/// message overtaken by a later one of its sku because another relay published it first)
/// finds its work done and is only acknowledged.
pub async fn apply(pool: &PgPool, command: &ApplyAdjustment) -> sqlx::Result<Applied> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let applied: Option<i64> = sqlx::query_scalar(
        "SELECT applied_sequence FROM inventory_groups WHERE sku = $1 FOR UPDATE",
    )
    .bind(&command.sku)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(applied) = applied else {
        return Ok(Applied::Unknown);
    };
    let known: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT FROM inventory_adjustments \
                        WHERE id = $1 AND sku = $2 AND sequence = $3)",
    )
    .bind(command.adjustment_id)
    .bind(&command.sku)
    .bind(command.sequence)
    .fetch_one(&mut *tx)
    .await?;
    if !known {
        return Ok(Applied::Unknown);
    }
    if command.sequence <= applied {
        return Ok(Applied::AlreadyApplied);
    }
    let rows: Vec<PendingRow> = sqlx::query_as(
        "SELECT id, sequence, op, quantity FROM inventory_adjustments \
         WHERE sku = $1 AND sequence > $2 ORDER BY sequence LIMIT $3",
    )
    .bind(&command.sku)
    .bind(applied)
    .bind((command.sequence - applied).max(APPLY_BATCH))
    .fetch_all(&mut *tx)
    .await?;
    let last = rows.last().map_or(applied, |r| r.sequence);
    if last < command.sequence
        || rows
            .iter()
            .enumerate()
            .any(|(i, r)| r.sequence != applied + 1 + i as i64)
    {
        return Err(sqlx::Error::Protocol(format!(
            "adjustments of {} between {applied} and {} are missing",
            command.sku, command.sequence
        )));
    }
    let (stock, category): (i32, String) =
        sqlx::query_as("SELECT stock, category FROM products WHERE sku = $1 FOR UPDATE")
            .bind(&command.sku)
            .fetch_one(&mut *tx)
            .await?;
    let mut stock = i64::from(stock);
    let mut events = Vec::with_capacity(rows.len() + 1);
    let mut ids = Vec::with_capacity(rows.len());
    let mut statuses = Vec::with_capacity(rows.len());
    let mut after = Vec::with_capacity(rows.len());
    for row in &rows {
        let op = AdjustmentOp::parse(&row.op)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown op {}", row.op).into()))?;
        let next = op.apply(stock, row.quantity);
        let status = if (0..=MAX_STOCK_LEVEL).contains(&next) {
            stock = next;
            events.push(Envelope::new(
                InventoryAdjusted {
                    adjustment_id: row.id,
                    sku: command.sku.clone(),
                    sequence: row.sequence,
                    op: row.op.clone(),
                    quantity: row.quantity,
                    stock,
                },
                None,
            ));
            "applied"
        } else {
            "refused"
        };
        ids.push(row.id);
        statuses.push(status);
        after.push(stock);
    }
    sqlx::query("UPDATE products SET stock = $2, updated_at = now() WHERE sku = $1")
        .bind(&command.sku)
        .bind(stock as i32)
        .execute(&mut *tx)
        .await?;
    // One time for the batch, read under the group's lock: the batch after this one reads
    // its time after this commit, so the history's times never go back.
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE inventory_adjustments a \
         SET status = u.status, stock_after = u.stock_after, applied_at = $4 \
         FROM unnest($1::uuid[], $2::text[], $3::bigint[]) AS u (id, status, stock_after) \
         WHERE a.id = u.id",
    )
    .bind(&ids)
    .bind(&statuses)
    .bind(&after)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE inventory_groups SET applied_sequence = $2 WHERE sku = $1")
        .bind(&command.sku)
        .bind(last)
        .execute(&mut *tx)
        .await?;
    let mut messages = events
        .iter()
        .map(|e| outbox::Message::new(EVENTS_EXCHANGE, "inventory.adjusted", e))
        .collect::<sqlx::Result<Vec<_>>>()?;
    let event = Envelope::new(
        ProductChanged {
            sku: command.sku.clone(),
            category: Some(category),
        },
        None,
    );
    messages.push(outbox::Message::new(
        EVENTS_EXCHANGE,
        "product.changed",
        &event,
    )?);
    outbox::enqueue_many(&mut tx, &messages).await?;
    tx.commit().await?;
    outbox::announce(pool, &mut conn).await;
    Ok(Applied::Applied(rows.len()))
}

/// Deletes deduplication records older than the window (they no longer deduplicate).
pub async fn forget_expired_dedup(pool: &PgPool) -> sqlx::Result<u64> {
    sqlx::query("DELETE FROM inventory_dedup WHERE accepted_at < now() - make_interval(secs => $1)")
        .bind(DEDUP_WINDOW_SECS as f64)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
}

#[derive(sqlx::FromRow)]
struct HistoryRow {
    id: Uuid,
    sequence: i64,
    op: String,
    quantity: i64,
    dedup_id: String,
    status: String,
    stock_after: Option<i64>,
    accepted_at: DateTime<Utc>,
    applied_at: Option<DateTime<Utc>>,
    reason: Option<String>,
    supplier_ref: Option<String>,
}

/// A page of a sku's settled adjustments, oldest first: the items, the settled total and
/// the number still pending. `None` when the sku does not exist.
pub async fn history(
    pool: &PgPool,
    sku: &str,
    page: u32,
    per_page: u32,
) -> sqlx::Result<Option<(Vec<AppliedAdjustment>, i64, i64)>> {
    let counts: Option<(i64, i64)> = sqlx::query_as(
        "SELECT count(a.id) FILTER (WHERE a.status <> 'pending'), \
                count(a.id) FILTER (WHERE a.status = 'pending') \
         FROM products p LEFT JOIN inventory_adjustments a ON a.sku = p.sku \
         WHERE p.sku = $1 GROUP BY p.sku",
    )
    .bind(sku)
    .fetch_optional(pool)
    .await?;
    let Some((total, pending)) = counts else {
        return Ok(None);
    };
    let rows: Vec<HistoryRow> = sqlx::query_as(
        "SELECT id, sequence, op, quantity, dedup_id, status, stock_after, accepted_at, \
                applied_at, reason, supplier_ref \
         FROM inventory_adjustments WHERE sku = $1 AND status <> 'pending' \
         ORDER BY sequence LIMIT $2 OFFSET $3",
    )
    .bind(sku)
    .bind(i64::from(per_page))
    .bind(i64::from(page.saturating_sub(1)) * i64::from(per_page))
    .fetch_all(pool)
    .await?;
    let items = rows
        .into_iter()
        .filter_map(|r| {
            Some(AppliedAdjustment {
                id: r.id,
                sequence: r.sequence,
                op: AdjustmentOp::parse(&r.op)?,
                quantity: r.quantity,
                dedup_id: r.dedup_id,
                outcome: r.status,
                stock_after: r.stock_after?,
                accepted_at: r.accepted_at,
                applied_at: r.applied_at?,
                reason: r.reason,
                supplier_ref: r.supplier_ref,
            })
        })
        .collect();
    Ok(Some((items, total, pending)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_projection_applies_in_order_and_skips_what_would_be_refused() {
        use AdjustmentOp::{Add, Set};
        assert_eq!(projected_stock(5, &[]), 5);
        assert_eq!(projected_stock(5, &[(Add, 3), (Set, 1), (Add, 2)]), 3);
        assert_eq!(projected_stock(5, &[(Add, -9), (Add, -5)]), 0);
    }
}

//! The handlers themselves: each reads what it needs from the event's payload (and
//! attributes), tolerating fields it does not know and fields that are missing, and writes
//! its effect in the caller's transaction.

use contracts::Envelope;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::Outcome;

/// The event type: the `type` attribute (`order.fulfilled`), or else the envelope's kind
/// mapped to it (`OrderFulfilled`).
pub(super) fn event_type(event: &Envelope<Value>) -> String {
    if let Some(Value::String(t)) = event.attributes.get("type") {
        return t.clone();
    }
    let mut out = String::new();
    for (i, c) in event.kind.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('.');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `order.fulfilled` -> total_cents / 100 points to the buyer's email, once per order.
pub(super) async fn loyalty_points(
    tx: &mut PgConnection,
    event: &Envelope<Value>,
) -> sqlx::Result<Outcome> {
    if event_type(event) != "order.fulfilled" {
        return Ok(Outcome::Skipped("not an order.fulfilled event"));
    }
    let p = &event.payload;
    let (Some(order_id), Some(email), Some(total_cents)) = (
        p.get("order_id")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Uuid>().ok()),
        p.get("email")
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty()),
        p.get("total_cents").and_then(Value::as_i64),
    ) else {
        return Ok(Outcome::Skipped("no order_id, email or total_cents"));
    };
    let points = total_cents.max(0) / 100;
    // One award per order (a republished event credits nothing twice), then the balance.
    let awarded = sqlx::query(
        "WITH award AS ( \
             INSERT INTO loyalty_point_awards (order_id, email, points, message_id) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (order_id) DO NOTHING RETURNING email, points \
         ) \
         INSERT INTO loyalty_points (email, points, orders) \
         SELECT email, points, 1 FROM award \
         ON CONFLICT (email) DO UPDATE SET points = loyalty_points.points + EXCLUDED.points, \
             orders = loyalty_points.orders + 1, updated_at = now()",
    )
    .bind(order_id)
    .bind(email.to_lowercase())
    .bind(points)
    .bind(event.message_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if awarded == 0 {
        return Ok(Outcome::Skipped("the order's points were awarded already"));
    }
    metrics::counter!("strata_function_loyalty_points_awarded_total").increment(points as u64);
    Ok(Outcome::Applied)
}

/// `inventory.adjusted` / `product.changed` with the product's stock below `threshold` ->
/// one row in `low_stock_alerts`. The stock is the event's (`stock` attribute or payload
/// field) or, when the event has none, the product's current one.
pub(super) async fn low_stock_alert(
    tx: &mut PgConnection,
    event: &Envelope<Value>,
    threshold: i32,
) -> sqlx::Result<Outcome> {
    let kind = event_type(event);
    if kind != "inventory.adjusted" && kind != "product.changed" {
        return Ok(Outcome::Skipped("not a stock event"));
    }
    let Some(sku) = sku_of(event) else {
        return Ok(Outcome::Skipped("no sku"));
    };
    let stock = match number(event, "stock") {
        Some(stock) => Some(stock),
        None => sqlx::query_scalar::<_, i32>("SELECT stock FROM products WHERE sku = $1")
            .bind(&sku)
            .fetch_optional(&mut *tx)
            .await?
            .map(i64::from),
    };
    let Some(stock) = stock else {
        return Ok(Outcome::Skipped("unknown product"));
    };
    if stock >= i64::from(threshold) {
        return Ok(Outcome::Skipped("stock at or above the threshold"));
    }
    sqlx::query(
        "INSERT INTO low_stock_alerts (message_id, sku, stock, threshold, event_type) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (message_id) DO NOTHING",
    )
    .bind(event.message_id)
    .bind(&sku)
    .bind(stock)
    .bind(threshold)
    .bind(&kind)
    .execute(&mut *tx)
    .await?;
    metrics::counter!("strata_function_low_stock_alerts_total").increment(1);
    Ok(Outcome::Applied)
}

/// The sku: the payload's, else the attribute's (a string, or the first of an array).
fn sku_of(event: &Envelope<Value>) -> Option<String> {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => items.first().and_then(Value::as_str).map(str::to_owned),
        _ => None,
    };
    event
        .payload
        .get("sku")
        .and_then(text)
        .or_else(|| event.attributes.get("sku").and_then(text))
        .filter(|s| !s.is_empty())
}

/// A whole number from the attributes, else from the payload.
fn number(event: &Envelope<Value>, name: &str) -> Option<i64> {
    event
        .attributes
        .get(name)
        .and_then(Value::as_i64)
        .or_else(|| event.payload.get(name).and_then(Value::as_i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(kind: &str, attributes: Value, payload: Value) -> Envelope<Value> {
        serde_json::from_value(serde_json::json!({
            "message_id": Uuid::now_v7(),
            "type": kind,
            "schema_version": 1,
            "occurred_at": "2026-12-03T12:00:00Z",
            "attributes": attributes,
            "payload": payload,
        }))
        .expect("an envelope")
    }

    #[test]
    fn the_event_type_comes_from_the_attribute_or_the_kind() {
        let e = envelope(
            "OrderFulfilled",
            serde_json::json!({"type": "order.fulfilled"}),
            Value::Null,
        );
        assert_eq!(event_type(&e), "order.fulfilled");
        let e = envelope("InventoryAdjusted", serde_json::json!({}), Value::Null);
        assert_eq!(event_type(&e), "inventory.adjusted");
    }

    #[test]
    fn the_sku_and_stock_come_from_payload_or_attributes() {
        let e = envelope(
            "ProductChanged",
            serde_json::json!({"sku": ["KIT-1"], "stock": 2}),
            serde_json::json!({}),
        );
        assert_eq!(sku_of(&e).as_deref(), Some("KIT-1"));
        assert_eq!(number(&e, "stock"), Some(2));
        let e = envelope(
            "ProductChanged",
            serde_json::json!({}),
            serde_json::json!({"sku": "KIT-2", "stock": 7}),
        );
        assert_eq!(sku_of(&e).as_deref(), Some("KIT-2"));
        assert_eq!(number(&e, "stock"), Some(7));
    }
}

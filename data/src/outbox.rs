//! The transactional outbox: messages are written in the same transaction as the change
//! they announce, and published later by the relay.

use contracts::{Envelope, MessageKind};
use sqlx::PgConnection;

/// Writes a message to the outbox inside the caller's transaction.
pub async fn enqueue<T: MessageKind>(
    conn: &mut PgConnection,
    exchange: &str,
    routing_key: &str,
    envelope: &Envelope<T>,
) -> sqlx::Result<()> {
    let body = serde_json::to_value(envelope).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "INSERT INTO outbox (message_id, exchange, routing_key, kind, body, traceparent) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(envelope.message_id)
    .bind(exchange)
    .bind(routing_key)
    .bind(&envelope.kind)
    .bind(body)
    .bind(&envelope.traceparent)
    .execute(&mut *conn)
    .await?;
    // Wakes relays that LISTEN, so a message goes out without waiting for the next poll.
    sqlx::query("SELECT pg_notify('strata_outbox', '')")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Messages not yet confirmed by the broker.
pub async fn backlog(pool: &sqlx::PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(pool)
        .await
}

//! The consumers' record of processed messages (`processed_messages`), which makes a
//! redelivered message change nothing, and its pruning.

use std::time::Duration;

use sqlx::PgPool;

/// Deletes the records older than `retention`, `batch` rows per statement (each a short
/// transaction, so the table is never locked long and concurrent pruners skip each
/// other's rows). Returns how many went.
pub async fn prune(pool: &PgPool, retention: Duration, batch: i64) -> sqlx::Result<u64> {
    let retention = format!("{} seconds", retention.as_secs());
    let mut pruned = 0;
    loop {
        let deleted = sqlx::query(
            "DELETE FROM processed_messages WHERE (consumer, message_id) IN ( \
                 SELECT consumer, message_id FROM processed_messages \
                 WHERE processed_at < now() - $1::interval \
                 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(&retention)
        .bind(batch.max(1))
        .execute(pool)
        .await?
        .rows_affected();
        pruned += deleted;
        if deleted < batch.max(1) as u64 {
            return Ok(pruned);
        }
    }
}

//! The consumer applications' state in Postgres: checkpoints per (application, shard) and
//! leases per (application, shard), with the generation that fences a former holder.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use super::reader::Position;

/// A lease this instance holds: the shard and the generation it was granted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::FromRow)]
pub struct Lease {
    pub shard: i32,
    pub generation: i64,
}

fn interval(d: Duration) -> String {
    format!("{} milliseconds", d.as_millis())
}

/// Creates the lease rows of `shards` (free) where missing.
pub async fn ensure(pool: &PgPool, application: &str, shards: u16) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO stream_leases (application, shard) \
         SELECT $1, s FROM generate_series(0, $2 - 1) AS s ON CONFLICT DO NOTHING",
    )
    .bind(application)
    .bind(i32::from(shards))
    .execute(pool)
    .await?;
    Ok(())
}

/// Extends every lease `owner` still holds; returns them.
pub async fn renew(
    pool: &PgPool,
    application: &str,
    owner: &str,
    duration: Duration,
) -> sqlx::Result<Vec<Lease>> {
    sqlx::query_as(
        "UPDATE stream_leases SET expires_at = now() + $3::interval \
         WHERE application = $1 AND owner = $2 RETURNING shard, generation",
    )
    .bind(application)
    .bind(owner)
    .bind(interval(duration))
    .fetch_all(pool)
    .await
}

/// Live holders and how many leases each holds.
pub async fn holders(pool: &PgPool, application: &str) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "SELECT owner, count(*) FROM stream_leases \
         WHERE application = $1 AND owner IS NOT NULL AND expires_at > now() \
         GROUP BY owner ORDER BY count(*) DESC, owner",
    )
    .bind(application)
    .fetch_all(pool)
    .await
}

/// Takes up to `wanted` leases that are free or expired.
pub async fn take_free(
    pool: &PgPool,
    application: &str,
    owner: &str,
    duration: Duration,
    wanted: i64,
) -> sqlx::Result<Vec<Lease>> {
    sqlx::query_as(
        "UPDATE stream_leases SET owner = $2, expires_at = now() + $3::interval, \
                generation = generation + 1 \
         WHERE application = $1 AND shard IN ( \
             SELECT shard FROM stream_leases \
             WHERE application = $1 AND (owner IS NULL OR expires_at <= now()) \
             ORDER BY shard LIMIT $4 FOR UPDATE SKIP LOCKED) \
         RETURNING shard, generation",
    )
    .bind(application)
    .bind(owner)
    .bind(interval(duration))
    .bind(wanted)
    .fetch_all(pool)
    .await
}

/// Takes one lease of `victim` (a live instance holding more than its share).
pub async fn steal_one(
    pool: &PgPool,
    application: &str,
    owner: &str,
    victim: &str,
    duration: Duration,
) -> sqlx::Result<Option<Lease>> {
    sqlx::query_as(
        "UPDATE stream_leases SET owner = $2, expires_at = now() + $4::interval, \
                generation = generation + 1 \
         WHERE application = $1 AND shard = ( \
             SELECT shard FROM stream_leases WHERE application = $1 AND owner = $3 \
             ORDER BY shard DESC LIMIT 1 FOR UPDATE SKIP LOCKED) \
         RETURNING shard, generation",
    )
    .bind(application)
    .bind(owner)
    .bind(victim)
    .bind(interval(duration))
    .fetch_optional(pool)
    .await
}

/// Gives every lease of `owner` back (a clean stop): others take them at their next round.
pub async fn release(pool: &PgPool, application: &str, owner: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE stream_leases SET owner = NULL, expires_at = '-infinity' \
         WHERE application = $1 AND owner = $2",
    )
    .bind(application)
    .bind(owner)
    .execute(pool)
    .await?;
    Ok(())
}

/// Inside a batch's transaction: locks the lease and checks that it still has the holder
/// and generation the batch started with. A takeover waits for this transaction; a batch
/// of a former holder finds the lease moved and commits nothing.
pub async fn fence(
    conn: &mut PgConnection,
    application: &str,
    owner: &str,
    lease: Lease,
) -> sqlx::Result<bool> {
    let row: Option<(Option<String>, i64)> = sqlx::query_as(
        "SELECT owner, generation FROM stream_leases \
         WHERE application = $1 AND shard = $2 FOR UPDATE",
    )
    .bind(application)
    .bind(lease.shard)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.is_some_and(|(o, g)| o.as_deref() == Some(owner) && g == lease.generation))
}

/// Where an application resumes in a shard; `None` when it never read it.
pub async fn checkpoint(
    pool: &PgPool,
    application: &str,
    shard: u16,
) -> sqlx::Result<Option<Position>> {
    let row: Option<(String, Option<i64>, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT position, sequence, at FROM stream_checkpoints \
         WHERE application = $1 AND shard = $2",
    )
    .bind(application)
    .bind(i32::from(shard))
    .fetch_optional(pool)
    .await?;
    Ok(row.and_then(|(position, sequence, at)| {
        let sequence = sequence.map(|s| s.max(0) as u64);
        Some(match position.as_str() {
            "trim_horizon" => Position::TrimHorizon,
            "latest" => Position::Latest,
            "at_sequence" => Position::AtSequence(sequence?),
            "after_sequence" => Position::AfterSequence(sequence?),
            "at_timestamp" => Position::AtTimestamp(at?),
            _ => return None,
        })
    }))
}

fn columns(position: Position) -> (&'static str, Option<i64>, Option<DateTime<Utc>>) {
    let seq = |n: u64| Some(n.min(i64::MAX as u64) as i64);
    match position {
        Position::TrimHorizon => ("trim_horizon", None, None),
        Position::Latest => ("latest", None, None),
        Position::AtSequence(n) => ("at_sequence", seq(n), None),
        Position::AfterSequence(n) => ("after_sequence", seq(n), None),
        Position::AtTimestamp(t) => ("at_timestamp", None, Some(t)),
    }
}

/// Writes a checkpoint (inside the caller's transaction).
pub async fn save(
    conn: &mut PgConnection,
    application: &str,
    shard: u16,
    position: Position,
) -> sqlx::Result<()> {
    let (kind, sequence, at) = columns(position);
    sqlx::query(
        "INSERT INTO stream_checkpoints (application, shard, position, sequence, at) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (application, shard) DO UPDATE SET position = $3, sequence = $4, at = $5, \
             updated_at = now()",
    )
    .bind(application)
    .bind(i32::from(shard))
    .bind(kind)
    .bind(sequence)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Replay: sets every checkpoint of `application` to `position` and takes every lease
/// from its holders (new generations), so that running instances drop their shards (a
/// batch in flight commits nothing) and take them again from the new checkpoints.
pub async fn reset(
    pool: &PgPool,
    application: &str,
    shards: u16,
    position: Position,
) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    reset_in(&mut tx, application, shards, position).await?;
    tx.commit().await
}

/// [`reset`] inside the caller's transaction: an application that keeps state beside its
/// checkpoints clears it in the same commit.
pub async fn reset_in(
    conn: &mut PgConnection,
    application: &str,
    shards: u16,
    position: Position,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE stream_leases SET owner = NULL, expires_at = '-infinity', \
                generation = generation + 1 WHERE application = $1",
    )
    .bind(application)
    .execute(&mut *conn)
    .await?;
    for shard in 0..shards {
        save(&mut *conn, application, shard, position).await?;
    }
    Ok(())
}

//! The windows in Postgres: a batch's deltas added in the transaction that moves the
//! checkpoint, the shard's fold state beside them, and the clearing a replay does.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use data::stream::leases;
use data::stream::reader::Position;
use sqlx::{PgConnection, PgPool};

use super::windows::{ShardState, Sums, WindowDelta, minute_of};

/// `analytics_shards`' max_event_time, replay_from and replay_through.
type StateRow = (Option<DateTime<Utc>>, Option<DateTime<Utc>>, Option<i64>);

pub async fn load_state(
    conn: &mut PgConnection,
    application: &str,
    shard: u16,
) -> sqlx::Result<ShardState> {
    let row: Option<StateRow> = sqlx::query_as(
        "SELECT max_event_time, replay_from, replay_through FROM analytics_shards \
             WHERE application = $1 AND shard = $2",
    )
    .bind(application)
    .bind(i32::from(shard))
    .fetch_optional(&mut *conn)
    .await?;
    Ok(
        row.map_or_else(ShardState::default, |(max, from, through)| ShardState {
            max_event_time: max,
            replay_from: from,
            replay_through: through.map(|s| s.max(0) as u64),
        }),
    )
}

pub async fn save_state(
    conn: &mut PgConnection,
    application: &str,
    shard: u16,
    state: &ShardState,
    lateness: TimeDelta,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO analytics_shards (application, shard, max_event_time, replay_from, \
             replay_through, watermark) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (application, shard) DO UPDATE SET max_event_time = $3, \
             replay_from = $4, replay_through = $5, watermark = $6",
    )
    .bind(application)
    .bind(i32::from(shard))
    .bind(state.max_event_time)
    .bind(state.replay_from)
    .bind(state.replay_through.map(|s| s.min(i64::MAX as u64) as i64))
    .bind(state.watermark(lateness))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Adds a batch's deltas: three statements whatever the number of minutes.
pub async fn add(
    conn: &mut PgConnection,
    application: &str,
    windows: &BTreeMap<DateTime<Utc>, WindowDelta>,
) -> sqlx::Result<()> {
    if windows.is_empty() {
        return Ok(());
    }
    let starts: Vec<DateTime<Utc>> = windows.keys().copied().collect();
    let col = |f: fn(&WindowDelta) -> i64| windows.values().map(f).collect::<Vec<i64>>();
    let last: Vec<Option<DateTime<Utc>>> = windows.values().map(|w| w.last_event_at).collect();
    sqlx::query(
        "INSERT INTO analytics_windows AS w (application, window_start, placed, placed_cents, \
             fulfilled, revenue_cents, rejected, late_events, last_event_at, updated_at) \
         SELECT $1, d.* , clock_timestamp() FROM unnest($2::timestamptz[], $3::bigint[], \
             $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], \
             $9::timestamptz[]) AS d \
         ON CONFLICT (application, window_start) DO UPDATE SET \
             placed = w.placed + EXCLUDED.placed, \
             placed_cents = w.placed_cents + EXCLUDED.placed_cents, \
             fulfilled = w.fulfilled + EXCLUDED.fulfilled, \
             revenue_cents = w.revenue_cents + EXCLUDED.revenue_cents, \
             rejected = w.rejected + EXCLUDED.rejected, \
             late_events = w.late_events + EXCLUDED.late_events, \
             last_event_at = GREATEST(w.last_event_at, EXCLUDED.last_event_at), \
             updated_at = EXCLUDED.updated_at",
    )
    .bind(application)
    .bind(&starts)
    .bind(col(|w| w.placed))
    .bind(col(|w| w.placed_cents))
    .bind(col(|w| w.fulfilled))
    .bind(col(|w| w.revenue_cents))
    .bind(col(|w| w.rejected))
    .bind(col(|w| w.late_events))
    .bind(&last)
    .execute(&mut *conn)
    .await?;
    let categories = windows.iter().map(|(s, w)| (*s, &w.categories));
    add_sums(
        conn,
        application,
        "analytics_window_categories",
        "category",
        "placed",
        categories,
    )
    .await?;
    let products = windows.iter().map(|(s, w)| (*s, &w.products));
    add_sums(
        conn,
        application,
        "analytics_window_products",
        "sku",
        "units",
        products,
    )
    .await
}

/// Adds per-category or per-product sums (`key` -> (`count_column`, revenue_cents)).
async fn add_sums<'a>(
    conn: &mut PgConnection,
    application: &str,
    table: &str,
    key: &str,
    count_column: &str,
    sums: impl Iterator<Item = (DateTime<Utc>, &'a Sums)>,
) -> sqlx::Result<()> {
    let (mut starts, mut keys, mut counts, mut cents) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (start, sums) in sums {
        for (k, (count, c)) in sums {
            starts.push(start);
            keys.push(k.clone());
            counts.push(*count);
            cents.push(*c);
        }
    }
    if keys.is_empty() {
        return Ok(());
    }
    sqlx::query(&format!(
        "INSERT INTO {table} AS t (application, window_start, {key}, {count_column}, \
             revenue_cents) \
         SELECT $1, d.* FROM unnest($2::timestamptz[], $3::text[], $4::bigint[], \
             $5::bigint[]) AS d \
         ON CONFLICT (application, window_start, {key}) DO UPDATE SET \
             {count_column} = t.{count_column} + EXCLUDED.{count_column}, \
             revenue_cents = t.revenue_cents + EXCLUDED.revenue_cents"
    ))
    .bind(application)
    .bind(&starts)
    .bind(&keys)
    .bind(&counts)
    .bind(&cents)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Where a replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// The oldest record the stream keeps: every window is recomputed.
    TrimHorizon,
    /// The minute of this instant: its window and the later ones are recomputed.
    From(DateTime<Utc>),
}

impl std::str::FromStr for Replay {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("trim-horizon") || s == "TRIM_HORIZON" {
            return Ok(Replay::TrimHorizon);
        }
        DateTime::parse_from_rfc3339(s)
            .map(|t| Replay::From(t.with_timezone(&Utc)))
            .map_err(|_| format!("'{s}' is neither trim-horizon nor an RFC 3339 timestamp"))
    }
}

/// Sets the application's checkpoints to the replay's start and clears what it will
/// recompute, in one transaction: running instances lose their leases (a batch in flight
/// commits nothing) and read again from the new checkpoints.
pub async fn replay(
    pool: &PgPool,
    application: &str,
    shards: u16,
    replay: Replay,
) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    // Waits for the batches in flight (they hold their lease's row) before the checkpoints
    // are read.
    sqlx::query("SELECT shard FROM stream_leases WHERE application = $1 FOR UPDATE")
        .bind(application)
        .execute(&mut *tx)
        .await?;
    match replay {
        Replay::TrimHorizon => {
            leases::reset_in(&mut tx, application, shards, Position::TrimHorizon).await?;
            sqlx::query("DELETE FROM analytics_windows WHERE application = $1")
                .bind(application)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM analytics_shards WHERE application = $1")
                .bind(application)
                .execute(&mut *tx)
                .await?;
        }
        Replay::From(at) => {
            let from = minute_of(at);
            let applied: Vec<(i32, Option<i64>)> = sqlx::query_as(
                "SELECT shard, sequence FROM stream_checkpoints \
                 WHERE application = $1 AND position = 'after_sequence'",
            )
            .bind(application)
            .fetch_all(&mut *tx)
            .await?;
            leases::reset_in(&mut tx, application, shards, Position::AtTimestamp(from)).await?;
            sqlx::query(
                "DELETE FROM analytics_windows WHERE application = $1 AND window_start >= $2",
            )
            .bind(application)
            .bind(from)
            .execute(&mut *tx)
            .await?;
            for shard in 0..shards {
                let through = applied
                    .iter()
                    .find(|(s, _)| *s == i32::from(shard))
                    .and_then(|(_, sequence)| *sequence)
                    .map(|s| s.max(0) as u64);
                let state = ShardState {
                    max_event_time: None,
                    replay_from: Some(from),
                    replay_through: through,
                };
                save_state(&mut tx, application, shard, &state, TimeDelta::zero()).await?;
            }
        }
    }
    tx.commit().await
}

//! `GET /api/v1/ops/stream` (admin): the ops console's view of the event stream: each
//! shard's sequence numbers, and where every consumer application is in it and which of
//! its instances holds the shard's lease.

use actix_web::{HttpRequest, HttpResponse, get, web};
use chrono::{DateTime, Utc};
use contracts::{ErrorBody, ShardApplication, StreamShardStatus, StreamStatus};
use data::stream::reader::{Bounds, Reader};
use data::stream::{STREAM_NAME, shard_queue};

use crate::error::ApiError;
use crate::routes::AppState;

type Row = (
    String,
    i32,
    Option<String>,
    Option<i64>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<DateTime<Utc>>,
);

async fn bounds(state: &AppState, shards: u16) -> anyhow::Result<Vec<Bounds>> {
    let reader = Reader::open(state.data.amqp_url(), "strata-stream-status")
        .await?
        .with_waits(state.stream_waits);
    let bounds = futures_util::future::try_join_all((0..shards).map(|i| reader.bounds(i))).await;
    reader.close().await;
    bounds
}

/// Lag of a checkpoint: sequence numbers between it and the shard's last record.
fn lag(position: Option<&str>, sequence: Option<i64>, bounds: Option<Bounds>) -> Option<u64> {
    let bounds = bounds?;
    let Some(last) = bounds.last else {
        return Some(0);
    };
    let sequence = sequence.map(|s| s.max(0) as u64);
    match position? {
        "after_sequence" => Some(last.saturating_sub(sequence?)),
        "at_sequence" => Some((last + 1).saturating_sub(sequence?)),
        "trim_horizon" => Some(last + 1 - bounds.first.unwrap_or(0)),
        _ => None,
    }
}

/// Every shard with its sequences and every application's checkpoint, lag and lease.
#[utoipa::path(get, path = "/api/v1/ops/stream", tag = "ops",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "the shards and the applications in them", body = StreamStatus),
        (status = 401, description = "missing or wrong admin token (`unauthorized`)", body = ErrorBody),
        (status = 503, description = "Postgres unreachable", body = ErrorBody),
    ))]
#[get("/api/v1/ops/stream")]
pub async fn status(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.admin.check(&req)?;
    let shards = state.data.stream.stream_shards;
    let rows = sqlx::query_as::<_, Row>(
        "SELECT a.application, a.shard, c.position, c.sequence, c.at, c.updated_at, \
             l.owner, l.expires_at \
         FROM (SELECT application, shard FROM stream_leases \
               UNION SELECT application, shard FROM stream_checkpoints) a \
         LEFT JOIN stream_checkpoints c USING (application, shard) \
         LEFT JOIN stream_leases l USING (application, shard) \
         WHERE a.shard < $1 \
         ORDER BY a.shard, a.application",
    )
    .bind(i32::from(shards))
    .fetch_all(&state.pool);
    let (rows, bounds) = tokio::join!(rows, bounds(&state, shards));
    let rows = rows?;
    let bounds = bounds
        .inspect_err(|e| tracing::warn!(error = format!("{e:#}"), "stream bounds unread"))
        .ok();
    let now = Utc::now();
    let list = (0..shards)
        .map(|shard| {
            let b = bounds.as_ref().map(|b| b[usize::from(shard)]);
            let applications = rows
                .iter()
                .filter(|r| r.1 == i32::from(shard))
                .map(
                    |(app, _, position, sequence, at, updated, owner, expires)| {
                        let live = expires.is_some_and(|e| e > now);
                        ShardApplication {
                            application: app.clone(),
                            checkpoint: position.clone(),
                            checkpoint_sequence: sequence.map(|s| s.max(0) as u64),
                            checkpoint_at: *at,
                            checkpoint_updated_at: *updated,
                            lag: lag(position.as_deref(), *sequence, b),
                            holder: owner.clone().filter(|_| live),
                            lease_expires_at: expires.filter(|_| live),
                        }
                    },
                )
                .collect();
            StreamShardStatus {
                shard,
                queue: shard_queue(shard),
                first_sequence: b.and_then(|b| b.first),
                last_sequence: b.and_then(|b| b.last),
                length: b.map(|b| match (b.first, b.last) {
                    (Some(first), Some(last)) => last + 1 - first,
                    _ => 0,
                }),
                applications,
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(StreamStatus {
        stream: STREAM_NAME.to_owned(),
        at: now,
        broker_reachable: bounds.is_some(),
        shards: list,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_the_sequences_after_the_checkpoint() {
        let b = Some(Bounds {
            first: Some(10),
            last: Some(50),
        });
        assert_eq!(lag(Some("after_sequence"), Some(50), b), Some(0));
        assert_eq!(lag(Some("after_sequence"), Some(40), b), Some(10));
        assert_eq!(lag(Some("trim_horizon"), None, b), Some(41));
        assert_eq!(lag(Some("at_timestamp"), None, b), None);
        assert_eq!(lag(Some("after_sequence"), Some(3), None), None);
        assert_eq!(lag(None, None, Some(Bounds::default())), Some(0));
    }
}

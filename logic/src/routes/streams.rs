//! The event stream's read API (admin), Kinesis' ListShards and GetShardIterator +
//! GetRecords in one call: a position in, records and the next sequence out, so that a
//! person can replay past events with curl.

use actix_web::{HttpRequest, HttpResponse, get, web};
use chrono::{DateTime, Utc};
use contracts::{ErrorBody, StreamRecord, StreamRecords, StreamShard, StreamShardList};
use data::stream::reader::{Bounds, Position, Reader, Record};
use data::stream::{STREAM_NAME, shard_queue};
use serde::Deserialize;

use crate::error::ApiError;
use crate::routes::AppState;

/// Most records one call returns.
pub const MAX_LIMIT: usize = 1000;

fn broker_error(err: anyhow::Error) -> ApiError {
    ApiError::Unavailable(err.context("RabbitMQ"))
}

async fn reader(state: &AppState) -> Result<Reader, ApiError> {
    Reader::open(state.data.amqp_url(), "strata-stream-read")
        .await
        .map(|r| r.with_waits(state.stream_waits))
        .map_err(broker_error)
}

/// The shards of the event stream, their hash-key ranges and sequence numbers.
#[utoipa::path(get, path = "/api/v1/streams/events/shards", tag = "streams",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "the shards", body = StreamShardList),
        (status = 401, description = "missing or wrong admin token (`unauthorized`)", body = ErrorBody),
        (status = 503, description = "RabbitMQ unreachable", body = ErrorBody),
    ))]
#[get("/api/v1/streams/events/shards")]
pub async fn shards(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.admin.check(&req)?;
    let map = state.data.stream.shard_map();
    let reader = reader(&state).await?;
    let bounds = futures_util::future::try_join_all((0..map.count()).map(|i| reader.bounds(i)))
        .await
        .map_err(broker_error);
    reader.close().await;
    let shards = bounds?
        .into_iter()
        .zip(0..)
        .map(|(bounds, id)| {
            let (start, end) = map.range(id);
            StreamShard {
                id,
                queue: shard_queue(id),
                starting_hash_key: start.to_string(),
                ending_hash_key: end.to_string(),
                first_sequence: bounds.first,
                last_sequence: bounds.last,
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(StreamShardList {
        stream: STREAM_NAME.to_owned(),
        shards,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecordsParams {
    /// The shard's id (`0` to `STREAM_SHARDS - 1`).
    pub shard: Option<String>,
    /// `TRIM_HORIZON` (the oldest kept), `LATEST` (only what comes after now),
    /// `AT_SEQUENCE_NUMBER`, `AFTER_SEQUENCE_NUMBER` (with `sequence`) or `AT_TIMESTAMP`
    /// (with `timestamp`: the first record whose event time is at or after it).
    pub from: Option<String>,
    pub sequence: Option<String>,
    /// RFC 3339, e.g. `2026-12-03T10:00:00Z`.
    pub timestamp: Option<String>,
    /// Records at most (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

fn position(params: &RecordsParams) -> Result<Position, ApiError> {
    let sequence = || -> Result<u64, ApiError> {
        let text = params.sequence.as_deref().ok_or_else(|| {
            ApiError::InvalidPosition("this position needs `sequence`".to_owned())
        })?;
        text.parse().map_err(|_| {
            ApiError::InvalidPosition(format!("sequence '{text}' is not a sequence number"))
        })
    };
    let from = params.from.as_deref().ok_or_else(|| {
        ApiError::InvalidPosition(
            "`from` is required: TRIM_HORIZON, LATEST, AT_SEQUENCE_NUMBER, \
             AFTER_SEQUENCE_NUMBER or AT_TIMESTAMP"
                .to_owned(),
        )
    })?;
    let position = match from {
        "TRIM_HORIZON" => Position::TrimHorizon,
        "LATEST" => Position::Latest,
        "AT_SEQUENCE_NUMBER" => Position::AtSequence(sequence()?),
        "AFTER_SEQUENCE_NUMBER" => Position::AfterSequence(sequence()?),
        "AT_TIMESTAMP" => {
            let text = params.timestamp.as_deref().ok_or_else(|| {
                ApiError::InvalidPosition("AT_TIMESTAMP needs `timestamp`".to_owned())
            })?;
            let at = DateTime::parse_from_rfc3339(text).map_err(|_| {
                ApiError::InvalidPosition(format!("timestamp '{text}' is not RFC 3339"))
            })?;
            Position::AtTimestamp(at.with_timezone(&Utc))
        }
        other => {
            return Err(ApiError::InvalidPosition(format!(
                "unknown position '{other}': TRIM_HORIZON, LATEST, AT_SEQUENCE_NUMBER, \
                 AFTER_SEQUENCE_NUMBER or AT_TIMESTAMP"
            )));
        }
    };
    let stray = match position {
        Position::AtSequence(_) | Position::AfterSequence(_) => params.timestamp.is_some(),
        Position::AtTimestamp(_) => params.sequence.is_some(),
        _ => params.sequence.is_some() || params.timestamp.is_some(),
    };
    if stray {
        return Err(ApiError::InvalidPosition(format!(
            "{from} takes no {}",
            if params.sequence.is_some() {
                "`sequence`"
            } else {
                "`timestamp`"
            }
        )));
    }
    Ok(position)
}

fn record(r: Record) -> StreamRecord {
    StreamRecord {
        sequence: r.sequence,
        partition_key: r.partition_key,
        timestamp: r.timestamp,
        kind: r.kind,
        message_id: r.message_id,
        data: r.data,
    }
}

/// The sequence a position starts at, when it names one.
fn start(position: Position) -> Option<u64> {
    match position {
        Position::AtSequence(n) => Some(n),
        Position::AfterSequence(n) => Some(n.saturating_add(1)),
        _ => None,
    }
}

/// Records of one shard from a position, in sequence order.
#[utoipa::path(get, path = "/api/v1/streams/events/records", tag = "streams", params(RecordsParams),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "the records and where to go on", body = StreamRecords),
        (status = 400, description = "bad position (`invalid_position`), a sequence past the shard's end (`sequence_beyond_end`), bad limit (`invalid_query`)", body = ErrorBody),
        (status = 401, description = "missing or wrong admin token (`unauthorized`)", body = ErrorBody),
        (status = 404, description = "no such shard (`unknown_shard`)", body = ErrorBody),
        (status = 410, description = "the sequence was removed by retention (`sequence_expired`)", body = ErrorBody),
        (status = 503, description = "RabbitMQ unreachable", body = ErrorBody),
    ))]
#[get("/api/v1/streams/events/records")]
pub async fn records(
    req: HttpRequest,
    state: web::Data<AppState>,
    params: web::Query<RecordsParams>,
) -> Result<HttpResponse, ApiError> {
    state.admin.check(&req)?;
    let count = state.data.stream.stream_shards;
    let shard = params
        .shard
        .as_deref()
        .ok_or_else(|| ApiError::UnknownShard("`shard` is required".to_owned()))?;
    let shard = shard
        .parse::<u16>()
        .ok()
        .filter(|s| *s < count)
        .ok_or_else(|| {
            ApiError::UnknownShard(format!(
                "no shard '{shard}': the stream has shards 0 to {}",
                count - 1
            ))
        })?;
    let position = position(&params)?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::InvalidQuery(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let reader = reader(&state).await?;
    let result = read(&reader, shard, position, limit).await;
    reader.close().await;
    let (records, next_sequence) = result?;
    Ok(HttpResponse::Ok().json(StreamRecords {
        shard,
        records: records.into_iter().map(record).collect(),
        next_sequence,
    }))
}

/// The records and the next sequence, or why the position is wrong.
async fn read(
    reader: &Reader,
    shard: u16,
    position: Position,
    limit: usize,
) -> Result<(Vec<Record>, u64), ApiError> {
    let mut found = reader
        .read(shard, position, limit)
        .await
        .map_err(broker_error)?;
    let start = start(position);
    let first_read = found.first().map(|r| r.sequence);
    // The shard's bounds are only needed to explain a position or an empty answer.
    let needs_bounds =
        found.is_empty() || matches!((start, first_read), (Some(s), Some(f)) if f > s);
    let bounds = if needs_bounds {
        reader.bounds(shard).await.map_err(broker_error)?
    } else {
        Bounds::default()
    };
    // A reader attached while retention removed the segment it landed on reads nothing:
    // when the shard holds records at or after the position, read once more from there.
    if found.is_empty() {
        let from = match position {
            Position::TrimHorizon => bounds.first,
            _ => start.filter(|s| bounds.last.is_some_and(|last| *s <= last)),
        };
        if let Some(from) = from {
            let from = from.max(bounds.first.unwrap_or(0));
            found = reader
                .read(shard, Position::AtSequence(from), limit)
                .await
                .map_err(broker_error)?;
        }
    }
    if let Some(start) = start {
        if bounds.first.is_some_and(|first| start < first) {
            return Err(ApiError::SequenceExpired(format!(
                "sequence {start} is no longer kept: the shard begins at {}",
                bounds.first.unwrap_or_default()
            )));
        }
        let end = bounds.last.map_or(0, |last| last + 1);
        if found.is_empty() && start > end {
            return Err(ApiError::SequenceBeyondEnd(format!(
                "sequence {start} is past the shard's end: the next record will be at {end} or \
                 later"
            )));
        }
    }
    let next = match found.last() {
        Some(last) => last.sequence + 1,
        None => match start {
            Some(start) => start,
            None => bounds.last.map_or(0, |last| last + 1),
        },
    };
    Ok((found, next))
}

//! Bodies of the event stream's read API (`/api/v1/streams/events/...`), Kinesis'
//! ListShards and GetRecords.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `GET /api/v1/streams/events/shards`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StreamShardList {
    pub stream: String,
    pub shards: Vec<StreamShard>,
}

/// One shard: the hash keys it owns and the sequence numbers it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StreamShard {
    /// The shard's number, `0` to `STREAM_SHARDS - 1`: `shard=` of the records call.
    pub id: u16,
    /// The RabbitMQ stream queue holding it.
    pub queue: String,
    /// First and last 128-bit hash key of its range, in decimal (as Kinesis writes them).
    pub starting_hash_key: String,
    pub ending_hash_key: String,
    /// The oldest and newest sequence numbers kept; null while the shard is empty.
    pub first_sequence: Option<u64>,
    pub last_sequence: Option<u64>,
}

/// `GET /api/v1/streams/events/records`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StreamRecords {
    pub shard: u16,
    /// In sequence order; fewer than `limit` does not mean the shard's end.
    pub records: Vec<StreamRecord>,
    /// Where the next read goes on: `from=AT_SEQUENCE_NUMBER&sequence={next_sequence}`.
    pub next_sequence: u64,
}

/// One record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StreamRecord {
    /// The record's offset in its shard: increasing, not dense.
    pub sequence: u64,
    pub partition_key: Option<String>,
    /// When the event occurred.
    pub timestamp: Option<DateTime<Utc>>,
    /// The event type (`OrderFulfilled`, ...).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub message_id: Option<String>,
    /// The event's envelope as published.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: serde_json::Value,
}

/// `GET /api/v1/ops/analytics`: the last minutes of `worker analytics`' windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnalyticsView {
    /// The stream application whose windows these are (`analytics` by default).
    pub application: String,
    /// When logic read them.
    pub at: DateTime<Utc>,
    /// The windows, oldest first, one per minute (minutes without events are zeros): the
    /// `minutes` ending at the current minute, or at the newest window when it is later.
    pub windows: Vec<AnalyticsWindow>,
    /// The lowest watermark of the shards: every window ending at or before it is final
    /// (an event older than its shard's watermark is late and not counted). Null before
    /// the application read anything.
    pub watermark: Option<DateTime<Utc>>,
    /// Late events of the windows shown.
    pub late_events: i64,
    /// Each shard's watermark.
    pub shards: Vec<AnalyticsShard>,
}

/// One shard's progress in event time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnalyticsShard {
    pub shard: u16,
    /// The greatest event time read in the shard.
    pub max_event_time: Option<DateTime<Utc>>,
    /// `max_event_time` minus the allowed lateness.
    pub watermark: Option<DateTime<Utc>>,
}

/// One tumbling minute, by event time: `[start, end)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnalyticsWindow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Orders placed (`order.placed`) and their totals.
    pub placed: i64,
    pub placed_cents: i64,
    /// Orders fulfilled (`order.fulfilled`); their totals are the revenue.
    pub fulfilled: i64,
    pub revenue_cents: i64,
    /// Orders rejected (`order.rejected`).
    pub rejected: i64,
    /// `rejected / (fulfilled + rejected)`; null when both are 0.
    pub rejection_rate: Option<f64>,
    /// Events of this minute that arrived after their shard's watermark passed them.
    pub late_events: i64,
    /// Per category: orders placed with a line of it, revenue of its fulfilled lines;
    /// by revenue, then orders.
    pub categories: Vec<AnalyticsCategory>,
    /// The products with the most revenue from fulfilled lines (at most 5).
    pub top_products: Vec<AnalyticsProduct>,
    /// When the window last changed (null for a minute without events).
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnalyticsCategory {
    pub category: String,
    pub placed: i64,
    pub revenue_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnalyticsProduct {
    pub sku: String,
    pub units: i64,
    pub revenue_cents: i64,
}

/// `GET /api/v1/ops/stream`: the shards with every application's progress in them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StreamStatus {
    pub stream: String,
    pub at: DateTime<Utc>,
    /// False when RabbitMQ did not answer: the sequences, lengths and lags are then null.
    pub broker_reachable: bool,
    pub shards: Vec<StreamShardStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StreamShardStatus {
    pub shard: u16,
    pub queue: String,
    pub first_sequence: Option<u64>,
    pub last_sequence: Option<u64>,
    /// `last - first + 1`: the span of sequence numbers kept, an upper bound of the record
    /// count (offsets are not dense). 0 for an empty shard.
    pub length: Option<u64>,
    /// The applications that read the shard, by name.
    pub applications: Vec<ShardApplication>,
}

/// One application in one shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShardApplication {
    pub application: String,
    /// Where it resumes: `after_sequence`, `trim_horizon`, `latest`, `at_sequence`,
    /// `at_timestamp`, or null when it never read the shard.
    pub checkpoint: Option<String>,
    /// The sequence of an `after_sequence` or `at_sequence` checkpoint.
    pub checkpoint_sequence: Option<u64>,
    /// The timestamp of an `at_timestamp` checkpoint.
    pub checkpoint_at: Option<DateTime<Utc>>,
    /// When the checkpoint last moved.
    pub checkpoint_updated_at: Option<DateTime<Utc>>,
    /// Sequence numbers between the checkpoint and the shard's last record (0: caught
    /// up); null when unknown (no sequence checkpoint, or the broker did not answer).
    pub lag: Option<u64>,
    /// The instance holding the shard's lease, while its lease is live.
    pub holder: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
}

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

//! The event stream (Kinesis Data Streams' role): every event on the `events` exchange is
//! also appended to one of K shards, each a RabbitMQ stream queue, picked by the MD5 of
//! the event's partition key exactly as Kinesis picks a shard ([`shards`]). The topology
//! and its retention settings are in [`topology`]; with the `store` feature, [`reader`]
//! reads a shard from a position (the API's GetRecords) and [`consumer`] runs an
//! application over the shards with checkpoints and leases in Postgres.

#[cfg(feature = "store")]
pub mod consumer;
#[cfg(feature = "store")]
pub mod leases;
#[cfg(feature = "store")]
pub mod reader;
pub mod shards;
pub mod topology;

pub use shards::{ShardMap, partition_key};
pub use topology::{
    PARTITION_KEY_HEADER, SHARD_HEADER, SHARDS_EXCHANGE, StreamSettings, shard_queue,
};

/// The name of the one stream (the API's `/streams/{name}`, the checkpoints' `stream`).
pub const STREAM_NAME: &str = "events";

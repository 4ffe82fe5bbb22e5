//! The stream's topology: `events` (topic) is bound with `#` to `events.shards`, a headers
//! exchange (an exchange-to-exchange binding), and each shard queue `events.shard.{i}` is
//! bound to `events.shards` on the header `stream-shard = "{i}"`. The relay sets that
//! header (and `partition-key`) on every event it publishes, so an event is published once
//! and reaches the subscribers' queues and exactly one shard. (A header whose name begins
//! with `x-` would be ignored by the headers exchange, hence the plain names.)
//!
//! The exchanges are declared with the rest of the topology
//! ([`crate::messaging::broker::declare_topology`]); the shard queues by whoever knows the
//! settings ([`declare_shards`]): the relay before it publishes, the test harness.

use lapin::options::{
    ExchangeBindOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};

use crate::messaging::broker::text;
use lapin::{Channel, ExchangeKind};

/// Headers exchange between `events` and the shard queues.
pub const SHARDS_EXCHANGE: &str = "events.shards";
/// Header naming an event's shard (a decimal string).
pub const SHARD_HEADER: &str = "stream-shard";
/// Header carrying an event's partition key.
pub const PARTITION_KEY_HEADER: &str = "partition-key";

/// The stream queue of shard `index`.
pub fn shard_queue(index: u16) -> String {
    format!("events.shard.{index}")
}

/// Shards and retention of the event stream. Retention applies per shard and per segment:
/// RabbitMQ removes a segment file whole, once all of it is past the age or the shard is
/// over the size, so a shard keeps up to one segment more than asked.
#[derive(Debug, Clone, clap::Args)]
pub struct StreamSettings {
    /// Shards of the event stream (`events.shard.0` ...). Every relay must agree; changing
    /// it moves keys between shards (see docs/messaging.md).
    #[arg(long, env = "STREAM_SHARDS", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub stream_shards: u16,
    /// Longest time a record is kept, in RabbitMQ's notation: a number and Y, M, D, h, m
    /// or s (`7D`, `24h`).
    #[arg(long, env = "STREAM_MAX_AGE", default_value = "7D", value_parser = parse_max_age)]
    pub stream_max_age: String,
    /// Largest size of one shard, in bytes (default 1 GiB).
    #[arg(long, env = "STREAM_MAX_BYTES", default_value_t = 1 << 30)]
    pub stream_max_bytes: u64,
    /// Size of a shard's segment files, in bytes (default 16 MiB): the unit retention
    /// removes.
    #[arg(long, env = "STREAM_SEGMENT_BYTES", default_value_t = 16 << 20)]
    pub stream_segment_bytes: u64,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            stream_shards: 4,
            stream_max_age: "7D".to_owned(),
            stream_max_bytes: 1 << 30,
            stream_segment_bytes: 16 << 20,
        }
    }
}

impl StreamSettings {
    pub fn shard_map(&self) -> super::ShardMap {
        super::ShardMap::new(self.stream_shards)
    }
}

/// Accepts RabbitMQ's `x-max-age` notation.
pub fn parse_max_age(value: &str) -> Result<String, String> {
    let unit_at = value.len().saturating_sub(1);
    let (number, unit) = value.split_at(unit_at);
    let valid = !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
        && matches!(unit, "Y" | "M" | "D" | "h" | "m" | "s");
    if valid {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "'{value}' is not an age such as 7D or 24h (a number and Y, M, D, h, m or s)"
        ))
    }
}

/// `events.shards` and its binding to `events` (which must exist).
pub async fn declare_exchange(channel: &Channel) -> lapin::Result<()> {
    channel
        .exchange_declare(
            SHARDS_EXCHANGE.into(),
            ExchangeKind::Headers,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_bind(
            SHARDS_EXCHANGE.into(),
            contracts::EVENTS_EXCHANGE.into(),
            "#".into(),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        )
        .await
}

/// The arguments of a shard queue. They cannot change once the queue exists (RabbitMQ
/// refuses a redeclaration with others): change an existing shard's retention with a
/// policy (docs/messaging.md).
pub fn shard_arguments(settings: &StreamSettings) -> FieldTable {
    let mut t = FieldTable::default();
    t.insert(ShortString::from("x-queue-type"), text("stream"));
    t.insert(
        ShortString::from("x-max-age"),
        text(&settings.stream_max_age),
    );
    t.insert(
        ShortString::from("x-max-length-bytes"),
        AMQPValue::LongLongInt(settings.stream_max_bytes.min(i64::MAX as u64) as i64),
    );
    t.insert(
        ShortString::from("x-stream-max-segment-size-bytes"),
        AMQPValue::LongLongInt(settings.stream_segment_bytes.min(i64::MAX as u64) as i64),
    );
    t
}

/// Declares the exchange and the shard queues, each bound on its header.
pub async fn declare_shards(channel: &Channel, settings: &StreamSettings) -> lapin::Result<()> {
    declare_exchange(channel).await?;
    for index in 0..settings.stream_shards.max(1) {
        let queue = shard_queue(index);
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                shard_arguments(settings),
            )
            .await?;
        let mut binding = FieldTable::default();
        binding.insert(ShortString::from("x-match"), text("all"));
        binding.insert(ShortString::from(SHARD_HEADER), text(&index.to_string()));
        channel
            .queue_bind(
                queue.as_str().into(),
                SHARDS_EXCHANGE.into(),
                "".into(),
                QueueBindOptions::default(),
                binding,
            )
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_in_rabbitmq_notation() {
        for ok in ["7D", "24h", "1Y", "30m", "10s", "2M"] {
            assert_eq!(parse_max_age(ok).as_deref(), Ok(ok));
        }
        for bad in ["", "D", "7", "7d", "-1D", "1.5h", "7 D"] {
            assert!(parse_max_age(bad).is_err(), "{bad}");
        }
    }
}

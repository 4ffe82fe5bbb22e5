//! Reading a shard from a position, over AMQP 0.9.1: a consumer on the shard's stream
//! queue with a prefetch, manual acks (which stream queues require: an ack only grants
//! credit) and the `x-stream-offset` argument. Each delivery carries its offset in the
//! `x-stream-offset` header: that offset is the record's sequence number.
//!
//! Offsets grow but are not dense: the broker spends some on its own entries (each
//! segment begins with one), so the next sequence is "the last one read plus one", never
//! a count. A stream consumer is never told that it reached the end; a read ends at
//! `limit` records or when no delivery came for an idle interval, so fewer records than
//! the limit do not mean the end (as with Kinesis' GetRecords).

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures_lite::StreamExt;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection};
use serde::Serialize;

use super::{PARTITION_KEY_HEADER, shard_queue};

/// Where a read starts (Kinesis' shard iterator types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The oldest record kept.
    TrimHorizon,
    /// Just after the newest record: only records appended later.
    Latest,
    AtSequence(u64),
    AfterSequence(u64),
    /// The first record, in sequence order, whose event time is at or after the instant.
    AtTimestamp(DateTime<Utc>),
}

/// One record of a shard.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    pub sequence: u64,
    pub partition_key: Option<String>,
    /// When the event occurred (the envelope's `occurred_at`).
    pub timestamp: Option<DateTime<Utc>>,
    /// The envelope's type and message id, when the body is an envelope.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub message_id: Option<String>,
    /// The body: the event's envelope (a string if the body was not JSON).
    pub data: serde_json::Value,
}

impl Record {
    pub(crate) fn of(delivery: &lapin::message::Delivery) -> Option<Record> {
        let headers = delivery.properties.headers().as_ref()?.inner();
        let sequence = match headers.get("x-stream-offset")? {
            AMQPValue::LongLongInt(n) => u64::try_from(*n).ok()?,
            AMQPValue::LongUInt(n) => u64::from(*n),
            AMQPValue::LongInt(n) => u64::try_from(*n).ok()?,
            _ => return None,
        };
        let partition_key = match headers.get(PARTITION_KEY_HEADER) {
            Some(AMQPValue::LongString(s)) => Some(String::from_utf8_lossy(s.as_bytes()).into()),
            Some(AMQPValue::ShortString(s)) => Some(s.as_str().to_owned()),
            _ => None,
        };
        let data = serde_json::from_slice(&delivery.data).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&delivery.data).into_owned())
        });
        let field = |name: &str| data.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        Some(Record {
            sequence,
            partition_key,
            timestamp: field("occurred_at").and_then(|t| t.parse().ok()),
            kind: field("type"),
            message_id: field("message_id"),
            data,
        })
    }
}

/// The sequence numbers a shard holds now (`None`: the shard is empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Bounds {
    pub first: Option<u64>,
    pub last: Option<u64>,
}

/// How long reads wait for deliveries.
#[derive(Debug, Clone, Copy)]
pub struct Waits {
    /// For the first delivery: a shard with records after the position delivers within
    /// milliseconds; one without answers nothing at all.
    pub first: Duration,
    /// Between deliveries: the broker sends a chunk's records together, so a pause this
    /// long ends the read.
    pub idle: Duration,
}

impl Default for Waits {
    fn default() -> Self {
        Waits {
            first: Duration::from_millis(500),
            idle: Duration::from_millis(150),
        }
    }
}

/// A connection for reading shards; each read opens a channel of its own.
pub struct Reader {
    connection: Connection,
    waits: Waits,
}

/// What the broker is asked for: a named place or an offset or a timestamp.
pub(crate) fn offset_argument(position: Position, last: Option<u64>) -> AMQPValue {
    match position {
        Position::TrimHorizon => AMQPValue::LongString(LongString::from("first")),
        Position::Latest => match last {
            Some(last) => AMQPValue::LongLongInt((last + 1) as i64),
            None => AMQPValue::LongString(LongString::from("next")),
        },
        Position::AtSequence(n) => AMQPValue::LongLongInt(n.min(i64::MAX as u64) as i64),
        Position::AfterSequence(n) => {
            AMQPValue::LongLongInt(n.saturating_add(1).min(i64::MAX as u64) as i64)
        }
        // The broker seeks to a chunk by the second it was written; the records before the
        // instant are skipped here.
        Position::AtTimestamp(t) => AMQPValue::Timestamp(t.timestamp().max(0) as u64),
    }
}

impl Reader {
    pub async fn open(amqp_url: &str, name: &str) -> anyhow::Result<Reader> {
        let connection = crate::messaging::broker::connect(amqp_url, name)
            .await
            .context("connecting to RabbitMQ")?;
        Ok(Reader {
            connection,
            waits: Waits::default(),
        })
    }

    pub fn with_waits(mut self, waits: Waits) -> Self {
        self.waits = waits;
        self
    }

    pub async fn close(self) {
        let _ = self.connection.close(200, "read".into()).await;
    }

    /// The first and last sequence numbers of a shard: the first delivery from `first`,
    /// the greatest from `last` (which starts at the newest chunk).
    pub async fn bounds(&self, shard: u16) -> anyhow::Result<Bounds> {
        let first = self.consume(shard, AMQPValue::LongString("first".into()), 1, |_| true);
        let last = self.consume(
            shard,
            AMQPValue::LongString("last".into()),
            usize::MAX,
            |_| true,
        );
        let (mut first, last) = futures_lite::future::try_zip(first, last).await?;
        if first.is_empty() && !last.is_empty() {
            first = self.read_from_zero(shard, 1).await?;
        }
        Ok(Bounds {
            first: first.first().map(|r| r.sequence),
            last: last.iter().map(|r| r.sequence).max(),
        })
    }

    /// Up to `limit` records of `shard` from `position`, in sequence order.
    pub async fn read(
        &self,
        shard: u16,
        position: Position,
        limit: usize,
    ) -> anyhow::Result<Vec<Record>> {
        let last = match position {
            Position::Latest => self.bounds(shard).await?.last,
            _ => None,
        };
        let start = match position {
            Position::AtSequence(n) => Some(n),
            Position::AfterSequence(n) => Some(n.saturating_add(1)),
            Position::Latest => last.map(|l| l + 1),
            _ => None,
        };
        let argument = offset_argument(position, last);
        // A seek lands on a chunk's start: the records before the position come first and
        // are read past without counting.
        let mut reached = false;
        let at_or_after = move |record: &Record| {
            reached = reached
                || match (position, start) {
                    (_, Some(start)) => record.sequence >= start,
                    (Position::AtTimestamp(t), _) => record.timestamp.is_some_and(|ts| ts >= t),
                    _ => true,
                };
            reached
        };
        let records = self.consume(shard, argument, limit, at_or_after).await?;
        if records.is_empty() && position == Position::TrimHorizon {
            return self.read_from_zero(shard, limit).await;
        }
        Ok(records)
    }

    /// `first` has been seen to deliver nothing while retention removed segments: offset 0,
    /// which the broker moves to the first offset kept, is tried then.
    async fn read_from_zero(&self, shard: u16, limit: usize) -> anyhow::Result<Vec<Record>> {
        tracing::debug!(shard, "nothing from `first`: reading from offset 0");
        self.consume(shard, AMQPValue::LongLongInt(0), limit, |_| true)
            .await
    }

    /// Reads from `offset` until `limit` records pass `keep` (or an idle pause).
    async fn consume(
        &self,
        shard: u16,
        offset: AMQPValue,
        limit: usize,
        keep: impl FnMut(&Record) -> bool,
    ) -> anyhow::Result<Vec<Record>> {
        let channel = self.connection.create_channel().await?;
        let result = read_channel(&channel, shard, offset, limit, keep, self.waits).await;
        let _ = channel.close(200, "read".into()).await;
        result
    }
}

async fn read_channel(
    channel: &Channel,
    shard: u16,
    offset: AMQPValue,
    limit: usize,
    mut keep: impl FnMut(&Record) -> bool,
    waits: Waits,
) -> anyhow::Result<Vec<Record>> {
    let prefetch = limit.clamp(1, 1000) as u16;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let mut arguments = FieldTable::default();
    arguments.insert(ShortString::from("x-stream-offset"), offset);
    let queue = shard_queue(shard);
    let mut deliveries = channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            arguments,
        )
        .await
        .with_context(|| format!("consuming {queue}"))?;
    let mut records = Vec::new();
    let mut seen = 0usize;
    while records.len() < limit {
        let wait = if seen == 0 { waits.first } else { waits.idle };
        let Ok(next) = tokio::time::timeout(wait, deliveries.next()).await else {
            break;
        };
        let Some(delivery) = next else { break };
        let delivery = delivery?;
        delivery.acker.ack(BasicAckOptions::default()).await?;
        seen += 1;
        if let Some(record) = Record::of(&delivery).filter(|r| keep(r)) {
            records.push(record);
        }
    }
    let _ = channel
        .basic_cancel(deliveries.tag(), BasicCancelOptions::default())
        .await;
    Ok(records)
}

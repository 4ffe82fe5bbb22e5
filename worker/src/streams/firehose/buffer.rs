//! The consumer's handler: each batch of a shard becomes rows of `firehose_buffer`, one
//! JSON line per record (transformed), in the transaction that writes the checkpoint. The
//! checkpoint and the buffer therefore move together: a record is buffered exactly once,
//! whatever stops the process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use data::stream::STREAM_NAME;
use data::stream::consumer::Handler;
use data::stream::reader::Record;
use serde::Serialize;
use sqlx::PgConnection;

use super::redact;

/// One line of an archive file.
#[derive(Debug, Serialize)]
struct Line<'a> {
    stream: &'static str,
    shard: u16,
    sequence: u64,
    partition_key: Option<String>,
    timestamp: Option<DateTime<Utc>>,
    #[serde(rename = "type")]
    kind: Option<&'a str>,
    message_id: Option<&'a str>,
    data: serde_json::Value,
}

/// The JSON line of a record, personal data removed when `redacting`.
pub fn line(shard: u16, record: &Record, redacting: bool) -> String {
    let mut data = record.data.clone();
    let mut partition_key = record.partition_key.clone();
    if redacting {
        let found =
            redact::redact(&mut data) + partition_key.as_mut().map_or(0, redact::redact_text);
        if found > 0 {
            metrics::counter!("strata_firehose_redactions_total").increment(found as u64);
        }
    }
    let line = Line {
        stream: STREAM_NAME,
        shard,
        sequence: record.sequence,
        partition_key,
        timestamp: record.timestamp,
        kind: record.kind.as_deref(),
        message_id: record.message_id.as_deref(),
        data,
    };
    serde_json::to_string(&line).expect("a JSON value serializes")
}

/// The handler of the firehose application.
pub struct Buffer {
    pub application: String,
    pub redact: bool,
    /// Set when the instance stops: batches are refused (rolled back, their records read
    /// again by the next holder) so that the last flush leaves nothing behind.
    pub draining: Arc<AtomicBool>,
}

impl Handler for Buffer {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        shard: u16,
        records: &[Record],
    ) -> anyhow::Result<()> {
        if self.draining.load(Ordering::Acquire) {
            anyhow::bail!("the firehose is stopping");
        }
        // What a file already holds is not buffered again (after a replay of the
        // application's checkpoints, say): the archive keeps each record once.
        let archived: Option<i64> = sqlx::query_scalar(
            "SELECT max(last_sequence) FROM firehose_files WHERE application = $1 AND shard = $2",
        )
        .bind(&self.application)
        .bind(i32::from(shard))
        .fetch_one(&mut *tx)
        .await?;
        let now = Utc::now();
        let mut sequences = Vec::with_capacity(records.len());
        let mut lines = Vec::with_capacity(records.len());
        let mut sizes = Vec::with_capacity(records.len());
        let mut times = Vec::with_capacity(records.len());
        for record in records {
            let sequence = record.sequence.min(i64::MAX as u64) as i64;
            if archived.is_some_and(|a| sequence <= a) {
                continue;
            }
            let line = line(shard, record, self.redact);
            sequences.push(sequence);
            // The newline the file adds is counted: the buffer's size is the file's, before
            // compression.
            sizes.push(i32::try_from(line.len() + 1).unwrap_or(i32::MAX));
            lines.push(line);
            times.push(record.timestamp.unwrap_or(now));
        }
        sqlx::query(
            "INSERT INTO firehose_buffer (application, shard, sequence, line, bytes, event_at) \
             SELECT $1, $2, * FROM UNNEST($3::bigint[], $4::text[], $5::int[], $6::timestamptz[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&self.application)
        .bind(i32::from(shard))
        .bind(&sequences)
        .bind(&lines)
        .bind(&sizes)
        .bind(&times)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

//! Applications of the event stream (Kinesis' consumers), run as `worker <app>`: each is
//! an application of [`data::stream::consumer`] with its own checkpoints and leases, and
//! as many instances as wanted split the shards between them.
//!
//! - [`firehose`]: `worker firehose` buffers records and writes them as compressed
//!   newline-delimited JSON files under an archive directory (Kinesis Data Firehose).
//! - [`analytics`]: `worker analytics` computes one-minute windows by event time into
//!   Postgres (Kinesis Data Analytics).

pub mod analytics;
pub mod firehose;

//! Writing the buffer of a shard into the archive, and finishing what a crash left.
//!
//! A flush, under the shard's lease: in **one transaction** it locks the lease row (the
//! fence: the holder and generation must still be this instance's, and the shard's
//! batches wait), reads the oldest buffered lines up to the size limit, writes them gzip'd
//! to `.staging/<application>/<name>.<attempt>` and syncs it, deletes those rows and inserts the file's
//! manifest row (which names the staging file), commits; then renames the staging file to
//! `<YYYY>/<MM>/<DD>/<HH>/<name>`. The rule at every crash point:
//!
//! - before the commit: the rows are still buffered and no manifest row names the staging
//!   file, which [`recover`] deletes; the rows go into a later file;
//! - after the commit, before the rename: the manifest row names the staging file, which
//!   [`recover`] renames.
//!
//! [`recover`] runs for a shard each time this instance takes its lease, before flushing
//! it: a former holder cannot commit any more (its generation is gone), so whatever
//! staging file of the shard no manifest row names is garbage.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use data::stream::STREAM_NAME;
use data::stream::leases::{self, Lease};
use flate2::Compression;
use flate2::write::GzEncoder;
use sqlx::PgPool;

/// Where staging files are written, inside the archive directory (so the rename stays on
/// one file system and is atomic).
pub const STAGING: &str = ".staging";

/// One application's archive.
#[derive(Debug, Clone)]
pub struct Archive {
    pub pool: PgPool,
    pub dir: PathBuf,
    pub application: String,
    pub instance: String,
    /// A file is written when a shard's buffer holds this many bytes of lines...
    pub buffer_bytes: u64,
    /// ... or its oldest record has waited this long.
    pub buffer_interval: std::time::Duration,
}

/// A file written by a flush.
#[derive(Debug, Clone)]
pub struct Written {
    pub path: String,
    pub records: usize,
}

/// The name of the file of a shard's sequences `first..=last`: unique in the archive,
/// and in sequence order when sorted.
pub fn file_name(application: &str, shard: u16, first: u64, last: u64) -> String {
    format!("{application}-{STREAM_NAME}-{shard:04}-{first:020}-{last:020}.json.gz")
}

/// The staging files of a shard begin with this.
fn shard_prefix(application: &str, shard: u16) -> String {
    format!("{application}-{STREAM_NAME}-{shard:04}-")
}

/// The path, relative to the archive directory, of a file starting at `at`.
pub fn relative_path(at: DateTime<Utc>, name: &str) -> String {
    format!("{}/{name}", at.format("%Y/%m/%d/%H"))
}

impl Archive {
    /// `.staging/<application>`: each application finishes only its own files.
    pub fn staging_dir(&self) -> PathBuf {
        self.dir.join(STAGING).join(&self.application)
    }

    /// Writes files of the shard while its buffer is due (or, with `force`, until it is
    /// empty); returns them.
    pub async fn flush(&self, lease: Lease, force: bool) -> anyhow::Result<Vec<Written>> {
        let mut written = Vec::new();
        while let Some(file) = self.flush_once(lease, force).await? {
            written.push(file);
        }
        Ok(written)
    }

    async fn flush_once(&self, lease: Lease, force: bool) -> anyhow::Result<Option<Written>> {
        let app = self.application.as_str();
        let shard = lease.shard;
        let mut tx = self.pool.begin().await?;
        if !leases::fence(&mut tx, app, &self.instance, lease).await? {
            anyhow::bail!("the lease of shard {shard} was lost");
        }
        let (bytes, oldest_age): (i64, Option<f64>) = sqlx::query_as(
            "SELECT coalesce(sum(bytes), 0)::bigint, \
                    extract(epoch FROM now() - min(arrived_at))::float8 \
             FROM firehose_buffer WHERE application = $1 AND shard = $2",
        )
        .bind(app)
        .bind(shard)
        .fetch_one(&mut *tx)
        .await?;
        let Some(oldest_age) = oldest_age else {
            return Ok(None);
        };
        let due = force
            || bytes as u64 >= self.buffer_bytes
            || oldest_age >= self.buffer_interval.as_secs_f64();
        if !due {
            return Ok(None);
        }
        // The oldest lines up to the limit: every line that starts below it.
        let rows: Vec<(i64, String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT sequence, line, event_at FROM ( \
                 SELECT sequence, line, event_at, \
                        sum(bytes) OVER (ORDER BY sequence) - bytes AS before \
                 FROM firehose_buffer WHERE application = $1 AND shard = $2) b \
             WHERE before < $3 ORDER BY sequence",
        )
        .bind(app)
        .bind(shard)
        .bind(self.buffer_bytes.min(i64::MAX as u64) as i64)
        .fetch_all(&mut *tx)
        .await?;
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return Ok(None);
        };
        let (first, last, at) = (first.0, last.0, first.2);
        let name = file_name(app, shard as u16, first as u64, last as u64);
        let path = relative_path(at, &name);
        let staging = format!("{name}.{}", uuid::Uuid::new_v4().simple());
        let staging_path = self.staging_dir().join(&staging);
        let lines: Vec<String> = rows.into_iter().map(|(_, line, _)| line).collect();
        let records = lines.len();
        let (raw, compressed) = {
            let staging_path = staging_path.clone();
            tokio::task::spawn_blocking(move || write_gzip(&staging_path, &lines)).await??
        };
        let commit = async {
            let deleted = sqlx::query(
                "DELETE FROM firehose_buffer WHERE application = $1 AND shard = $2 \
                 AND sequence BETWEEN $3 AND $4",
            )
            .bind(app)
            .bind(shard)
            .bind(first)
            .bind(last)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            // The lease's lock keeps every other writer of the shard out; a mismatch would
            // mean the rows changed under it, and nothing is committed then.
            anyhow::ensure!(
                deleted == records as u64,
                "the buffer changed during a flush"
            );
            sqlx::query(
                "INSERT INTO firehose_files (application, shard, first_sequence, last_sequence, \
                     records, raw_bytes, bytes, path, staging) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(app)
            .bind(shard)
            .bind(first)
            .bind(last)
            .bind(records as i32)
            .bind(raw as i64)
            .bind(compressed as i64)
            .bind(&path)
            .bind(&staging)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            anyhow::Ok(())
        };
        if let Err(err) = commit.await {
            // Not committed (or unknown): the staging file is left to `recover`, which
            // keeps it only if a manifest row names it.
            return Err(err.context(format!("committing {path}")));
        }
        self.publish(&staging, &path).await?;
        metrics::counter!("strata_firehose_files_total").increment(1);
        metrics::counter!("strata_firehose_records_total").increment(records as u64);
        metrics::counter!("strata_firehose_bytes_total").increment(compressed);
        tracing::info!(
            shard,
            first,
            last,
            records,
            bytes = compressed,
            path,
            "archived"
        );
        Ok(Some(Written { path, records }))
    }

    /// Moves a committed staging file to its place.
    async fn publish(&self, staging: &str, path: &str) -> anyhow::Result<()> {
        let from = self.staging_dir().join(staging);
        let to = self.dir.join(path);
        tokio::task::spawn_blocking(move || rename_into_place(&from, &to)).await?
    }

    /// Finishes or discards the staging files of `shard` (see the module's rule).
    pub async fn recover(&self, shard: u16) -> anyhow::Result<()> {
        let prefix = shard_prefix(&self.application, shard);
        let dir = self.staging_dir();
        let names = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<String>> {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(&dir)? {
                let name = entry?.file_name().to_string_lossy().into_owned();
                if name.starts_with(&prefix) {
                    names.push(name);
                }
            }
            Ok(names)
        })
        .await??;
        for staging in names {
            let path: Option<String> =
                sqlx::query_scalar("SELECT path FROM firehose_files WHERE staging = $1")
                    .bind(&staging)
                    .fetch_optional(&self.pool)
                    .await?;
            match path {
                Some(path) => {
                    tracing::info!(shard, path, "finishing a file a stop interrupted");
                    self.publish(&staging, &path).await?;
                }
                None => {
                    tracing::info!(shard, staging, "removing a file that was never committed");
                    match tokio::fs::remove_file(self.staging_dir().join(&staging)).await {
                        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                            return Err(err).context("removing a staging file");
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }
}

/// Writes `lines` gzip'd to `path` and syncs it; returns the bytes before and after
/// compression.
fn write_gzip(path: &Path, lines: &[String]) -> anyhow::Result<(u64, u64)> {
    let file = std::fs::File::create(path).with_context(|| format!("creating {path:?}"))?;
    let mut gzip = GzEncoder::new(std::io::BufWriter::new(file), Compression::default());
    let mut raw = 0u64;
    for line in lines {
        gzip.write_all(line.as_bytes())?;
        gzip.write_all(b"\n")?;
        raw += line.len() as u64 + 1;
    }
    let file = gzip.finish()?.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok((raw, file.metadata()?.len()))
}

/// Renames `from` to `to` (creating its directory) and syncs the directory. A missing
/// `from` with `to` in place is a rename done already (by another holder of the shard).
fn rename_into_place(from: &Path, to: &Path) -> anyhow::Result<()> {
    let dir = to
        .parent()
        .context("a file of the archive has a directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {dir:?}"))?;
    match std::fs::rename(from, to) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && to.exists() => return Ok(()),
        Err(err) => return Err(err).with_context(|| format!("renaming {from:?} to {to:?}")),
    }
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_per_range_and_sort_by_sequence() {
        let a = file_name("firehose", 2, 9, 120);
        let b = file_name("firehose", 2, 121, 1000);
        assert_eq!(
            a,
            "firehose-events-0002-00000000000000000009-00000000000000000120.json.gz"
        );
        assert!(a < b);
        assert!(a.starts_with(&shard_prefix("firehose", 2)));
        assert!(!a.starts_with(&shard_prefix("firehose", 20)));
        let at: DateTime<Utc> = "2026-12-05T07:59:59Z".parse().unwrap();
        assert_eq!(relative_path(at, "f"), "2026/12/05/07/f");
    }
}

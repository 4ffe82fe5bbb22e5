//! The subscriptions' delivery counters, added up in memory and written to the
//! `subscriptions` table in one statement every [`FLUSH_EVERY`]: one update per delivery
//! would serialise a busy subscription's deliveries on its row lock. A flush that fails
//! keeps its counts for the next one; a crash loses at most the last interval's counts
//! (the counters are figures for people, not a ledger).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use contracts::Protocol;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::store::{self, CounterBatch};

/// How often the counters are written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// What happened to one delivery attempt or message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// The attempt failed; the message waits in a retry queue.
    Retried,
    /// The last attempt failed; the message is in the DLQ.
    DeadLettered,
    /// The filter policy did not match.
    Filtered,
    /// Published before the subscription was confirmed.
    BeforeConfirmation,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retried => "retried",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Filtered => "filtered",
            Outcome::BeforeConfirmation => "before_confirmation",
        }
    }

    /// Whether the attempt itself failed (counted in `failed` besides its own counter).
    fn failed(self) -> bool {
        matches!(self, Outcome::Retried | Outcome::DeadLettered)
    }
}

#[derive(Debug, Default)]
struct Tally {
    delivered: i64,
    retried: i64,
    failed: i64,
    dead_lettered: i64,
    filtered: i64,
    last_error: Option<String>,
    last_delivery_at: Option<DateTime<Utc>>,
}

impl Tally {
    fn merge(&mut self, newer: Tally) {
        self.delivered += newer.delivered;
        self.retried += newer.retried;
        self.failed += newer.failed;
        self.dead_lettered += newer.dead_lettered;
        self.filtered += newer.filtered;
        if newer.last_error.is_some() {
            self.last_error = newer.last_error;
        }
        self.last_delivery_at = self.last_delivery_at.max(newer.last_delivery_at);
    }
}

/// The counts not yet written, shared by every consumer of the process.
#[derive(Debug, Clone, Default)]
pub struct Counters(Arc<Mutex<HashMap<Uuid, Tally>>>);

impl Counters {
    /// Counts one outcome of subscription `id` (and the metric
    /// `strata_subscription_deliveries_total`); `error` is the failure, when one.
    pub fn record(&self, id: Uuid, protocol: Protocol, outcome: Outcome, error: Option<&str>) {
        metrics::counter!(
            "strata_subscription_deliveries_total",
            "protocol" => protocol.as_str(),
            "outcome" => outcome.as_str()
        )
        .increment(1);
        let mut tallies = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let tally = tallies.entry(id).or_default();
        match outcome {
            Outcome::Delivered => {
                tally.delivered += 1;
                tally.last_delivery_at = Some(Utc::now());
            }
            Outcome::Retried => tally.retried += 1,
            Outcome::DeadLettered => tally.dead_lettered += 1,
            Outcome::Filtered => tally.filtered += 1,
            Outcome::BeforeConfirmation => {}
        }
        if outcome.failed() {
            tally.failed += 1;
            if let Some(error) = error {
                tally.last_error = Some(error.chars().take(1000).collect());
            }
        }
    }

    fn take(&self) -> HashMap<Uuid, Tally> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn put_back(&self, counts: HashMap<Uuid, Tally>) {
        let mut tallies = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for (id, older) in counts {
            let newer = tallies.remove(&id).unwrap_or_default();
            let mut merged = older;
            merged.merge(newer);
            tallies.insert(id, merged);
        }
    }

    /// Writes what was counted since the last flush; on failure keeps it for the next.
    pub async fn flush(&self, pool: &PgPool) {
        let counts = self.take();
        if counts.is_empty() {
            return;
        }
        let mut batch = CounterBatch::default();
        for (id, t) in &counts {
            batch.ids.push(*id);
            batch.delivered.push(t.delivered);
            batch.retried.push(t.retried);
            batch.failed.push(t.failed);
            batch.dead_lettered.push(t.dead_lettered);
            batch.filtered.push(t.filtered);
            batch.last_error.push(t.last_error.clone());
            batch.last_delivery_at.push(t.last_delivery_at);
        }
        if let Err(err) = store::add_counts(pool, &batch).await {
            tracing::warn!(error = %err, "could not write the subscription counters; kept for the next flush");
            self.put_back(counts);
        }
    }

    /// Flushes every [`FLUSH_EVERY`] until `stop`, then once more.
    pub async fn run(self, pool: PgPool, stop: CancellationToken) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => self.flush(&pool).await,
            }
        }
        self.flush(&pool).await;
    }
}

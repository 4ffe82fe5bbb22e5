//! The windows' arithmetic, without I/O: a batch of one shard's records, in sequence
//! order, folded into per-minute deltas under the shard's watermark.
//!
//! The rule, per shard: the watermark is the greatest event time read so far in the shard
//! minus the allowed lateness. An order event whose event time is before the watermark is
//! late: it is counted in its minute's `late_events` only, never in the figures. Every
//! record with an event time moves the watermark (after its own test). The state is the
//! shard's greatest event time alone, so the same records in the same order give the same
//! windows, however often and wherever they are read.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use contracts::{EventLine, OrderFulfilled, OrderPlaced, OrderRejected};
use data::stream::reader::Record;
use serde::de::DeserializeOwned;

/// What a shard's fold remembers between batches (a row of `analytics_shards`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardState {
    /// The greatest event time read in the shard.
    pub max_event_time: Option<DateTime<Utc>>,
    /// After a replay from a timestamp: the first minute recomputed, and the last sequence
    /// applied before the replay. Records up to that sequence whose minute is earlier were
    /// counted before the replay, in windows the replay kept: they are skipped.
    pub replay_from: Option<DateTime<Utc>>,
    pub replay_through: Option<u64>,
}

impl ShardState {
    fn counted_before_the_replay(&self, minute: DateTime<Utc>, sequence: u64) -> bool {
        self.replay_from.is_some_and(|from| minute < from)
            && self
                .replay_through
                .is_some_and(|through| sequence <= through)
    }
}

impl ShardState {
    /// Event times before this are late.
    pub fn watermark(&self, lateness: TimeDelta) -> Option<DateTime<Utc>> {
        self.max_event_time.map(|t| t - lateness)
    }
}

/// Sums per category or product: (orders or units, revenue in cents).
pub type Sums = BTreeMap<String, (i64, i64)>;

/// What a batch adds to one minute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowDelta {
    pub placed: i64,
    pub placed_cents: i64,
    pub fulfilled: i64,
    pub revenue_cents: i64,
    pub rejected: i64,
    pub late_events: i64,
    pub last_event_at: Option<DateTime<Utc>>,
    /// Category -> (orders placed with a line of it, revenue of its fulfilled lines).
    pub categories: Sums,
    /// Sku -> (units fulfilled, revenue of its fulfilled lines).
    pub products: Sums,
}

/// The start of the minute `t` falls in.
pub fn minute_of(t: DateTime<Utc>) -> DateTime<Utc> {
    let secs = t.timestamp().div_euclid(60) * 60;
    DateTime::from_timestamp(secs, 0).unwrap_or(t)
}

/// An order event, as far as the windows need it.
enum Order {
    Placed(OrderPlaced),
    Fulfilled(OrderFulfilled),
    Rejected,
}

fn payload<T: DeserializeOwned>(record: &Record) -> Option<T> {
    let payload = record.data.get("payload")?;
    match serde_json::from_value(payload.clone()) {
        Ok(p) => Some(p),
        Err(err) => {
            // A record that does not parse is skipped: it must not stop the shard.
            tracing::warn!(sequence = record.sequence, error = %err, "unreadable order event");
            None
        }
    }
}

fn order(record: &Record) -> Option<Order> {
    match record.kind.as_deref()? {
        "OrderPlaced" => payload(record).map(Order::Placed),
        "OrderFulfilled" => payload(record).map(Order::Fulfilled),
        "OrderRejected" => payload::<OrderRejected>(record).map(|_| Order::Rejected),
        _ => None,
    }
}

fn line_revenue(line: &EventLine) -> i64 {
    i64::from(line.quantity).saturating_mul(line.unit_price_cents)
}

fn add(sums: &mut Sums, key: &str, count: i64, cents: i64) {
    let entry = sums.entry(key.to_owned()).or_default();
    entry.0 += count;
    entry.1 += cents;
}

/// Folds `records` (one shard's, in sequence order) into per-minute deltas, moving
/// `state` on.
pub fn fold(
    state: &mut ShardState,
    lateness: TimeDelta,
    records: &[Record],
) -> BTreeMap<DateTime<Utc>, WindowDelta> {
    let mut windows: BTreeMap<DateTime<Utc>, WindowDelta> = BTreeMap::new();
    for record in records {
        let Some(t) = record.timestamp else { continue };
        let minute = minute_of(t);
        if state.counted_before_the_replay(minute, record.sequence) {
            continue;
        }
        let late = state.watermark(lateness).is_some_and(|w| t < w);
        state.max_event_time = state.max_event_time.max(Some(t));
        let Some(order) = order(record) else { continue };
        let w = windows.entry(minute).or_default();
        if late {
            w.late_events += 1;
            continue;
        }
        w.last_event_at = w.last_event_at.max(Some(t));
        match order {
            Order::Placed(p) => {
                w.placed += 1;
                w.placed_cents += p.total_cents;
                let mut categories: Vec<&str> = p
                    .lines
                    .iter()
                    .map(|l| l.category.as_str())
                    .filter(|c| !c.is_empty())
                    .collect();
                categories.sort_unstable();
                categories.dedup();
                for category in categories {
                    add(&mut w.categories, category, 1, 0);
                }
            }
            Order::Fulfilled(f) => {
                w.fulfilled += 1;
                w.revenue_cents += f.total_cents;
                for line in &f.lines {
                    let cents = line_revenue(line);
                    if !line.category.is_empty() {
                        add(&mut w.categories, &line.category, 0, cents);
                    }
                    add(&mut w.products, &line.sku, i64::from(line.quantity), cents);
                }
            }
            Order::Rejected => w.rejected += 1,
        }
    }
    windows
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::{Envelope, MessageKind};
    use uuid::Uuid;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn record<T: MessageKind>(sequence: u64, t: &str, payload: T) -> Record {
        let mut e = Envelope::new(payload, None);
        e.occurred_at = at(t);
        Record {
            sequence,
            partition_key: None,
            timestamp: Some(e.occurred_at),
            kind: Some(e.kind.clone()),
            message_id: Some(e.message_id.to_string()),
            data: serde_json::to_value(&e).unwrap(),
        }
    }

    fn fulfilled(total: i64, sku: &str, category: &str, quantity: i32) -> OrderFulfilled {
        OrderFulfilled {
            order_id: Uuid::nil(),
            total_cents: total,
            email: String::new(),
            lines: vec![EventLine {
                sku: sku.into(),
                name: String::new(),
                category: category.into(),
                quantity,
                unit_price_cents: total / i64::from(quantity),
            }],
        }
    }

    #[test]
    fn events_go_to_the_minute_of_their_event_time_and_late_ones_are_only_counted() {
        let lateness = TimeDelta::seconds(30);
        let mut state = ShardState::default();
        let records = [
            record(
                1,
                "2026-12-05T10:00:10Z",
                fulfilled(1000, "A", "Kitchen", 2),
            ),
            record(2, "2026-12-05T10:01:40Z", fulfilled(500, "B", "Lamps", 1)),
            // 20 s behind the newest: within the lateness, counted in 10:01.
            record(3, "2026-12-05T10:01:20Z", fulfilled(300, "A", "Kitchen", 1)),
            // 100 s behind: late.
            record(4, "2026-12-05T10:00:00Z", fulfilled(700, "A", "Kitchen", 1)),
        ];
        let w = fold(&mut state, lateness, &records);
        let first = &w[&at("2026-12-05T10:00:00Z")];
        assert_eq!((first.fulfilled, first.revenue_cents), (1, 1000));
        assert_eq!(first.late_events, 1);
        assert_eq!(first.products["A"], (2, 1000));
        let second = &w[&at("2026-12-05T10:01:00Z")];
        assert_eq!((second.fulfilled, second.revenue_cents), (2, 800));
        assert_eq!(second.categories["Lamps"], (0, 500));
        assert_eq!(state.max_event_time, Some(at("2026-12-05T10:01:40Z")));
    }

    #[test]
    fn a_replay_from_a_minute_skips_the_minutes_before_it() {
        let mut state = ShardState {
            max_event_time: None,
            replay_from: Some(at("2026-12-05T10:01:00Z")),
            replay_through: Some(2),
        };
        let records = [
            record(1, "2026-12-05T10:00:59Z", fulfilled(1000, "A", "K", 1)),
            record(2, "2026-12-05T10:01:00Z", fulfilled(500, "B", "L", 1)),
            // Read for the first time after the replay, within the lateness: counted.
            record(3, "2026-12-05T10:00:50Z", fulfilled(200, "C", "L", 1)),
        ];
        let w = fold(&mut state, TimeDelta::seconds(30), &records);
        assert_eq!(w[&at("2026-12-05T10:01:00Z")].fulfilled, 1);
        assert_eq!(w[&at("2026-12-05T10:00:00Z")].revenue_cents, 200);
    }

    #[test]
    fn minutes_start_on_the_minute() {
        assert_eq!(
            minute_of(at("2026-12-05T10:00:59.999Z")),
            at("2026-12-05T10:00:00Z")
        );
        assert_eq!(
            minute_of(at("1969-12-31T23:59:30Z")),
            at("1969-12-31T23:59:00Z")
        );
    }
}

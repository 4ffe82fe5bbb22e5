//! The console's figures as text: stat tiles, the autoscaler's decisions (read tolerantly
//! from whatever JSON it answered) and the dead letters. Missing values show as "–".

use contracts::{DeadLetter, OpsStats};
use serde_json::Value;

pub const MISSING: &str = "–";
/// At most this many autoscaler decisions are shown.
pub const MAX_DECISIONS: usize = 20;

/// One figure of the first reading; `key` names it for the live script.
pub struct Tile {
    pub key: &'static str,
    pub label: &'static str,
    pub value: String,
}

pub struct DecisionRow {
    pub time: String,
    pub action: String,
    pub ready: String,
    pub unacked: String,
    pub current: String,
    pub desired: String,
    pub reason: String,
}

pub struct DeadLetterRow {
    pub message_id: String,
    pub kind: String,
    pub order_id: String,
    pub reason: String,
    pub queue: String,
    pub at: String,
    pub body: String,
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string())
        .unwrap_or_else(|| MISSING.to_owned())
}

/// A JSON value as short text: strings bare, scalars as JSON, anything else compact and cut.
pub fn show(v: Option<&Value>) -> String {
    let text = match v {
        None | Some(Value::Null) => return MISSING.to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    if text.chars().count() > 120 {
        let cut: String = text.chars().take(119).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// Cache hits over all lookups since logic started, as a percentage.
pub fn hit_ratio(hits: u64, misses: u64) -> String {
    let total = hits + misses;
    if total == 0 {
        return MISSING.to_owned();
    }
    format!("{:.1}%", hits as f64 * 100.0 / total as f64)
}

pub fn tiles(stats: &OpsStats) -> Vec<Tile> {
    let auto = stats.autoscaler.as_ref();
    let queue = stats.queue.as_ref();
    let tile = |key, label, value| Tile { key, label, value };
    vec![
        tile("ready", "Queue ready", opt(queue.map(|q| q.ready))),
        tile(
            "unacked",
            "In progress (unacked)",
            opt(queue.and_then(|q| q.unacked)),
        ),
        tile(
            "consumers",
            "Queue consumers",
            opt(queue.map(|q| q.consumers)),
        ),
        tile(
            "workers",
            "Workers",
            show(auto.and_then(|a| a.get("current"))),
        ),
        tile(
            "desired",
            "Desired workers",
            show(auto.and_then(|a| a.get("desired"))),
        ),
        tile("dlq", "Dead letters", opt(stats.dlq_depth)),
        tile(
            "pending",
            "Orders pending",
            stats.orders.pending.to_string(),
        ),
        tile(
            "reserved",
            "of them reserved",
            stats.orders.reserved.to_string(),
        ),
        tile("paid", "of them paid", stats.orders.paid.to_string()),
        tile(
            "fulfilled",
            "Orders fulfilled",
            stats.orders.fulfilled.to_string(),
        ),
        tile(
            "rejected",
            "Orders rejected",
            stats.orders.rejected.to_string(),
        ),
        tile(
            "hit-ratio",
            "Cache hit ratio",
            hit_ratio(stats.cache.hits, stats.cache.misses),
        ),
        tile("outbox", "Outbox backlog", stats.outbox_backlog.to_string()),
    ]
}

/// An RFC 3339 time as `HH:MM:SS` (UTC), anything else as it came.
fn short_time(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&chrono::Utc).format("%H:%M:%S").to_string())
            .unwrap_or_else(|_| show(v)),
        _ => show(v),
    }
}

/// Sort key of a decision's `time`: RFC 3339 strings and epoch numbers both order right.
fn time_key(d: &Value) -> Option<String> {
    match d.get("time")? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => n.as_f64().map(|f| format!("{f:020.3}")),
        _ => None,
    }
}

/// The autoscaler's recent decisions, newest first, whatever their shape.
pub fn decisions(autoscaler: Option<&Value>) -> Vec<DecisionRow> {
    // The brief's name first, then what the autoscaler's `/status` calls them.
    let Some(list) = ["decisions", "last_decisions", "recent_decisions"]
        .iter()
        .find_map(|key| autoscaler?.get(key)?.as_array())
    else {
        return Vec::new();
    };
    let mut list: Vec<&Value> = list.iter().collect();
    if list.iter().all(|d| time_key(d).is_some()) {
        list.sort_by_key(|d| std::cmp::Reverse(time_key(d)));
    } else {
        // No usable times: assume the usual append order, newest last.
        list.reverse();
    }
    list.into_iter()
        .take(MAX_DECISIONS)
        .map(|d| {
            let field = |name: &str| show(d.get(name));
            DecisionRow {
                time: short_time(d.get("time")),
                action: field("action"),
                ready: field("ready"),
                unacked: field("unacked"),
                current: field("current"),
                desired: field("desired"),
                reason: field("reason"),
            }
        })
        .collect()
}

pub fn dead_letter(d: &DeadLetter) -> DeadLetterRow {
    let body = if d.body.chars().count() > 300 {
        let cut: String = d.body.chars().take(299).collect();
        format!("{cut}…")
    } else {
        d.body.clone()
    };
    DeadLetterRow {
        message_id: opt(d.message_id.as_deref()),
        kind: opt(d.kind.as_deref()),
        order_id: opt(d.order_id),
        reason: opt(d.reason.as_deref()),
        queue: opt(d.queue.as_deref()),
        at: opt(d
            .dead_lettered_at
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC"))),
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decisions_are_read_tolerantly_newest_first() {
        assert!(decisions(None).is_empty());
        assert!(decisions(Some(&json!("nonsense"))).is_empty());
        assert!(decisions(Some(&json!({"decisions": {"a": 1}}))).is_empty());
        let auto = json!({"current": 2, "decisions": [
            {"time": "2025-01-01T00:00:01Z", "ready": 10, "current": 1, "desired": 2, "reason": "scale out"},
            {"time": "2025-01-01T00:00:05Z", "unacked": null, "extra": [1, 2]},
            "not an object",
        ]});
        // One entry has no time: append order, newest last.
        let rows = decisions(Some(&auto));
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].time, MISSING);
        assert_eq!(rows[2].reason, "scale out");
        let auto = json!({"decisions": [
            {"time": "2025-01-01T00:00:01Z", "reason": "old"},
            {"time": "2025-01-01T00:00:05Z", "reason": "new", "ready": 3},
        ]});
        let rows = decisions(Some(&auto));
        assert_eq!(rows[0].reason, "new");
        assert_eq!(rows[0].time, "00:00:05");
        assert_eq!(rows[0].ready, "3");
        assert_eq!(rows[0].unacked, MISSING);
        assert_eq!(rows[1].reason, "old");
    }

    #[test]
    fn the_autoscalers_own_field_name_is_read() {
        let auto = json!({"current": 1, "last_decisions": [{"action": "scale_out", "desired": 3}]});
        let rows = decisions(Some(&auto));
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].action.as_str(), rows[0].desired.as_str()),
            ("scale_out", "3")
        );
    }

    #[test]
    fn values_show_short() {
        assert_eq!(show(Some(&json!(null))), MISSING);
        assert_eq!(show(Some(&json!("x"))), "x");
        assert_eq!(show(Some(&json!(2.5))), "2.5");
        assert_eq!(show(Some(&json!("y".repeat(500)))).chars().count(), 120);
        assert_eq!(hit_ratio(0, 0), MISSING);
        assert_eq!(hit_ratio(3, 1), "75.0%");
    }
}

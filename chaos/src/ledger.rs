//! The ledger checker: after a run, every order the clients sent is classified from
//! Postgres (the order, its idempotency key, the settlement events its fulfilment wrote to
//! the outbox, the stock of its products):
//!
//! - fulfilled once: status `fulfilled`, exactly one settlement event;
//! - rejected with a reason: status `rejected`, a reason, exactly one settlement event;
//! - lost: accepted (its key is in Postgres, or the client got 202) but not final;
//! - duplicated: more than one settlement event for the order (fulfilled or charged twice),
//!   a 202 naming another order than the key holds, an order that no client key names, or
//!   a wrong charge in the payment gateway's ledger (`payment_charges`): a fulfilled order
//!   must be charged exactly once and not refunded, a rejected one not charged (declined)
//!   or refunded; the gateway is idempotent per order, so calls beyond the first are fine;
//! - oversold: per product, stock below zero or not equal to initial minus the quantities of
//!   fulfilled orders (counted in units);
//! - unanswered: no answer but 5xx or none at all; each must be found by its key and final,
//!   or be provably absent (its key is not in Postgres: nothing was created).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::load::Record;
use crate::stack::HOT;

/// The fault's span, from the start of the run; 503 answers are allowed inside it (plus a
/// grace for the dependency to be seen back).
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub start: Duration,
    pub end: Duration,
    /// Wall-clock time of `end`, to compare with Postgres timestamps.
    pub end_wall: DateTime<Utc>,
}

/// Grace after a fault's end during which a 503 is still expected (pools reconnect, the
/// health of a dependency is re-learned).
pub const GRACE_503: Duration = Duration::from_secs(10);

#[derive(Debug, Default, Clone)]
pub struct Ledger {
    pub sent: usize,
    pub accepted: usize,
    pub fulfilled: usize,
    pub rejected: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub oversold: i64,
    /// Answers 5xx, all of them, and those that are failures: 500 (any 5xx but 503), and 503
    /// outside the fault's window or without Retry-After.
    pub http_5xx: usize,
    pub http_5xx_failures: usize,
    /// Refused with a 4xx (none expected: every order sent is valid).
    pub refused: usize,
    pub unanswered: usize,
    pub unanswered_final: usize,
    pub unanswered_absent: usize,
    /// Fault end to the first 202 and the first order settled after it, whichever is later.
    pub recover: Option<Duration>,
    /// Load end to no order pending and no outbox row unpublished.
    pub settle: Duration,
    /// What went wrong, in words (a few examples of each kind).
    pub problems: Vec<String>,
    /// One line per order, for the CSV.
    pub rows: Vec<String>,
}

impl Ledger {
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.oversold == 0
            && self.http_5xx_failures == 0
            && self.refused == 0
            && self.problems.is_empty()
    }
}

/// Waits until no order is pending and the outbox is published, up to `limit`; returns how
/// long it took (or `limit`).
pub async fn settle(pool: &PgPool, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let open: Result<i64, _> = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM orders WHERE status = 'pending') \
                  + (SELECT count(*) FROM outbox WHERE published_at IS NULL)",
        )
        .fetch_one(pool)
        .await;
        if matches!(open, Ok(0)) || start.elapsed() >= limit {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn note(
    problems: &mut Vec<String>,
    counts: &mut HashMap<&'static str, usize>,
    kind: &'static str,
    text: String,
) {
    let n = counts.entry(kind).or_default();
    *n += 1;
    if *n <= 3 {
        problems.push(text);
    }
}

/// Classifies every record. `initial` is each product's stock before the run.
pub async fn check(
    pool: &PgPool,
    records: &[Record],
    initial: &HashMap<String, i32>,
    window: Window,
    settle: Duration,
) -> anyhow::Result<Ledger> {
    let keyed: Vec<(String, Uuid, String, Option<String>)> = sqlx::query_as(
        "SELECT k.key, k.order_id, o.status, o.reason \
         FROM idempotency_keys k JOIN orders o ON o.id = k.order_id",
    )
    .fetch_all(pool)
    .await?;
    let keyed: HashMap<String, (Uuid, String, Option<String>)> = keyed
        .into_iter()
        .map(|(k, id, s, r)| (k, (id, s, r)))
        .collect();
    let settlements: Vec<(Option<Uuid>, i64)> = sqlx::query_as(
        "SELECT (body->'payload'->>'order_id')::uuid, count(*) FROM outbox \
         WHERE kind IN ('OrderFulfilled', 'OrderRejected') GROUP BY 1",
    )
    .fetch_all(pool)
    .await?;
    let settlements: HashMap<Uuid, i64> = settlements
        .into_iter()
        .filter_map(|(id, n)| Some((id?, n)))
        .collect();
    let charges: Vec<(Uuid, String, bool)> =
        sqlx::query_as("SELECT order_id, outcome, refunded_at IS NOT NULL FROM payment_charges")
            .fetch_all(pool)
            .await?;
    let charges: HashMap<Uuid, (String, bool)> = charges
        .into_iter()
        .map(|(id, outcome, refunded)| (id, (outcome, refunded)))
        .collect();
    let keyless: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM orders o \
         WHERE NOT EXISTS (SELECT FROM idempotency_keys k WHERE k.order_id = o.id)",
    )
    .fetch_one(pool)
    .await?;

    let mut l = Ledger {
        sent: records.len(),
        settle,
        ..Ledger::default()
    };
    let mut counts = HashMap::new();
    let mut p = Vec::new();
    if keyless > 0 {
        l.duplicated += keyless as usize;
        p.push(format!(
            "{keyless} orders in Postgres that no client key names"
        ));
    }
    let grace_end = window.end + GRACE_503;
    let mut first_202_after: Option<Duration> = None;
    for r in records {
        for a in &r.attempts {
            match a.status {
                Some(503) => {
                    l.http_5xx += 1;
                    let inside = a.at >= window.start && a.at <= grace_end;
                    if !inside || !a.retry_after {
                        l.http_5xx_failures += 1;
                        note(
                            &mut p,
                            &mut counts,
                            "503",
                            format!(
                                "503 at {:.1} s (fault {:.1}..{:.1} s), Retry-After {}",
                                a.at.as_secs_f64(),
                                window.start.as_secs_f64(),
                                window.end.as_secs_f64(),
                                a.retry_after
                            ),
                        );
                    }
                }
                Some(s) if s >= 500 => {
                    l.http_5xx += 1;
                    l.http_5xx_failures += 1;
                    note(
                        &mut p,
                        &mut counts,
                        "500",
                        format!("{s} at {:.1} s for key {}", a.at.as_secs_f64(), r.key),
                    );
                }
                Some(202) if a.at >= window.end => {
                    first_202_after = Some(first_202_after.map_or(a.at, |f| f.min(a.at)));
                }
                _ => {}
            }
        }
        let answer = r.answer();
        let held = keyed.get(&r.key);
        if answer.is_none() {
            l.unanswered += 1;
            match held {
                None => l.unanswered_absent += 1,
                Some((_, status, _)) if status != "pending" => l.unanswered_final += 1,
                Some(_) => {}
            }
        }
        if let Some(s) = answer
            && s != 202
        {
            l.refused += 1;
            note(
                &mut p,
                &mut counts,
                "refused",
                format!("key {} refused with {s}", r.key),
            );
        }
        let mut row = |class: &str, id: Option<Uuid>, status: &str| {
            l.rows.push(format!(
                "{},{},{},{},{},{}",
                r.key,
                id.map(|i| i.to_string()).unwrap_or_default(),
                answer
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "none".to_owned()),
                r.attempts.len(),
                status,
                class
            ));
        };
        let Some((id, status, reason)) = held else {
            if answer == Some(202) {
                l.lost += 1;
                note(
                    &mut p,
                    &mut counts,
                    "lost",
                    format!("key {} answered 202 but no order holds it", r.key),
                );
                row("lost", r.order_id, "absent");
            } else {
                row("absent", None, "absent");
            }
            continue;
        };
        l.accepted += 1;
        if let Some(seen) = r.order_id
            && seen != *id
        {
            l.duplicated += 1;
            note(
                &mut p,
                &mut counts,
                "dup",
                format!("key {} answered order {seen} but holds {id}", r.key),
            );
        }
        let events = settlements.get(id).copied().unwrap_or(0);
        if events > 1 {
            l.duplicated += 1;
            note(
                &mut p,
                &mut counts,
                "dup",
                format!("order {id} settled {events} times"),
            );
        }
        let class = match status.as_str() {
            "fulfilled" => {
                l.fulfilled += 1;
                "fulfilled"
            }
            "rejected" => {
                l.rejected += 1;
                let hot = r.lines.iter().any(|(sku, _)| sku == HOT);
                if reason.as_deref() != Some("out_of_stock") || !hot {
                    note(
                        &mut p,
                        &mut counts,
                        "reject",
                        format!(
                            "order {id} rejected ({reason:?}) though its products were in stock"
                        ),
                    );
                }
                "rejected"
            }
            _ => {
                l.lost += 1;
                note(
                    &mut p,
                    &mut counts,
                    "lost",
                    format!("order {id} still {status}"),
                );
                "lost"
            }
        };
        let charge = charges
            .get(id)
            .map(|(outcome, refunded)| (outcome.as_str(), *refunded));
        if let Some(wrong) = wrong_charge(status, charge) {
            l.duplicated += 1;
            note(
                &mut p,
                &mut counts,
                "charge",
                format!("order {id} is {status} but {wrong}"),
            );
        }
        if class != "lost" && events == 0 {
            note(
                &mut p,
                &mut counts,
                "event",
                format!("order {id} is {status} without a settlement event"),
            );
        }
        row(class, Some(*id), status);
    }
    for (kind, n) in counts {
        if n > 3 {
            p.push(format!("... {} more of kind {kind}", n - 3));
        }
    }

    let taken: Vec<(String, i64)> = sqlx::query_as(
        "SELECT l.sku, sum(l.quantity)::bigint FROM order_lines l \
         JOIN orders o ON o.id = l.order_id WHERE o.status = 'fulfilled' GROUP BY l.sku",
    )
    .fetch_all(pool)
    .await?;
    let taken: HashMap<String, i64> = taken.into_iter().collect();
    let stock: Vec<(String, i32)> = sqlx::query_as("SELECT sku, stock FROM products")
        .fetch_all(pool)
        .await?;
    for (sku, now) in stock {
        let Some(start) = initial.get(&sku) else {
            continue;
        };
        let expected = i64::from(*start) - taken.get(&sku).copied().unwrap_or(0);
        let off = (i64::from(now) - expected).abs() + i64::from(now.min(0)).abs();
        if off > 0 {
            l.oversold += off;
            p.push(format!(
                "{sku}: stock {now}, expected {expected} (initial {start} minus fulfilled)"
            ));
        }
    }

    let first_settled: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT min(updated_at) FROM orders WHERE status <> 'pending' AND updated_at >= $1",
    )
    .bind(window.end_wall)
    .fetch_one(pool)
    .await?;
    let processing = first_settled.and_then(|t| (t - window.end_wall).to_std().ok());
    let api = first_202_after.map(|t| t.saturating_sub(window.end));
    l.recover = match (api, processing) {
        (Some(a), Some(b)) => Some(a.max(b)),
        _ => None,
    };
    l.problems = p;
    Ok(l)
}

/// What is wrong with an order's charge (outcome, refunded) for its final status, if
/// anything. A pending order may be anywhere in its saga: not judged here.
pub fn wrong_charge(status: &str, charge: Option<(&str, bool)>) -> Option<&'static str> {
    match (status, charge) {
        ("fulfilled", Some(("approved", false))) => None,
        ("fulfilled", None | Some(("declined", _))) => Some("was never charged"),
        ("fulfilled", Some(_)) => Some("its charge was refunded"),
        ("rejected", Some(("approved", false))) => Some("was charged and not refunded"),
        _ => None,
    }
}

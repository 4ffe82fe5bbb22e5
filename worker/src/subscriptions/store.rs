//! What the delivery reads from and writes to the `subscriptions` table: the live
//! subscriptions, the claim of a confirmation request, and the counters.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use contracts::{Protocol, SubscriptionStatus, Topic};
use sqlx::PgPool;
use uuid::Uuid;

/// A subscription as its consumer needs it. The secret is never logged: no `Debug`.
#[derive(Clone, PartialEq)]
pub struct Subscription {
    pub id: Uuid,
    pub topic: Topic,
    pub protocol: Protocol,
    pub endpoint: String,
    pub filter_policy: Option<serde_json::Value>,
    pub raw_delivery: bool,
    pub status: SubscriptionStatus,
    pub secret: Arc<str>,
    pub confirm_token: String,
    pub confirmed_at: Option<DateTime<Utc>>,
}

type Row = (
    Uuid,
    String,
    String,
    String,
    Option<serde_json::Value>,
    bool,
    String,
    String,
    String,
    Option<DateTime<Utc>>,
);

const COLUMNS: &str = "id, topic, protocol, endpoint, filter_policy, raw_delivery, status, \
                       secret, confirm_token, confirmed_at";

fn decode(row: Row) -> Option<Subscription> {
    let (id, topic, protocol, endpoint, filter_policy, raw_delivery, status, secret, token, at) =
        row;
    Some(Subscription {
        id,
        topic: Topic::parse(&topic)?,
        protocol: Protocol::parse(&protocol)?,
        endpoint,
        filter_policy,
        raw_delivery,
        status: SubscriptionStatus::parse(&status)?,
        secret: Arc::from(secret),
        confirm_token: token,
        confirmed_at: at,
    })
}

/// Every subscription not deleted.
pub async fn live(pool: &PgPool) -> sqlx::Result<Vec<Subscription>> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM subscriptions WHERE status <> 'deleted'"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().filter_map(decode).collect())
}

/// Claims the pending subscriptions whose confirmation request is due (never sent, or
/// sent longer than `resend_after_secs` ago): the one worker whose update wins sends it.
pub async fn claim_confirmations(
    pool: &PgPool,
    resend_after_secs: f64,
) -> sqlx::Result<Vec<Subscription>> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "UPDATE subscriptions SET confirmation_sent_at = now() \
         WHERE status = 'pending_confirmation' \
           AND protocol IN ('http', 'https', 'email') \
           AND (confirmation_sent_at IS NULL \
                OR confirmation_sent_at < now() - make_interval(secs => $1)) \
         RETURNING {COLUMNS}"
    ))
    .bind(resend_after_secs)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().filter_map(decode).collect())
}

/// Records why a confirmation request failed (it is sent again after the resend delay).
pub async fn confirmation_failed(pool: &PgPool, id: Uuid, error: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE subscriptions SET last_error = $2 WHERE id = $1")
        .bind(id)
        .bind(format!("confirmation request: {error}"))
        .execute(pool)
        .await
        .map(drop)
}

/// Counts added to the subscriptions' counters in one statement, one element per
/// subscription.
#[derive(Debug, Default)]
pub struct CounterBatch {
    pub ids: Vec<Uuid>,
    pub delivered: Vec<i64>,
    pub retried: Vec<i64>,
    pub failed: Vec<i64>,
    pub dead_lettered: Vec<i64>,
    pub filtered: Vec<i64>,
    pub last_error: Vec<Option<String>>,
    pub last_delivery_at: Vec<Option<DateTime<Utc>>>,
}

pub async fn add_counts(pool: &PgPool, batch: &CounterBatch) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE subscriptions s SET \
           delivered = s.delivered + c.delivered, \
           retried = s.retried + c.retried, \
           failed = s.failed + c.failed, \
           dead_lettered = s.dead_lettered + c.dead_lettered, \
           filtered = s.filtered + c.filtered, \
           last_error = COALESCE(c.last_error, s.last_error), \
           last_delivery_at = GREATEST(s.last_delivery_at, c.last_delivery_at) \
         FROM unnest($1::uuid[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::int8[], \
                     $7::text[], $8::timestamptz[]) \
              AS c(id, delivered, retried, failed, dead_lettered, filtered, last_error, \
                   last_delivery_at) \
         WHERE s.id = c.id",
    )
    .bind(&batch.ids)
    .bind(&batch.delivered)
    .bind(&batch.retried)
    .bind(&batch.failed)
    .bind(&batch.dead_lettered)
    .bind(&batch.filtered)
    .bind(&batch.last_error)
    .bind(&batch.last_delivery_at)
    .execute(pool)
    .await
    .map(drop)
}

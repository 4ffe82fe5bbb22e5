//! Subscriptions in Postgres (SNS's role): creating one (with its audit entry), reading
//! them with their delivery counters, deleting and confirming one. The counters are
//! written by the delivering workers (`worker::subscriptions`), never here.

use chrono::{DateTime, Utc};
use contracts::{AuditAction, Protocol, Subscription, SubscriptionStatus, Topic};
use sqlx::{PgConnection, PgPool};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::store::audit::{self, Caller, Record};

/// A subscription to insert; the API has validated every field.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    pub id: Uuid,
    pub topic: Topic,
    pub protocol: Protocol,
    pub endpoint: String,
    pub filter_policy: Option<serde_json::Value>,
    pub raw_delivery: bool,
    pub secret: String,
    pub confirm_token: String,
    pub owner: String,
}

/// A row as stored, secrets included (the API shows the secret once, at creation).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SubscriptionRow {
    pub id: Uuid,
    pub topic: String,
    pub protocol: String,
    pub endpoint: String,
    pub filter_policy: Option<serde_json::Value>,
    pub raw_delivery: bool,
    pub status: String,
    pub secret: String,
    pub confirm_token: String,
    pub owner: String,
    pub created_at: DateTime<Utc>,
    pub confirmation_sent_at: Option<DateTime<Utc>>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub delivered: i64,
    pub retried: i64,
    pub failed: i64,
    pub dead_lettered: i64,
    pub filtered: i64,
    pub last_error: Option<String>,
    pub last_delivery_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, topic, protocol, endpoint, filter_policy, raw_delivery, status, \
    secret, confirm_token, owner, created_at, confirmation_sent_at, confirmed_at, deleted_at, \
    delivered, retried, failed, dead_lettered, filtered, last_error, last_delivery_at";

impl SubscriptionRow {
    pub fn topic(&self) -> Option<Topic> {
        Topic::parse(&self.topic)
    }

    pub fn protocol(&self) -> Option<Protocol> {
        Protocol::parse(&self.protocol)
    }

    pub fn status(&self) -> Option<SubscriptionStatus> {
        SubscriptionStatus::parse(&self.status)
    }

    /// The API's view: no secret, no token; `dlq_depth` as read from the broker.
    pub fn view(&self, dlq_depth: Option<u64>) -> sqlx::Result<Subscription> {
        let bad = |what: &str, v: &str| sqlx::Error::Decode(format!("unknown {what} {v}").into());
        Ok(Subscription {
            id: self.id,
            topic: self.topic().ok_or_else(|| bad("topic", &self.topic))?,
            protocol: self
                .protocol()
                .ok_or_else(|| bad("protocol", &self.protocol))?,
            endpoint: self.endpoint.clone(),
            filter_policy: self.filter_policy.clone(),
            raw_delivery: self.raw_delivery,
            status: self.status().ok_or_else(|| bad("status", &self.status))?,
            secret: None,
            owner: self.owner.clone(),
            created_at: self.created_at,
            confirmed_at: self.confirmed_at,
            deleted_at: self.deleted_at,
            delivered: self.delivered,
            retried: self.retried,
            failed: self.failed,
            dead_lettered: self.dead_lettered,
            filtered: self.filtered,
            last_error: self.last_error.clone(),
            last_delivery_at: self.last_delivery_at,
            dlq_depth,
        })
    }
}

/// Inserts a subscription and its audit entry in the caller's transaction (which also
/// declares the queues before it commits). Queue and function subscriptions are
/// confirmed at once: the endpoint is Strata's own.
pub async fn insert(
    conn: &mut PgConnection,
    new: &NewSubscription,
    caller: &Caller,
) -> sqlx::Result<SubscriptionRow> {
    let status = if new.protocol.needs_confirmation() {
        SubscriptionStatus::PendingConfirmation
    } else {
        SubscriptionStatus::Confirmed
    };
    let row: SubscriptionRow = sqlx::query_as(&format!(
        "INSERT INTO subscriptions (id, topic, protocol, endpoint, filter_policy, raw_delivery, \
           status, secret, confirm_token, owner, confirmed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
           CASE WHEN $7 = 'confirmed' THEN now() END) \
         RETURNING {COLUMNS}"
    ))
    .bind(new.id)
    .bind(new.topic.as_str())
    .bind(new.protocol.as_str())
    .bind(&new.endpoint)
    .bind(&new.filter_policy)
    .bind(new.raw_delivery)
    .bind(status.as_str())
    .bind(&new.secret)
    .bind(&new.confirm_token)
    .bind(&new.owner)
    .fetch_one(&mut *conn)
    .await?;
    let entry = Record::success(
        caller,
        AuditAction::SubscriptionCreate,
        Some(format!("subscription:{}", new.id)),
        serde_json::json!({
            "topic": new.topic.as_str(),
            "protocol": new.protocol.as_str(),
            "filter_policy": new.filter_policy.is_some(),
        }),
    );
    audit::record(conn, &entry).await?;
    Ok(row)
}

/// One subscription, deleted ones included.
pub async fn get(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<SubscriptionRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM subscriptions WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// The subscriptions not deleted, oldest first; only `owner`'s when given.
pub async fn list(pool: &PgPool, owner: Option<&str>) -> sqlx::Result<Vec<SubscriptionRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM subscriptions \
         WHERE status <> 'deleted' AND ($1::text IS NULL OR owner = $1) \
         ORDER BY created_at, id"
    ))
    .bind(owner)
    .fetch_all(pool)
    .await
}

/// Marks a subscription deleted, with its audit entry, in the caller's transaction (which
/// deletes the queues before it commits). `None` when there is none, or it was deleted.
pub async fn mark_deleted(
    conn: &mut PgConnection,
    id: Uuid,
    caller: &Caller,
) -> sqlx::Result<Option<SubscriptionRow>> {
    let row: Option<SubscriptionRow> = sqlx::query_as(&format!(
        "UPDATE subscriptions SET status = 'deleted', deleted_at = now() \
         WHERE id = $1 AND status <> 'deleted' RETURNING {COLUMNS}"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    if row.is_some() {
        let entry = Record::success(
            caller,
            AuditAction::SubscriptionDelete,
            Some(format!("subscription:{id}")),
            serde_json::json!({}),
        );
        audit::record(conn, &entry).await?;
    }
    Ok(row)
}

/// What a confirmation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// Confirmed now, or earlier (a second fetch of the URL changes nothing).
    Confirmed(DateTime<Utc>),
    /// No such subscription, or deleted.
    NotFound,
    /// The token does not match.
    WrongToken,
}

/// Confirms a pending subscription when `token` is its confirmation token (compared in
/// constant time), recording the confirmation.
pub async fn confirm(
    pool: &PgPool,
    id: Uuid,
    token: &str,
    caller: &Caller,
) -> sqlx::Result<Confirmation> {
    let mut tx = pool.begin().await?;
    let found: Option<(String, String, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT status, confirm_token, confirmed_at FROM subscriptions WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((status, expected, confirmed_at)) = found else {
        return Ok(Confirmation::NotFound);
    };
    if status == SubscriptionStatus::Deleted.as_str() {
        return Ok(Confirmation::NotFound);
    }
    if !bool::from(expected.as_bytes().ct_eq(token.as_bytes())) {
        return Ok(Confirmation::WrongToken);
    }
    if let Some(at) = confirmed_at {
        return Ok(Confirmation::Confirmed(at));
    }
    let at: DateTime<Utc> = sqlx::query_scalar(
        "UPDATE subscriptions SET status = 'confirmed', confirmed_at = now() \
         WHERE id = $1 RETURNING confirmed_at",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    let entry = Record::success(
        caller,
        AuditAction::SubscriptionConfirm,
        Some(format!("subscription:{id}")),
        serde_json::json!({}),
    );
    audit::record(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(Confirmation::Confirmed(at))
}

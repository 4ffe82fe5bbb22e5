//! The transactional outbox: messages are written in the same transaction as the change
//! they announce, and published later by the relay.
//!
//! A relay is woken right after a commit by [`announce`]. The wake-up is sent after the
//! commit, never inside the transaction: Postgres serialises the commits of transactions
//! that call `pg_notify` (a global lock is held from their pre-commit through their WAL
//! flush), which made every order and fulfilment wait for all the others to commit.

use std::sync::{Arc, Mutex, PoisonError};

use contracts::{Envelope, MessageKind};
use sqlx::PgConnection;
use tokio::sync::Notify;

/// The Postgres channel relays LISTEN on.
pub const CHANNEL: &str = "strata_outbox";

/// A message as the outbox stores it.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    pub message_id: uuid::Uuid,
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub kind: &'a str,
    pub body: serde_json::Value,
    pub traceparent: Option<&'a str>,
}

impl<'a> Message<'a> {
    pub fn new<T: MessageKind>(
        exchange: &'a str,
        routing_key: &'a str,
        envelope: &'a Envelope<T>,
    ) -> sqlx::Result<Self> {
        let body = serde_json::to_value(envelope).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        Ok(Message {
            message_id: envelope.message_id,
            exchange,
            routing_key,
            kind: &envelope.kind,
            body,
            traceparent: envelope.traceparent.as_deref(),
        })
    }
}

/// Binds a [`Message`]'s six columns, in the order of the outbox's insert (`message_id,
/// exchange, routing_key, kind, body, traceparent`), to the next parameters of a query.
macro_rules! bind_message {
    ($query:expr, $message:expr) => {
        $query
            .bind($message.message_id)
            .bind($message.exchange)
            .bind($message.routing_key)
            .bind($message.kind)
            .bind(&$message.body)
            .bind($message.traceparent)
    };
}
pub(crate) use bind_message;

/// Writes a message to the outbox inside the caller's transaction. Call [`announce`] once
/// the transaction has committed.
pub async fn enqueue<T: MessageKind>(
    conn: &mut PgConnection,
    exchange: &str,
    routing_key: &str,
    envelope: &Envelope<T>,
) -> sqlx::Result<()> {
    let message = Message::new(exchange, routing_key, envelope)?;
    bind_message!(
        sqlx::query(
            "INSERT INTO outbox (message_id, exchange, routing_key, kind, body, traceparent) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        ),
        message
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The relays running in this process, each woken through its own [`Notify`].
static LOCAL_RELAYS: Mutex<Vec<Arc<Notify>>> = Mutex::new(Vec::new());

/// A relay's registration for in-process wake-ups; unregisters on drop.
pub(crate) struct LocalRelay(Arc<Notify>);

impl LocalRelay {
    pub(crate) fn register() -> Self {
        let notify = Arc::new(Notify::new());
        LOCAL_RELAYS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&notify));
        LocalRelay(notify)
    }

    /// The wake-up itself, for a task that forwards other processes' notifications.
    pub(crate) fn waker(&self) -> Arc<Notify> {
        Arc::clone(&self.0)
    }

    /// Resolves at the next [`announce`] in this process (at once if one came since the
    /// last wait).
    pub(crate) async fn woken(&self) {
        self.0.notified().await;
    }
}

impl Drop for LocalRelay {
    fn drop(&mut self) {
        LOCAL_RELAYS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|n| !Arc::ptr_eq(n, &self.0));
    }
}

/// Wakes the relays after a commit that wrote outbox rows. A relay in this process is woken
/// in memory, at no cost to the database: it publishes rows of any process, so nothing
/// more is needed. A process without a relay (the worker) sends `pg_notify` on `conn`, in
/// a transaction of its own, to the relays that LISTEN elsewhere. Either way the relays'
/// poll (500 ms by default) still catches a lost wake-up, which is why a failure here is
/// only logged: the change it announces has committed.
pub async fn announce(conn: &mut PgConnection) {
    let woke_local = {
        let relays = LOCAL_RELAYS.lock().unwrap_or_else(PoisonError::into_inner);
        relays.iter().for_each(|n| n.notify_one());
        !relays.is_empty()
    };
    if !woke_local
        && let Err(err) = sqlx::query("SELECT pg_notify($1, '')")
            .bind(CHANNEL)
            .execute(&mut *conn)
            .await
    {
        tracing::warn!(error = %err, "could not wake the outbox relays; their poll will");
    }
}

/// Messages not yet confirmed by the broker.
pub async fn backlog(pool: &sqlx::PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(pool)
        .await
}

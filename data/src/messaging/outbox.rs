//! The transactional outbox: messages are written in the same transaction as the change
//! they announce, and published later by a relay (logic runs it, in `logic::relay`).
//!
//! A relay is woken right after a commit by [`announce`]. The wake-up is sent after the
//! commit, never inside the transaction: Postgres serialises the commits of transactions
//! that call `pg_notify` (a global lock is held from their pre-commit through their WAL
//! flush), which made every order and fulfilment wait for all the others to commit.

use std::sync::{Arc, Mutex, PoisonError};

use contracts::{Envelope, MessageKind};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

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
/// exchange, routing_key, kind, body, traceparent`), to the next parameters of a query: a
/// macro, not a method, because it serves `query` and `query_as` alike.
#[macro_export]
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
pub use bind_message;

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

/// Writes several messages to the outbox in ONE statement inside the caller's
/// transaction, in the order given. Call [`announce`] once the transaction has committed.
pub async fn enqueue_many(conn: &mut PgConnection, messages: &[Message<'_>]) -> sqlx::Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let ids: Vec<uuid::Uuid> = messages.iter().map(|m| m.message_id).collect();
    let exchanges: Vec<&str> = messages.iter().map(|m| m.exchange).collect();
    let keys: Vec<&str> = messages.iter().map(|m| m.routing_key).collect();
    let kinds: Vec<&str> = messages.iter().map(|m| m.kind).collect();
    let bodies: Vec<serde_json::Value> = messages.iter().map(|m| m.body.clone()).collect();
    let traceparents: Vec<Option<&str>> = messages.iter().map(|m| m.traceparent).collect();
    sqlx::query(
        "INSERT INTO outbox (message_id, exchange, routing_key, kind, body, traceparent) \
         SELECT a, b, c, d, e, f FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[], \
                              $6::text[]) WITH ORDINALITY AS m (a, b, c, d, e, f, n) \
         ORDER BY n",
    )
    .bind(&ids)
    .bind(&exchanges)
    .bind(&keys)
    .bind(&kinds)
    .bind(&bodies)
    .bind(&traceparents)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The database a pool works in: in-process wake-ups go only to relays (and notifiers)
/// of the same database, so that tests running side by side in one process, each in a
/// database of its own, do not wake each other.
/// Compared with a pool's options field by field ([`Database::is`]), so that announcing
/// allocates nothing.
struct Database {
    host: String,
    port: u16,
    name: Option<String>,
}

impl Database {
    fn of(pool: &PgPool) -> Self {
        let options = pool.connect_options();
        Database {
            host: options.get_host().to_owned(),
            port: options.get_port(),
            name: options.get_database().map(str::to_owned),
        }
    }

    fn is(&self, options: &PgConnectOptions) -> bool {
        self.port == options.get_port()
            && self.host == options.get_host()
            && self.name.as_deref() == options.get_database()
    }
}

/// What [`announce`] wakes in this process: relays, and the notifier of a process without
/// one, each through its own [`Notify`].
static WAKE_UPS: Mutex<Vec<(Database, Arc<Notify>)>> = Mutex::new(Vec::new());

/// A registration for in-process wake-ups after commits in one database, held by a relay
/// or by a [`notifier`]; unregisters on drop.
pub struct LocalWakeUp(Arc<Notify>);

impl LocalWakeUp {
    pub fn register(pool: &PgPool) -> Self {
        let notify = Arc::new(Notify::new());
        WAKE_UPS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((Database::of(pool), Arc::clone(&notify)));
        LocalWakeUp(notify)
    }

    /// The wake-up itself, for a task that forwards other processes' notifications.
    pub fn waker(&self) -> Arc<Notify> {
        Arc::clone(&self.0)
    }

    /// Resolves at the next [`announce`] in this process (at once if one came since the
    /// last wait).
    pub async fn woken(&self) {
        self.0.notified().await;
    }
}

impl Drop for LocalWakeUp {
    fn drop(&mut self) {
        WAKE_UPS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(_, n)| !Arc::ptr_eq(n, &self.0));
    }
}

/// Wakes the relays after a commit that wrote outbox rows through `pool` (`conn` is the
/// connection of that commit). A relay in this process is woken in memory, at no cost to
/// the database: it publishes rows of any process, so nothing more is needed. A process
/// without a relay runs a [`notifier`], which sends one `pg_notify` for all the commits
/// announced while it sent the previous one. With neither, `pg_notify` goes out on `conn`,
/// in a transaction of its own. Either way the relays' poll (500 ms by default) still
/// catches a lost wake-up, which is why a failure here is only logged: the change it
/// announces has committed.
pub async fn announce(pool: &PgPool, conn: &mut PgConnection) {
    let woke_local = {
        let wake_ups = WAKE_UPS.lock().unwrap_or_else(PoisonError::into_inner);
        let options = pool.connect_options();
        let mut woke = false;
        for (_, notify) in wake_ups.iter().filter(|(db, _)| db.is(&options)) {
            notify.notify_one();
            woke = true;
        }
        woke
    };
    if !woke_local && let Err(err) = notify_relays(conn).await {
        tracing::warn!(error = %err, "could not wake the outbox relays; their poll will");
    }
}

async fn notify_relays(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(CHANNEL)
        .execute(conn)
        .await
        .map(|_| ())
}

/// Sends the wake-ups of a process that writes outbox rows but runs no relay (a worker
/// with `OUTBOX_RELAY=false`), until `cancel` fires: [`announce`] only wakes this task, which sends
/// `pg_notify` on a connection of its own. Commits announced while a notification is
/// under way share the next one, so under load the database sees a few notifications
/// where it would see one per commit, and the committing task does not wait for any.
///
/// Every commit is covered: the task sends its next notification after the wake-up of a
/// commit, so after that commit.
pub async fn notifier(pool: PgPool, cancel: CancellationToken) {
    let wake_up = LocalWakeUp::register(&pool);
    let options = pool.connect_options();
    let mut conn: Option<PgConnection> = None;
    loop {
        // A wake-up that came before the stop is still sent.
        tokio::select! {
            biased;
            _ = wake_up.woken() => {}
            _ = cancel.cancelled() => break,
        }
        // A connection that broke while idle (a restarted Postgres) is replaced once at
        // once; after a second failure the next commit tries again, and the relays' poll
        // covers this one.
        let mut sent = Ok(());
        for _ in 0..2 {
            sent = match conn.as_mut() {
                Some(c) => notify_relays(c).await,
                None => match PgConnection::connect_with(&options).await {
                    Ok(c) => notify_relays(conn.insert(c)).await,
                    Err(err) => Err(err),
                },
            };
            if sent.is_ok() {
                break;
            }
            conn = None;
        }
        if let Err(err) = sent {
            tracing::warn!(error = %err, "could not wake the outbox relays; their poll will");
        }
    }
    if let Some(c) = conn {
        let _ = c.close().await;
    }
}

/// Messages not yet confirmed by the broker.
pub async fn backlog(pool: &sqlx::PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(pool)
        .await
}

//! Connection failures, told apart from statement failures, and the one retry on a fresh
//! connection that a dropped connection deserves.
//!
//! A request whose connection the server closed (a restart, a failover, an administrator
//! terminating backends) should not fail when a new connection would serve it. Repeating a
//! statement is safe when it certainly did not take effect:
//! - a read, always;
//! - a write whose failure came before COMMIT was sent: on acquiring the connection, on a
//!   statement inside an explicit transaction (a transaction cut off before COMMIT is
//!   rolled back), or a statement that commits by itself answered with the server's own
//!   "session ended" error (57P01/57P02/57P03: the backend ended before the statement
//!   committed — a commit is reported before the backend takes the next interrupt).
//!
//! A write that failed on COMMIT, or a self-committing statement whose connection broke
//! mid-answer, has an unknown outcome: it is not repeated; the caller answers 503 and the
//! client retries with its Idempotency-Key.

use std::future::Future;

use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgPool, Postgres};

/// SQLSTATEs that describe the connection, not the statement: every `08` connection
/// exception, the server shutting down or starting (57P01 admin_shutdown, 57P02
/// crash_shutdown, 57P03 cannot_connect_now) and 53300 too_many_connections.
pub fn is_connection_sqlstate(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

/// The database could not be used, as opposed to a statement it refused: a dependency
/// failure (503), not a bug (500).
pub fn is_connection_error(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| is_connection_sqlstate(&c)),
        _ => false,
    }
}

/// Postgres is out of reach (down, restarting, unreachable, refusing connections, or no
/// pooled connection came in time), not a statement that failed: a consumer waits it out
/// holding its message. A closed pool is the process shutting down, not an outage.
///
/// A protocol error counts: it is what the client reports when the server closes a
/// connection in the middle of its start-up (sqlx reads the closed socket's nothing as an
/// invalid answer to its SSL request), and it is never caused by a statement.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    is_connection_error(err) && !matches!(err, sqlx::Error::PoolClosed)
}

/// A connection failure after which another connection may well succeed: not a pool that
/// is exhausted (waiting again would double the wait) or closed.
pub fn fresh_connection_may_help(err: &sqlx::Error) -> bool {
    is_connection_error(err) && !matches!(err, sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed)
}

/// The server reported that it ended the session (57P01, 57P02, 57P03) in answer to the
/// statement: the statement did not commit.
pub fn session_ended_by_server(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| matches!(c.as_ref(), "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

/// A pooled connection that answers a ping. Connections that do not (the server closed
/// them while they sat idle) are closed and the next is tried, at most once per slot of
/// the pool and once more, which then is a new connection.
pub async fn live_connection(pool: &PgPool) -> sqlx::Result<PoolConnection<Postgres>> {
    let tries = pool.options().get_max_connections() + 1;
    let mut last = None;
    for _ in 0..tries {
        let mut conn = pool.acquire().await?;
        match conn.ping().await {
            Ok(()) => return Ok(conn),
            Err(err) => {
                conn.close_on_drop();
                last = Some(err);
            }
        }
    }
    Err(last.unwrap_or(sqlx::Error::PoolTimedOut))
}

/// Runs `attempt` on a pooled connection; when it fails with an error `retryable` accepts
/// (or acquiring the connection failed in a way a fresh one may cure), runs it once more
/// on a connection that answered a ping.
pub async fn once_more<T, E, F, Fut>(
    pool: &PgPool,
    what: &'static str,
    retryable: impl Fn(&E) -> bool,
    mut attempt: F,
) -> Result<T, E>
where
    E: From<sqlx::Error> + std::fmt::Display,
    F: FnMut(PoolConnection<Postgres>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let first = match pool.acquire().await {
        Ok(conn) => attempt(conn).await,
        Err(err) if fresh_connection_may_help(&err) => {
            tracing::warn!(what, error = %err, "no connection; trying a fresh one");
            let conn = live_connection(pool).await?;
            return attempt(conn).await;
        }
        Err(err) => return Err(err.into()),
    };
    match first {
        Err(err) if retryable(&err) => {
            tracing::warn!(what, error = %err, "the connection failed; once more on a fresh one");
            metrics::counter!("strata_db_retries_total", "what" => what).increment(1);
            let conn = live_connection(pool).await?;
            attempt(conn).await
        }
        other => other,
    }
}

/// A read: repeated once on a fresh connection after any connection failure but an
/// exhausted pool.
pub async fn read<T, F, Fut>(pool: &PgPool, what: &'static str, attempt: F) -> sqlx::Result<T>
where
    F: FnMut(PoolConnection<Postgres>) -> Fut,
    Fut: Future<Output = sqlx::Result<T>>,
{
    once_more(pool, what, fresh_connection_may_help, attempt).await
}

/// How one attempt at an explicit transaction failed.
#[derive(Debug, thiserror::Error)]
pub enum TxFailure {
    /// Before COMMIT was sent: nothing of the transaction was committed.
    #[error(transparent)]
    BeforeCommit(sqlx::Error),
    /// On COMMIT: the transaction may or may not have committed.
    #[error("COMMIT failed, outcome unknown: {0}")]
    OnCommit(sqlx::Error),
}

impl From<sqlx::Error> for TxFailure {
    fn from(err: sqlx::Error) -> Self {
        TxFailure::BeforeCommit(err)
    }
}

impl From<TxFailure> for sqlx::Error {
    fn from(failure: TxFailure) -> Self {
        match failure {
            TxFailure::BeforeCommit(err) | TxFailure::OnCommit(err) => err,
        }
    }
}

impl TxFailure {
    /// A connection failure before COMMIT: the transaction can run again on a fresh one.
    pub fn retryable(&self) -> bool {
        matches!(self, TxFailure::BeforeCommit(err) if fresh_connection_may_help(err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_states_are_the_connection_classes() {
        for code in [
            "08000", "08003", "08006", "08P01", "57P01", "57P02", "57P03", "53300",
        ] {
            assert!(is_connection_sqlstate(code), "{code}");
        }
        for code in ["23505", "40001", "57014", "53200", "42P01", "25P02"] {
            assert!(!is_connection_sqlstate(code), "{code}");
        }
        assert!(is_connection_error(&sqlx::Error::PoolTimedOut));
        assert!(!fresh_connection_may_help(&sqlx::Error::PoolTimedOut));
        assert!(!is_connection_error(&sqlx::Error::RowNotFound));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(is_unavailable(&sqlx::Error::Io(reset)));
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(!is_unavailable(&sqlx::Error::PoolClosed));
        // Missing database, serialization failure, deadlock, lock and statement timeouts:
        // the work's own failures.
        for code in ["3D000", "40001", "40P01", "55P03", "57014"] {
            assert!(!is_connection_sqlstate(code), "{code}");
        }
    }
}

//! Telling a database that is out of reach from a statement that failed: the first is
//! waited out (nothing is wrong with the work), the second is the work's own failure.

/// SQLSTATEs of a server that is going away, starting or full: the statement was not the
/// problem and the same statement succeeds once the server is back.
/// - class 08: connection exceptions;
/// - 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now;
/// - class 53 (insufficient resources), 53300 too_many_connections among them.
fn unavailable_state(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("53") || matches!(code, "57P01" | "57P02" | "57P03")
}

/// The error says Postgres is out of reach (down, restarting, unreachable, refusing
/// connections, or no pooled connection came in time), not that the statement failed.
///
/// A protocol error counts: it is what the client reports when the server closes a
/// connection in the middle of its start-up (sqlx reads the closed socket's nothing as
/// an invalid answer to its SSL request), and it is never caused by a statement.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| unavailable_state(&c)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outage_states() {
        for code in [
            "08006", "08001", "57P01", "57P02", "57P03", "53300", "53100",
        ] {
            assert!(unavailable_state(code), "{code}");
        }
        // Missing database, serialization failure, deadlock, lock and statement timeouts,
        // unique violation: the work's own failures.
        for code in ["3D000", "40001", "40P01", "55P03", "57014", "23505"] {
            assert!(!unavailable_state(code), "{code}");
        }
    }

    #[test]
    fn outage_errors() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(is_unavailable(&sqlx::Error::Io(reset)));
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(!is_unavailable(&sqlx::Error::RowNotFound));
        assert!(!is_unavailable(&sqlx::Error::PoolClosed));
    }
}

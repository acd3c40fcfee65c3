//! How PostgreSQL failures become [`StoreError`]s: the one place that
//! decides between unavailable (retry later, 503) and internal.

use deadpool_postgres::PoolError;
use std::time::Duration;
use tokio_postgres::error::SqlState;

use super::EMAIL_CONSTRAINT;
use crate::store::StoreError;

pub(super) fn is_email_taken(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        *db.code() == SqlState::UNIQUE_VIOLATION
            && db.constraint().is_none_or(|c| c == EMAIL_CONSTRAINT)
    })
}

/// Everything that can go wrong talking to PostgreSQL, before it becomes a
/// [`StoreError`].
pub(super) enum Failure {
    Db(tokio_postgres::Error),
    Pool(PoolError),
    Elapsed(Duration),
}

impl Failure {
    /// The one place that decides between `Unavailable` (the server is
    /// unreachable, gone, overloaded or no longer the primary: retrying
    /// later may work) and `Internal`. Messages never contain the
    /// connection password: tokio-postgres errors do not carry it, and only
    /// SQLSTATE and the server's primary message are kept (not its detail,
    /// which may quote row values).
    pub(super) fn into_store_error(self, context: &str) -> StoreError {
        let (unavailable, message) = self.explain(context);
        if unavailable {
            StoreError::unavailable(message)
        } else {
            StoreError::internal(message)
        }
    }

    /// Whether the failure is unavailability, and its message.
    pub(super) fn explain(self, context: &str) -> (bool, String) {
        match self {
            Failure::Elapsed(limit) => (true, format!("{context}: no answer within {limit:?}")),
            Failure::Pool(PoolError::Backend(e)) => Failure::Db(e).explain(context),
            Failure::Pool(PoolError::Timeout(kind)) => (
                true,
                format!("{context}: connection pool timeout ({kind:?})"),
            ),
            Failure::Pool(PoolError::Closed) => {
                (true, format!("{context}: connection pool closed"))
            }
            Failure::Pool(e) => (false, format!("{context}: connection pool: {e}")),
            Failure::Db(e) => {
                if let Some(db) = e.as_db_error() {
                    let code = db.code().code();
                    let message = format!("{context}: {} (SQLSTATE {code})", db.message());
                    (is_transient_sqlstate(code), message)
                } else {
                    let unavailable =
                        e.is_closed() || is_io(&e) || e.to_string().contains("timeout");
                    (unavailable, format!("{context}: {}", chain(&e)))
                }
            }
        }
    }
}

/// Whether the connection that returned `e` must not be used again: it
/// broke, its server is shutting down, or its server no longer accepts
/// writes (a primary turned read-only). The pool's own check only notices
/// connections that are closed already.
pub(super) fn ends_connection(e: &tokio_postgres::Error) -> bool {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            code == READ_ONLY_SQL_TRANSACTION || code.starts_with("08") || code.starts_with("57P")
        }
        None => e.is_closed() || is_io(e),
    }
}

/// SQLSTATE 25006: a write on a read-only server or transaction.
const READ_ONLY_SQL_TRANSACTION: &str = "25006";

/// SQLSTATEs meaning "not now" rather than "never": connection exceptions
/// (class 08), insufficient resources (class 53: disk full, out of memory,
/// too many connections), shutdown and start-up (57P01..57P03),
/// serialization failures and deadlocks (40001, 40P01), and a write
/// refused because the server is read-only (25006: a standby, or a primary
/// being demoted), which the next connection, to the new primary, cures.
fn is_transient_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "40001" | "40P01" | READ_ONLY_SQL_TRANSACTION
        )
}

fn is_io(e: &tokio_postgres::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// An error and its causes, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

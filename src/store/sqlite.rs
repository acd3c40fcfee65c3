//! The SQLite backend: one database file used by one instance, the
//! zero-configuration default.
//!
//! Choices, and why:
//!
//! - rusqlite is blocking, so every operation runs on tokio's blocking pool
//!   (`spawn_blocking`) and never stalls the async workers. Each connection
//!   sits behind a `std::sync::Mutex`; a poisoned mutex or a failed task
//!   becomes an internal [`StoreError::Fault`], never a panic.
//! - Two connections: a writer and a reader. In WAL mode readers do not
//!   block the writer nor the writer readers, so logins and session lookups
//!   do not queue behind a group commit. (An in-memory database, path
//!   `:memory:`, is private to its connection and uses one for both.)
//! - `synchronous=FULL`: in WAL mode the default (`NORMAL`) may lose the
//!   last commits on power loss; [`Store::write_sessions`] promises that
//!   what it reports applied is durable, so each commit waits for fsync.
//!   Group commit keeps that to one fsync per batch.
//! - `BEGIN IMMEDIATE` for write transactions: the write lock is taken at
//!   the start, so a busy database makes us wait (`busy_timeout`, 5 s)
//!   instead of failing half-way through with `SQLITE_BUSY`.
//! - Writes of a batch apply in the same order as on PostgreSQL (creates,
//!   then rotations, then revocations, then revocations of whole users,
//!   each kind in batch order), so both backends give the same outcomes and
//!   changes for the same batch. The updates `RETURNING` the sessions'
//!   final states give [`BatchOutcome::changes`] without a second read, and
//!   stamp the rows with the transaction's change sequence (`changelog`),
//!   read by [`Store::changes_after`].
//! - No change feed: one file means one instance, which learns its own
//!   changes from [`BatchOutcome::changes`]; [`Store::subscribe`] is `None`.
//! - [`Store::prune_sessions`] deletes in chunks, each its own short
//!   transaction, so a large backlog does not hold the writer (and the
//!   group commits waiting for it) for long.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::sql::{
    INSERT_SIGNING_KEY, LOAD_SECRET, LOAD_SESSION, LOAD_SIGNING_KEYS, STORE_SECRET, USER_BY_EMAIL,
};
use super::{
    migrations, BatchOutcome, ChangeCursor, ChangeRead, FeedEvent, NewSession, NewUser,
    SessionWrite, SigningKeyRecord, Store, StoreError, UserRecord,
};
use crate::domain::{Session, SessionChange, SessionId};

mod accounts;
mod changelog;
mod rows;
mod signup;
mod writes;

use rows::{session_from_row, user_from_row, uuid_at};
use writes::apply_batch;

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The integer id continues authd's range (2^31 upwards); one writer
/// connection makes `max + 1` safe.
const INSERT_USER: &str = "INSERT INTO users (id, email, password_hash, int_id) \
     VALUES (?1, ?2, ?3, (SELECT COALESCE(max(int_id), 2147483647) + 1 FROM users)) \
     RETURNING int_id";

const PRUNE_SESSIONS: &str = "DELETE FROM sessions WHERE rowid IN \
     (SELECT rowid FROM sessions WHERE expires_at_ms < ?1 LIMIT ?2)";

/// Rows per chunk of [`Store::prune_sessions`].
const PRUNE_CHUNK: u32 = 5_000;

type Shared = Arc<Mutex<Connection>>;

pub(crate) struct SqliteStore {
    writer: Shared,
    reader: Shared,
    /// Bound on every operation (`db_timeout`).
    timeout: Duration,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and its
    /// directory, and applies pending migrations. Every later operation
    /// answers within `timeout`.
    pub(crate) async fn open(path: &Path, timeout: Duration) -> Result<Self, StoreError> {
        let path = path.to_path_buf();
        let store = tokio::task::spawn_blocking(move || Self::open_blocking(&path, timeout))
            .await
            .map_err(|e| {
                StoreError::internal(format!("opening the database: task failed: {e}"))
            })??;
        Ok(store)
    }

    fn open_blocking(path: &Path, timeout: Duration) -> Result<Self, StoreError> {
        let in_memory = path.as_os_str() == ":memory:";
        if !in_memory {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::internal(format!("creating directory {}: {e}", dir.display()))
                })?;
            }
        }
        let mut writer = open_connection(path)?;
        let applied = migrations::apply_sqlite(&mut writer, migrations::SQLITE)
            .map_err(|e| sqlite_error("applying migrations", e))?;
        let writer = Arc::new(Mutex::new(writer));
        let reader = if in_memory {
            Arc::clone(&writer)
        } else {
            let reader = open_connection(path)?;
            reader
                .pragma_update(None, "query_only", true)
                .map_err(|e| sqlite_error("opening the database", e))?;
            Arc::new(Mutex::new(reader))
        };
        tracing::info!(store = "sqlite", path = %path.display(), applied, "store ready");
        Ok(SqliteStore {
            writer,
            reader,
            timeout,
        })
    }
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let context = "opening the database";
    let conn = Connection::open(path).map_err(|e| sqlite_error(context, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| sqlite_error(context, e))?;
    // Answers the mode now in force: "wal", or "memory" for `:memory:`.
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(|e| sqlite_error(context, e))?;
    if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
        return Err(StoreError::internal(format!(
            "{context}: cannot enable WAL (journal_mode is {mode})"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| sqlite_error(context, e))?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(|e| sqlite_error(context, e))?;
    Ok(conn)
}

impl SqliteStore {
    /// Runs `work` with the connection on the blocking pool, answering
    /// within the store's timeout (the one bound on every operation; callers
    /// do not add their own). Blocking work cannot be cancelled: after the
    /// timeout the caller gets `Unavailable` while the work finishes (or
    /// rolls back) behind the connection's lock, and later operations queue
    /// behind it, each bounded in turn.
    async fn with_conn<T, F>(
        &self,
        conn: &Shared,
        context: &'static str,
        work: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(conn);
        let task = tokio::task::spawn_blocking(move || {
            // A panic while the lock was held leaves it poisoned; the
            // connection itself is fine (an open transaction rolled back when
            // it dropped), so carry on rather than failing every later call.
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&mut guard)
        });
        match tokio::time::timeout(self.timeout, task).await {
            Ok(joined) => {
                joined.map_err(|e| StoreError::internal(format!("{context}: task failed: {e}")))?
            }
            Err(_) => Err(StoreError::unavailable(format!(
                "{context}: no answer within {:?}",
                self.timeout
            ))),
        }
    }
}

/// `Unavailable` for what may pass (a lock held too long, I/O trouble, a
/// full disk), `Internal` for the rest.
fn sqlite_error(context: &str, e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::*;
    match e.sqlite_error_code() {
        Some(DatabaseBusy | DatabaseLocked | SystemIoFailure | DiskFull | CannotOpen) => {
            StoreError::unavailable(format!("{context}: {e}"))
        }
        _ => StoreError::internal(format!("{context}: {e}")),
    }
}

fn is_email_taken(e: &rusqlite::Error) -> bool {
    match e {
        rusqlite::Error::SqliteFailure(failure, message) => {
            failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                && message.as_deref().is_none_or(|m| m.contains("users.email"))
        }
        _ => false,
    }
}

/// A row `(id, generation, issued_at_ms, revoked)`.
pub(super) fn change_from_row(row: &Row<'_>) -> rusqlite::Result<SessionChange> {
    Ok(SessionChange {
        id: SessionId(uuid_at(row, 0)?),
        generation: row.get(1)?,
        issued_at_ms: row.get(2)?,
        revoked: row.get(3)?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with_conn(&self.reader, "ping", |conn| {
            conn.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(|e| sqlite_error("ping", e))
        })
        .await
    }

    async fn insert_user(&self, user: &NewUser) -> Result<i64, StoreError> {
        let id = user.id.0.to_string();
        let email = user.email.as_str().to_owned();
        let hash = user.password_hash.clone();
        self.with_conn(&self.writer, "insert_user", move |conn| {
            let result = conn.prepare_cached(INSERT_USER).and_then(|mut statement| {
                statement.query_row(params![id, email, hash], |row| row.get::<_, i64>(0))
            });
            match result {
                Ok(int_id) => Ok(int_id),
                Err(e) if is_email_taken(&e) => Err(StoreError::EmailTaken),
                Err(e) => Err(sqlite_error("insert_user", e)),
            }
        })
        .await
    }

    async fn sign_up(&self, user: &NewUser, session: &NewSession) -> Result<Session, StoreError> {
        self.insert_user_and_session(user, session).await
    }

    async fn find_user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        let email = email.to_owned();
        self.with_conn(&self.reader, "find_user_by_email", move |conn| {
            conn.prepare_cached(USER_BY_EMAIL)
                .and_then(|mut statement| statement.query_row([email], user_from_row).optional())
                .map_err(|e| sqlite_error("find_user_by_email", e))
        })
        .await
    }

    async fn load_session(&self, id: SessionId) -> Result<Option<Session>, StoreError> {
        let id = id.0.to_string();
        self.with_conn(&self.reader, "load_session", move |conn| {
            conn.prepare_cached(LOAD_SESSION)
                .and_then(|mut statement| statement.query_row([id], session_from_row).optional())
                .map_err(|e| sqlite_error("load_session", e))
        })
        .await
    }

    async fn write_sessions(&self, batch: &[SessionWrite]) -> Result<BatchOutcome, StoreError> {
        if batch.is_empty() {
            return Ok(BatchOutcome::default());
        }
        let batch = batch.to_vec();
        self.with_conn(&self.writer, "write_sessions", move |conn| {
            apply_batch(conn, &batch).map_err(|e| sqlite_error("write_sessions", e))
        })
        .await
    }

    async fn change_cursor(&self) -> Result<ChangeCursor, StoreError> {
        self.with_conn(&self.reader, "change_cursor", |conn| {
            changelog::cursor(conn).map_err(|e| sqlite_error("change_cursor", e))
        })
        .await
    }

    async fn changes_after(&self, cursor: &ChangeCursor) -> Result<ChangeRead, StoreError> {
        let cursor = cursor.clone();
        self.with_conn(&self.reader, "changes_after", move |conn| {
            changelog::read_after(conn, &cursor).map_err(|e| sqlite_error("changes_after", e))
        })
        .await
    }

    /// Nothing to prune: positions are stamped on the sessions themselves.
    async fn prune_change_log(&self, _before_ms: i64) -> Result<u64, StoreError> {
        Ok(0)
    }

    async fn prune_sessions(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut deleted: u64 = 0;
        loop {
            // The writer is released between chunks, so batches interleave.
            let chunk = self
                .with_conn(&self.writer, "prune_sessions", move |conn| {
                    conn.prepare_cached(PRUNE_SESSIONS)
                        .and_then(|mut statement| {
                            statement.execute(params![before_ms, PRUNE_CHUNK])
                        })
                        .map_err(|e| sqlite_error("prune_sessions", e))
                })
                .await?;
            deleted += chunk as u64;
            if chunk < PRUNE_CHUNK as usize {
                return Ok(deleted);
            }
        }
    }

    fn subscribe(&self) -> Option<tokio::sync::mpsc::Receiver<FeedEvent>> {
        None
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        self.with_conn(&self.reader, "signing_keys", |conn| {
            conn.prepare_cached(LOAD_SIGNING_KEYS)
                .and_then(|mut statement| {
                    statement
                        .query_map([], |row| {
                            Ok(SigningKeyRecord {
                                kid: row.get(0)?,
                                algorithm: row.get(1)?,
                                private_key: row.get(2)?,
                                public_key: row.get(3)?,
                                created_at_ms: row.get(4)?,
                            })
                        })?
                        .collect()
                })
                .map_err(|e| sqlite_error("signing_keys", e))
        })
        .await
    }

    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError> {
        let key = key.clone();
        self.with_conn(&self.writer, "insert_signing_key", move |conn| {
            conn.prepare_cached(INSERT_SIGNING_KEY)
                .and_then(|mut statement| {
                    statement.execute(params![
                        key.kid,
                        key.algorithm,
                        key.private_key,
                        key.public_key,
                        key.created_at_ms,
                    ])
                })
                .map(|_| ())
                .map_err(|e| sqlite_error("insert_signing_key", e))
        })
        .await
    }

    async fn signing_secret(&self, candidate: &str) -> Result<String, StoreError> {
        let candidate = candidate.to_owned();
        self.with_conn(&self.writer, "signing_secret", move |conn| {
            conn.prepare_cached(STORE_SECRET)
                .and_then(|mut statement| statement.execute([candidate]))
                .and_then(|_| conn.query_row(LOAD_SECRET, [], |row| row.get(0)))
                .map_err(|e| sqlite_error("signing_secret", e))
        })
        .await
    }
}

#[cfg(test)]
mod tests;

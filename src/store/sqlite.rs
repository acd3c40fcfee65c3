//! The SQLite backend: one database file used by one instance, the
//! zero-configuration default.
//!
//! Choices, and why:
//!
//! - rusqlite is blocking, so every operation runs on tokio's blocking pool
//!   (`spawn_blocking`) and never stalls the async workers. Each connection
//!   sits behind a `std::sync::Mutex`; a poisoned mutex or a failed task
//!   becomes [`StoreError::Internal`], never a panic.
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
//!   then rotations, then revocations, each kind in batch order), so both
//!   backends give the same outcomes for the same batch.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::Type;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use uuid::Uuid;

use super::{migrations, NewUser, SessionWrite, Store, StoreError, UserRecord, WriteOutcome};
use crate::domain::{Email, Session, SessionId, UserId};

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const INSERT_USER: &str = "INSERT INTO users (id, email, password_hash) VALUES (?1, ?2, ?3)";
const FIND_USER: &str = "SELECT id, password_hash FROM users WHERE email = ?1";
const LOAD_SESSION: &str = "SELECT id, user_id, generation, issued_at_ms, expires_at_ms, \
     revoked_at_ms IS NOT NULL FROM sessions WHERE id = ?1";
const STORE_SECRET: &str =
    "INSERT INTO service_secrets (name, value) VALUES ('hs256', ?1) ON CONFLICT (name) DO NOTHING";
const LOAD_SECRET: &str = "SELECT value FROM service_secrets WHERE name = 'hs256'";

/// Like PostgreSQL's: an existing id or a missing user is a conflict, not a
/// failure of the whole batch. (The `WHERE` also settles SQLite's parsing
/// ambiguity between a join's `ON` and the upsert's `ON CONFLICT`.)
const CREATE_SESSION: &str = "INSERT INTO sessions \
     (id, user_id, generation, issued_at_ms, expires_at_ms, revoked_at_ms, created_at_ms) \
     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?4 \
     WHERE EXISTS (SELECT 1 FROM users WHERE id = ?2) \
     ON CONFLICT (id) DO NOTHING";
const ROTATE_SESSION: &str = "UPDATE sessions SET generation = ?2 + 1, issued_at_ms = ?3 \
     WHERE id = ?1 AND generation = ?2 AND revoked_at_ms IS NULL";
const REVOKE_SESSION: &str =
    "UPDATE sessions SET revoked_at_ms = COALESCE(revoked_at_ms, ?2) WHERE id = ?1";

type Shared = Arc<Mutex<Connection>>;

pub struct SqliteStore {
    writer: Shared,
    reader: Shared,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and its
    /// directory, and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let path = path.to_path_buf();
        let store = tokio::task::spawn_blocking(move || Self::open_blocking(&path))
            .await
            .map_err(|e| {
                StoreError::Internal(format!("opening the database: task failed: {e}"))
            })??;
        Ok(store)
    }

    fn open_blocking(path: &Path) -> Result<Self, StoreError> {
        let in_memory = path.as_os_str() == ":memory:";
        if !in_memory {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Internal(format!("creating directory {}: {e}", dir.display()))
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
        Ok(SqliteStore { writer, reader })
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
        return Err(StoreError::Internal(format!(
            "{context}: cannot enable WAL (journal_mode is {mode})"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| sqlite_error(context, e))?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(|e| sqlite_error(context, e))?;
    Ok(conn)
}

/// Runs `work` with the connection on the blocking pool.
async fn with_conn<T, F>(conn: &Shared, context: &'static str, work: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
{
    let conn = Arc::clone(conn);
    tokio::task::spawn_blocking(move || {
        // A panic while the lock was held leaves it poisoned; the connection
        // itself is fine (an open transaction rolled back when it dropped),
        // so carry on rather than failing every later call.
        let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        work(&mut guard)
    })
    .await
    .map_err(|e| StoreError::Internal(format!("{context}: task failed: {e}")))?
}

/// `Unavailable` for what may pass (a lock held too long, I/O trouble, a
/// full disk), `Internal` for the rest.
fn sqlite_error(context: &str, e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::*;
    match e.sqlite_error_code() {
        Some(DatabaseBusy | DatabaseLocked | SystemIoFailure | DiskFull | CannotOpen) => {
            StoreError::Unavailable(format!("{context}: {e}"))
        }
        _ => StoreError::Internal(format!("{context}: {e}")),
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

fn uuid_at(row: &Row<'_>, index: usize) -> rusqlite::Result<Uuid> {
    let text: String = row.get(index)?;
    Uuid::parse_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(index, Type::Text, Box::new(e)))
}

fn session_from_row(row: &Row<'_>) -> rusqlite::Result<Session> {
    Ok(Session {
        id: SessionId(uuid_at(row, 0)?),
        user_id: UserId(uuid_at(row, 1)?),
        // rusqlite refuses (IntegralValueOutOfRange) what does not fit.
        generation: row.get(2)?,
        issued_at_ms: row.get(3)?,
        expires_at_ms: row.get(4)?,
        revoked: row.get(5)?,
    })
}

fn apply_batch(
    conn: &mut Connection,
    batch: &[SessionWrite],
) -> rusqlite::Result<Vec<WriteOutcome>> {
    let outcome = |changed: usize| {
        if changed == 1 {
            WriteOutcome::Applied
        } else {
            WriteOutcome::Conflict
        }
    };
    let mut outcomes = vec![WriteOutcome::Conflict; batch.len()];
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut create = tx.prepare_cached(CREATE_SESSION)?;
        for (i, write) in batch.iter().enumerate() {
            if let SessionWrite::Create(s) = write {
                let changed = create.execute(params![
                    s.id.0.to_string(),
                    s.user_id.0.to_string(),
                    s.generation,
                    s.issued_at_ms,
                    s.expires_at_ms,
                    s.revoked.then_some(s.issued_at_ms),
                ])?;
                outcomes[i] = outcome(changed);
            }
        }
        let mut rotate = tx.prepare_cached(ROTATE_SESSION)?;
        for (i, write) in batch.iter().enumerate() {
            if let SessionWrite::Rotate {
                id,
                from_generation,
                issued_at_ms,
            } = write
            {
                let changed =
                    rotate.execute(params![id.0.to_string(), from_generation, issued_at_ms])?;
                outcomes[i] = outcome(changed);
            }
        }
        let mut revoke = tx.prepare_cached(REVOKE_SESSION)?;
        for (i, write) in batch.iter().enumerate() {
            if let SessionWrite::Revoke { id, revoked_at_ms } = write {
                let changed = revoke.execute(params![id.0.to_string(), revoked_at_ms])?;
                outcomes[i] = outcome(changed);
            }
        }
    }
    tx.commit()?;
    Ok(outcomes)
}

#[async_trait]
impl Store for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        with_conn(&self.reader, "ping", |conn| {
            conn.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(|e| sqlite_error("ping", e))
        })
        .await
    }

    async fn insert_user(&self, user: &NewUser) -> Result<(), StoreError> {
        let id = user.id.0.to_string();
        let email = user.email.as_str().to_owned();
        let hash = user.password_hash.clone();
        with_conn(&self.writer, "insert_user", move |conn| {
            let result = conn
                .prepare_cached(INSERT_USER)
                .and_then(|mut statement| statement.execute(params![id, email, hash]));
            match result {
                Ok(_) => Ok(()),
                Err(e) if is_email_taken(&e) => Err(StoreError::EmailTaken),
                Err(e) => Err(sqlite_error("insert_user", e)),
            }
        })
        .await
    }

    async fn find_user_by_email(&self, email: &Email) -> Result<Option<UserRecord>, StoreError> {
        let email = email.as_str().to_owned();
        with_conn(&self.reader, "find_user_by_email", move |conn| {
            conn.prepare_cached(FIND_USER)
                .and_then(|mut statement| {
                    statement
                        .query_row([email], |row| {
                            Ok(UserRecord {
                                id: UserId(uuid_at(row, 0)?),
                                password_hash: row.get(1)?,
                            })
                        })
                        .optional()
                })
                .map_err(|e| sqlite_error("find_user_by_email", e))
        })
        .await
    }

    async fn load_session(&self, id: SessionId) -> Result<Option<Session>, StoreError> {
        let id = id.0.to_string();
        with_conn(&self.reader, "load_session", move |conn| {
            conn.prepare_cached(LOAD_SESSION)
                .and_then(|mut statement| statement.query_row([id], session_from_row).optional())
                .map_err(|e| sqlite_error("load_session", e))
        })
        .await
    }

    async fn write_sessions(
        &self,
        batch: &[SessionWrite],
    ) -> Result<Vec<WriteOutcome>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let batch = batch.to_vec();
        with_conn(&self.writer, "write_sessions", move |conn| {
            apply_batch(conn, &batch).map_err(|e| sqlite_error("write_sessions", e))
        })
        .await
    }

    async fn signing_secret(&self, candidate: &str) -> Result<String, StoreError> {
        let candidate = candidate.to_owned();
        with_conn(&self.writer, "signing_secret", move |conn| {
            conn.prepare_cached(STORE_SECRET)
                .and_then(|mut statement| statement.execute([candidate]))
                .and_then(|_| conn.query_row(LOAD_SECRET, [], |row| row.get(0)))
                .map_err(|e| sqlite_error("signing_secret", e))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use WriteOutcome::{Applied, Conflict};

    fn new_user(email: &str) -> NewUser {
        NewUser {
            id: UserId::new_random(),
            email: Email::parse(email).expect("email"),
            password_hash: "$argon2id$fake".into(),
        }
    }

    async fn migration_count(store: &SqliteStore) -> i64 {
        with_conn(&store.reader, "test", |conn| {
            conn.query_row("SELECT count(*) FROM schema_migrations", [], |row| {
                row.get(0)
            })
            .map_err(|e| sqlite_error("test", e))
        })
        .await
        .expect("count")
    }

    #[tokio::test]
    async fn creates_directory_and_migrates_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested").join("authd.db");
        let store = SqliteStore::open(&path).await.expect("open");
        assert_eq!(store.kind(), "sqlite");
        store.ping().await.expect("ping");
        store
            .insert_user(&new_user("dave@example.com"))
            .await
            .expect("insert");
        drop(store);
        let store = SqliteStore::open(&path).await.expect("reopen");
        assert_eq!(
            migration_count(&store).await,
            migrations::SQLITE.len() as i64
        );
        // Data survived the reopen.
        let email = Email::parse("dave@example.com").expect("email");
        assert!(store
            .find_user_by_email(&email)
            .await
            .expect("find")
            .is_some());
    }

    #[tokio::test]
    async fn users() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("a.db"))
            .await
            .expect("open");
        let user = new_user("Alice@Example.com");
        store.insert_user(&user).await.expect("insert");
        let found = store
            .find_user_by_email(&Email::parse("alice@example.COM").expect("email"))
            .await
            .expect("find")
            .expect("present");
        assert_eq!(found.id, user.id);
        assert_eq!(found.password_hash, user.password_hash);
        let missing = store
            .find_user_by_email(&Email::parse("bob@example.com").expect("email"))
            .await
            .expect("find");
        assert!(missing.is_none());
        let twin = new_user("alice@example.com");
        assert!(matches!(
            store.insert_user(&twin).await,
            Err(StoreError::EmailTaken)
        ));
        // A colliding id is not an e-mail problem.
        let same_id = NewUser {
            email: Email::parse("other@example.com").expect("email"),
            ..user.clone()
        };
        assert!(matches!(
            store.insert_user(&same_id).await,
            Err(StoreError::Internal(_))
        ));
    }

    #[tokio::test]
    async fn sessions_and_batches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("a.db"))
            .await
            .expect("open");
        let user = new_user("carol@example.com");
        store.insert_user(&user).await.expect("insert");

        let a = Session::start(user.id, 1_000, 60_000);
        let b = Session::start(user.id, 1_000, 60_000);
        let outcomes = store
            .write_sessions(&[
                SessionWrite::Create(a.clone()),
                SessionWrite::Create(b.clone()),
            ])
            .await
            .expect("create");
        assert_eq!(outcomes, vec![Applied; 2]);
        assert_eq!(
            store.load_session(a.id).await.expect("load"),
            Some(a.clone())
        );
        assert_eq!(
            store
                .load_session(SessionId::new_random())
                .await
                .expect("load"),
            None
        );

        let c = Session::start(user.id, 2_000, 60_000);
        let orphan = Session::start(UserId::new_random(), 2_000, 60_000);
        let missing = SessionId::new_random();
        let batch = [
            SessionWrite::Rotate {
                id: a.id,
                from_generation: 0,
                issued_at_ms: 2_000,
            },
            // Stale: the rotation above already moved `a` to generation 1.
            SessionWrite::Rotate {
                id: a.id,
                from_generation: 0,
                issued_at_ms: 2_001,
            },
            SessionWrite::Revoke {
                id: b.id,
                revoked_at_ms: 2_002,
            },
            SessionWrite::Create(c.clone()),
            SessionWrite::Revoke {
                id: missing,
                revoked_at_ms: 2_003,
            },
            SessionWrite::Rotate {
                id: missing,
                from_generation: 0,
                issued_at_ms: 2_004,
            },
            SessionWrite::Revoke {
                id: b.id,
                revoked_at_ms: 2_005,
            },
            SessionWrite::Rotate {
                id: b.id,
                from_generation: 0,
                issued_at_ms: 2_006,
            },
            // A duplicate id and a user that does not exist.
            SessionWrite::Create(a.clone()),
            SessionWrite::Create(orphan),
            // A chained rotation in the same batch.
            SessionWrite::Rotate {
                id: a.id,
                from_generation: 1,
                issued_at_ms: 2_007,
            },
        ];
        let outcomes = store.write_sessions(&batch).await.expect("batch");
        assert_eq!(
            outcomes,
            vec![
                Applied, Conflict, Applied, Applied, Conflict, Conflict, Applied, Applied,
                Conflict, Conflict, Applied
            ]
        );
        let a2 = store.load_session(a.id).await.expect("load").expect("a");
        assert_eq!(
            (a2.generation, a2.issued_at_ms, a2.revoked),
            (2, 2_007, false)
        );
        // Rotations run before revocations inside a batch, so the rotation of
        // `b` listed after its revocation still applied; `b` ends revoked.
        let b2 = store.load_session(b.id).await.expect("load").expect("b");
        assert!(b2.revoked);
        assert_eq!(b2.generation, 1);
        assert_eq!(store.load_session(c.id).await.expect("load"), Some(c));

        // Revoked sessions refuse rotation; revoking again stays applied.
        let outcomes = store
            .write_sessions(&[
                SessionWrite::Rotate {
                    id: b.id,
                    from_generation: b2.generation,
                    issued_at_ms: 3_000,
                },
                SessionWrite::Revoke {
                    id: b.id,
                    revoked_at_ms: 3_001,
                },
            ])
            .await
            .expect("batch");
        assert_eq!(outcomes, vec![Conflict, Applied]);
        assert_eq!(store.write_sessions(&[]).await.expect("empty"), vec![]);
    }

    #[tokio::test]
    async fn signing_secret_is_stored_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("a.db"))
            .await
            .expect("open");
        let first = store
            .signing_secret("first-candidate")
            .await
            .expect("first");
        assert_eq!(first, "first-candidate");
        let second = store
            .signing_secret("second-candidate")
            .await
            .expect("second");
        assert_eq!(second, "first-candidate");
    }

    #[tokio::test]
    async fn in_memory_database_works() {
        let store = SqliteStore::open(Path::new(":memory:"))
            .await
            .expect("open");
        let user = new_user("erin@example.com");
        store.insert_user(&user).await.expect("insert");
        let email = Email::parse("erin@example.com").expect("email");
        assert!(store
            .find_user_by_email(&email)
            .await
            .expect("find")
            .is_some());
    }
}

//! Tests of the SQLite backend, each in a temporary file of its own: the
//! shared store conformance suite and the SQLite-only behaviour.

use super::*;

const TEST_TIMEOUT: Duration = Duration::from_secs(10);
use crate::domain::Email;
use crate::store::conformance::{self, change, new_user, Fixture};

/// A database file in a fresh temporary directory (in a subdirectory
/// that does not exist yet, so opening must create it).
struct TempFile {
    dir: tempfile::TempDir,
}

impl Fixture for TempFile {
    type Store = SqliteStore;
    const KIND: &'static str = "sqlite";
    const MIGRATIONS: usize = migrations::SQLITE.len();
    const PRUNE_CHUNK: usize = PRUNE_CHUNK as usize;

    fn fresh() -> Self {
        TempFile {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    async fn open(&self) -> SqliteStore {
        let path = self.dir.path().join("nested").join("authd.db");
        SqliteStore::open(&path, TEST_TIMEOUT).await.expect("open")
    }

    async fn applied_migrations(store: &SqliteStore) -> i64 {
        store
            .with_conn(&store.reader, "test", |conn| {
                conn.query_row("SELECT count(*) FROM schema_migrations", [], |row| {
                    row.get(0)
                })
                .map_err(|e| sqlite_error("test", e))
            })
            .await
            .expect("count")
    }

    async fn remove(self) {
        drop(self.dir);
    }
}

conformance::suite!(TempFile);

#[tokio::test]
async fn in_memory_database_works() {
    let store = SqliteStore::open(Path::new(":memory:"), TEST_TIMEOUT)
        .await
        .expect("open");
    let user = new_user("erin@example.com");
    store.insert_user(&user).await.expect("insert");
    let email = Email::parse("erin@example.com").expect("email");
    assert!(store
        .find_user_by_email(email.as_str())
        .await
        .expect("find")
        .is_some());
}

#[tokio::test]
async fn has_no_change_feed() {
    let store = SqliteStore::open(Path::new(":memory:"), TEST_TIMEOUT)
        .await
        .expect("open");
    assert!(store.subscribe().is_none());
}

#[tokio::test]
async fn upgrades_a_version_1_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.db");
    let user = new_user("old@example.com");
    let session = Session::start(user.id, 0, 1_000, 60_000);
    {
        let mut conn = open_connection(&path).expect("open");
        migrations::apply_sqlite(&mut conn, &migrations::SQLITE[..1]).expect("v1");
        conn.execute(
            "INSERT INTO users (id, email, password_hash) VALUES (?1, ?2, 'x')",
            params![user.id.0.to_string(), user.email.as_str()],
        )
        .expect("user");
        conn.execute(
            "INSERT INTO sessions (id, user_id, generation, issued_at_ms, expires_at_ms, \
             revoked_at_ms, created_at_ms) VALUES (?1, ?2, 0, 1000, 61000, NULL, 1000)",
            params![session.id.0.to_string(), user.id.0.to_string()],
        )
        .expect("session");
    }
    let store = SqliteStore::open(&path, TEST_TIMEOUT)
        .await
        .expect("upgrade");
    assert_eq!(
        TempFile::applied_migrations(&store).await,
        migrations::SQLITE.len() as i64
    );
    // Migration 4 gave the user the first integer id of authd's range
    // and copied it into the user's sessions.
    assert_eq!(
        store.load_session(session.id).await.expect("load"),
        Some(Session {
            user_int_id: 2_147_483_648,
            ..session.clone()
        })
    );
    let before = store.change_cursor().await.expect("cursor");
    let done = store
        .write_sessions(&[SessionWrite::RevokeUser {
            user_id: user.id,
            revoked_at_ms: 5_000,
            except: None,
        }])
        .await
        .expect("revoke");
    assert_eq!(done.changes, vec![change(&session, 0, 1_000, true)]);
    assert_eq!(
        conformance::changes_after(&store, &before).await.0,
        done.changes
    );
}

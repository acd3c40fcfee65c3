//! Tests of the PostgreSQL backend that need a live server: each opens a
//! fresh database of its own (dropped at the end), runs the shared store
//! conformance suite and the PostgreSQL-only behaviour (racing migrations
//! and rotations, the change feed, notification payloads).

use super::setup::{quote_ident, MAINTENANCE_DB};
use super::*;
use crate::domain::SessionOrigin;
use crate::store::conformance::{self, change, new_user, Fixture};
use tokio_postgres::NoTls;

fn target(dbname: &str) -> PostgresTarget {
    PostgresTarget {
        hosts: vec![crate::settings::PgHost {
            host: "127.0.0.1".into(),
            port: 5432,
        }],
        user: "postgres".into(),
        password: Default::default(),
        dbname: dbname.into(),
    }
}

fn fresh_name() -> String {
    format!("authd_store_{}", Uuid::new_v4().simple())
}

const TIMEOUT: Duration = Duration::from_secs(5);

/// A fresh database, dropped (best effort) when the test ends.
pub(super) struct TestDb {
    pub(super) name: String,
}

impl Fixture for TestDb {
    type Store = PostgresStore;
    const KIND: &'static str = "postgres";
    const MIGRATIONS: usize = migrations::POSTGRES.len();
    const PRUNE_CHUNK: usize = PRUNE_CHUNK as usize;

    fn fresh() -> Self {
        TestDb { name: fresh_name() }
    }

    async fn open(&self) -> PostgresStore {
        PostgresStore::connect(&target(&self.name), 4, TIMEOUT, true)
            .await
            .expect("connect")
    }

    async fn applied_migrations(store: &PostgresStore) -> i64 {
        let client = store.pool.get().await.expect("client");
        client
            .query_one("SELECT count(*) FROM schema_migrations", &[])
            .await
            .expect("count")
            .get(0)
    }

    async fn remove(self) {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(5432)
            .user("postgres")
            .dbname(MAINTENANCE_DB);
        if let Ok((client, connection)) = config.connect(NoTls).await {
            tokio::spawn(connection);
            let sql = format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&self.name)
            );
            let _ = client.batch_execute(&sql).await;
        }
    }
}

conformance::suite!(TestDb);

#[tokio::test]
async fn concurrent_starts_create_and_migrate_once() {
    let db = TestDb::fresh();
    // Two instances starting together: both succeed, one creates.
    let t = target(&db.name);
    let (a, b) = tokio::join!(
        PostgresStore::connect(&t, 2, TIMEOUT, true),
        PostgresStore::connect(&t, 2, TIMEOUT, true),
    );
    let (a, b) = (a.expect("first"), b.expect("second"));
    let count = TestDb::applied_migrations;
    assert_eq!(count(&a).await, migrations::POSTGRES.len() as i64);
    assert_eq!(count(&b).await, migrations::POSTGRES.len() as i64);
    let pool = a.pool.status();
    assert!(pool.size >= 1 && pool.available <= pool.size && pool.waiting == 0);
    drop((a, b));
    db.remove().await;
}

#[tokio::test]
async fn concurrent_rotations_produce_one_successor() {
    let db = TestDb::fresh();
    let first = db.open().await;
    let second = db.open().await;
    let user = new_user("frank@example.com");
    first.insert_user(&user).await.expect("insert");
    let session = Session::start(user.id, 0, 1_000, 60_000);
    first
        .write_sessions(&[SessionWrite::Create(
            session.clone(),
            SessionOrigin::default(),
        )])
        .await
        .expect("create");
    for generation in 0..5 {
        let rotate = [SessionWrite::Rotate {
            id: session.id,
            from_generation: generation,
            issued_at_ms: 2_000 + i64::from(generation),
        }];
        let (x, y) = tokio::join!(
            first.write_sessions(&rotate),
            second.write_sessions(&rotate)
        );
        let outcomes = [
            x.expect("first").outcomes[0],
            y.expect("second").outcomes[0],
        ];
        let applied = outcomes
            .iter()
            .filter(|o| **o == WriteOutcome::Applied)
            .count();
        assert_eq!(applied, 1, "{outcomes:?}");
    }
    let stored = second
        .load_session(session.id)
        .await
        .expect("load")
        .expect("session");
    assert_eq!(stored.generation, 5);
    drop((first, second));
    db.remove().await;
}

#[tokio::test]
async fn unreachable_server_is_unavailable() {
    let mut t = target(&fresh_name());
    t.hosts[0].port = 1; // nothing listens there
    let started = std::time::Instant::now();
    let result = PostgresStore::connect(&t, 2, Duration::from_millis(500), true).await;
    assert!(
        matches!(&result, Err(e) if e.is_unavailable()),
        "{:?}",
        result.err()
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn payloads_round_trip() {
    let changes = vec![
        SessionChange {
            id: SessionId::new_random(),
            generation: 0,
            issued_at_ms: 1_700_000_000_000,
            revoked: false,
        },
        SessionChange {
            id: SessionId::new_random(),
            generation: u32::MAX,
            issued_at_ms: -5,
            revoked: true,
        },
    ];
    let payloads = encode_changes(&changes);
    assert_eq!(payloads.len(), 1);
    let lines: Vec<&str> = payloads[0].lines().collect();
    assert_eq!(
        lines[0],
        format!("{} 0 1700000000000 0", changes[0].id.0.hyphenated())
    );
    assert_eq!(decode_changes(&payloads[0]), changes);
    assert!(encode_changes(&[]).is_empty());
    assert!(decode_changes("").is_empty());
}

#[test]
fn payloads_are_chunked_under_the_limit() {
    let changes: Vec<SessionChange> = (0..1_000u32)
        .map(|i| SessionChange {
            id: SessionId::new_random(),
            generation: i * 1_000_000,
            issued_at_ms: i64::MAX - i64::from(i),
            revoked: i % 3 == 0,
        })
        .collect();
    let payloads = encode_changes(&changes);
    assert!(payloads.len() > 1, "{}", payloads.len());
    for payload in &payloads {
        assert!(payload.len() < MAX_PAYLOAD_BYTES, "{}", payload.len());
        assert!(!payload.starts_with('\n') && !payload.ends_with('\n'));
    }
    // Nearly full: no more payloads than needed.
    for payload in &payloads[..payloads.len() - 1] {
        assert!(payload.len() > MAX_PAYLOAD_BYTES - 100, "{}", payload.len());
    }
    let decoded: Vec<SessionChange> = payloads.iter().flat_map(|p| decode_changes(p)).collect();
    assert_eq!(decoded, changes);
}

#[test]
fn decoding_skips_malformed_lines() {
    let id = Uuid::new_v4();
    let good = SessionChange {
        id: SessionId(id),
        generation: 3,
        issued_at_ms: 42,
        revoked: true,
    };
    let payload = format!(
        "garbage\n\n{id} 3 42 1\nnot-a-uuid 3 42 1\n{id} -1 42 1\n{id} 3 x 1\n\
         {id} 3 42 2\n{id} 3 42\n{id} 3 42 1 extra\n{id} 4294967296 42 0\n{id} 3 42 1\r\n"
    );
    assert_eq!(decode_changes(&payload), vec![good, good]);
}

async fn next_event(feed: &mut mpsc::Receiver<FeedEvent>, within: Duration) -> FeedEvent {
    tokio::time::timeout(within, feed.recv())
        .await
        .expect("a feed event in time")
        .expect("the feed is open")
}

/// Collects changes from the feed until every id of `ids` was seen.
async fn wait_for_changes(
    feed: &mut mpsc::Receiver<FeedEvent>,
    ids: &[SessionId],
    within: Duration,
) -> HashMap<Uuid, SessionChange> {
    let deadline = Instant::now() + within;
    let mut seen = HashMap::new();
    while !ids.iter().all(|id| seen.contains_key(&id.0)) {
        let event = tokio::time::timeout_at(deadline, feed.recv())
            .await
            .unwrap_or_else(|_| panic!("changes in time; saw {}", seen.len()))
            .expect("the feed is open");
        if let FeedEvent::Changes(changes) = event {
            seen.extend(changes.into_iter().map(|c| (c.id.0, c)));
        }
    }
    seen
}

/// The backends of `dbname` listening for changes.
async fn listeners(store: &PostgresStore, dbname: &str, terminate: bool) -> Vec<bool> {
    let client = store.pool.get().await.expect("client");
    let sql = format!(
        "SELECT {} FROM pg_stat_activity \
         WHERE datname = $1 AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()",
        if terminate {
            "pg_terminate_backend(pid)"
        } else {
            "true"
        }
    );
    client
        .query(&sql, &[&dbname])
        .await
        .expect("pg_stat_activity")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn change_feed_delivers_commits_and_reconnects() {
    let db = TestDb::fresh();
    let a = db.open().await;
    let b = db.open().await;
    let user = new_user("feed@example.com");
    let crowd = new_user("crowd@example.com");
    b.insert_user(&user).await.expect("insert");
    b.insert_user(&crowd).await.expect("insert");
    let s1 = Session::start(user.id, 0, 1_000, 600_000);
    let s2 = Session::start(user.id, 0, 1_000, 600_000);
    // Enough that announcing their revocation takes several payloads.
    let many: Vec<Session> = (0..300)
        .map(|_| Session::start(crowd.id, 0, 1_000, 600_000))
        .collect();
    let mut creates = vec![
        SessionWrite::Create(s1.clone(), SessionOrigin::default()),
        SessionWrite::Create(s2.clone(), SessionOrigin::default()),
    ];
    creates.extend(
        many.iter()
            .cloned()
            .map(|s| SessionWrite::Create(s, SessionOrigin::default())),
    );
    b.write_sessions(&creates).await.expect("create");

    let mut feed = a.subscribe().expect("postgres has a feed");
    assert_eq!(
        next_event(&mut feed, Duration::from_secs(2)).await,
        FeedEvent::Connected
    );
    let done = b
        .write_sessions(&[SessionWrite::Revoke {
            id: s1.id,
            revoked_at_ms: 2_000,
        }])
        .await
        .expect("revoke");
    assert_eq!(done.changes, vec![change(&s1, 0, 1_000, true)]);
    let seen = wait_for_changes(&mut feed, &[s1.id], Duration::from_secs(2)).await;
    assert_eq!(seen[&s1.id.0], change(&s1, 0, 1_000, true));

    // Kill the listener's server process: the feed reconnects.
    assert_eq!(listeners(&b, &db.name, true).await, vec![true]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let event = tokio::time::timeout_at(deadline, feed.recv())
            .await
            .expect("reconnected in time")
            .expect("the feed is open");
        if event == FeedEvent::Connected {
            break;
        }
    }
    b.write_sessions(&[SessionWrite::Revoke {
        id: s2.id,
        revoked_at_ms: 3_000,
    }])
    .await
    .expect("revoke");
    let seen = wait_for_changes(&mut feed, &[s2.id], Duration::from_secs(2)).await;
    assert_eq!(seen[&s2.id.0], change(&s2, 0, 1_000, true));

    // A large batch arrives whole, over several notifications.
    let done = b
        .write_sessions(&[SessionWrite::RevokeUser {
            user_id: crowd.id,
            revoked_at_ms: 4_000,
            except: None,
        }])
        .await
        .expect("revoke user");
    assert_eq!(done.changes.len(), many.len());
    assert!(encode_changes(&done.changes).len() > 1);
    let ids: Vec<SessionId> = many.iter().map(|s| s.id).collect();
    let seen = wait_for_changes(&mut feed, &ids, Duration::from_secs(2)).await;
    assert!(ids.iter().all(|id| seen[&id.0].revoked));

    // Dropping the receiver stops the feed and closes its connection.
    drop(feed);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !listeners(&b, &db.name, false).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the feed connection outlived its receiver"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop((a, b));
    db.remove().await;
}

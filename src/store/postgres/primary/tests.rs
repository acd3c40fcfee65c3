//! Following the primary with the PostgreSQL at 127.0.0.1:5432 (each test
//! on a fresh database of its own): hosts that refuse, a server that turned
//! read-only under pooled connections, and a list with no primary at all.
//! The real failover, under Patroni, is `tests/ha`.

use std::time::Duration;

use tokio_postgres::NoTls;

use super::super::setup::{quote_ident, MAINTENANCE_DB};
use super::super::*;
use crate::domain::SessionOrigin;
use crate::settings::PgHost;
use crate::store::conformance::new_user;

const TIMEOUT: Duration = Duration::from_secs(5);

fn host(port: u16) -> PgHost {
    PgHost {
        host: "127.0.0.1".into(),
        port,
    }
}

fn target(dbname: &str, hosts: Vec<PgHost>) -> PostgresTarget {
    PostgresTarget {
        hosts,
        user: "postgres".into(),
        password: Default::default(),
        dbname: dbname.into(),
    }
}

fn fresh_name() -> String {
    format!("authd_primary_{}", Uuid::new_v4().simple())
}

/// Runs `sql` on the maintenance database of 127.0.0.1:5432.
async fn maintenance(sql: &str) {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(5432)
        .user("postgres")
        .dbname(MAINTENANCE_DB);
    let (client, connection) = config.connect(NoTls).await.expect("maintenance");
    tokio::spawn(connection);
    client.batch_execute(sql).await.expect(sql);
}

async fn drop_database(name: &str) {
    maintenance(&format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quote_ident(name)
    ))
    .await;
}

/// A user and one session of theirs, created through `store`.
async fn a_session(store: &PostgresStore) -> Session {
    let user = new_user(&format!("{}@example.com", Uuid::new_v4().simple()));
    store.insert_user(&user).await.expect("insert user");
    let session = Session::start(user.id, 0, 1_000, 60_000);
    store
        .write_sessions(&[SessionWrite::Create(
            session.clone(),
            SessionOrigin::default(),
        )])
        .await
        .expect("create");
    session
}

#[tokio::test]
async fn a_first_host_that_refuses_is_passed_over_by_every_connection() {
    let name = fresh_name();
    // Nothing listens on port 1; 5432 is the primary.
    let t = target(&name, vec![host(1), host(5432)]);
    let store = PostgresStore::connect(&t, 2, TIMEOUT, false)
        .await
        .expect("starts with the first host down");
    assert_eq!(store.primary.current(), Some(&host(5432)));
    let session = a_session(&store).await;
    // The change feed reaches the same primary.
    let mut feed = store.subscribe().expect("a feed");
    let connected = tokio::time::timeout(TIMEOUT, feed.recv()).await;
    assert!(
        matches!(connected, Ok(Some(FeedEvent::Connected))),
        "{connected:?}"
    );
    let revoke = [SessionWrite::Revoke {
        id: session.id,
        revoked_at_ms: 2_000,
    }];
    store.write_sessions(&revoke).await.expect("revoke");
    drop((feed, store));
    drop_database(&name).await;
}

#[tokio::test]
async fn a_connection_to_a_server_turned_read_only_is_dropped_and_answers_unavailable() {
    let name = fresh_name();
    let t = target(&name, vec![host(5432)]);
    // One pooled connection, so the next checkout is the same one.
    let store = PostgresStore::connect(&t, 1, TIMEOUT, false)
        .await
        .expect("connect");
    let session = a_session(&store).await;
    {
        // What a demoted primary looks like to a connection that
        // survived: every write fails with SQLSTATE 25006.
        let client = store.pool.get().await.expect("client");
        client
            .batch_execute("SET SESSION default_transaction_read_only = on")
            .await
            .expect("set read-only");
    }
    let rotate = |from_generation| {
        [SessionWrite::Rotate {
            id: session.id,
            from_generation,
            issued_at_ms: 2_000,
        }]
    };
    let error = store
        .write_sessions(&rotate(0))
        .await
        .expect_err("a write on a read-only connection fails");
    assert!(error.is_unavailable(), "{error}");
    assert!(error.to_string().contains("25006"), "{error}");
    // Nothing was applied, and the connection is gone: the retry runs on
    // a new one and succeeds.
    let loaded = store.load_session(session.id).await.expect("load");
    assert_eq!(loaded.map(|s| s.generation), Some(0));
    let outcome = store.write_sessions(&rotate(0)).await.expect("retry");
    assert_eq!(outcome.outcomes, [WriteOutcome::Applied]);
    drop(store);
    drop_database(&name).await;
}

#[tokio::test]
async fn no_primary_among_the_hosts_is_unavailable_naming_each_host() {
    let name = fresh_name();
    maintenance(&format!("CREATE DATABASE {}", quote_ident(&name))).await;
    // Every new connection to this database is read-only, as a standby's.
    maintenance(&format!(
        "ALTER DATABASE {} SET default_transaction_read_only = on",
        quote_ident(&name)
    ))
    .await;
    let t = target(&name, vec![host(1), host(5432)]);
    let primary = Primary::new(t.hosts.clone(), TIMEOUT);
    let mut config = super::super::setup::client_config(&t);
    config.dbname(&name);
    let error = match primary.connect(&config).await {
        Ok(_) => panic!("a read-only server is not a primary"),
        Err(none) => none.into_store_error("test"),
    };
    assert!(error.is_unavailable(), "{error}");
    let message = error.to_string();
    assert!(message.contains("no primary"), "{message}");
    assert!(message.contains("127.0.0.1:1: "), "{message}");
    assert!(
        message.contains("127.0.0.1:5432: ") && message.contains("does not allow writes"),
        "{message}"
    );
    // A store on it does not start: it would have nowhere to write.
    let started = PostgresStore::connect(&t, 1, Duration::from_secs(2), false).await;
    assert!(
        matches!(&started, Err(e) if e.is_unavailable()),
        "{:?}",
        started.err()
    );
    drop_database(&name).await;
}

#[tokio::test]
async fn a_host_that_accepts_but_never_answers_is_passed_over() {
    // Accepts TCP connections and never says a word, like a stopped
    // server whose kernel still completes handshakes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hung = listener.local_addr().expect("address").port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let name = fresh_name();
    let t = target(&name, vec![host(hung), host(5432)]);
    let limit = Duration::from_secs(1);
    // Start-up tries again past the hung host, within its limit per try.
    let store = PostgresStore::connect(&t, 2, limit, false)
        .await
        .expect("starts with the first host hung");
    assert_eq!(store.primary.current(), Some(&host(5432)));
    a_session(&store).await;
    drop(store);
    // A cancelled attempt moves the next one's start past the hung host.
    let primary = Primary::new(t.hosts.clone(), limit);
    let mut config = super::super::setup::client_config(&t);
    config.dbname(MAINTENANCE_DB);
    primary.found(0);
    let first = tokio::time::timeout(limit, primary.connect(&config)).await;
    assert!(first.is_err(), "the hung host holds the first attempt");
    let second = tokio::time::timeout(limit, primary.connect(&config)).await;
    assert!(matches!(second, Ok(Ok(_))), "the second starts past it");
    held.abort();
    drop_database(&name).await;
}

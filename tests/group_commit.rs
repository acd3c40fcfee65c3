//! Group commit: concurrent rotations share database batches, and none is
//! acknowledged before it is durable — the server is killed (SIGKILL) right
//! after the acknowledgements and every acknowledged rotation is found in
//! the database. Runs the real binary, on SQLite and on PostgreSQL.

#[macro_use]
#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;

use reqwest::Method;
use support::{claims_of, email, Backend, ChildApp, TestDb};

const CONNECTIONS: usize = 32;
const ROUNDS: usize = 8;

fn batch_count(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("authd_session_batch_size_count"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// The stored generation of each session.
async fn stored_generations(db: &TestDb) -> HashMap<String, i64> {
    match db.backend {
        Backend::Sqlite => {
            let path = db.url.trim_start_matches("sqlite://").to_owned();
            let conn = rusqlite::Connection::open(path).expect("open the SQLite file");
            let mut statement = conn
                .prepare("SELECT id, generation FROM sessions")
                .expect("query");
            let rows = statement
                .query_map([], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                })
                .expect("rows");
            rows.map(|r| r.expect("row")).collect()
        }
        Backend::Postgres => {
            let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
                .await
                .expect("connect to the test database");
            tokio::spawn(connection);
            client
                .query("SELECT id::text, generation FROM authd.sessions", &[])
                .await
                .expect("query")
                .iter()
                .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1)))
                .collect()
        }
    }
}

async fn acknowledged_rotations_survive_kill_and_share_batches(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let app = ChildApp::start(&db, 0).await;
    let api = app.api.clone();
    let mut tokens = Vec::new();
    for _ in 0..CONNECTIONS {
        tokens.push(api.signed_up(&email()).await);
    }
    let metrics = |api: support::Api| async move {
        let reply = api.send(api.request(Method::GET, "/metrics")).await;
        batch_count(reply.body.as_str().unwrap_or_default())
    };
    let batches_before = metrics(api.clone()).await;

    // Each chain refreshes ROUNDS times, all chains at once.
    let chains: Vec<_> = tokens
        .into_iter()
        .map(|mut token| {
            let api = api.clone();
            tokio::spawn(async move {
                for _ in 0..ROUNDS {
                    token = api.refreshed(&token).await;
                }
                token
            })
        })
        .collect();
    let mut acknowledged = Vec::new();
    for chain in chains {
        acknowledged.push(chain.await.expect("chain task"));
    }
    let batches = metrics(api.clone()).await - batches_before;
    let rotations = (CONNECTIONS * ROUNDS) as u64;
    assert!(
        batches < rotations,
        "{rotations} concurrent rotations took {batches} batches: none were shared"
    );
    eprintln!("{rotations} rotations in {batches} batches ({backend:?})");

    // No flush, no destructor: whatever was acknowledged must be on disk.
    app.kill();
    let stored = stored_generations(&db).await;
    for token in &acknowledged {
        let claims = claims_of(token);
        let sid = claims["sid"].as_str().expect("sid");
        let generation = claims["gen"].as_i64().expect("gen");
        assert_eq!(generation, ROUNDS as i64);
        let on_disk = stored.get(sid).copied();
        assert!(
            on_disk.is_some_and(|g| g >= generation),
            "acknowledged rotation of {sid} to {generation} not durable (stored {on_disk:?})"
        );
    }

    // And the restarted server agrees.
    let again = ChildApp::start(&db, 1).await;
    for token in &acknowledged {
        again.api.authorized(token).await;
    }
}

both_backends!(acknowledged_rotations_survive_kill_and_share_batches);

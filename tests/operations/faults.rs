//! PostgreSQL going away under load: requests that need it fail fast with
//! 503 (never hang, never 500), `/health` turns unhealthy, and when it comes
//! back authd recovers by itself without losing an acknowledged write.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{claims_of, email, wait_for, Backend, TcpProxy, TestApp, TestDb};

const CHAINS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_under_load() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let mut proxy = TcpProxy::to_postgres().await;
    let url = db.url_via(proxy.addr);
    let app = TestApp::spawn_on(
        Arc::clone(&db),
        &[
            ("DATABASE_URL", url.as_str()),
            ("AUTHD_DB_TIMEOUT_MS", "500"),
            ("AUTHD_HEALTH_INTERVAL_MS", "200"),
        ],
    )
    .await;
    let mut tokens = Vec::new();
    for _ in 0..CHAINS {
        tokens.push(app.signed_up(&email()).await);
    }

    let deadline = Instant::now() + Duration::from_secs(6);
    let chains: Vec<_> = tokens
        .into_iter()
        .map(|mut acked| {
            let api = app.api.clone();
            tokio::spawn(async move {
                let (mut ok, mut unavailable, mut slowest) = (0u32, 0u32, Duration::ZERO);
                while Instant::now() < deadline {
                    let started = Instant::now();
                    let reply = api.refresh(&acked).await;
                    slowest = slowest.max(started.elapsed());
                    match reply.status {
                        200 => {
                            acked = reply.token(200);
                            ok += 1;
                        }
                        503 => {
                            reply.error(503, "service_unavailable");
                            unavailable += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        other => panic!("unexpected {other} during the outage: {reply:?}"),
                    }
                }
                (acked, ok, unavailable, slowest)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.stop().await;
    wait_for(
        "/health to report the outage",
        Duration::from_secs(5),
        || async {
            let reply = app.health().await;
            (reply.status == 503 && reply.body["status"] == "unhealthy").then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.start().await;
    wait_for("/health to recover", Duration::from_secs(10), || async {
        (app.health().await.status == 200).then_some(())
    })
    .await;

    let (mut ok, mut unavailable) = (0, 0);
    let mut last_acked = Vec::new();
    for chain in chains {
        let (acked, chain_ok, chain_unavailable, slowest) = chain.await.expect("chain task");
        assert!(
            slowest < Duration::from_secs(3),
            "a request took {slowest:?}: failing fast means well under request_timeout"
        );
        ok += chain_ok;
        unavailable += chain_unavailable;
        last_acked.push(acked);
    }
    assert!(ok > 0 && unavailable > 0, "ok {ok}, 503 {unavailable}");

    // Service is back without a restart.
    let fresh = app.signed_up(&email()).await;
    app.refreshed(&fresh).await;

    // Every acknowledged rotation is in the database.
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    for token in &last_acked {
        let claims = claims_of(token);
        let sid = claims["sid"].as_str().expect("sid");
        let row = client
            .query_one(
                "SELECT generation FROM authd.sessions WHERE id::text = $1",
                &[&sid],
            )
            .await
            .expect("the session is stored");
        let stored: i64 = row.get(0);
        assert!(
            stored >= claims["gen"].as_i64().expect("gen"),
            "acknowledged generation {} of {sid} lost (stored {stored})",
            claims["gen"]
        );
    }
}

//! `/health`, and how authd behaves while its PostgreSQL is unreachable: it
//! says so (503), refuses what needs the database with 503 (never a 500,
//! never a hang), and recovers by itself when the database is back.

use std::time::{Duration, Instant};

use crate::support::{
    email, spawn_app, wait_for, Backend, Reply, TcpProxy, TestApp, TestDb, PASSWORD,
};

both_backends!(health_is_healthy);

async fn health_is_healthy(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    let reply = app.health().await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["status"], "healthy", "{reply:?}");
    assert!(reply.is_json(), "{reply:?}");
    // Still healthy after some traffic, and when asked often.
    app.signed_up(&email()).await;
    for _ in 0..5 {
        assert_eq!(app.health().await.body["status"], "healthy");
    }
}

/// Asserts that `reply` is a proper 503 that arrived in bounded time.
#[track_caller]
fn unavailable(reply: &Reply, took: Duration, what: &str) {
    assert!(
        took < Duration::from_secs(3),
        "{what} took {took:?} with the database down"
    );
    assert_eq!(
        reply.status, 503,
        "{what} with the database down: {reply:?}"
    );
    reply.error(503, "service_unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_is_reported_and_survived() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let mut proxy = TcpProxy::to_postgres().await;
    let url = db.url_via(proxy.addr);
    let app = TestApp::spawn_on(
        db,
        &[
            ("DATABASE_URL", url.as_str()),
            ("AUTHD_HEALTH_INTERVAL_MS", "200"),
            ("AUTHD_DB_TIMEOUT_MS", "500"),
        ],
    )
    .await;
    let api = app.api.bounded(Duration::from_secs(3));
    let user = email();
    let token = api.signed_up(&user).await;
    assert_eq!(api.health().await.status, 200);

    proxy.stop().await;
    let reply = wait_for(
        "/health to report the outage",
        Duration::from_secs(5),
        || async {
            let reply = api.health().await;
            (reply.status != 200).then_some(reply)
        },
    )
    .await;
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.body["status"], "unhealthy", "{reply:?}");

    let timed = |started: Instant| started.elapsed();
    let started = Instant::now();
    let reply = api.signin(&user, PASSWORD).await;
    unavailable(&reply, timed(started), "sign-in");
    let started = Instant::now();
    let reply = api.signup(&email(), PASSWORD).await;
    unavailable(&reply, timed(started), "sign-up");
    let started = Instant::now();
    let reply = api.refresh(&token).await;
    unavailable(&reply, timed(started), "refresh");
    let started = Instant::now();
    let reply = api.revoke(&token).await;
    unavailable(&reply, timed(started), "revoke");
    // Authorizing reads TokenActor's cache: it keeps working.
    api.authorized(&token).await;
    // Still reported down while it is.
    assert_eq!(api.health().await.status, 503);

    proxy.start().await;
    wait_for(
        "/health to report the recovery",
        Duration::from_secs(5),
        || async {
            let reply = api.health().await;
            (reply.status == 200 && reply.body["status"] == "healthy").then_some(())
        },
    )
    .await;
    let token_again = wait_for("sign-in to work again", Duration::from_secs(5), || async {
        let reply = api.signin(&user, PASSWORD).await;
        match reply.status {
            200 => Some(reply.token(200)),
            503 => None,
            _ => panic!("sign-in after the outage: {reply:?}"),
        }
    })
    .await;
    api.authorized(&token_again).await;
    // The refresh and revoke refused during the outage changed nothing.
    let next = api.refreshed(&token).await;
    api.authorized(&next).await;
    assert_eq!(api.revoke(&next).await.status, 200);
    api.refused(&next).await;
    api.signed_up(&email()).await;
}

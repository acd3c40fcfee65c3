//! Health probes and the admin listener: `/health/live` never asks the
//! database, `/health/ready` follows it; on SIGTERM readiness turns 503
//! while requests are still served for `shutdown_delay_ms`; with
//! `admin_bind` set, `/metrics` and the probes live there and `/metrics`
//! leaves the public port.

use std::time::{Duration, Instant};

use reqwest::Method;

use crate::support::{
    email, spawn_app, wait_for, Api, Backend, ChildApp, TcpProxy, TestApp, TestDb,
};

async fn probe(api: &Api, path: &str) -> crate::support::Reply {
    api.send(api.request(Method::GET, path)).await
}

async fn probes_answer(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    let live = probe(&app, "/health/live").await;
    assert_eq!(
        (live.status, live.body["status"].as_str()),
        (200, Some("alive")),
        "{live:?}"
    );
    assert!(live.is_json(), "{live:?}");
    let ready = probe(&app, "/health/ready").await;
    assert_eq!(
        (ready.status, ready.body["status"].as_str()),
        (200, Some("ready")),
        "{ready:?}"
    );
    // Without admin_bind, /metrics stays on the public port.
    assert_eq!(probe(&app, "/metrics").await.status, 200);
    // Wrong method on a probe: 405 with Allow.
    let post = app.send(app.request(Method::POST, "/health/ready")).await;
    post.error(405, "method_not_allowed");
}

both_backends!(probes_answer);

/// The database goes away: readiness says so, liveness does not (a
/// restart would not bring the database back), and both recover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_database_and_liveness_does_not() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let mut proxy = TcpProxy::to_postgres().await;
    let url = db.url_via(proxy.addr);
    let app = TestApp::spawn_on(
        db,
        &[
            ("DATABASE_URL", url.as_str()),
            ("AUTHD_DB_TIMEOUT_MS", "500"),
            ("AUTHD_HEALTH_INTERVAL_MS", "200"),
        ],
    )
    .await;
    assert_eq!(probe(&app, "/health/ready").await.status, 200);

    proxy.stop().await;
    let refused = wait_for("readiness to turn 503", Duration::from_secs(10), || async {
        let reply = probe(&app, "/health/ready").await;
        (reply.status == 503).then_some(reply)
    })
    .await;
    assert_eq!(refused.body["status"], "not_ready", "{refused:?}");
    let reasons = refused.body["reasons"].as_array().expect("reasons").clone();
    assert!(
        reasons.iter().any(|r| r == "database_unreachable"),
        "{refused:?}"
    );
    assert!(refused.headers.contains_key("retry-after"), "{refused:?}");
    let live = probe(&app, "/health/live").await;
    assert_eq!(
        live.status, 200,
        "liveness must not depend on the database: {live:?}"
    );

    proxy.start().await;
    wait_for("readiness to recover", Duration::from_secs(15), || async {
        (probe(&app, "/health/ready").await.status == 200).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listener_takes_metrics_and_probes() {
    let app = spawn_app(Backend::Sqlite, &[("AUTHD_ADMIN_BIND", "127.0.0.1:0")])
        .await
        .expect("sqlite");
    let admin = app.admin.clone().expect("an admin listener");
    assert_ne!(admin.address, app.address);
    app.signed_up(&email()).await;

    let metrics = probe(&admin, "/metrics").await;
    assert_eq!(metrics.status, 200, "{metrics:?}");
    let text = metrics.body.as_str().expect("Prometheus text");
    assert!(text.contains("authd_http_requests_total"), "{text}");
    for path in ["/health", "/health/live", "/health/ready"] {
        assert_eq!(probe(&admin, path).await.status, 200, "admin {path}");
        assert_eq!(probe(&app, path).await.status, 200, "public {path}");
    }
    // /metrics has left the public port...
    probe(&app, "/metrics").await.error(404, "not_found");
    // ...and the admin port serves nothing of the API.
    let signup = admin.signup(&email(), crate::support::PASSWORD).await;
    signup.error(404, "not_found");
    probe(&admin, "/openapi.json").await.error(404, "not_found");
}

/// SIGTERM with `shutdown_delay_ms`: readiness turns 503 at once, new
/// requests (on new connections) are still served during the delay, and
/// the process then drains and exits 0.
async fn sigterm_turns_readiness_off_then_drains(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    const DELAY: Duration = Duration::from_millis(3000);
    let mut app = ChildApp::start_with(&db, 0, &[("AUTHD_SHUTDOWN_DELAY_MS", "3000")]).await;
    let api = app.api.clone();
    assert_eq!(probe(&api, "/health/ready").await.status, 200);

    app.send_sigterm();
    let signalled = Instant::now();
    let not_ready = wait_for("readiness to turn 503", Duration::from_secs(2), || async {
        let reply = probe(&api, "/health/ready").await;
        (reply.status == 503).then_some(reply)
    })
    .await;
    let reasons = not_ready.body["reasons"]
        .as_array()
        .expect("reasons")
        .clone();
    assert!(
        reasons.iter().any(|r| r == "shutting_down"),
        "{not_ready:?}"
    );
    // Still serving, on fresh connections, well inside the delay.
    let mut served = 0;
    while signalled.elapsed() < DELAY / 2 {
        let fresh = api.bounded(Duration::from_secs(5));
        fresh.signed_up(&email()).await;
        assert_eq!(probe(&fresh, "/health/live").await.status, 200);
        served += 1;
    }
    assert!(served > 0);
    assert!(!app.has_exited(), "authd exited inside shutdown_delay_ms");
    let status = app.exited(DELAY + Duration::from_secs(20)).await;
    assert!(status.success(), "authd exited with {status}");
    assert!(
        signalled.elapsed() >= DELAY,
        "authd stopped before its shutdown delay was over"
    );
}

both_backends!(sigterm_turns_readiness_off_then_drains);

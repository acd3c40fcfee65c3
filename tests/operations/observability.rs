//! `/metrics` exposes what operators watch, in Prometheus text format.

use std::time::Duration;

use authd::actors::ActorKind;
use reqwest::Method;

use crate::support::{email, spawn_app, wait_for, Backend};

async fn metrics_text(app: &crate::support::TestApp) -> String {
    let reply = app.send(app.request(Method::GET, "/metrics")).await;
    assert_eq!(reply.status, 200);
    let content_type = reply
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    reply.body.as_str().expect("metrics are text").to_owned()
}

async fn metrics_exposed(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    let user = email();
    let token = app.signed_up(&user).await;
    let token = app.refreshed(&token).await;
    app.authorized(&token).await;
    app.signin(&user, "wrong password!")
        .await
        .error(401, "invalid_credentials");
    // A 204 is counted with its status.
    let other = app.signed_up(&email()).await;
    let listed = app
        .send(app.request(Method::GET, "/sessions").bearer_auth(&other))
        .await;
    let id = listed.body["sessions"][0]["id"]
        .as_str()
        .expect("the session's id")
        .to_owned();
    let ended = app
        .send(
            app.request(Method::DELETE, &format!("/sessions/{id}"))
                .bearer_auth(&other),
        )
        .await;
    assert_eq!(ended.status, 204);
    assert!(app.services.tokens.crash());
    wait_for("restart", Duration::from_secs(5), || async {
        (app.services.restarts.get(ActorKind::Token) >= 1).then_some(())
    })
    .await;

    let text = metrics_text(&app).await;
    for needle in [
        "authd_http_requests_total{route=\"signup\",status=\"201\"}",
        "authd_http_requests_total{route=\"signin\",status=\"401\"}",
        "authd_http_requests_total{route=\"refresh\",status=\"200\"}",
        "authd_http_requests_total{route=\"session_delete\",status=\"204\"}",
        "authd_http_request_duration_seconds_bucket{route=\"authorize\"",
        "authd_actor_restarts_total{actor=\"TokenActor\"}",
        "authd_token_cache_sessions",
        "authd_session_batch_size_bucket",
        "authd_hash_queue_depth",
        "authd_db_healthy",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
    if backend == Backend::Postgres {
        assert!(
            text.contains("authd_db_pool_connections{state=\"open\"}"),
            "metrics lack pool state:\n{text}"
        );
    }
}

both_backends!(metrics_exposed);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_a_request_id() {
    let app = spawn_app(Backend::Sqlite, &[]).await.expect("sqlite");
    let first = app.health().await;
    let second = app.signup("not-an-email", "whatever1").await;
    let id = |r: &crate::support::Reply| {
        r.headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .expect("x-request-id header")
    };
    assert_ne!(id(&first), id(&second));
}

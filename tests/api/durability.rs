//! What authd acknowledged survives a restart: a graceful one (in-process)
//! and a `kill -9` of the real binary right after the acknowledgement.

use std::sync::Arc;

use tokio::task::JoinSet;

use crate::support::{email, spawn_app, Backend, ChildApp, TestApp, TestDb, PASSWORD};

both_backends!(state_survives_graceful_restart, state_survives_kill_9);

async fn state_survives_graceful_restart(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    let user = email();
    let live = app.signed_up(&user).await;
    let rotated_from = app.signed_in(&user).await;
    let rotated = app.refreshed(&rotated_from).await;
    let revoked = app.signed_in(&user).await;
    assert_eq!(app.revoke(&revoked).await.status, 200);
    let user_id = app.authorized(&live).await.user_id();

    let db = app.shutdown().await;
    let app = TestApp::spawn_on(db, &[]).await;

    app.refused(&revoked).await;
    app.authorize(&rotated_from)
        .await
        .unauthorized(&["invalid_token"]);
    assert_eq!(app.authorized(&live).await.user_id(), user_id);
    assert_eq!(app.authorized(&rotated).await.user_id(), user_id);
    let next = app.refreshed(&rotated).await;
    app.authorized(&next).await;
    app.authorize(&rotated)
        .await
        .unauthorized(&["invalid_token"]);

    // The account survived too.
    app.signup(&user, PASSWORD).await.error(409, "email_taken");
    let again = app.signed_in(&user).await;
    assert_eq!(app.authorized(&again).await.user_id(), user_id);

    // And a second restart changes nothing.
    let db = app.shutdown().await;
    let app = TestApp::spawn_on(db, &[]).await;
    app.refused(&revoked).await;
    app.authorized(&next).await;
    app.authorized(&live).await;
}

async fn state_survives_kill_9(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let db: Arc<TestDb> = db;
    let user = email();

    let first = ChildApp::start(&db, 1).await;
    let revoked = first.api.signed_up(&user).await;
    let rotated_from = first.api.signed_in(&user).await;
    let rotated = first.api.refreshed(&rotated_from).await;
    let mut more = Vec::new();
    for _ in 0..6 {
        more.push(first.api.signed_in(&user).await);
    }
    // Revoke them all at once, then kill the server the moment the last
    // acknowledgement arrives: no shutdown, no flush, so each
    // acknowledgement must already have been durable.
    let mut revokes = JoinSet::new();
    for token in std::iter::once(&revoked).chain(&more) {
        let api = first.api.clone();
        let token = token.clone();
        revokes.spawn(async move { api.revoke(&token).await });
    }
    while let Some(done) = revokes.join_next().await {
        let reply = done.expect("revoke task");
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    first.kill();

    let second = ChildApp::start(&db, 2).await;
    second.api.refused(&revoked).await;
    for token in &more {
        second.api.refused(token).await;
    }
    second.api.authorized(&rotated).await;
    second
        .api
        .authorize(&rotated_from)
        .await
        .unauthorized(&["invalid_token"]);
    second.api.signed_in(&user).await;

    // Once more, killing right after a rotation.
    let next = second.api.refreshed(&rotated).await;
    second.kill();
    let third = ChildApp::start(&db, 3).await;
    third.api.authorized(&next).await;
    third
        .api
        .authorize(&rotated)
        .await
        .unauthorized(&["invalid_token"]);
    third.api.refused(&revoked).await;
}

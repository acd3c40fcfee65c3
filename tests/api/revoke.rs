//! `/revoke`: ends a session for good, idempotently, and only that session.

use serde_json::json;

use crate::support::{email, spawn_app, Backend};

both_backends!(revoke_ends_the_session, revoked_session_is_not_resurrected);

async fn revoke_ends_the_session(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    let user = email();
    let doomed = app.signed_up(&user).await;
    let kept = app.signed_in(&user).await;
    let stranger = app.signed_up(&email()).await;

    let reply = app.revoke(&doomed).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.body,
        json!({ "message": "Token revoked successfully." })
    );
    assert!(reply.is_json(), "{reply:?}");

    app.authorize(&doomed).await.error(401, "token_revoked");
    app.refresh(&doomed)
        .await
        .unauthorized(&["token_revoked", "invalid_token"]);

    // Idempotent.
    for _ in 0..2 {
        let again = app.revoke(&doomed).await;
        assert_eq!(again.status, 200, "{again:?}");
        assert_eq!(again.body, reply.body);
    }
    app.refused(&doomed).await;

    // Only that session: the same user's other session and other users
    // carry on.
    app.authorized(&kept).await;
    let kept_next = app.refreshed(&kept).await;
    app.authorized(&kept_next).await;
    app.authorized(&stranger).await;

    // Garbage is not a session.
    app.revoke("garbage").await.error(401, "invalid_token");
    app.revoke("").await.error(401, "invalid_token");
}

/// A refresh that would be a harmless duplicate inside the grace window
/// must not bring back a session revoked in between.
async fn revoked_session_is_not_resurrected(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    let t0 = app.signed_up(&email()).await;
    let t1 = app.refreshed(&t0).await;
    let reply = app.revoke(&t1).await;
    assert_eq!(reply.status, 200, "{reply:?}");

    app.refresh(&t0)
        .await
        .unauthorized(&["token_revoked", "token_reused", "invalid_token"]);
    app.refused(&t1).await;
    app.authorize(&t0)
        .await
        .unauthorized(&["invalid_token", "token_revoked"]);
}

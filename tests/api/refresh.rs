//! `/refresh`: rotation, the grace window for duplicates, reuse detection,
//! expired access tokens, and the absolute session lifetime.

use std::time::{Duration, Instant};

use crate::support::{claims_of, email, spawn_app, wait_for, Backend, Reply, PASSWORD};

both_backends!(
    refresh_rotates,
    duplicate_refresh_inside_grace_window_gets_same_token,
    reuse_outside_grace_window_revokes_session,
    expired_token_can_be_refreshed,
    session_lifetime_is_absolute,
);

async fn refresh_rotates(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    let t0 = app.signed_up(&email()).await;
    let who = app.authorized(&t0).await;

    let t1 = app.refreshed(&t0).await;
    app.authorize(&t0).await.error(401, "invalid_token");
    let after = app.authorized(&t1).await;
    assert_eq!(after.user_id(), who.user_id());
    assert_eq!(after.session_id(), who.session_id());
    assert!(claims_of(&t1)["exp"].as_i64() >= claims_of(&t0)["exp"].as_i64());

    // And again: only the newest token of the chain works.
    let t2 = app.refreshed(&t1).await;
    assert_ne!(t2, t0);
    app.authorize(&t0).await.error(401, "invalid_token");
    app.authorize(&t1).await.error(401, "invalid_token");
    assert_eq!(app.authorized(&t2).await.session_id(), who.session_id());
}

async fn duplicate_refresh_inside_grace_window_gets_same_token(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    let t0 = app.signed_up(&email()).await;
    let t1 = app.refreshed(&t0).await;

    // A retry (or a second tab) presenting t0 again gets t1 again.
    for _ in 0..3 {
        let again = app.refresh(&t0).await.token(200);
        assert_eq!(again, t1, "a duplicate refresh must get the same successor");
    }
    // Nobody was logged out, and t0 stays superseded.
    app.authorized(&t1).await;
    app.authorize(&t0).await.error(401, "invalid_token");

    // The session carries on normally.
    let t2 = app.refreshed(&t1).await;
    app.authorized(&t2).await;
    app.authorize(&t1).await.error(401, "invalid_token");
}

async fn reuse_outside_grace_window_revokes_session(backend: Backend) {
    let Some(app) = spawn_app(backend, &[("AUTHD_REFRESH_GRACE_MS", "0")]).await else {
        return;
    };
    let user = email();
    let t0 = app.signed_up(&user).await;
    let other_session = app.signed_in(&user).await;
    let t1 = app.refreshed(&t0).await;
    app.authorized(&t1).await;

    // t0 was already rotated: presenting it again is theft.
    app.refresh(&t0).await.error(401, "token_reused");
    // The whole session is gone, the successor included.
    app.refused(&t1).await;
    app.refresh(&t0)
        .await
        .unauthorized(&["token_revoked", "token_reused", "invalid_token"]);

    // Other sessions of the user are not affected, and the user can sign
    // in again.
    app.authorized(&other_session).await;
    let fresh = app.signed_in(&user).await;
    app.authorized(&fresh).await;
}

async fn expired_token_can_be_refreshed(backend: Backend) {
    let Some(app) = spawn_app(backend, &[("AUTHD_ACCESS_TOKEN_TTL_SECS", "1")]).await else {
        return;
    };
    let user = email();
    short_lived(&app.signup(&user, PASSWORD).await, 201);
    let t0 = short_lived(&app.signin(&user, PASSWORD).await, 200);
    let expired = |token: String| {
        let app = &app;
        move || {
            let token = token.clone();
            async move {
                let reply = app.authorize(&token).await;
                match reply.status {
                    200 => None,
                    _ => Some(reply),
                }
            }
        }
    };
    let reply = wait_for(
        "the access token to expire",
        Duration::from_secs(5),
        expired(t0.clone()),
    )
    .await;
    reply.error(401, "token_expired");

    // The session is alive: the expired token refreshes.
    let t1 = short_lived(&app.refresh(&t0).await, 200);
    assert_ne!(t1, t0);
    app.authorized(&t1).await;
    app.authorize(&t0)
        .await
        .unauthorized(&["token_expired", "invalid_token"]);

    // An expired token can still be revoked (log out after a long pause).
    let reply = wait_for(
        "the access token to expire",
        Duration::from_secs(5),
        expired(t1.clone()),
    )
    .await;
    reply.error(401, "token_expired");
    let revoked = app.revoke(&t1).await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    app.refresh(&t1)
        .await
        .unauthorized(&["token_revoked", "invalid_token"]);
}

/// The token of a token answer with `status` whose token lives 1 s:
/// `expires_in` is whole seconds, so it may already read 0.
#[track_caller]
fn short_lived(reply: &Reply, status: u16) -> String {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(reply.body["token_type"], "bearer", "{reply:?}");
    let expires_in = reply.body["expires_in"].as_i64();
    assert!(
        matches!(expires_in, Some(0..=1)),
        "expires_in of a 1 s token: {reply:?}"
    );
    reply.body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token: {reply:?}"))
        .to_owned()
}

async fn session_lifetime_is_absolute(backend: Backend) {
    let Some(app) = spawn_app(
        backend,
        &[
            ("AUTHD_ACCESS_TOKEN_TTL_SECS", "1"),
            ("AUTHD_SESSION_TTL_SECS", "3"),
        ],
    )
    .await
    else {
        return;
    };
    let user = email();
    short_lived(&app.signup(&user, PASSWORD).await, 201);
    let t0 = short_lived(&app.signin(&user, PASSWORD).await, 200);
    // The session started before this instant, so it ends before `started + 3 s`.
    let started = Instant::now();
    let claims = claims_of(&t0);
    assert!(
        claims["exp"].as_i64().unwrap() <= claims["iat"].as_i64().unwrap() + 1,
        "access tokens live 1 s here: {claims}"
    );

    // Inside the session's lifetime a refresh works (of an expired token)...
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t1 = short_lived(&app.refresh(&t0).await, 200);
    assert_ne!(t1, t0);
    // ...but does not extend it (a sliding lifetime would end at +4.5 s).
    let end = started + Duration::from_millis(3300);
    tokio::time::sleep(end.saturating_duration_since(Instant::now())).await;
    app.refresh(&t1)
        .await
        .unauthorized(&["token_revoked", "token_expired", "invalid_token"]);
    app.authorize(&t1)
        .await
        .unauthorized(&["token_expired", "token_revoked", "invalid_token"]);

    // Signing in starts a new session.
    let fresh = short_lived(&app.signin(&user, PASSWORD).await, 200);
    app.authorized(&fresh).await;
}

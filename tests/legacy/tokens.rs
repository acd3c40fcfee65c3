//! Nobody is logged out: the old service's live tokens keep authorizing,
//! and are exchanged once for an authd session at refresh.

use reqwest::Method;
use serde_json::json;

use crate::support::{claims_of, TestApp};
use crate::{now_secs, old_token, OldDeployment, OLD_SECRET};

async fn authorize_token(app: &TestApp, token: &str) -> crate::support::Reply {
    app.send(
        app.request(Method::GET, "/auth/authorize-token")
            .json(&json!({ "access_token": token })),
    )
    .await
}

async fn put_refresh(app: &TestApp, token: &str) -> crate::support::Reply {
    app.send(
        app.request(Method::PUT, "/auth/refresh")
            .json(&json!({ "access_token": token })),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_tokens_authorize_and_are_exchanged_once() {
    let Some(old) = OldDeployment::create().await else {
        return;
    };
    let dave = old.add_user("dave@example.com", "dave-pw", true).await;
    let erin = old.add_user("erin@example.com", "erin-pw", true).await;
    let dave_token = old.add_token(dave, now_secs() + 600).await;
    let erin_token = old.add_token(erin, now_secs() + 600).await;
    let app = old.start_authd(&[("AUTHD_REFRESH_GRACE_MS", "1000")]).await;

    // An unexpired old token in the old table authorizes, with the integer id.
    let reply = authorize_token(&app, &dave_token).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["user_id"], json!(dave));
    let reply = app.authorize(&dave_token).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["user_int_id"], json!(dave));
    assert!(reply.body["session_id"].is_null());

    // Forged, another key, not in the table, or naming another user: 401.
    let forged = old_token(dave, now_secs() + 600, "another-secret-another-secret");
    authorize_token(&app, &forged)
        .await
        .error(401, "invalid_token");
    let not_stored = old_token(dave, now_secs() + 599, OLD_SECRET);
    authorize_token(&app, &not_stored)
        .await
        .error(401, "invalid_token");
    put_refresh(&app, &not_stored)
        .await
        .error(401, "invalid_token");
    let expired = old_token(dave, now_secs() - 60, OLD_SECRET);
    authorize_token(&app, &expired)
        .await
        .unauthorized(&["token_expired", "invalid_token"]);

    // A row the old service deletes stops working at once.
    old.old
        .execute(
            "DELETE FROM access_tokens WHERE user_id = $1",
            &[&(dave as i32)],
        )
        .await
        .expect("old side delete");
    authorize_token(&app, &dave_token)
        .await
        .error(401, "invalid_token");

    // Exchange: two tabs at once get the same successor.
    let (a, b) = tokio::join!(put_refresh(&app, &erin_token), app.refresh(&erin_token));
    let (a, b) = (a.token(200), b.token(200));
    assert_eq!(a, b, "both tabs get the same successor");
    let claims = claims_of(&a);
    assert_eq!(claims["user_id"], json!(erin), "{claims}");
    assert!(claims["sid"].is_string());
    let who = app.authorized(&a).await;
    assert_eq!(who.body["user_int_id"], json!(erin));
    // Exchanged: the old token no longer authorizes on its own.
    authorize_token(&app, &erin_token)
        .await
        .error(401, "invalid_token");
    // The successor rotates like any authd token.
    let next = app.refreshed(&a).await;
    // The old token presented again now is reuse: the session ends.
    put_refresh(&app, &erin_token)
        .await
        .error(401, "token_reused");
    app.refused(&next).await;

    // Expired old tokens are exchangeable while their exp is within the
    // session lifetime, not after.
    let frank = old.add_user("frank@example.com", "frank-pw", true).await;
    let stale = old.add_token(frank, now_secs() - 3_600).await;
    let fresh = put_refresh(&app, &stale).await.token(200);
    assert_eq!(claims_of(&fresh)["user_id"], json!(frank));
    let gina = old.add_user("gina@example.com", "gina-pw", true).await;
    let ancient = old.add_token(gina, now_secs() - 8 * 24 * 3_600).await;
    put_refresh(&app, &ancient)
        .await
        .unauthorized(&["token_expired"]);

    // The account adopted by the exchange signs in with its old password
    // (bcrypt once, then argon2id), keeping its integer id.
    let signed = app.signin("erin@example.com", "erin-pw").await.token(200);
    assert_eq!(claims_of(&signed)["user_id"], json!(erin));

    // An account adopted by exchange whose user logs out everywhere before
    // ever signing in at authd: the old bcrypt hash is not honoured again.
    let jack = old.add_user("jack@example.com", "jack-pw", true).await;
    let jack_old = old.add_token(jack, now_secs() + 600).await;
    let jack_new = put_refresh(&app, &jack_old).await.token(200);
    let all = app
        .post_json(
            "/revoke",
            &json!({ "access_token": jack_new, "scope": "all" }),
        )
        .await;
    assert_eq!(all.status, 200, "{all:?}");
    app.signin("jack@example.com", "jack-pw")
        .await
        .error(401, "invalid_credentials");

    // After "log out everywhere", no old token of that user is honoured.
    let henry = old.add_user("henry@example.com", "henry-pw", true).await;
    let henry_old = old.add_token(henry, now_secs() + 600).await;
    assert_eq!(authorize_token(&app, &henry_old).await.status, 200);
    let henry_new = app.signin("henry@example.com", "henry-pw").await.token(200);
    let revoked = app
        .post_json(
            "/revoke",
            &json!({ "access_token": henry_new, "scope": "all" }),
        )
        .await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    authorize_token(&app, &henry_old)
        .await
        .error(401, "token_revoked");
    put_refresh(&app, &henry_old)
        .await
        .error(401, "token_revoked");
    // ...even one the old service issues afterwards (side by side).
    let henry_later = old.add_token(henry, now_secs() + 900).await;
    authorize_token(&app, &henry_later)
        .await
        .error(401, "token_revoked");

    // The old client logging out with its old token (DELETE /auth/revoke).
    let ivy = old.add_user("ivy@example.com", "ivy-pw", true).await;
    let ivy_old = old.add_token(ivy, now_secs() + 600).await;
    let revoked = app
        .send(
            app.request(Method::DELETE, "/auth/revoke")
                .json(&json!({ "access_token": ivy_old })),
        )
        .await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    assert_eq!(
        revoked.body,
        json!({ "message": "Token revoked successfully." })
    );
    authorize_token(&app, &ivy_old)
        .await
        .unauthorized(&["invalid_token", "token_revoked"]);
    put_refresh(&app, &ivy_old)
        .await
        .error(401, "token_revoked");

    drop(app);
    old.remove_role().await;
}

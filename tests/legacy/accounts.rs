//! Password change and account deletion of accounts adopted from the old
//! service: authd never writes the old tables, so it must itself make sure
//! that the old bcrypt hash and the old tokens stay refused afterwards.

use reqwest::Method;
use serde_json::json;

use crate::{now_secs, OldDeployment};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_adopted_account_closes_its_old_credentials() {
    let Some(old) = OldDeployment::create().await else {
        return;
    };
    let fay = old.add_user("Fay@Example.com", "fay-pw", true).await;
    let old_token = old.add_token(fay, now_secs() + 600).await;
    let before = old.old_tables_digest().await;
    let app = old.start_authd(&[]).await;

    // Adopted at sign-in; the old token still authorizes (not closed yet).
    let token = app.signin("fay@example.com", "fay-pw").await.token(200);
    assert_eq!(app.authorize(&old_token).await.status, 200);

    let reply = app
        .send(
            app.request(Method::DELETE, "/account")
                .bearer_auth(&token)
                .json(&json!({ "password": "fay-pw" })),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    app.refused(&token).await;
    // The old row is still there, but neither its password nor its token
    // opens anything again, and the old token does not re-adopt it.
    for spelling in ["Fay@Example.com", "fay@example.com"] {
        app.signin(spelling, "fay-pw")
            .await
            .error(401, "invalid_credentials");
    }
    app.authorize(&old_token)
        .await
        .unauthorized(&["invalid_token", "token_revoked"]);
    app.refresh(&old_token)
        .await
        .unauthorized(&["invalid_token", "token_revoked"]);
    // The address is free for a new authd account.
    let again = app
        .signup("fay@example.com", "a new long password")
        .await
        .token(201);
    app.authorized(&again).await;
    app.authorize(&old_token)
        .await
        .unauthorized(&["invalid_token", "token_revoked"]);
    assert_eq!(
        old.old_tables_digest().await,
        before,
        "authd wrote public.*"
    );
    drop(app);
    old.remove_role().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_closes_an_adopted_accounts_old_credentials() {
    let Some(old) = OldDeployment::create().await else {
        return;
    };
    let gus = old.add_user("gus@example.com", "gus-pw", true).await;
    let old_token = old.add_token(gus, now_secs() + 600).await;
    let app = old.start_authd(&[]).await;
    // Adopted through the token alone: authd has never seen the password,
    // which is still only the old bcrypt hash.
    let exchanged = app.refresh(&old_token).await.token(200);
    let reply = app
        .send(
            app.request(Method::POST, "/password")
                .bearer_auth(&exchanged)
                .json(&json!({
                    "current_password": "gus-pw",
                    "new_password": "gus has a long password now",
                })),
        )
        .await;
    let fresh = reply.token(200);
    app.refused(&exchanged).await;
    app.authorized(&fresh).await;
    app.signin("gus@example.com", "gus-pw")
        .await
        .error(401, "invalid_credentials");
    app.signin("gus@example.com", "gus has a long password now")
        .await
        .token(200);
    // A token the old service issues later is not honoured either.
    let later = old.add_token(gus, now_secs() + 900).await;
    app.authorize(&later)
        .await
        .unauthorized(&["invalid_token", "token_revoked"]);
    drop(app);
    old.remove_role().await;
}

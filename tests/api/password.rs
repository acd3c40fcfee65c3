//! `POST /password` and `DELETE /account`: the password is checked (401,
//! no sooner than the sign-in failure floor), a change ends every session
//! of the user — grace window or not — and answers a new one; a deletion
//! ends every session and frees the e-mail.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{claims_of, email, spawn_app, Api, Backend, Reply, PASSWORD};

both_backends!(
    a_password_change_ends_every_session_and_starts_one,
    a_password_change_checks_both_passwords,
    deleting_the_account_ends_everything_and_frees_the_email,
);

const NEW_PASSWORD: &str = "a brand new passphrase";

pub async fn change_password(api: &Api, token: &str, current: &str, new: &str) -> Reply {
    api.send(
        api.request(Method::POST, "/password")
            .bearer_auth(token)
            .json(&json!({ "current_password": current, "new_password": new })),
    )
    .await
}

pub async fn delete_account(api: &Api, token: &str, password: &str) -> Reply {
    api.send(
        api.request(Method::DELETE, "/account")
            .bearer_auth(token)
            .json(&json!({ "password": password })),
    )
    .await
}

async fn a_password_change_ends_every_session_and_starts_one(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    let user = email();
    let laptop = app.signed_up(&user).await;
    let phone = app.signed_in(&user).await;
    // The phone's previous token is inside the grace window: a refresh of
    // it would normally get the same successor again.
    let phone_next = app.refreshed(&phone).await;
    let stranger = app.signed_up(&email()).await;

    let reply = change_password(&app, &laptop, PASSWORD, NEW_PASSWORD).await;
    let fresh = reply.token(200);
    let fresh_sid = claims_of(&fresh)["sid"].clone();
    assert_ne!(fresh_sid, claims_of(&laptop)["sid"]);
    for token in [&laptop, &phone, &phone_next] {
        app.refused(token).await;
    }
    app.refresh(&phone)
        .await
        .unauthorized(&["token_revoked", "invalid_token"]);
    app.authorized(&fresh).await;
    app.authorized(&stranger).await;
    let listed = app
        .send(app.request(Method::GET, "/sessions").bearer_auth(&fresh))
        .await;
    assert_eq!(listed.status, 200, "{listed:?}");
    let sessions = listed.body["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 1, "{listed:?}");
    assert_eq!(sessions[0]["id"], fresh_sid);
    assert_eq!(sessions[0]["current"], true);

    // The old password is gone, the new one signs in.
    app.signin(&user, PASSWORD)
        .await
        .error(401, "invalid_credentials");
    app.signin(&user, NEW_PASSWORD).await.token(200);
    let fresh = app.refreshed(&fresh).await;
    app.authorized(&fresh).await;
}

async fn a_password_change_checks_both_passwords(backend: Backend) {
    let Some(app) = spawn_app(backend, &[("AUTHD_SIGNIN_FAILURE_FLOOR_MS", "300")]).await else {
        return;
    };
    let user = email();
    let token = app.signed_up(&user).await;

    let started = Instant::now();
    let wrong = change_password(&app, &token, "not my password", NEW_PASSWORD).await;
    wrong.error(401, "invalid_credentials");
    // No e-mail was sent: the answer does not blame one.
    assert_eq!(wrong.body["message"], "wrong password", "{wrong:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "a wrong password answers no sooner than the failure floor"
    );
    change_password(&app, &token, PASSWORD, "short")
        .await
        .error(422, "invalid_request");
    change_password(&app, &token, PASSWORD, &"x".repeat(1025))
        .await
        .error(422, "invalid_request");
    let missing = app
        .send(
            app.request(Method::POST, "/password")
                .bearer_auth(&token)
                .json(&json!({ "current_password": PASSWORD })),
        )
        .await;
    missing.error(422, "invalid_request");
    let anonymous = app
        .post_json(
            "/password",
            &json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD }),
        )
        .await;
    anonymous.error(401, "missing_token");
    change_password(&app, "garbage", PASSWORD, NEW_PASSWORD)
        .await
        .error(401, "invalid_token");
    // Nothing changed on the way.
    app.authorized(&token).await;
    app.signed_in(&user).await;
}

async fn deleting_the_account_ends_everything_and_frees_the_email(backend: Backend) {
    let Some(app) = spawn_app(backend, &[("AUTHD_SIGNIN_FAILURE_FLOOR_MS", "300")]).await else {
        return;
    };
    let user = email();
    let laptop = app.signed_up(&user).await;
    let phone = app.signed_in(&user).await;
    let old_user_id = app.authorized(&laptop).await.user_id();

    let started = Instant::now();
    let wrong = delete_account(&app, &laptop, "not my password").await;
    wrong.error(401, "invalid_credentials");
    assert_eq!(wrong.body["message"], "wrong password", "{wrong:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    let no_body = app
        .send(app.request(Method::DELETE, "/account").bearer_auth(&laptop))
        .await;
    no_body.error(400, "malformed_json");
    let said = no_body.body["message"].as_str().unwrap_or_default();
    assert!(said.contains("the password is required"), "{no_body:?}");
    app.authorized(&laptop).await;

    let reply = delete_account(&app, &phone, PASSWORD).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.body["message"].is_string(), "{reply:?}");
    for token in [&laptop, &phone] {
        app.refused(token).await;
    }
    delete_account(&app, &laptop, PASSWORD)
        .await
        .unauthorized(&["token_revoked", "invalid_token"]);
    app.signin(&user, PASSWORD)
        .await
        .error(401, "invalid_credentials");

    // The address is free: a new account, with nothing of the old one.
    let again = app.signed_up(&user).await;
    let new_user_id = app.authorized(&again).await.user_id();
    assert_ne!(new_user_id, old_user_id);
    for token in [&laptop, &phone] {
        app.refused(token).await;
    }
    let listed = app
        .send(app.request(Method::GET, "/sessions").bearer_auth(&again))
        .await;
    assert_eq!(
        listed.body["sessions"].as_array().map(Vec::len),
        Some(1),
        "{listed:?}"
    );
    assert_eq!(listed.body["next"], Value::Null);
}

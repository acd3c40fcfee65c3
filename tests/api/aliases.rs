//! The seed service's routes, kept as aliases: `POST /auth/signup`,
//! `POST /auth/signin`, `PUT /auth/refresh`, `DELETE /auth/revoke` and
//! `GET /auth/authorize-token` (token in a JSON body).

use reqwest::Method;
use serde_json::json;

use crate::support::{email, spawn_app, Api, Backend, Reply, PASSWORD};

both_backends!(seed_aliases_behave_like_main_routes);

async fn authorize_token(api: &Api, token: &str) -> Reply {
    api.send(
        api.request(Method::GET, "/auth/authorize-token")
            .json(&json!({ "access_token": token })),
    )
    .await
}

async fn seed_aliases_behave_like_main_routes(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    let user = email();
    let credentials = json!({ "email": user, "password": PASSWORD });

    let signed_up = app
        .send(app.request(Method::POST, "/auth/signup").json(&credentials))
        .await
        .token(201);
    app.send(app.request(Method::POST, "/auth/signup").json(&credentials))
        .await
        .error(409, "email_taken");
    app.send(
        app.request(Method::POST, "/auth/signup")
            .json(&json!({ "email": "nope", "password": PASSWORD })),
    )
    .await
    .error(422, "invalid_request");

    let token = app
        .send(app.request(Method::POST, "/auth/signin").json(&credentials))
        .await
        .token(200);
    app.send(
        app.request(Method::POST, "/auth/signin")
            .json(&json!({ "email": user, "password": "wrong password" })),
    )
    .await
    .error(401, "invalid_credentials");

    // authorize-token answers like /authorize, but with the integer id as
    // `user_id`, as the old service did (the UUID is `user_uuid`).
    let by_body = authorize_token(&app, &token).await;
    let by_header = app.authorized(&token).await;
    assert_eq!(by_body.status, 200, "{by_body:?}");
    assert!(by_body.body["user_id"].is_i64(), "{by_body:?}");
    assert_eq!(by_body.body["user_id"], by_header.body["user_int_id"]);
    assert_eq!(by_body.body["user_uuid"], by_header.body["user_id"]);
    assert_eq!(by_body.body["session_id"], by_header.body["session_id"]);
    assert_eq!(by_body.body["expires_at"], by_header.body["expires_at"]);
    // Users created by authd draw from 2^31 upwards, a range the old
    // service's SERIAL ids never reach.
    assert!(by_body.body["user_id"].as_i64().unwrap() >= 1 << 31);
    let first_session = authorize_token(&app, &signed_up).await;
    assert_eq!(first_session.body["user_id"], by_body.body["user_id"]);
    authorize_token(&app, "garbage")
        .await
        .error(401, "invalid_token");
    let with_bearer = app
        .send(
            app.request(Method::GET, "/auth/authorize-token")
                .bearer_auth(&token),
        )
        .await;
    assert_eq!(with_bearer.body, by_body.body, "{with_bearer:?}");

    // PUT /auth/refresh rotates.
    let rotated = app
        .send(
            app.request(Method::PUT, "/auth/refresh")
                .json(&json!({ "access_token": token })),
        )
        .await
        .token(200);
    assert_ne!(rotated, token);
    authorize_token(&app, &token)
        .await
        .unauthorized(&["invalid_token"]);
    assert_eq!(
        authorize_token(&app, &rotated).await.session_id(),
        by_body.session_id()
    );

    // DELETE /auth/revoke revokes.
    let revoked = app
        .send(
            app.request(Method::DELETE, "/auth/revoke")
                .json(&json!({ "access_token": rotated })),
        )
        .await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    assert_eq!(
        revoked.body,
        json!({ "message": "Token revoked successfully." })
    );
    authorize_token(&app, &rotated)
        .await
        .unauthorized(&["token_revoked", "invalid_token"]);
    app.send(
        app.request(Method::PUT, "/auth/refresh")
            .json(&json!({ "access_token": rotated })),
    )
    .await
    .unauthorized(&["token_revoked", "invalid_token"]);
    app.send(
        app.request(Method::DELETE, "/auth/revoke")
            .json(&json!({ "access_token": "garbage" })),
    )
    .await
    .error(401, "invalid_token");

    // The other session is untouched.
    assert_eq!(authorize_token(&app, &signed_up).await.status, 200);

    // The old health path, which load balancers and container checks probe.
    let old_health = app.send(app.request(Method::GET, "/auth/health")).await;
    assert_eq!(old_health.status, 200, "{old_health:?}");
    assert_eq!(old_health.body, app.health().await.body);
}

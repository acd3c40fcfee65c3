//! `GET /authorize`: who a valid token belongs to, and a 401 for anything
//! else (no token, garbage, a wrong key, `alg: none`, tampering, a wrong
//! audience or issuer, a session that does not exist), also for a token
//! authorized before (remembered by its digest, never by its session state).

use base64::Engine;
use jsonwebtoken::Algorithm;
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{claims_of, email, forge, spawn_app, Backend, SECRET_KEY};

both_backends!(
    authorize_valid_tokens,
    authorize_requires_a_bearer_token,
    forged_and_tampered_tokens_are_refused,
);

async fn authorize_valid_tokens(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    let user = email();
    let token = app.signed_up(&user).await;
    let reply = app.authorized(&token).await;
    assert!(reply.is_json(), "{reply:?}");
    let claims = claims_of(&token);
    assert_eq!(reply.body["user_id"], claims["sub"], "{reply:?}");
    assert_eq!(reply.body["session_id"], claims["sid"], "{reply:?}");

    // The scheme is case-insensitive (RFC 7235).
    let lower = app
        .send(
            app.request(Method::GET, "/authorize")
                .header("authorization", format!("bearer {token}")),
        )
        .await;
    assert_eq!(lower.status, 200, "{lower:?}");
    assert_eq!(lower.user_id(), reply.user_id());

    // Authorizing is a read: doing it again changes nothing.
    for _ in 0..3 {
        assert_eq!(app.authorized(&token).await.body, reply.body);
    }

    // A token authorized before is recognised without a second signature
    // check, but its session is still consulted every time: revoked, it
    // is refused at once.
    let revoked = app.revoke(&token).await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    app.authorize(&token).await.error(401, "token_revoked");
}

async fn authorize_requires_a_bearer_token(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    let token = app.signed_up(&email()).await;

    let missing = app.send(app.request(Method::GET, "/authorize")).await;
    missing.error(401, "missing_token");
    assert_eq!(
        missing
            .headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer"),
        "a 401 names the scheme: {missing:?}"
    );
    for header in [
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        format!("Basic {token}"),
        token.clone(),
    ] {
        let reply = app
            .send(
                app.request(Method::GET, "/authorize")
                    .header("authorization", header.clone()),
            )
            .await;
        assert_eq!(reply.status, 401, "Authorization: {header:?}: {reply:?}");
        reply.unauthorized(&["missing_token", "invalid_token"]);
    }
    for garbage in [
        "garbage",
        "not.a.jwt",
        "a.b.c",
        "eyJhbGciOiJIUzI1NiJ9.e30.",
        &"x".repeat(5000),
    ] {
        let reply = app.authorize(garbage).await;
        assert_eq!(reply.status, 401, "{garbage:?}: {reply:?}");
        reply.error(401, "invalid_token");
    }
    // The real token still works.
    app.authorized(&token).await;
}

async fn forged_and_tampered_tokens_are_refused(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    let token = app.signed_up(&email()).await;
    let victim = app.signed_up(&email()).await;
    let claims = claims_of(&token);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();

    // Sanity: re-signing the real claims with the real key reproduces a
    // working token, so every refusal below is due to the one change made.
    let resigned = forge(&claims, Algorithm::HS256, SECRET_KEY.as_bytes());
    app.authorized(&resigned).await;

    let with = |field: &str, value: Value| {
        let mut c = claims.clone();
        c[field] = value;
        c
    };
    let mut forged: Vec<(&str, String)> = vec![
        (
            "another key",
            forge(
                &claims,
                Algorithm::HS256,
                b"some-other-secret-key-of-32-bytes-or-more",
            ),
        ),
        (
            "another HMAC algorithm, right key",
            forge(&claims, Algorithm::HS512, SECRET_KEY.as_bytes()),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
                parts[1]
            ),
        ),
        (
            "alg none with the old signature",
            format!(
                "{}.{}.{}",
                b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
                parts[1],
                parts[2]
            ),
        ),
        (
            "wrong audience",
            forge(
                &with("aud", json!("someone-else")),
                Algorithm::HS256,
                SECRET_KEY.as_bytes(),
            ),
        ),
        (
            "wrong issuer",
            forge(
                &with("iss", json!("evil")),
                Algorithm::HS256,
                SECRET_KEY.as_bytes(),
            ),
        ),
        (
            "unknown session",
            forge(
                &with("sid", json!(uuid::Uuid::new_v4().to_string())),
                Algorithm::HS256,
                SECRET_KEY.as_bytes(),
            ),
        ),
        (
            "another user's session",
            forge(
                &with("sid", claims_of(&victim)["sid"].clone()),
                Algorithm::HS256,
                SECRET_KEY.as_bytes(),
            ),
        ),
    ];
    // Payload tampering with the original signature kept.
    for (what, field, value) in [
        ("tampered subject", "sub", json!(uuid::Uuid::new_v4())),
        ("tampered generation", "gen", json!(5)),
        (
            "tampered expiry",
            "exp",
            json!(claims["exp"].as_i64().unwrap() + 3600),
        ),
    ] {
        let payload = b64.encode(with(field, value).to_string());
        forged.push((what, format!("{}.{payload}.{}", parts[0], parts[2])));
    }
    // A flipped signature byte.
    let mut signature = b64.decode(parts[2]).unwrap();
    signature[0] ^= 1;
    forged.push((
        "tampered signature",
        format!("{}.{}.{}", parts[0], parts[1], b64.encode(signature)),
    ));

    for (what, bad) in &forged {
        let reply = app.authorize(bad).await;
        assert_eq!(reply.status, 401, "{what}: {reply:?}");
        reply.error(401, "invalid_token");
        // The same token cannot be refreshed or revoked either.
        let reply = app.refresh(bad).await;
        assert_eq!(reply.status, 401, "refresh with {what}: {reply:?}");
        reply.unauthorized(&["invalid_token", "token_revoked"]);
        let reply = app.revoke(bad).await;
        assert_eq!(reply.status, 401, "revoke with {what}: {reply:?}");
        reply.unauthorized(&["invalid_token"]);
    }

    // A generation the session never issued (only the signing key can make
    // one) neither authorizes nor refreshes.
    let ahead = forge(
        &with("gen", json!(claims["gen"].as_u64().unwrap() + 1)),
        Algorithm::HS256,
        SECRET_KEY.as_bytes(),
    );
    app.authorize(&ahead).await.error(401, "invalid_token");
    app.refresh(&ahead)
        .await
        .unauthorized(&["invalid_token", "token_revoked"]);

    // None of that touched the real sessions.
    app.authorized(&token).await;
    app.authorized(&victim).await;
}

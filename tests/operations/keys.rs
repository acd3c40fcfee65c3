//! Ed25519 signing keys: JWKS, verification by a standard JWT library from
//! the JWKS alone, and rotation with `authd keys rotate`.

use std::process::Command;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::Method;
use serde_json::Value;

use crate::support::{claims_of, email, spawn_app, wait_for, Backend, TestApp};

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("a JWT header")
        .kid
        .expect("EdDSA tokens carry a kid")
}

async fn jwks(app: &TestApp) -> JwkSet {
    let reply = app
        .send(app.request(Method::GET, "/.well-known/jwks.json"))
        .await;
    assert_eq!(reply.status, 200);
    serde_json::from_value(reply.body).expect("a JWK Set")
}

/// Verifies `token` the way an outside service would: from the JWKS only.
fn verify_with_jwks(set: &JwkSet, token: &str) -> Value {
    let jwk = set
        .find(&kid_of(token))
        .expect("the token's kid is in the JWKS");
    let key = DecodingKey::from_jwk(jwk).expect("usable JWK");
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["authd"]);
    validation.set_issuer(&["authd"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .expect("the token verifies from the JWKS alone")
        .claims
}

async fn ed25519_keys_rotate(backend: Backend) {
    let overrides = [
        ("AUTHD_JWT_ALGORITHM", "EdDSA"),
        ("AUTHD_KEY_RELOAD_SECS", "1"),
    ];
    let Some(app) = spawn_app(backend, &overrides).await else {
        return;
    };
    let user = email();
    let before = app.signed_up(&user).await;
    let old_kid = kid_of(&before);
    let set = jwks(&app).await;
    assert_eq!(set.keys.len(), 1);
    let claims = verify_with_jwks(&set, &before);
    assert_eq!(claims["sub"], claims_of(&before)["sub"]);
    app.authorized(&before).await;

    // An HS256 server never publishes its secret.
    let Some(hs) = spawn_app(backend, &[]).await else {
        return;
    };
    assert!(jwks(&hs).await.keys.is_empty());

    let output = Command::new(env!("CARGO_BIN_EXE_authd"))
        .args(["keys", "rotate"])
        .env("DATABASE_URL", &app.db.url)
        .env("AUTHD_JWT_ALGORITHM", "EdDSA")
        .output()
        .expect("authd keys rotate runs");
    assert!(output.status.success(), "keys rotate failed: {output:?}");
    let new_kid = String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .last()
        .expect("keys rotate prints the kid")
        .to_owned();
    assert_ne!(new_kid, old_kid);

    // The running instance picks the key up (key_reload_secs = 1).
    let set = wait_for(
        "the JWKS lists both keys",
        Duration::from_secs(5),
        || async {
            let set = jwks(&app).await;
            (set.keys.len() == 2).then_some(set)
        },
    )
    .await;
    let after = app.signed_in(&user).await;
    assert_eq!(kid_of(&after), new_kid, "new tokens carry the new kid");
    verify_with_jwks(&set, &after);
    verify_with_jwks(&set, &before);
    // The token signed by the previous key stays valid until it expires.
    app.authorized(&before).await;
    app.authorized(&after).await;
    let refreshed = app.refreshed(&before).await;
    assert_eq!(kid_of(&refreshed), new_kid);
}

both_backends!(ed25519_keys_rotate);

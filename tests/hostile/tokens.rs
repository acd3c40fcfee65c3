//! Hostile tokens: forged, tampered, expired and foreign ones, the
//! algorithm confusions, and odd `Authorization` headers.

use super::*;

both_backends!(
    forged_tokens,
    expired_and_foreign_sessions,
    authorization_headers,
    eddsa_server_refuses_algorithm_confusion,
);

/// The claims of a live token of a fresh account, as JSON.
async fn live_claims(app: &TestApp) -> (String, Value) {
    let token = app.signed_up(&email()).await;
    let claims = claims_of(&token);
    (token, claims)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A token with this header and payload JSON, and `signature` (base64url).
fn assemble(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    )
}

/// Signs with an Ed25519 key of the attacker's own.
fn forge_eddsa(claims: &Value, kid: Option<&str>) -> String {
    let key = authd::domain::Ed25519Key::generate("attacker".into()).unwrap();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_ed_der(&key.private_pkcs8_der),
    )
    .unwrap()
}

/// `token` is refused by authorize, refresh and revoke alike, with `code`
/// on authorize; and the server stays healthy.
async fn token_refused(app: &TestApp, token: &str, code: &str, what: &str) {
    let reply = app.authorize(token).await;
    refused(app, reply, 401, code, &format!("{what}: authorize")).await;
    let reply = app
        .send(
            app.request(Method::GET, "/auth/authorize-token")
                .json(&json!({ "access_token": token })),
        )
        .await;
    refused(app, reply, 401, code, &format!("{what}: authorize-token")).await;
    if code != "token_expired" {
        let reply = app.refresh(token).await;
        refused(app, reply, 401, code, &format!("{what}: refresh")).await;
        let reply = app.revoke(token).await;
        refused(app, reply, 401, code, &format!("{what}: revoke")).await;
    }
}

async fn forged_tokens(backend: Backend) {
    let Some(app) = app(backend, &[]).await else {
        return;
    };
    let (token, claims) = live_claims(&app).await;
    let key = SECRET_KEY.as_bytes();
    // The test's forging itself is sound: the untouched claims, signed
    // with the server's key, are accepted.
    app.authorized(&forge(&claims, Algorithm::HS256, key)).await;

    let parts: Vec<&str> = token.split('.').collect();
    let none = json!({"alg": "none", "typ": "JWT"});
    let mut cases: Vec<(String, String)> = vec![
        (
            "alg none, no signature".into(),
            assemble(&none, &claims, ""),
        ),
        (
            "alg none, the real signature".into(),
            assemble(&none, &claims, parts[2]),
        ),
        (
            "alg None".into(),
            assemble(&json!({"alg": "None", "typ": "JWT"}), &claims, ""),
        ),
        (
            "no alg".into(),
            assemble(&json!({"typ": "JWT"}), &claims, parts[2]),
        ),
        (
            "HS512 with the right key".into(),
            forge(&claims, Algorithm::HS512, key),
        ),
        (
            "HS384 with the right key".into(),
            forge(&claims, Algorithm::HS384, key),
        ),
        (
            "HS256 with a wrong key".into(),
            forge(
                &claims,
                Algorithm::HS256,
                b"not-the-server-key-0123456789abcdef",
            ),
        ),
        (
            "HS256 with an empty key".into(),
            forge(&claims, Algorithm::HS256, b""),
        ),
        ("EdDSA against HS256".into(), forge_eddsa(&claims, None)),
        (
            "EdDSA with a kid against HS256".into(),
            forge_eddsa(&claims, Some("k1")),
        ),
        (
            "only two segments".into(),
            format!("{}.{}", parts[0], parts[1]),
        ),
        ("four segments".into(), format!("{token}.{}", parts[2])),
        (
            "segments swapped".into(),
            format!("{}.{}.{}", parts[1], parts[0], parts[2]),
        ),
        ("garbage".into(), "not.a.jwt".into()),
        ("empty segments".into(), "..".into()),
        ("huge".into(), format!("{token}{}", "A".repeat(8000))),
    ];
    // A tampered payload under the original signature.
    for (field, value) in [
        ("gen", json!(claims["gen"].as_u64().unwrap() + 1)),
        ("sub", json!(uuid::Uuid::new_v4().to_string())),
        ("exp", json!(claims["exp"].as_i64().unwrap() + 3600)),
        ("aud", json!("someone-else")),
    ] {
        let mut tampered = claims.clone();
        tampered[field] = value;
        cases.push((
            format!("payload {field} tampered"),
            format!(
                "{}.{}.{}",
                parts[0],
                B64.encode(tampered.to_string()),
                parts[2]
            ),
        ));
    }
    // Correctly signed with the server's key, but the wrong claims.
    for (what, edit) in [
        ("wrong aud", json!({"aud": "other-service"})),
        ("wrong iss", json!({"iss": "https://evil.example.com"})),
        ("aud as a list without authd", json!({"aud": ["other"]})),
        ("sid not a UUID", json!({"sid": "1 OR 1=1"})),
        ("gen negative", json!({"gen": -1})),
        ("gen a string", json!({"gen": "0"})),
        ("exp a string", json!({"exp": "9999999999"})),
    ] {
        let mut forged = claims.clone();
        for (k, v) in edit.as_object().unwrap() {
            forged[k] = v.clone();
        }
        cases.push((what.into(), forge(&forged, Algorithm::HS256, key)));
    }
    for missing in ["sid", "gen", "exp", "sub", "iss", "aud", "iat"] {
        let mut forged = claims.clone();
        forged.as_object_mut().unwrap().remove(missing);
        cases.push((
            format!("no {missing}"),
            forge(&forged, Algorithm::HS256, key),
        ));
    }
    for (what, forged) in &cases {
        token_refused(&app, forged, "invalid_token", what).await;
    }
    // The real token survived all of it.
    app.authorized(&token).await;
}

async fn expired_and_foreign_sessions(backend: Backend) {
    let Some(app) = app(backend, &[]).await else {
        return;
    };
    let key = SECRET_KEY.as_bytes();
    let (token, claims) = live_claims(&app).await;
    let now = now_secs();

    // Expired (with zero leeway: one second ago is expired).
    for ago in [1, 3600] {
        let mut expired = claims.clone();
        expired["iat"] = json!(now - ago - 900);
        expired["exp"] = json!(now - ago);
        let expired = forge(&expired, Algorithm::HS256, key);
        token_refused(
            &app,
            &expired,
            "token_expired",
            &format!("expired {ago} s ago"),
        )
        .await;
    }

    // Valid signatures, but no such session, or someone else's session.
    let mut no_session = claims.clone();
    no_session["sid"] = json!(uuid::Uuid::new_v4().to_string());
    let no_session = forge(&no_session, Algorithm::HS256, key);
    token_refused(&app, &no_session, "invalid_token", "random sid").await;

    let (_, other) = live_claims(&app).await;
    let mut foreign = claims.clone();
    foreign["sid"] = other["sid"].clone();
    let foreign = forge(&foreign, Algorithm::HS256, key);
    token_refused(&app, &foreign, "invalid_token", "another user's sid").await;

    // A generation the session never issued.
    let mut future = claims.clone();
    future["gen"] = json!(claims["gen"].as_u64().unwrap() + 5);
    let future = forge(&future, Algorithm::HS256, key);
    token_refused(&app, &future, "invalid_token", "future generation").await;

    // None of it revoked or rotated the real session.
    app.authorized(&token).await;
    app.refreshed(&token).await;
}

async fn authorization_headers(backend: Backend) {
    let Some(app) = app(backend, &[]).await else {
        return;
    };
    let (token, _) = live_claims(&app).await;
    let with_header = |value: HeaderValue| {
        app.request(Method::GET, "/authorize")
            .header(AUTHORIZATION, value)
    };

    // No token at all.
    let reply = app.send(app.request(Method::GET, "/authorize")).await;
    refused(&app, reply, 401, "missing_token", "no Authorization header").await;

    for value in [
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("user:pass")
        ),
        format!("Token {token}"),
        format!("Bearer{token}"),
        format!("Digest {token}"),
        token.clone(),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        "Bearer    ".to_owned(),
        String::new(),
    ] {
        let reply = app
            .send(with_header(HeaderValue::from_str(&value).unwrap()))
            .await;
        refused(
            &app,
            reply,
            401,
            "missing_token",
            &format!("Authorization: {value:?}"),
        )
        .await;
    }
    // Bytes that are not ASCII (obs-text): not a token.
    for value in [
        b"Bearer \xff\xfe\xfd".to_vec(),
        [b"Bearer ".as_slice(), token.as_bytes(), b"\xe9"].concat(),
        "Bearer jéton".as_bytes().to_vec(),
    ] {
        let reply = app
            .send(with_header(HeaderValue::from_bytes(&value).unwrap()))
            .await;
        refused(
            &app,
            reply,
            401,
            "invalid_token",
            &format!("Authorization: {value:?}"),
        )
        .await;
    }
    // Garbage after a correct scheme.
    for value in [
        "Bearer not-a-token".to_owned(),
        format!("Bearer {token} {token}"),
        format!("Bearer {token}x"),
    ] {
        let reply = app
            .send(with_header(HeaderValue::from_str(&value).unwrap()))
            .await;
        refused(
            &app,
            reply,
            401,
            "invalid_token",
            &format!("Authorization: {value:?}"),
        )
        .await;
    }
    // The scheme is case-insensitive.
    let reply = app
        .send(with_header(
            HeaderValue::from_str(&format!("bEaReR {token}")).unwrap(),
        ))
        .await;
    reply.user_id();
}

async fn eddsa_server_refuses_algorithm_confusion(backend: Backend) {
    let Some(app) = app(backend, &[("AUTHD_JWT_ALGORITHM", "EdDSA")]).await else {
        return;
    };
    let (token, claims) = live_claims(&app).await;
    app.authorized(&token).await;
    let jwks = app
        .send(app.request(Method::GET, "/.well-known/jwks.json"))
        .await;
    assert_eq!(jwks.status, 200, "{jwks:?}");
    let jwk = &jwks.body["keys"][0];
    let kid = jwk["kid"].as_str().expect("a kid").to_owned();
    let x = jwk["x"].as_str().expect("an x").to_owned();
    let public = B64.decode(&x).expect("x is base64url");
    let header_kid: Value =
        serde_json::from_slice(&B64.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header_kid["kid"], kid.as_str(), "tokens name the JWKS key");

    let hs = |key: &[u8], kid: Option<&str>| {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(key)).unwrap()
    };
    let cases = [
        (
            "HS256 with the SECRET_KEY, no kid",
            hs(SECRET_KEY.as_bytes(), None),
        ),
        (
            "HS256 with the SECRET_KEY and the kid",
            hs(SECRET_KEY.as_bytes(), Some(&kid)),
        ),
        ("HS256 keyed with the public key", hs(&public, Some(&kid))),
        ("HS256 keyed with the JWK x", hs(x.as_bytes(), Some(&kid))),
        (
            "EdDSA with another key and the kid",
            forge_eddsa(&claims, Some(&kid)),
        ),
        (
            "EdDSA with another key, unknown kid",
            forge_eddsa(&claims, Some("no-such-kid")),
        ),
        ("EdDSA without a kid", forge_eddsa(&claims, None)),
        (
            "alg none with the kid",
            assemble(
                &json!({"alg": "none", "typ": "JWT", "kid": kid}),
                &claims,
                "",
            ),
        ),
    ];
    for (what, forged) in &cases {
        token_refused(&app, forged, "invalid_token", what).await;
    }
    app.authorized(&token).await;
}

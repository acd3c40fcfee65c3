//! Sign-up and sign-in, input validation, and the HTTP-level errors every
//! endpoint shares (400, 404, 405, 413, 415, 422).

use reqwest::Method;
use serde_json::json;

use crate::support::{raw_http, spawn_app, Backend, PASSWORD};

both_backends!(
    signup_and_signin,
    wrong_credentials_are_indistinguishable,
    invalid_fields_are_422,
    malformed_and_mistyped_bodies,
    bodies_must_be_json_objects,
    oversized_bodies_are_413,
    body_limit_is_configurable,
    unknown_paths_and_wrong_methods,
);

async fn signup_and_signin(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    let reply = app.signup("Alice.Smith@Example.COM", PASSWORD).await;
    let first = reply.token(201);
    assert!(reply.is_json(), "{reply:?}");
    let expires_in = reply.body["expires_in"].as_i64().unwrap();
    assert!(
        expires_in <= 900,
        "default access-token lifetime is 15 minutes: {reply:?}"
    );

    // One account per address, whatever its case.
    for twin in ["alice.smith@example.com", "ALICE.SMITH@EXAMPLE.COM"] {
        app.signup(twin, "another good password")
            .await
            .error(409, "email_taken");
    }

    // Sign-in works with any spelling of the address and starts a new
    // session of the same user.
    let second = app
        .signin("alice.smith@example.com", PASSWORD)
        .await
        .token(200);
    let third = app
        .signin("Alice.Smith@Example.COM", PASSWORD)
        .await
        .token(200);
    let a = app.authorized(&first).await;
    let b = app.authorized(&second).await;
    let c = app.authorized(&third).await;
    assert_eq!(a.user_id(), b.user_id());
    assert_eq!(a.user_id(), c.user_id());
    assert_ne!(a.session_id(), b.session_id());
    assert_ne!(b.session_id(), c.session_id());

    // The rejected twin did not replace the password.
    app.signin("alice.smith@example.com", "another good password")
        .await
        .error(401, "invalid_credentials");

    // A second user is another user.
    let other = app.signed_up("bob@example.com").await;
    assert_ne!(app.authorized(&other).await.user_id(), a.user_id());
}

async fn wrong_credentials_are_indistinguishable(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    app.signed_up("carol@example.com").await;
    let wrong_password = app.signin("carol@example.com", "not the password").await;
    wrong_password.error(401, "invalid_credentials");
    let unknown = app.signin("nobody@example.com", PASSWORD).await;
    unknown.error(401, "invalid_credentials");
    assert_eq!(
        wrong_password.body, unknown.body,
        "a wrong password and an unknown address must look the same"
    );
    // A password that differs only in case is wrong.
    app.signin("carol@example.com", &PASSWORD.to_uppercase())
        .await
        .error(401, "invalid_credentials");
    // And the right one still works afterwards.
    app.signed_in("carol@example.com").await;
}

async fn invalid_fields_are_422(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    let too_long_email = format!("{}@example.com", "a".repeat(250));
    for bad in [
        "",
        "not-an-email",
        "a@b",
        "@example.com",
        "dave@",
        "Dave <dave@example.com>",
        "da ve@example.com",
        too_long_email.as_str(),
    ] {
        let reply = app.signup(bad, PASSWORD).await;
        assert_eq!(reply.status, 422, "e-mail {bad:?}: {reply:?}");
        reply.error(422, "invalid_request");
    }

    let seven = "1234567";
    let seven_wide = "é".repeat(7); // 14 bytes, but 7 characters
    let too_long = "x".repeat(1025);
    let too_long_wide = "é".repeat(513); // 513 characters, 1026 bytes
    for bad in [seven, &seven_wide, &too_long, &too_long_wide] {
        let reply = app.signup("erin@example.com", bad).await;
        assert_eq!(
            reply.status,
            422,
            "password of {} bytes: {reply:?}",
            bad.len()
        );
        reply.error(422, "invalid_request");
    }
    // Nothing was created by the refused attempts.
    app.signin("erin@example.com", PASSWORD)
        .await
        .error(401, "invalid_credentials");
    app.signup("erin@example.com", PASSWORD).await.token(201);

    // The limits themselves are accepted: 8 characters, 1024 bytes.
    app.signup("frank@example.com", "12345678").await.token(201);
    app.signup("grace@example.com", &"é".repeat(8))
        .await
        .token(201);
    let longest = "x".repeat(1024);
    app.signup("heidi@example.com", &longest).await.token(201);
    app.signin("heidi@example.com", &longest).await.token(200);

    // Missing or mistyped fields.
    for body in [
        json!({ "email": "ivan@example.com" }),
        json!({ "password": PASSWORD }),
        json!({}),
        json!({ "email": 42, "password": PASSWORD }),
        json!({ "email": "ivan@example.com", "password": null }),
        json!("ivan@example.com"),
    ] {
        for path in ["/signup", "/signin"] {
            let reply = app.post_json(path, &body).await;
            assert_eq!(reply.status, 422, "{path} {body}: {reply:?}");
            reply.error(422, "invalid_request");
        }
    }
    for path in ["/refresh", "/revoke"] {
        for body in [json!({}), json!({ "access_token": 7 })] {
            let reply = app.post_json(path, &body).await;
            assert_eq!(reply.status, 422, "{path} {body}: {reply:?}");
            reply.error(422, "invalid_request");
        }
    }
}

async fn malformed_and_mistyped_bodies(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    for path in ["/signup", "/signin", "/refresh", "/revoke"] {
        for raw in [
            "{\"email\": ",
            "not json at all",
            "{\"email\": \"a@b.co\",}",
        ] {
            let reply = app
                .send(
                    app.request(Method::POST, path)
                        .header("content-type", "application/json")
                        .body(raw),
                )
                .await;
            assert_eq!(reply.status, 400, "{path} {raw:?}: {reply:?}");
            reply.error(400, "malformed_json");
        }
        let reply = app
            .send(
                app.request(Method::POST, path)
                    .header("content-type", "text/plain")
                    .body(json!({ "email": "a@example.com", "password": PASSWORD }).to_string()),
            )
            .await;
        assert_eq!(reply.status, 415, "{path}: {reply:?}");
        reply.error(415, "unsupported_media_type");
    }
    // A JSON body sent without a Content-Type is accepted (many clients
    // omit it), and so is a charset parameter.
    app.send(
        app.request(Method::POST, "/signup")
            .body(json!({ "email": "judy@example.com", "password": PASSWORD }).to_string()),
    )
    .await
    .token(201);
    app.send(
        app.request(Method::POST, "/signin")
            .header("content-type", "application/json; charset=utf-8")
            .body(json!({ "email": "judy@example.com", "password": PASSWORD }).to_string()),
    )
    .await
    .token(200);
}

/// The documented bodies are JSON objects. serde would also accept the
/// fields as an array in declaration order (`["a@b.co", "pw"]`); the seed
/// service (pydantic) refused that, and so must authd: 422.
async fn bodies_must_be_json_objects(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    let token = app.signed_up("olga@example.com").await;
    for (path, body) in [
        ("/signup", json!(["ivan@example.com", PASSWORD])),
        ("/signin", json!(["olga@example.com", PASSWORD])),
        ("/refresh", json!([token])),
        ("/revoke", json!([token])),
    ] {
        let reply = app.post_json(path, &body).await;
        assert_eq!(reply.status, 422, "{path} with an array body: {reply:?}");
        reply.error(422, "invalid_request");
    }
    app.authorized(&token).await;
}

async fn oversized_bodies_are_413(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    let padding = "p".repeat(20_000);
    for path in ["/signup", "/signin", "/refresh", "/revoke"] {
        let body = json!({ "email": "kim@example.com", "password": PASSWORD, "pad": padding });
        let reply = app.post_json(path, &body).await;
        assert_eq!(reply.status, 413, "{path}: {reply:?}");
        reply.error(413, "payload_too_large");
    }

    // Without a Content-Length (chunked), the limit applies while reading.
    let host = app.address.trim_start_matches("http://");
    let chunk = format!("{{\"email\":\"kim@example.com\",\"pad\":\"{padding}\"}}");
    let request = format!(
        "POST /signup HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let (status, raw) = raw_http(&app.address, request.as_bytes()).await;
    assert_eq!(status, 413, "{raw}");
    assert!(raw.contains("payload_too_large"), "{raw}");

    // Just under the limit is fine (the unknown field is ignored).
    let pad = "p".repeat(16_000);
    let body = json!({ "email": "kim@example.com", "password": PASSWORD, "pad": pad });
    assert!(body.to_string().len() < 16_384);
    app.post_json("/signup", &body).await.token(201);
}

async fn body_limit_is_configurable(backend: Backend) {
    let Some(app) = spawn_app(backend, &[("AUTHD_MAX_BODY_BYTES", "256")]).await else {
        return;
    };
    let fits = json!({ "email": "leo@example.com", "password": PASSWORD });
    app.post_json("/signup", &fits).await.token(201);
    let long_password = "x".repeat(300);
    app.signup("mia@example.com", &long_password)
        .await
        .error(413, "payload_too_large");
}

async fn unknown_paths_and_wrong_methods(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    for (method, path) in [
        (Method::GET, "/"),
        (Method::GET, "/nope"),
        (Method::POST, "/signup/extra"),
        (Method::GET, "/auth"),
        (Method::POST, "/auth/nope"),
    ] {
        let reply = app.send(app.request(method.clone(), path)).await;
        assert_eq!(reply.status, 404, "{method} {path}: {reply:?}");
        reply.error(404, "not_found");
    }
    for (method, path) in [
        (Method::GET, "/signup"),
        (Method::PUT, "/signin"),
        (Method::GET, "/refresh"),
        (Method::DELETE, "/revoke"),
        (Method::POST, "/authorize"),
        (Method::POST, "/health"),
        (Method::POST, "/auth/refresh"),
        (Method::POST, "/auth/revoke"),
        (Method::POST, "/auth/authorize-token"),
        (Method::GET, "/auth/signup"),
    ] {
        let reply = app.send(app.request(method.clone(), path)).await;
        assert_eq!(reply.status, 405, "{method} {path}: {reply:?}");
        reply.error(405, "method_not_allowed");
    }
}

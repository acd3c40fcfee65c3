//! Hostile input, over real HTTP against a real server: broken and
//! oversized bodies, wrong content types, hostile e-mail addresses and
//! passwords, forged and tampered tokens, odd `Authorization` headers and a
//! client that never sends its request. Every answer must be the exact
//! documented 4xx with a JSON `{"error", "message"}` body (never a 500),
//! and the server must still answer `/health` afterwards.
//!
//! Each scenario runs on SQLite and on PostgreSQL (skipped when PostgreSQL
//! is not reachable; see `tests/support`).

#[macro_use]
#[allow(dead_code, unused_macros)]
#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{claims_of, email, forge, spawn_app, Backend, Reply, TestApp, PASSWORD, SECRET_KEY};

/// The server's default body limit (`max_body_bytes`).
const BODY_LIMIT: usize = 16384;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// An app with rate limiting off (these tests send many sign-ins from one
/// address) and `extra` settings on top.
async fn app(backend: Backend, extra: &[(&str, &str)]) -> Option<TestApp> {
    let mut overrides = vec![("AUTHD_RATE_LIMIT_ENABLED", "false")];
    overrides.extend_from_slice(extra);
    spawn_app(backend, &overrides).await
}

/// The server still answers `/health` with 200.
async fn alive(app: &TestApp) {
    let health = app.health().await;
    assert_eq!(
        health.status, 200,
        "server unhealthy after hostile input: {health:?}"
    );
    assert_eq!(health.body["status"], "healthy", "{health:?}");
}

/// Sends `body` as is, with `content_type` (or none).
async fn send_bytes(
    app: &TestApp,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> Reply {
    let mut request = app.request(method, path).body(body);
    if let Some(ct) = content_type {
        request = request.header(CONTENT_TYPE, ct);
    }
    app.send(request).await
}

async fn post_raw(app: &TestApp, path: &str, body: impl Into<reqwest::Body>) -> Reply {
    send_bytes(app, Method::POST, path, Some("application/json"), body).await
}

/// Asserts an exact error answer, then that the server is still healthy.
async fn refused(app: &TestApp, reply: Reply, status: u16, code: &str, what: &str) {
    assert_eq!(reply.status, status, "{what}: {reply:?}");
    reply.error(status, code);
    alive(app).await;
}

/// A raw HTTP/1.1 exchange: `head` (request line and headers, without the
/// blank line), then `body` written in the background while the answer is
/// read, so an early answer (413) is never lost to a blocked write. Returns
/// the status and the JSON body.
async fn raw_exchange(app: &TestApp, head: &str, body: Vec<u8>) -> (u16, Value) {
    let addr = app.address.trim_start_matches("http://").to_owned();
    let exchange = async {
        let stream = TcpStream::connect(&addr).await.expect("connect");
        let (mut read, mut write) = stream.into_split();
        let request = format!("{head}\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        let writer = tokio::spawn(async move {
            // The server may answer and close before reading everything.
            if write.write_all(request.as_bytes()).await.is_ok() {
                for chunk in body.chunks(4096) {
                    if write.write_all(chunk).await.is_err() {
                        break;
                    }
                }
            }
        });
        let mut response = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match read.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
                // A reset after the answer arrived (unread body): keep what we have.
                Err(_) => break,
            }
        }
        writer.abort();
        response
    };
    let response = tokio::time::timeout(Duration::from_secs(15), exchange)
        .await
        .expect("raw exchange timed out");
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete HTTP answer: {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "answer is not JSON: {text:?}"
    );
    let body = serde_json::from_str(body).unwrap_or_else(|_| panic!("body is not JSON: {text:?}"));
    (status, body)
}

#[track_caller]
fn assert_error_body(status: u16, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "no message: {body}"
    );
}

fn credentials(email: &str, password: &str) -> Value {
    json!({ "email": email, "password": password })
}

// --- bodies ------------------------------------------------------------------

both_backends!(
    broken_json,
    not_an_object,
    content_types,
    unknown_and_duplicate_fields,
    oversized_bodies,
    deep_nesting,
    hostile_emails_and_passwords,
    forged_tokens,
    expired_and_foreign_sessions,
    authorization_headers,
    eddsa_server_refuses_algorithm_confusion,
);

async fn broken_json(backend: Backend) {
    let Some(app) = app(backend, &[]).await else {
        return;
    };
    for path in ["/signup", "/signin", "/refresh", "/revoke"] {
        // `first` is the first field of the endpoint's body, `rest` the others.
        let (first, rest) = if path == "/signup" || path == "/signin" {
            ("email", format!(r#", "password": "{PASSWORD}""#))
        } else {
            ("access_token", String::new())
        };
        let good = format!(r#"{{"{first}": "a@example.com"{rest}}}"#);
        let truncated = &good[..good.len() / 2];
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "malformed",
                format!(r#"{{"{first}": "a@example.com", password: }}"#).into_bytes(),
            ),
            ("not JSON at all", b"hello".to_vec()),
            ("truncated", truncated.as_bytes().to_vec()),
            ("truncated after the brace", b"{".to_vec()),
            (
                "truncated inside a string",
                format!(r#"{{"{first}": "a@exa"#).into_bytes(),
            ),
            ("empty", Vec::new()),
            ("only whitespace", b"  \r\n\t ".to_vec()),
            ("trailing garbage", format!("{good} x").into_bytes()),
            ("two documents", format!("{good}{good}").into_bytes()),
            (
                "trailing comma",
                format!(r#"{{"{first}": "a@example.com"{rest},}}"#).into_bytes(),
            ),
            (
                "non-UTF-8 in a value",
                [
                    format!(r#"{{"{first}": ""#).as_bytes(),
                    b"\xff\xfe",
                    format!(r#"@example.com"{rest}}}"#).as_bytes(),
                ]
                .concat(),
            ),
            (
                "non-UTF-8 in a key",
                [
                    format!(r#"{{"{first}": "a@example.com"{rest}, ""#).as_bytes(),
                    b"\xc3\x28",
                    br#"": 1}"#,
                ]
                .concat(),
            ),
            (
                "non-UTF-8 in an unknown field's value",
                [
                    format!(r#"{{"{first}": "a@example.com"{rest}, "x": ""#).as_bytes(),
                    b"\xff\xfe\xfd",
                    br#""}"#,
                ]
                .concat(),
            ),
            (
                "non-UTF-8 outside a string",
                [
                    format!(r#"{{"{first}": "a@example.com"{rest}, "#).as_bytes(),
                    b"\xc3\x28",
                    br#" "x": 1}"#,
                ]
                .concat(),
            ),
            ("NUL bytes", b"\0\0\0\0".to_vec()),
            (
                "single quotes",
                format!("{{'{first}': 'a@example.com'}}").into_bytes(),
            ),
            (
                "a comment",
                format!(r#"{{/* hi */ "{first}": "a@example.com"{rest}}}"#).into_bytes(),
            ),
            ("NaN", format!(r#"{{"{first}": NaN{rest}}}"#).into_bytes()),
            (
                "a raw control character",
                format!("{{\"{first}\": \"a\u{1}@example.com\"{rest}}}").into_bytes(),
            ),
        ];
        for (what, body) in cases {
            let reply = post_raw(&app, path, body).await;
            refused(
                &app,
                reply,
                400,
                "malformed_json",
                &format!("{what} on {path}"),
            )
            .await;
        }
        // A lone surrogate escape is allowed by the JSON grammar but is no
        // Unicode string: a 400 or a 422 is right, never a success.
        let body = format!(r#"{{"{first}": "\ud800@example.com"{rest}}}"#);
        let reply = post_raw(&app, path, body).await;
        match reply.status {
            400 => reply.error(400, "malformed_json"),
            _ => reply.error(422, "invalid_request"),
        }
        alive(&app).await;
    }
    // The legacy aliases and the GET with a body read JSON the same way.
    for (method, path) in [
        (Method::PUT, "/auth/refresh"),
        (Method::DELETE, "/auth/revoke"),
        (Method::GET, "/auth/authorize-token"),
    ] {
        for body in [
            b"{\"access_token\": \"ab".to_vec(),
            Vec::new(),
            b"[".to_vec(),
        ] {
            let reply =
                send_bytes(&app, method.clone(), path, Some("application/json"), body).await;
            refused(
                &app,
                reply,
                400,
                "malformed_json",
                &format!("{method} {path}"),
            )
            .await;
        }
    }
}

async fn not_an_object(backend: Backend) {
    let Some(app) = app(backend, &[]).await else {
        return;
    };
    let address = email();
    for body in [
        json!([]),
        json!("a string"),
        json!(42),
        json!(-1.5),
        json!(null),
        json!(true),
        json!([{"email": address, "password": PASSWORD}]),
        // The fields in order, as an array: a struct must not be read from
        // a positional array.
        json!([address, PASSWORD]),
    ] {
        let reply = app.post_json("/signup", &body).await;
        refused(
            &app,
            reply,
            422,
            "invalid_request",
            &format!("signup with {body}"),
        )
        .await;
    }
    // Nothing was created by the refused requests.
    app.signin(&address, PASSWORD)
        .await
        .error(401, "invalid_credentials");
    let token = app.signed_up(&address).await;
    for path in ["/refresh", "/revoke"] {
        for body in [
            json!([]),
            json!(token),
            json!(null),
            json!([token]),
            json!([token, "all"]),
        ] {
            let reply = app.post_json(path, &body).await;
            refused(
                &app,
                reply,
                422,
                "invalid_request",
                &format!("{path} with {body}"),
            )
            .await;
        }
    }
    // The session is untouched by all of it.
    app.authorized(&token).await;
}

async fn content_types(backend: Backend) {
    let Some(app) = app(backend, &[]).await else {
        return;
    };
    let body = credentials(&email(), PASSWORD).to_string();
    for ct in [
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/jsonx",
        "json",
        "",
    ] {
        for path in ["/signup", "/signin", "/refresh", "/revoke"] {
            let reply = send_bytes(&app, Method::POST, path, Some(ct), body.clone()).await;
            refused(
                &app,
                reply,
                415,
                "unsupported_media_type",
                &format!("{ct:?} on {path}"),
            )
            .await;
        }
    }
    // A form body, as a browser form would send it.
    let form = format!("email={}&password=correct+horse+battery", email());
    let reply = send_bytes(
        &app,
        Method::POST,
        "/signup",
        Some("application/x-www-form-urlencoded"),
        form,
    )
    .await;
    refused(&app, reply, 415, "unsupported_media_type", "form body").await;
    // A Content-Type header that is not even text.
    let request = app
        .request(Method::POST, "/signup")
        .header(
            CONTENT_TYPE,
            HeaderValue::from_bytes(b"application/json\xff").unwrap(),
        )
        .body(body.clone());
    let reply = app.send(request).await;
    refused(
        &app,
        reply,
        415,
        "unsupported_media_type",
        "non-ASCII Content-Type",
    )
    .await;
    // JSON without a Content-Type, with parameters, and +json are fine.
    for ct in [
        None,
        Some("application/json; charset=utf-8"),
        Some("Application/JSON"),
        Some("application/vnd.authd+json"),
    ] {
        let address = email();
        let reply = send_bytes(
            &app,
            Method::POST,
            "/signup",
            ct,
            credentials(&address, PASSWORD).to_string(),
        )
        .await;
        reply.token(201);
    }
    alive(&app).await;
}

async fn unknown_and_duplicate_fields(backend: Backend) {
    let Some(app) = app(backend, &[]).await else {
        return;
    };
    let address = email();
    // Unknown fields are ignored, as the predecessor did.
    let token = app
        .post_json(
            "/signup",
            &json!({
                "email": address, "password": PASSWORD,
                "is_admin": true, "role": "admin", "user_id": "00000000-0000-0000-0000-000000000000",
                "nested": {"a": [1, 2, {"b": null}]},
            }),
        )
        .await
        .token(201);
    app.post_json(
        "/signin",
        &json!({"email": address, "password": PASSWORD, "remember_me": true}),
    )
    .await
    .token(200);
    let token = app
        .post_json("/refresh", &json!({"access_token": token, "extra": 1}))
        .await
        .token(200);
    alive(&app).await;

    // Duplicate fields are refused, whichever copy would be valid.
    let other = email();
    let duplicates = [
        (
            "/signup",
            format!(r#"{{"email": "{other}", "email": "{address}", "password": "{PASSWORD}"}}"#),
        ),
        (
            "/signin",
            format!(
                r#"{{"email": "{address}", "password": "wrong password", "password": "{PASSWORD}"}}"#
            ),
        ),
        (
            "/refresh",
            format!(r#"{{"access_token": "x", "access_token": "{token}"}}"#),
        ),
        (
            "/revoke",
            format!(r#"{{"access_token": "{token}", "scope": "session", "scope": "all"}}"#),
        ),
    ];
    for (path, body) in duplicates {
        let reply = post_raw(&app, path, body.clone()).await;
        refused(
            &app,
            reply,
            422,
            "invalid_request",
            &format!("{path} with {body}"),
        )
        .await;
    }
    // Missing and mistyped fields, an unknown scope.
    for (path, body) in [
        ("/signup", json!({"email": email()})),
        ("/signup", json!({"password": PASSWORD})),
        ("/signup", json!({})),
        ("/signup", json!({"email": 5, "password": PASSWORD})),
        ("/signup", json!({"email": email(), "password": null})),
        ("/signup", json!({"email": [email()], "password": PASSWORD})),
        ("/refresh", json!({"token": token})),
        ("/refresh", json!({"access_token": {"jwt": token}})),
        (
            "/revoke",
            json!({"access_token": token, "scope": "everything"}),
        ),
        ("/revoke", json!({"access_token": token, "scope": null})),
        ("/revoke", json!({"access_token": token, "scope": 5})),
        ("/revoke", json!({"access_token": token, "scope": ["all"]})),
        ("/revoke", json!({"access_token": token, "scope": "ALL"})),
    ] {
        let reply = app.post_json(path, &body).await;
        refused(
            &app,
            reply,
            422,
            "invalid_request",
            &format!("{path} with {body}"),
        )
        .await;
    }
    // None of that touched the session.
    app.authorized(&token).await;
}

async fn oversized_bodies(backend: Backend) {
    let Some(app) = app(backend, &[]).await else {
        return;
    };
    let padding = "x".repeat(2 * BODY_LIMIT);
    let big = format!(r#"{{"email": "{}", "password": "{padding}"}}"#, email());

    // Declared with Content-Length: refused before it is read.
    let (status, body) = raw_exchange(
        &app,
        &format!(
            "POST /signup HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}",
            big.len()
        ),
        big.clone().into_bytes(),
    )
    .await;
    assert_error_body(status, &body, 413, "payload_too_large");
    alive(&app).await;

    // A Content-Length announcing a huge body, with almost nothing sent.
    let (status, body) = raw_exchange(
        &app,
        "POST /signin HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 10000000000",
        b"{".to_vec(),
    )
    .await;
    assert_error_body(status, &body, 413, "payload_too_large");
    alive(&app).await;

    // Chunked, no Content-Length: cut off at the limit while reading.
    let mut chunked = Vec::new();
    for piece in big.as_bytes().chunks(1000) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    for path in ["/signup", "/refresh"] {
        let (status, body) = raw_exchange(
            &app,
            &format!(
                "POST {path} HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked"
            ),
            chunked.clone(),
        )
        .await;
        assert_error_body(status, &body, 413, "payload_too_large");
        alive(&app).await;
    }

    // Through an ordinary keep-alive client: one byte over the limit, and
    // far over. The server does not read the rest of such a body, so it
    // must close the connection and say so (`Connection: close`): a client
    // that is not told reuses the connection for its next request, which
    // then fails when the server hangs up.
    for size in [BODY_LIMIT + 1, 4 * BODY_LIMIT] {
        let body = format!(r#"{{"access_token": "{}"}}"#, "a".repeat(size));
        let reply = post_raw(&app, "/refresh", body).await;
        assert_eq!(
            reply
                .headers
                .get(reqwest::header::CONNECTION)
                .and_then(|v| v.to_str().ok()),
            Some("close"),
            "a 413 for an unread body must close the connection: {reply:?}"
        );
        refused(
            &app,
            reply,
            413,
            "payload_too_large",
            &format!("{size}-byte token"),
        )
        .await;
    }
    // Exactly at the limit is read (and then judged on its content).
    let at_limit = {
        let frame = r#"{"access_token": ""}"#;
        format!(
            r#"{{"access_token": "{}"}}"#,
            "a".repeat(BODY_LIMIT - frame.len())
        )
    };
    assert_eq!(at_limit.len(), BODY_LIMIT);
    let reply = post_raw(&app, "/refresh", at_limit).await;
    refused(
        &app,
        reply,
        401,
        "invalid_token",
        "a token of exactly the limit",
    )
    .await;
}

async fn deep_nesting(backend: Backend) {
    // A larger body limit, so that deep nesting (not size) is what is tested.
    let Some(app) = app(backend, &[("AUTHD_MAX_BODY_BYTES", "1048576")]).await else {
        return;
    };
    for depth in [10_000usize, 100_000] {
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let unclosed = "[".repeat(depth);
        let objects = format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));

        // In a field that must be a string: the wrong type, 422.
        let body = format!(r#"{{"email": {nested}, "password": "{PASSWORD}"}}"#);
        let reply = post_raw(&app, "/signup", body).await;
        refused(
            &app,
            reply,
            422,
            "invalid_request",
            &format!("{depth} arrays as the e-mail"),
        )
        .await;
        let body = format!(r#"{{"access_token": {objects}}}"#);
        let reply = post_raw(&app, "/refresh", body).await;
        refused(
            &app,
            reply,
            422,
            "invalid_request",
            &format!("{depth} objects as the token"),
        )
        .await;

        // As the whole body: not an object, 422.
        let reply = post_raw(&app, "/signin", nested.clone()).await;
        refused(
            &app,
            reply,
            422,
            "invalid_request",
            &format!("{depth} arrays as the body"),
        )
        .await;

        // Unclosed: not JSON, 400.
        let body =
            format!(r#"{{"email": "a@example.com", "password": "{PASSWORD}", "x": {unclosed}"#);
        let reply = post_raw(&app, "/signin", body).await;
        refused(
            &app,
            reply,
            400,
            "malformed_json",
            &format!("{depth} unclosed arrays"),
        )
        .await;

        // In an unknown field, balanced: ignored like any unknown field
        // (serde_json skips it without recursing), so the sign-up succeeds.
        let address = email();
        let body = format!(
            r#"{{"email": "{address}", "password": "{PASSWORD}", "x": {nested}, "y": {objects}}}"#
        );
        post_raw(&app, "/signup", body).await.token(201);
        alive(&app).await;
    }
}

async fn hostile_emails_and_passwords(backend: Backend) {
    let Some(app) = app(backend, &[]).await else {
        return;
    };
    // Someone who must still be able to sign in at the end.
    let bystander = email();
    app.signed_up(&bystander).await;

    let long_local = format!("{}@example.com", "a".repeat(10 * 1024));
    let long_domain = format!("a@{}.com", "b".repeat(10 * 1024));
    for (what, address) in [
        ("10 KB local part", long_local.as_str()),
        ("10 KB domain", long_domain.as_str()),
        ("255 bytes", &format!("{}@example.com", "a".repeat(243))),
        ("empty", ""),
        ("no @", "not-an-address"),
        ("no domain dot", "a@localhost"),
        ("display name", "Alice <alice@example.com>"),
        ("quoted local part", "\"a b\"@example.com"),
        ("spaces", " a@example.com "),
        ("NUL", "a\u{0}@example.com"),
        ("newline", "a@example.com\r\nBcc: x@example.com"),
        (
            "SQL after the address",
            "x@example.com'; DROP TABLE users;--",
        ),
        ("SQL in the domain", "x@example.com' OR '1'='1"),
    ] {
        let reply = app
            .post_json("/signup", &credentials(address, PASSWORD))
            .await;
        refused(
            &app,
            reply,
            422,
            "invalid_request",
            &format!("{what} on /signup"),
        )
        .await;
        // Sign-in does not apply the sign-up rules (accounts adopted from
        // the old service may have such addresses): only an empty or
        // overlong address, or one with control characters, is malformed;
        // the rest is nobody's account.
        let reply = app
            .post_json("/signin", &credentials(address, PASSWORD))
            .await;
        let trimmed = address.trim();
        let (status, code) =
            if trimmed.is_empty() || trimmed.len() > 320 || trimmed.chars().any(char::is_control) {
                (422, "invalid_request")
            } else {
                (401, "invalid_credentials")
            };
        refused(&app, reply, status, code, &format!("{what} on /signin")).await;
    }

    // SQL metacharacters that make a valid address: stored and found as
    // data, never as SQL.
    for address in [
        format!("a'--{}@example.com", uuid::Uuid::new_v4().simple()),
        format!("o'reilly+{}@example.com", uuid::Uuid::new_v4().simple()),
        format!(
            "x;drop-table-users-{}@example.com",
            uuid::Uuid::new_v4().simple()
        ),
    ] {
        let reply = app.signup(&address, PASSWORD).await;
        if reply.status == 422 {
            reply.error(422, "invalid_request");
        } else {
            let token = reply.token(201);
            app.authorized(&token).await;
            app.signed_in(&address).await;
            app.signup(&address.to_uppercase(), PASSWORD)
                .await
                .error(409, "email_taken");
            app.signin(&address, "wrong password!")
                .await
                .error(401, "invalid_credentials");
        }
        alive(&app).await;
    }
    // A wildcard must not match someone else's row.
    app.signin("%@example.com", PASSWORD)
        .await
        .error(401, "invalid_credentials");
    app.signin("_@example.com", PASSWORD)
        .await
        .error(401, "invalid_credentials");

    // Passwords: too short, over 1024 bytes, far over (still under the body
    // limit), and over the body limit.
    let address = email();
    for (what, password, status, code) in [
        ("7 characters", "1234567".to_owned(), 422, "invalid_request"),
        ("empty", String::new(), 422, "invalid_request"),
        ("1025 bytes", "p".repeat(1025), 422, "invalid_request"),
        (
            "1024 bytes of 2-byte characters + 1",
            format!("{}x", "é".repeat(512)),
            422,
            "invalid_request",
        ),
        ("15 KB", "p".repeat(15 * 1024), 422, "invalid_request"),
        ("16 KB", "p".repeat(16 * 1024), 413, "payload_too_large"),
    ] {
        for path in ["/signup", "/signin"] {
            let reply = app.post_json(path, &credentials(&address, &password)).await;
            // Sign-in takes shorter passwords than sign-up (old accounts
            // may have them): 7 characters there is just a wrong password.
            let (status, code) = if path == "/signin" && what == "7 characters" {
                (401, "invalid_credentials")
            } else {
                (status, code)
            };
            refused(
                &app,
                reply,
                status,
                code,
                &format!("password of {what} on {path}"),
            )
            .await;
        }
    }
    // The longest valid password works, 8 multi-byte characters too.
    app.signup(&address, &"p".repeat(1024)).await.token(201);
    app.signin(&address, &"p".repeat(1024)).await.token(200);
    let address = email();
    app.signup(&address, "ééééééé€").await.token(201);
    app.signin(&address, "ééééééé€").await.token(200);

    // The users table is intact.
    app.signed_in(&bystander).await;
    alive(&app).await;
}

// --- tokens ------------------------------------------------------------------

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

// --- slow clients ------------------------------------------------------------

/// Reads until EOF (or a reset); returns how long that took.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                // Whatever it says (e.g. a 408), keep reading until it hangs up.
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the server kept a silent connection open for {limit:?}"
    );
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_disconnected() {
    let app = app(Backend::Sqlite, &[("AUTHD_HEADER_READ_TIMEOUT_MS", "500")])
        .await
        .expect("SQLite is always available");
    let addr = app.address.trim_start_matches("http://").to_owned();

    // Connects and sends nothing at all.
    let mut silent = TcpStream::connect(&addr).await.expect("connect");
    let took = until_closed(&mut silent, Duration::from_secs(3)).await;
    assert!(
        took >= Duration::from_millis(400),
        "closed too early: {took:?}"
    );
    alive(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off() {
    let app = app(Backend::Sqlite, &[("AUTHD_HEADER_READ_TIMEOUT_MS", "500")])
        .await
        .expect("SQLite is always available");
    let addr = app.address.trim_start_matches("http://").to_owned();

    // Starts a request and never finishes its headers (slowloris).
    let mut slow = TcpStream::connect(&addr).await.expect("connect");
    slow.write_all(b"POST /signin HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    until_closed(&mut slow, Duration::from_secs(3)).await;

    // Trickles header bytes, each well inside the timeout, never ending.
    let mut trickle = TcpStream::connect(&addr).await.expect("connect");
    let started = Instant::now();
    trickle
        .write_all(b"GET /health HTTP/1.1\r\n")
        .await
        .expect("write");
    let mut cut = false;
    for i in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if trickle
            .write_all(format!("X-{i}: y\r\n").as_bytes())
            .await
            .is_err()
        {
            cut = true;
            break;
        }
    }
    if !cut {
        until_closed(&mut trickle, Duration::from_secs(1)).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "trickled headers were allowed {:?}",
        started.elapsed()
    );

    // A keep-alive connection that goes quiet after a request is closed too.
    let mut idle = TcpStream::connect(&addr).await.expect("connect");
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    until_closed(&mut idle, Duration::from_secs(3)).await;

    alive(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_http2_preface_is_disconnected() {
    let app = app(Backend::Sqlite, &[("AUTHD_HEADER_READ_TIMEOUT_MS", "500")])
        .await
        .expect("SQLite is always available");
    let addr = app.address.trim_start_matches("http://").to_owned();

    // The start of the HTTP/2 connection preface, and then nothing.
    let mut stalled = TcpStream::connect(&addr).await.expect("connect");
    stalled
        .write_all(b"PRI * HTTP/2.0\r\n")
        .await
        .expect("write");
    until_closed(&mut stalled, Duration::from_secs(3)).await;
    alive(&app).await;
}

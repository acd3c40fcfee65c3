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
#[path = "../support/mod.rs"]
mod support;

mod bodies;
mod credentials;
mod slow_clients;
mod tokens;

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

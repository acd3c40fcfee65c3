//! The client address behind a proxy: from a peer in `trusted_proxies`,
//! `Forwarded` (else `X-Forwarded-For`) names the client, and the per-address
//! rate limit and the audit log use it; from any other peer those headers
//! change nothing.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{email, spawn_app, Backend, ChildApp, Reply, TestApp, TestDb, PASSWORD};

/// Sign-in for an unknown account with `headers` (401, or 429 when the
/// address is over its budget).
async fn signin_with(app: &TestApp, headers: &[(&str, &str)]) -> Reply {
    let mut request = app
        .request(Method::POST, "/signin")
        .json(&json!({ "email": email(), "password": PASSWORD }));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    app.send(request).await
}

fn limited(trusted: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AUTHD_RATE_LIMIT_ENABLED", "true".into()),
        ("AUTHD_RATE_LIMIT_PER_IP_PER_MINUTE", "2".into()),
        ("AUTHD_RATE_LIMIT_PER_ACCOUNT_PER_MINUTE", "100".into()),
        ("AUTHD_TRUSTED_PROXIES", trusted.into()),
    ]
}

async fn app_with(vars: &[(&'static str, String)]) -> TestApp {
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    spawn_app(Backend::Sqlite, &vars).await.expect("sqlite")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_names_the_client() {
    // The test client connects from 127.0.0.1: it plays the proxy.
    let app = app_with(&limited("127.0.0.0/8,::1")).await;
    let a = [("x-forwarded-for", "198.51.100.1")];
    signin_with(&app, &a)
        .await
        .error(401, "invalid_credentials");
    signin_with(&app, &a)
        .await
        .error(401, "invalid_credentials");
    signin_with(&app, &a).await.error(429, "rate_limited");
    // Another client behind the same proxy has its own budget.
    let b = [("x-forwarded-for", "198.51.100.2")];
    signin_with(&app, &b)
        .await
        .error(401, "invalid_credentials");
    // A forged left-most hop does not escape: the right-most untrusted hop
    // (what the proxy appended) is the client.
    let forged = [("x-forwarded-for", "203.0.113.77, 198.51.100.1")];
    signin_with(&app, &forged).await.error(429, "rate_limited");
    // Forwarded wins over X-Forwarded-For.
    let both = [
        ("forwarded", "for=\"[2001:db8::5]:4711\";proto=https"),
        ("x-forwarded-for", "198.51.100.1"),
    ];
    signin_with(&app, &both)
        .await
        .error(401, "invalid_credentials");
    signin_with(&app, &both)
        .await
        .error(401, "invalid_credentials");
    signin_with(&app, &both).await.error(429, "rate_limited");
    // The proxy's own address (no header) is a client of its own too.
    signin_with(&app, &[])
        .await
        .error(401, "invalid_credentials");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_peer_cannot_choose_its_address() {
    // Only 10.0.0.0/8 is trusted; the test client (127.0.0.1) is not.
    let app = app_with(&limited("10.0.0.0/8")).await;
    signin_with(&app, &[("x-forwarded-for", "198.51.100.1")])
        .await
        .error(401, "invalid_credentials");
    signin_with(&app, &[("forwarded", "for=198.51.100.2")])
        .await
        .error(401, "invalid_credentials");
    // A third "client" is still the same peer, over its budget.
    signin_with(&app, &[("x-forwarded-for", "198.51.100.3")])
        .await
        .error(429, "rate_limited");

    // The default (nobody trusted) behaves the same.
    let default = app_with(&limited("")).await;
    for n in 0..2 {
        let xff = format!("198.51.100.{n}");
        signin_with(&default, &[("x-forwarded-for", xff.as_str())])
            .await
            .error(401, "invalid_credentials");
    }
    signin_with(&default, &[("x-forwarded-for", "198.51.100.9")])
        .await
        .error(429, "rate_limited");
}

/// The JSON log lines of the request carry the client address: the audit
/// event of a failed sign-in names the forwarded client when the peer is
/// trusted, and the peer itself when it is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_carry_the_client_address() {
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    for (run, trusted, expected) in [
        (0, "127.0.0.1", "198.51.100.44"),
        (1, "10.0.0.0/8", "127.0.0.1"),
    ] {
        let app = ChildApp::start_with(
            &db,
            run,
            &[
                ("AUTHD_LOG_FORMAT", "json"),
                ("AUTHD_TRUSTED_PROXIES", trusted),
            ],
        )
        .await;
        let reply = app
            .api
            .send(
                app.api
                    .request(Method::POST, "/signin")
                    .header("x-forwarded-for", "198.51.100.44")
                    .json(&json!({ "email": email(), "password": PASSWORD })),
            )
            .await;
        reply.error(401, "invalid_credentials");
        let event =
            crate::support::wait_for("the sign-in audit log line", Duration::from_secs(5), || {
                let log = app.log();
                async move {
                    log.lines()
                        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                        .find(|l| {
                            l["event"] == "audit"
                                && l["action"] == "signin"
                                && l["outcome"] == "failure"
                        })
                }
            })
            .await;
        assert_eq!(event["client"], expected, "trusted {trusted}: {event}");
        assert_eq!(
            event["span"]["client"], expected,
            "trusted {trusted}: {event}"
        );
        assert!(!event.to_string().contains(PASSWORD), "{event}");
    }
}

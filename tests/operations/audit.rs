//! Audit events: one JSON log line (`event="audit"`) per sign-up, sign-in,
//! revocation, reuse detection, password change, session deletion and
//! account deletion, carrying the request id and the client address but
//! no e-mail unless `audit_log_emails` is on; refreshes are only counted
//! (`authd_auth_events_total`).

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{claims_of, email, wait_for, Backend, ChildApp, TestDb, PASSWORD};

fn audit_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["event"] == "audit")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_is_one_audit_event_and_refreshes_are_counted() {
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let app = ChildApp::start_with(&db, 0, &[("AUTHD_LOG_FORMAT", "json")]).await;
    let api = &app.api;
    let user = email();
    let first = api.signed_up(&user).await;
    let second = api.signed_in(&user).await;
    api.signin(&user, "wrong password!")
        .await
        .error(401, "invalid_credentials");
    // Two refreshes and a grace duplicate: counted, not logged.
    let r1 = api.refreshed(&second).await;
    api.refresh(&second).await.token(200);
    let r2 = api.refreshed(&r1).await;
    // Two generations back: reuse, the session is revoked.
    api.refresh(&second).await.error(401, "token_reused");
    let third = api.signed_in(&user).await;
    let reply = api
        .post_json(
            "/revoke",
            &json!({ "access_token": third, "scope": "others" }),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let fourth = api.signed_in(&user).await;
    let sid = claims_of(&fourth)["sid"].as_str().unwrap().to_owned();
    let deleted = api
        .send(
            api.request(Method::DELETE, &format!("/sessions/{sid}"))
                .bearer_auth(&third),
        )
        .await;
    assert_eq!(deleted.status, 204, "{deleted:?}");
    let changed = api
        .send(
            api.request(Method::POST, "/password")
                .bearer_auth(&third)
                .json(
                    &json!({ "current_password": PASSWORD, "new_password": "another passphrase" }),
                ),
        )
        .await
        .token(200);
    let gone = api
        .send(
            api.request(Method::DELETE, "/account")
                .bearer_auth(&changed)
                .json(&json!({ "password": "another passphrase" })),
        )
        .await;
    assert_eq!(gone.status, 200, "{gone:?}");
    drop((first, r2));

    let expected = [
        ("signup", "success"),
        ("signin", "success"),
        ("signin", "failure"),
        ("token_reuse", "detected"),
        ("signin", "success"),
        ("revoke", "success"),
        ("signin", "success"),
        ("session_delete", "success"),
        ("password_change", "success"),
        ("account_delete", "success"),
    ];
    let lines = wait_for("every audit line", Duration::from_secs(5), || {
        let lines = audit_lines(&app.log());
        async move { (lines.len() >= expected.len()).then_some(lines) }
    })
    .await;
    let seen: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["action"].as_str().unwrap_or_default().to_owned(),
                l["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, o)| ((*a).to_owned(), (*o).to_owned()))
        .collect();
    assert_eq!(seen, expected, "{lines:#?}");
    let mut request_ids = std::collections::HashSet::new();
    for line in &lines {
        assert!(line["span"]["request_id"].is_u64(), "{line}");
        request_ids.insert(line["span"]["request_id"].as_u64());
        assert_eq!(line["client"], "127.0.0.1", "{line}");
        assert!(
            line.get("email").is_none(),
            "e-mail logged by default: {line}"
        );
        assert!(!line.to_string().contains(PASSWORD), "{line}");
        if line["outcome"] == "success" {
            assert!(line["user_id"].is_string(), "{line}");
        }
    }
    assert_eq!(request_ids.len(), lines.len(), "one event per request");
    assert_eq!(lines[2]["reason"], "bad_credentials");
    assert_eq!(lines[5]["scope"], "others");
    assert!(lines[3]["session_id"].is_string(), "{}", lines[3]);

    let metrics = api.send(api.request(Method::GET, "/metrics")).await;
    let text = metrics.body.as_str().expect("text").to_owned();
    let count = |action: &str, outcome: &str| -> f64 {
        let series =
            format!("authd_auth_events_total{{action=\"{action}\",outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert_eq!(count("refresh", "success"), 2.0);
    assert_eq!(count("refresh", "grace_duplicate"), 1.0);
    assert_eq!(count("signin", "success"), 3.0);
    assert_eq!(count("signin", "failure"), 1.0);
    assert_eq!(count("account_delete", "success"), 1.0);
    assert_eq!(count("token_reuse", "detected"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emails_are_logged_only_when_allowed() {
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let app = ChildApp::start_with(
        &db,
        0,
        &[
            ("AUTHD_LOG_FORMAT", "json"),
            ("AUTHD_AUDIT_LOG_EMAILS", "true"),
        ],
    )
    .await;
    let user = email();
    app.api.signed_up(&user).await;
    let line = wait_for("the sign-up audit line", Duration::from_secs(5), || {
        let lines = audit_lines(&app.log());
        async move { lines.into_iter().next() }
    })
    .await;
    assert_eq!(line["email"], user, "{line}");
}

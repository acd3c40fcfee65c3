//! Rate limits wherever a password is checked (sign-in, password change,
//! account deletion) and on sign-up, and equal time for unknown e-mails and
//! wrong passwords.

use std::time::{Duration, Instant};

use crate::support::{email, spawn_app, Backend, PASSWORD};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signin_is_rate_limited_per_account_with_retry_after() {
    let app = spawn_app(
        Backend::Sqlite,
        &[
            ("AUTHD_RATE_LIMIT_ENABLED", "true"),
            ("AUTHD_RATE_LIMIT_PER_ACCOUNT_PER_MINUTE", "3"),
            ("AUTHD_RATE_LIMIT_PER_IP_PER_MINUTE", "1000"),
            ("AUTHD_SIGNIN_FAILURE_FLOOR_MS", "0"),
        ],
    )
    .await
    .expect("sqlite");
    let user = email();
    // Only failed password checks count against an account: sign-up and
    // successful sign-ins, however many, do not.
    app.signed_up(&user).await;
    for _ in 0..5 {
        app.signed_in(&user).await;
    }
    for _ in 0..3 {
        app.signin(&user, "wrong password!")
            .await
            .error(401, "invalid_credentials");
    }
    let limited = app.signin(&user, PASSWORD).await;
    limited.error(429, "rate_limited");
    let retry_after: u64 = limited
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After header in seconds");
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    // Another account is not affected.
    let other = email();
    app.signed_up(&other).await;
    app.signed_in(&other).await;
}

/// A wrong current password at `POST /password` (or `DELETE /account`)
/// counts against the same per-account limit as a failed sign-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_checks_share_the_per_account_limit() {
    let app = spawn_app(
        Backend::Sqlite,
        &[
            ("AUTHD_RATE_LIMIT_ENABLED", "true"),
            ("AUTHD_RATE_LIMIT_PER_ACCOUNT_PER_MINUTE", "3"),
            ("AUTHD_RATE_LIMIT_PER_IP_PER_MINUTE", "1000"),
            ("AUTHD_SIGNIN_FAILURE_FLOOR_MS", "0"),
        ],
    )
    .await
    .expect("sqlite");
    let user = email();
    let token = app.signed_up(&user).await;
    let change = |current: &'static str| {
        app.request(reqwest::Method::POST, "/password")
            .bearer_auth(&token)
            .json(&serde_json::json!({
                "current_password": current,
                "new_password": "a new long passphrase",
            }))
    };
    app.send(change("wrong password 1"))
        .await
        .error(401, "invalid_credentials");
    let delete = app
        .request(reqwest::Method::DELETE, "/account")
        .bearer_auth(&token)
        .json(&serde_json::json!({ "password": "wrong password 2" }));
    app.send(delete).await.error(401, "invalid_credentials");
    app.signin(&user, "wrong password 3")
        .await
        .error(401, "invalid_credentials");
    app.send(change(PASSWORD)).await.error(429, "rate_limited");
    app.signin(&user, PASSWORD).await.error(429, "rate_limited");
    // The token itself is untouched.
    assert_eq!(app.authorize(&token).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signin_is_rate_limited_per_address() {
    let app = spawn_app(
        Backend::Sqlite,
        &[
            ("AUTHD_RATE_LIMIT_ENABLED", "true"),
            ("AUTHD_RATE_LIMIT_PER_ACCOUNT_PER_MINUTE", "100"),
            ("AUTHD_RATE_LIMIT_PER_IP_PER_MINUTE", "4"),
        ],
    )
    .await
    .expect("sqlite");
    for _ in 0..4 {
        app.signin(&email(), PASSWORD)
            .await
            .error(401, "invalid_credentials");
    }
    app.signin(&email(), PASSWORD)
        .await
        .error(429, "rate_limited");
}

/// Sign-in for an unknown e-mail and for a wrong password must take the
/// same time (within 10%, medians of interleaved tries), so response time
/// does not reveal which addresses have accounts. Uses the real (OWASP)
/// argon2 parameters: the hash dominates both paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_email_and_wrong_password_take_the_same_time() {
    let app = spawn_app(
        Backend::Sqlite,
        &[
            ("AUTHD_ARGON2_M_KIB", "19456"),
            ("AUTHD_ARGON2_T", "2"),
            ("AUTHD_ARGON2_P", "1"),
        ],
    )
    .await
    .expect("sqlite");
    let user = email();
    app.signed_up(&user).await;
    // Warm up connections and allocator.
    for _ in 0..3 {
        app.signin(&user, "wrong password!")
            .await
            .error(401, "invalid_credentials");
        app.signin(&email(), "wrong password!")
            .await
            .error(401, "invalid_credentials");
    }
    let mut unknown = Vec::new();
    let mut wrong = Vec::new();
    for _ in 0..30 {
        let started = Instant::now();
        app.signin(&email(), "wrong password!")
            .await
            .error(401, "invalid_credentials");
        unknown.push(started.elapsed());
        let started = Instant::now();
        app.signin(&user, "wrong password!")
            .await
            .error(401, "invalid_credentials");
        wrong.push(started.elapsed());
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64()
    };
    let (unknown, wrong) = (median(&mut unknown), median(&mut wrong));
    let ratio = unknown / wrong;
    assert!(
        (0.9..=1.1).contains(&ratio),
        "median unknown-email sign-in {:.2} ms vs wrong-password {:.2} ms (ratio {ratio:.3})",
        unknown * 1000.0,
        wrong * 1000.0
    );
}

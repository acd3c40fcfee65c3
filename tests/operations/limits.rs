//! Rate limits on sign-in/sign-up, and equal time for unknown e-mails and
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
        ],
    )
    .await
    .expect("sqlite");
    let user = email();
    app.signed_up(&user).await; // 1
    app.signed_in(&user).await; // 2
    app.signin(&user, "wrong password!")
        .await
        .error(401, "invalid_credentials"); // 3
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
    app.signed_up(&email()).await;
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

//! Several authd instances on one PostgreSQL: revocations reach every
//! instance within a second, concurrent refreshes of one token on two
//! instances produce one successor, an instance that lost its listener
//! catches up, one that never hears a notification catches up by its
//! periodic read, "log out everywhere" works across instances, and a
//! session cache far smaller than the sessions in use stays correct.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{email, wait_for, Backend, TcpProxy, TestApp, TestDb};

/// Three instances on one fresh PostgreSQL database (`None`: skipped).
async fn cluster(n: usize) -> Option<(Arc<TestDb>, Vec<TestApp>)> {
    let db = TestDb::create(Backend::Postgres).await?;
    let mut apps = Vec::new();
    for _ in 0..n {
        apps.push(TestApp::spawn_on(Arc::clone(&db), &[]).await);
    }
    Some((db, apps))
}

/// Waits until `app`'s change feed has connected and read the change log
/// once.
async fn caught_up(app: &TestApp) {
    wait_for(
        "the change feed's first catch-up",
        Duration::from_secs(30),
        || async { (app.services.tokens.catch_ups() >= 1).then_some(()) },
    )
    .await;
}

/// Waits until `token` is refused by `app`'s /authorize; returns how long.
async fn refused_within(app: &TestApp, token: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    wait_for("the token to be refused", limit, || async {
        (app.authorize(token).await.status == 401).then_some(())
    })
    .await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reaches_every_instance_within_a_second() {
    let Some((_db, apps)) = cluster(3).await else {
        return;
    };
    let (a, b, c) = (&apps[0], &apps[1], &apps[2]);
    let token = a.signed_up(&email()).await;
    // B and C cache the session.
    b.authorized(&token).await;
    c.authorized(&token).await;
    a.revoke(&token).await;
    for other in [b, c] {
        let took = refused_within(other, &token, Duration::from_secs(1)).await;
        assert!(took < Duration::from_secs(1), "took {took:?}");
        other.refresh(&token).await.unauthorized(&["token_revoked"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refresh_on_two_instances_yields_one_successor() {
    let Some((_db, apps)) = cluster(2).await else {
        return;
    };
    let (a, b) = (&apps[0], &apps[1]);
    for _ in 0..5 {
        let token = a.signed_up(&email()).await;
        b.authorized(&token).await;
        let (on_a, on_b) = tokio::join!(a.refresh(&token), b.refresh(&token));
        let tokens: Vec<String> = [on_a, on_b]
            .iter()
            .filter(|r| r.status == 200)
            .map(|r| r.token(200))
            .collect();
        assert!(!tokens.is_empty(), "at least one refresh succeeds");
        assert!(
            tokens.iter().all(|t| *t == tokens[0]),
            "two different successors: {tokens:?}"
        );
        let successor = &tokens[0];
        a.authorized(successor).await;
        b.authorized(successor).await;
        refused_within(a, &token, Duration::from_secs(1)).await;
        refused_within(b, &token, Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_lost_its_listener_catches_up() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let a = TestApp::spawn_on(Arc::clone(&db), &[]).await;
    // B reaches PostgreSQL through a proxy we can cut.
    let mut proxy = TcpProxy::to_postgres().await;
    let url = db.url_via(proxy.addr);
    let b = TestApp::spawn_on(
        Arc::clone(&db),
        &[
            ("DATABASE_URL", url.as_str()),
            ("AUTHD_DB_TIMEOUT_MS", "500"),
        ],
    )
    .await;
    let token = a.signed_up(&email()).await;
    b.authorized(&token).await;

    // B goes deaf: its listener (and every other connection) drops.
    proxy.stop().await;
    a.revoke(&token).await;
    // The notification was lost for B; its cache still says "live".
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.authorize(&token).await.status, 200);
    proxy.start().await;
    // After reconnecting, B reads what it missed.
    refused_within(&b, &token, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_notifications_are_caught_up_within_the_read_interval() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let a = TestApp::spawn_on(Arc::clone(&db), &[]).await;
    // B reads what it missed every 300 ms; C only every minute, so C shows
    // what B would see without its periodic read.
    let b = TestApp::spawn_on(Arc::clone(&db), &[("AUTHD_FEED_CATCH_UP_MS", "300")]).await;
    let c = TestApp::spawn_on(Arc::clone(&db), &[("AUTHD_FEED_CATCH_UP_MS", "60000")]).await;
    // C's one read before a minute has passed is the one after its feed
    // connects: wait for it, or (on a slow machine) it could land after
    // A's revocation below and read it.
    caught_up(&c).await;
    let token = a.signed_up(&email()).await;
    let rotated = a.signed_up(&email()).await;
    for app in [&b, &c] {
        app.authorized(&token).await;
        app.authorized(&rotated).await;
    }

    // A announces nothing from now on: every notification is lost, while
    // the listeners of B and C stay connected and never reconnect.
    a.services.tokens.drop_notifications(true);
    a.revoke(&token).await;
    let refreshed = a.refresh(&rotated).await.token(200);
    // B refuses within its read interval (plus one read and the test's own
    // slack)...
    refused_within(&b, &token, Duration::from_millis(300 + 2_000)).await;
    refused_within(&b, &rotated, Duration::from_millis(300 + 2_000)).await;
    b.authorized(&refreshed).await;
    // ...while C, which has not read yet, still accepts both: nothing was
    // announced.
    assert_eq!(c.authorize(&token).await.status, 200);
    assert_eq!(c.authorize(&rotated).await.status, 200);

    // With notifications back, C hears the next revocation at once.
    a.services.tokens.drop_notifications(false);
    a.revoke(&refreshed).await;
    refused_within(&c, &refreshed, Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_everywhere_across_instances() {
    let Some((_db, apps)) = cluster(3).await else {
        return;
    };
    let (a, b, c) = (&apps[0], &apps[1], &apps[2]);
    let user = email();
    let first = a.signed_up(&user).await;
    let second = a.signed_in(&user).await;
    let third = b.signed_in(&user).await;
    let bystander = c.signed_up(&email()).await;
    for app in [a, b, c] {
        for token in [&first, &second, &third] {
            app.authorized(token).await;
        }
    }
    let reply = b
        .post_json("/revoke", &json!({ "access_token": third, "scope": "all" }))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    for app in [a, b, c] {
        for token in [&first, &second, &third] {
            refused_within(app, token, Duration::from_secs(1)).await;
        }
    }
    // Other users are untouched.
    a.authorized(&bystander).await;
    // An unknown scope is a client error.
    let reply = a
        .post_json(
            "/revoke",
            &json!({ "access_token": bystander, "scope": "galaxy" }),
        )
        .await;
    reply.error(422, "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_others_and_a_password_change_reach_every_instance() {
    let Some((_db, apps)) = cluster(2).await else {
        return;
    };
    let (a, b) = (&apps[0], &apps[1]);
    let user = email();
    let first = a.signed_up(&user).await;
    let second = b.signed_in(&user).await;
    let mine = a.signed_in(&user).await;
    for app in [a, b] {
        for token in [&first, &second, &mine] {
            app.authorized(token).await;
        }
    }
    let reply = b
        .post_json(
            "/revoke",
            &json!({ "access_token": mine, "scope": "others" }),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    for app in [a, b] {
        for token in [&first, &second] {
            refused_within(app, token, Duration::from_secs(1)).await;
        }
        app.authorized(&mine).await;
    }

    // A password change on A ends B's cached session too, and a token
    // just rotated away (inside the grace window) is not refreshed.
    let rotated = b.refreshed(&mine).await;
    a.authorized(&rotated).await;
    let reply = a
        .send(
            a.request(reqwest::Method::POST, "/password")
                .bearer_auth(&rotated)
                .json(&json!({
                    "current_password": crate::support::PASSWORD,
                    "new_password": "another long passphrase",
                })),
        )
        .await;
    let fresh = reply.token(200);
    refused_within(b, &rotated, Duration::from_secs(1)).await;
    for app in [a, b] {
        app.refresh(&mine)
            .await
            .unauthorized(&["token_revoked", "invalid_token"]);
        app.refresh(&rotated)
            .await
            .unauthorized(&["token_revoked", "invalid_token"]);
        app.authorized(&fresh).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_deletion_reaches_every_instance_even_one_that_missed_it() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let a = TestApp::spawn_on(Arc::clone(&db), &[]).await;
    let c = TestApp::spawn_on(Arc::clone(&db), &[]).await;
    // B reaches PostgreSQL through a proxy we can cut.
    let mut proxy = TcpProxy::to_postgres().await;
    let url = db.url_via(proxy.addr);
    let b = TestApp::spawn_on(
        Arc::clone(&db),
        &[
            ("DATABASE_URL", url.as_str()),
            ("AUTHD_DB_TIMEOUT_MS", "500"),
        ],
    )
    .await;
    let user = email();
    let first = a.signed_up(&user).await;
    let second = b.signed_in(&user).await;
    for app in [&a, &b, &c] {
        app.authorized(&first).await;
        app.authorized(&second).await;
    }

    // B goes deaf; the account is deleted on A meanwhile.
    proxy.stop().await;
    let reply = a
        .send(
            a.request(reqwest::Method::DELETE, "/account")
                .bearer_auth(&first)
                .json(&json!({ "password": crate::support::PASSWORD })),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    for token in [&first, &second] {
        refused_within(&c, token, Duration::from_secs(1)).await;
        refused_within(&a, token, Duration::from_secs(1)).await;
    }
    // B missed the notification: its cache still says "live".
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.authorize(&first).await.status, 200);
    proxy.start().await;
    // After reconnecting it catches up from the revoked rows the deletion
    // left behind.
    for token in [&first, &second] {
        refused_within(&b, token, Duration::from_secs(10)).await;
        b.refresh(token)
            .await
            .unauthorized(&["token_revoked", "invalid_token"]);
    }
    // The e-mail signs up again, on any instance.
    let again = b.signed_up(&user).await;
    c.authorized(&again).await;
}

/// Two instances whose caches hold two sessions each, serving many more:
/// every session is evicted and read through again and again, and every
/// answer is still the database's (revocation, rotation, reuse detection,
/// the grace window), on both instances, with notifications or without.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_session_cache_stays_correct_across_instances() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let tiny = [
        ("AUTHD_SESSION_CACHE_CAPACITY", "2"),
        ("AUTHD_FEED_CATCH_UP_MS", "200"),
        // The grace window checks below run well within it.
        ("AUTHD_REFRESH_GRACE_MS", "10000"),
    ];
    let a = TestApp::spawn_on(Arc::clone(&db), &tiny).await;
    let b = TestApp::spawn_on(Arc::clone(&db), &tiny).await;
    let tokens: Vec<String> = {
        let mut tokens = Vec::new();
        for _ in 0..8 {
            tokens.push(a.signed_up(&email()).await);
        }
        tokens
    };
    // Everything is authorized on both, through caches of two.
    for app in [&a, &b] {
        for token in &tokens {
            app.authorized(token).await;
        }
        assert!(app.services.tokens.cached_sessions() <= 2);
    }

    // Revoked on A while evicted on B: refused on B.
    a.revoke(&tokens[0]).await;
    b.authorized(&tokens[5]).await;
    b.authorized(&tokens[6]).await;
    refused_within(&b, &tokens[0], Duration::from_secs(5)).await;

    // Rotated on B, the session evicted on A since: A refuses the old
    // token and accepts the new one.
    let successor = b.refreshed(&tokens[1]).await;
    for token in &tokens[4..8] {
        a.authorized(token).await;
    }
    a.authorized(&successor).await;
    refused_within(&a, &tokens[1], Duration::from_secs(5)).await;

    // Grace window across instances and evictions: presenting the rotated
    // token again at once gets the same successor, on either instance.
    let again_on_a = a.refresh(&tokens[1]).await.token(200);
    let again_on_b = b.refresh(&tokens[1]).await.token(200);
    assert_eq!(again_on_a, successor);
    assert_eq!(again_on_b, successor);

    // Without notifications, through the catch-up read alone.
    a.services.tokens.drop_notifications(true);
    a.revoke(&tokens[2]).await;
    for token in &tokens[4..8] {
        b.authorized(token).await;
    }
    refused_within(&b, &tokens[2], Duration::from_secs(5)).await;
    a.services.tokens.drop_notifications(false);

    // Reuse detection (a token two rotations old), the session evicted
    // everywhere in between: the session ends on both instances.
    let rotated = a.refreshed(&tokens[3]).await;
    let rotated = b.refreshed(&rotated).await;
    for app in [&a, &b] {
        for token in &tokens[4..8] {
            app.authorized(token).await;
        }
    }
    b.refresh(&tokens[3]).await.unauthorized(&["token_reused"]);
    for app in [&a, &b] {
        refused_within(app, &rotated, Duration::from_secs(5)).await;
        assert!(app.services.tokens.cached_sessions() <= 2);
    }
}

//! SIGTERM drains: requests in flight when the signal arrives are answered
//! and their writes are durable; the process exits 0.

use std::time::{Duration, Instant};

use crate::support::{email, Backend, ChildApp, TestDb, PASSWORD};

const IN_FLIGHT: usize = 8;

async fn sigterm_drains_in_flight_requests(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    // One hashing thread at a noticeable cost (~150 ms a hash; argon2 is
    // optimised in the dev profile too): sign-ups queue up behind it, so
    // most are still in flight when SIGTERM arrives (yet all finish well
    // inside request_timeout_ms).
    let slow = [
        ("AUTHD_ARGON2_M_KIB", "65536"),
        ("AUTHD_ARGON2_T", "3"),
        ("AUTHD_HASH_CONCURRENCY", "1"),
    ];
    let app = ChildApp::start_with(&db, 0, &slow).await;
    let users: Vec<String> = (0..IN_FLIGHT).map(|_| email()).collect();
    let requests: Vec<_> = users
        .iter()
        .cloned()
        .map(|user| {
            let api = app.api.clone();
            tokio::spawn(async move {
                let reply = api.signup(&user, PASSWORD).await;
                (reply, Instant::now())
            })
        })
        .collect();
    // Let every request reach the server, then ask it to stop.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let signalled = Instant::now();
    let status = app.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "authd exited with {status} after SIGTERM");
    let mut answered_after_signal = 0;
    for request in requests {
        let (reply, answered) = request.await.expect("request task");
        reply.token(201);
        answered_after_signal += usize::from(answered > signalled);
    }
    assert!(
        answered_after_signal > 0,
        "no request was still in flight at SIGTERM: the test proves nothing"
    );

    // Every acknowledged sign-up survived.
    let again = ChildApp::start(&db, 1).await;
    for user in &users {
        again.api.signed_in(user).await;
    }
}

both_backends!(sigterm_drains_in_flight_requests);

//! SIGTERM drains: requests in flight when the signal arrives are answered
//! and their writes are durable; the process exits 0, within one deadline
//! (`shutdown_delay_ms + shutdown_grace_ms`) however the stages go.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::{email, spawn_app, Backend, ChildApp, TestDb, PASSWORD};

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

/// One clock bounds the whole shutdown: with the HTTP drain held up by a
/// request whose body never comes and `UserActor` busy past any drain,
/// authd still stops within `shutdown_delay_ms + shutdown_grace_ms` of the
/// signal (each stage taking its own grace would need delay + 2 × grace).
async fn shutdown_ends_within_delay_plus_grace(backend: Backend) {
    const DELAY: Duration = Duration::from_millis(1_000);
    const GRACE: Duration = Duration::from_millis(4_000);
    let delay = DELAY.as_millis().to_string();
    let grace = GRACE.as_millis().to_string();
    let overrides = [
        ("AUTHD_SHUTDOWN_DELAY_MS", delay.as_str()),
        ("AUTHD_SHUTDOWN_GRACE_MS", grace.as_str()),
        ("AUTHD_BODY_READ_TIMEOUT_MS", "120000"),
    ];
    let Some(app) = spawn_app(backend, &overrides).await else {
        return;
    };
    // A request whose body never arrives: the HTTP drain waits for it.
    let mut stalled = TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .expect("connect");
    stalled
        .write_all(
            b"POST /signin HTTP/1.1\r\nHost: authd\r\nContent-Type: application/json\r\n\
              Content-Length: 64\r\n\r\n{\"email\":",
        )
        .await
        .expect("send the start of a request");
    // UserActor busy in its loop: the actors' drain waits for it.
    assert!(
        app.services.users.hang(Duration::from_secs(120)),
        "the hang hook could not reach UserActor"
    );
    let signalled = Instant::now();
    app.shutdown().await;
    let took = signalled.elapsed();
    assert!(
        took >= GRACE,
        "stopped after {took:?}: the stalled request did not hold the drain, the test proves nothing"
    );
    let bound = DELAY + GRACE + Duration::from_secs(3);
    assert!(
        took < bound,
        "shutdown took {took:?}, past delay + grace ({:?}) and its slack",
        DELAY + GRACE
    );
    drop(stalled);
}

both_backends!(shutdown_ends_within_delay_plus_grace);

//! Memory stays flat under sustained load when nothing scrapes `/metrics`
//! (the recorder's histogram samples are drained on authd's own timer).
//!
//! The real binary runs as a child process so its resident set is its own.
//! The load is counted in requests, not seconds, so the bound does not
//! depend on the machine's speed: after a warm-up (allocator arenas, the
//! session cache and the connection buffers reach their working size), a
//! fixed number of authorizes and refreshes must not grow the resident set
//! by more than a generous bound. Before the fix each request left about 22
//! bytes behind, so the measured stretch grew by 2 MiB.

use std::sync::Arc;

use tokio::task::JoinSet;

use crate::support::{email, Backend, ChildApp, TestDb};

/// Connections driving the load, each with its own session.
const CONNECTIONS: usize = 16;
/// Requests per connection before the first reading.
const WARM_UP: usize = 1_000;
/// Requests per connection between the two readings.
const MEASURED: usize = 6_000;
/// Largest growth of the resident set over the measured stretch (96,000
/// requests). Measured here: 384 KiB with the upkeep timer, 2,064 KiB
/// without it (22 bytes per request).
const BOUND_KIB: u64 = 1024;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Every connection authorizes four times and refreshes once, in a loop,
/// `requests_each` requests in all. A 503 (the machine is shared with the
/// rest of the suite, and an overloaded authd answers 503 by design) is
/// counted, and a refresh that got one starts a new session by signing in
/// (its outcome is unknown, so the old token may be spent). Returns the
/// number of 503s; any other answer than 200 or 503 fails the test.
async fn load(app: &ChildApp, sessions: &mut [(String, String)], requests_each: usize) -> usize {
    let mut tasks = JoinSet::new();
    for (user, token) in sessions.iter() {
        let api = app.api.clone();
        let (user, mut token) = (user.clone(), token.clone());
        tasks.spawn(async move {
            let mut unavailable = 0;
            for n in 0..requests_each {
                let reply = if n % 5 == 4 {
                    api.refresh(&token).await
                } else {
                    api.authorize(&token).await
                };
                match reply.status {
                    200 if n % 5 == 4 => token = reply.token(200),
                    200 => {}
                    503 => {
                        unavailable += 1;
                        if n % 5 == 4 {
                            token = api.signed_in(&user).await;
                        }
                    }
                    _ => panic!("unexpected answer under load: {reply:?}"),
                }
            }
            (user, token, unavailable)
        });
    }
    let mut unavailable = 0;
    let mut n = 0;
    while let Some(done) = tasks.join_next().await {
        let (user, token, refused) = done.expect("a load task");
        sessions[n] = (user, token);
        unavailable += refused;
        n += 1;
    }
    unavailable
}

async fn memory_flat_without_scrape(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let app = ChildApp::start_with(
        &db,
        0,
        &[
            ("AUTHD_RATE_LIMIT_ENABLED", "false"),
            ("AUTHD_ARGON2_M_KIB", "64"),
            ("AUTHD_ARGON2_T", "1"),
            ("AUTHD_LOG_LEVEL", "warn"),
        ],
    )
    .await;
    let app = Arc::new(app);
    let mut sessions = Vec::new();
    for _ in 0..CONNECTIONS {
        let user = email();
        let token = app.api.signed_up(&user).await;
        sessions.push((user, token));
    }
    load(&app, &mut sessions, WARM_UP).await;
    let before = rss_kib(app.pid());
    let unavailable = load(&app, &mut sessions, MEASURED).await;
    let after = rss_kib(app.pid());
    let requests = CONNECTIONS * MEASURED;
    assert!(
        unavailable * 100 < requests,
        "{unavailable} of {requests} requests answered 503"
    );
    let grown = after.saturating_sub(before);
    eprintln!(
        "{backend:?}: resident {before} KiB -> {after} KiB over {requests} requests \
         ({:.1} bytes per request)",
        grown as f64 * 1024.0 / requests as f64
    );
    assert!(
        grown <= BOUND_KIB,
        "resident memory grew {grown} KiB over {requests} requests (bound {BOUND_KIB} KiB)"
    );
}

both_backends!(memory_flat_without_scrape);

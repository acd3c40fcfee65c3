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
/// `requests_each` requests in all; every answer must be a success.
async fn load(app: &ChildApp, tokens: &mut [String], requests_each: usize) {
    let mut tasks = JoinSet::new();
    for token in tokens.iter() {
        let api = app.api.clone();
        let mut token = token.clone();
        tasks.spawn(async move {
            for n in 0..requests_each {
                if n % 5 == 4 {
                    token = api.refreshed(&token).await;
                } else {
                    api.authorized(&token).await;
                }
            }
            token
        });
    }
    let mut n = 0;
    while let Some(done) = tasks.join_next().await {
        tokens[n] = done.expect("a load task");
        n += 1;
    }
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
    let mut tokens = Vec::new();
    for _ in 0..CONNECTIONS {
        tokens.push(app.api.signed_up(&email()).await);
    }
    load(&app, &mut tokens, WARM_UP).await;
    let before = rss_kib(app.pid());
    load(&app, &mut tokens, MEASURED).await;
    let after = rss_kib(app.pid());
    let requests = CONNECTIONS * MEASURED;
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

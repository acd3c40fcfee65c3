//! High availability with the real thing: etcd and two PostgreSQL nodes
//! under Patroni (the shipped `config/patroni/node{1,2}.yml`, rendered with
//! this test's ports and a temporary directory; synchronous replication),
//! two authd binaries on the multi-host URL, refresh and revoke load from a
//! few tasks, and four faults in turn:
//!
//! 1. kill -9 of the primary's postmaster (Patroni fails over to the
//!    synchronous standby; the old primary comes back as a standby);
//! 2. `patronictl switchover --force` (back to the first node);
//! 3. etcd down (Patroni keeps the primary; authd keeps serving);
//! 4. the primary's machine lost: Patroni and PostgreSQL killed together
//!    (the standby takes over once the leader key expires; the node, back,
//!    rejoins as the standby).
//!
//! During a switch authd may answer 503, never anything else; it serves
//! again within [`RECOVERY_LIMIT`]; every acknowledged rotation and
//! revocation is on the new primary and honoured by both instances; a
//! sign-up answered 503 stored nothing (its retry creates the account,
//! never finds it taken); a revocation on one instance reaches the other. The figures (requests
//! answered 503, the window from the fault to the last of them) are
//! printed.
//!
//! The URL lists the standby first, so authd also starts past a host that
//! is a standby. Patroni, etcd and PostgreSQL come from Debian's `patroni`,
//! `etcd-server` and `postgresql` packages (`.ci/run` installs them); when
//! one is missing the test prints `SKIPPED (...)` and passes, unless
//! `AUTHD_REQUIRE_PATRONI=1`, which makes it fail instead.

#[macro_use]
#[allow(dead_code, unused_macros)]
#[path = "../support/mod.rs"]
mod support;

mod patroni;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use patroni::{tools, Cluster, CLUSTER_LIMIT, SUPERUSER_PASSWORD};
use support::{claims_of, email, wait_for, Api, Backend, ChildApp, TestDb, PASSWORD};
use tokio::task::JoinSet;

/// Service is back this soon after a fault (a failover takes 2-5 s here).
const RECOVERY_LIMIT: Duration = Duration::from_secs(60);
/// Load tasks, each with a session of its own, alternating instances.
const WORKERS: usize = 4;

/// One answer of the load: when it came, its status, how long it took.
type Event = (Instant, u16, Duration);

/// A session's last acknowledged token, and whether it was revoked.
struct Tracked {
    token: String,
    revoked: bool,
}

/// The next request of a worker: a retry repeats the same one.
#[derive(Clone, Copy)]
enum Op {
    Refresh,
    Revoke,
    Signin,
}

/// A load task: refreshes its session on alternating instances, revoking
/// it (and signing in again) every eighth request; retries an operation
/// answered 503 until it is acknowledged. Stops, once `stop` is set, after
/// its last operation was acknowledged. Any answer but 200 or 503 fails
/// the test (the client also fails it on a 500 or a hang).
async fn worker(
    apps: [Api; 2],
    stop: Arc<AtomicBool>,
    events: Arc<Mutex<Vec<Event>>>,
) -> Vec<Tracked> {
    let first = first_session(&apps[0], RECOVERY_LIMIT, "a load task's sign-up").await;
    let (user, mut token) = (first.user, first.token);
    let mut tracked = Vec::new();
    let mut pending: Option<Op> = None;
    let mut n = 0usize;
    loop {
        if pending.is_none() && stop.load(Ordering::SeqCst) {
            break;
        }
        n += 1;
        let api = &apps[n % 2];
        let op = pending.take().unwrap_or(if n.is_multiple_of(8) {
            Op::Revoke
        } else {
            Op::Refresh
        });
        let sent = Instant::now();
        let reply = match op {
            Op::Refresh => api.refresh(&token).await,
            Op::Revoke => api.revoke(&token).await,
            Op::Signin => api.signin(&user, PASSWORD).await,
        };
        events
            .lock()
            .expect("events")
            .push((Instant::now(), reply.status, sent.elapsed()));
        match (op, reply.status) {
            (_, 503) => pending = Some(op),
            (Op::Refresh, 200) => token = reply.token(200),
            (Op::Revoke, 200) => {
                tracked.push(Tracked {
                    token: token.clone(),
                    revoked: true,
                });
                pending = Some(Op::Signin);
            }
            (Op::Signin, 200) => token = reply.token(200),
            _ => panic!("only 200 or 503 may answer during a failover: {reply:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracked.push(Tracked {
        token,
        revoked: false,
    });
    tracked
}

/// How a new user's first session came about.
struct FirstSession {
    user: String,
    token: String,
    /// Sign-ups answered 503 before the one that settled.
    unavailable: usize,
    /// A sign-up answered 503 had committed after all (its answer was lost
    /// with the primary, or `db_timeout_ms` ran out while the commit waited
    /// for the standby): its retry found the address taken, and the session
    /// here comes from a sign-in.
    ambiguous: bool,
}

/// A new user's first session, asking until authd serves (failing the
/// test after `limit`). A sign-up stores the user and its session in one
/// transaction, so a retry after 503 either creates the account (201) or
/// finds the whole sign-up committed (409, then a sign-in; the caller
/// checks the sign-up's own session is stored). Anything else fails.
async fn first_session(api: &Api, limit: Duration, what: &str) -> FirstSession {
    let user = email();
    let deadline = Instant::now() + limit;
    let mut unavailable = 0;
    let mut ambiguous = false;
    loop {
        let reply = if ambiguous {
            api.signin(&user, PASSWORD).await
        } else {
            api.signup(&user, PASSWORD).await
        };
        match reply.status {
            201 | 200 => {
                let token = reply.token(reply.status);
                return FirstSession {
                    user,
                    token,
                    unavailable,
                    ambiguous,
                };
            }
            503 => unavailable += 1,
            409 if unavailable > 0 && !ambiguous => ambiguous = true,
            _ => panic!("{what}: {reply:?} after {unavailable} sign-ups answered 503"),
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no service within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What one fault cost.
struct Figures {
    requests: usize,
    failed: usize,
    /// From the fault to the last 503 (zero when none).
    window: Duration,
    /// From the fault to a refresh acknowledged by both instances.
    recovered: Duration,
    /// The slowest answer after the fault, and the slowest 503.
    slowest: Duration,
    slowest_503: Duration,
    /// Sign-ups answered 503 (each retried) after the fault.
    signups_503: usize,
    /// Whether one of them had committed (its retry found the account).
    signup_committed: bool,
}

/// Runs the load across `fault`, waits for service on both instances, keeps
/// the load on for `hold`, then checks every acknowledged write against
/// the primary and both instances.
async fn across(
    cluster: &Cluster,
    apps: &[Api; 2],
    name: &str,
    fault: impl std::future::Future<Output = ()>,
    hold: Duration,
) -> Figures {
    let stop = Arc::new(AtomicBool::new(false));
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = JoinSet::new();
    for _ in 0..WORKERS {
        tasks.spawn(worker(apps.clone(), Arc::clone(&stop), Arc::clone(&events)));
    }
    // Some load before the fault.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let at = Instant::now();
    fault.await;
    // Service is back when a fresh session refreshes on both instances.
    // It signs up during the fault: its retries after 503s prove a
    // sign-up all or nothing.
    let first = first_session(&apps[0], RECOVERY_LIMIT, name).await;
    if first.ambiguous {
        // The sign-up that committed behind a 503 stored its session with
        // the user (the sign-in added another): never a user alone.
        // (A sign-in answered 503 may have added more.)
        let stored = cluster.sessions_of(&first.user).await;
        assert!(
            stored >= 2,
            "{name}: a sign-up answered 503 stored its user with {stored} sessions of its own"
        );
    }
    let (mut probe, signups_503, signup_committed) =
        (first.token, first.unavailable, first.ambiguous);
    for api in apps {
        probe = loop {
            let reply = api.refresh(&probe).await;
            if reply.status == 200 {
                break reply.token(200);
            }
            assert_eq!(reply.status, 503, "{reply:?}");
            assert!(
                at.elapsed() < RECOVERY_LIMIT,
                "{name}: no service within {RECOVERY_LIMIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
    }
    let recovered = at.elapsed();
    // Load on the new primary for a while.
    tokio::time::sleep(hold).await;
    stop.store(true, Ordering::SeqCst);
    let mut tracked = Vec::new();
    while let Some(done) = tasks.join_next().await {
        tracked.extend(done.expect("a load task failed"));
    }
    let events = events.lock().expect("events").clone();
    let failures: Vec<Instant> = events
        .iter()
        .filter(|(_, status, _)| *status == 503)
        .map(|(when, _, _)| *when)
        .collect();
    let slowest = |only_503: bool| {
        events
            .iter()
            .filter(|(when, status, _)| *when >= at && (!only_503 || *status == 503))
            .map(|(_, _, took)| *took)
            .max()
            .unwrap_or_default()
    };
    assert!(
        failures.iter().all(|when| *when >= at),
        "{name}: 503 before the fault"
    );
    let window = failures
        .iter()
        .max()
        .map_or(Duration::ZERO, |last| last.duration_since(at));
    assert!(window < RECOVERY_LIMIT, "{name}: 503s for {window:?}");

    // Every acknowledged write is on the primary...
    let rows = cluster.sessions().await;
    for t in &tracked {
        let claims = claims_of(&t.token);
        let sid: uuid::Uuid = claims["sid"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("sid");
        let generation = claims["gen"].as_i64().expect("gen");
        assert_eq!(
            rows.get(&sid),
            Some(&(generation, t.revoked)),
            "{name}: session {sid} acknowledged at generation {generation}, revoked: {}",
            t.revoked
        );
    }
    // ...and honoured by both instances.
    for t in &tracked {
        for api in apps {
            let reply = api.authorize(&t.token).await;
            let expected = if t.revoked { 401 } else { 200 };
            assert_eq!(reply.status, expected, "{name}: {reply:?}");
        }
    }
    Figures {
        requests: events.len(),
        failed: failures.len(),
        window,
        recovered,
        slowest: slowest(false),
        slowest_503: slowest(true),
        signups_503,
        signup_committed,
    }
}

/// A revocation on one instance is refused on the other soon after: it was
/// announced on the primary, where the other's listener is.
async fn revocations_cross(apps: &[Api; 2]) {
    for (from, to) in [(0, 1), (1, 0)] {
        let token = apps[from].signed_up(&email()).await;
        apps[to].authorized(&token).await;
        assert_eq!(apps[from].revoke(&token).await.status, 200);
        wait_for(
            "the revocation to reach the other instance",
            Duration::from_secs(3),
            || async { (apps[to].authorize(&token).await.status == 401).then_some(()) },
        )
        .await;
    }
}

fn report(name: &str, figures: &Figures) {
    let _ = writeln!(
        std::io::stderr(),
        "HA {name}: {} of {} requests answered 503; last 503 {:.1} s after the fault; \
         both instances served again after {:.1} s; slowest answer {} ms, slowest 503 {} ms; \
         {} sign-ups answered 503, then {}",
        figures.failed,
        figures.requests,
        figures.window.as_secs_f64(),
        figures.recovered.as_secs_f64(),
        figures.slowest.as_millis(),
        figures.slowest_503.as_millis(),
        figures.signups_503,
        if figures.signup_committed {
            "409: one had committed, with its session"
        } else {
            "201"
        },
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn authd_follows_the_primary_through_failover_switchover_etcd_and_node_loss() {
    let Some(tools) = tools() else {
        return;
    };
    let mut cluster = Cluster::start(tools).await;
    let scratch = TestDb::create(Backend::Sqlite).await.expect("a directory");
    let url = cluster.url();
    let overrides = [
        ("DATABASE_URL", url.as_str()),
        // A refresh answered 503 may have committed just before the
        // primary died; its retry, after the failover, gets the same
        // successor inside this window instead of counting as reuse.
        ("AUTHD_REFRESH_GRACE_MS", "60000"),
        // The longest interval between periodic catch-up reads authd
        // accepts (2 min, well inside the change log's retention), so that
        // what an instance missed while its listener was down reaches it
        // through the read after the listener reconnected, and later
        // revocations through notifications on the new primary, and hardly
        // ever through a periodic read.
        ("AUTHD_FEED_CATCH_UP_MS", "120000"),
    ];
    let a = ChildApp::start_with(&scratch, 1, &overrides).await;
    let b = ChildApp::start_with(&scratch, 2, &overrides).await;
    // The store target names both hosts, the password masked.
    let log = a.log();
    let hosts = format!(
        "127.0.0.1:{},127.0.0.1:{}/authd",
        cluster.nodes[1].pg_port, cluster.nodes[0].pg_port
    );
    assert!(
        log.contains(&format!("postgres://postgres:***@{hosts}")),
        "{log}"
    );
    assert!(!log.contains(SUPERUSER_PASSWORD), "{log}");
    let apps = [a.api.clone(), b.api.clone()];

    // 1. kill -9 of the primary's postmaster: node2 takes over.
    let kill = async { cluster.kill_postmaster(0) };
    let killed = across(&cluster, &apps, "kill -9", kill, Duration::from_secs(2)).await;
    assert!(cluster.has_role(1, "primary").await, "node2 was promoted");
    report("kill -9 of the primary's postmaster", &killed);
    revocations_cross(&apps).await;
    // The old primary comes back as the synchronous standby.
    cluster.wait_role(0, "sync", CLUSTER_LIMIT).await;

    // 2. A switchover back to node1.
    let switch = async { tokio::task::block_in_place(|| cluster.switchover()) };
    let switched = across(
        &cluster,
        &apps,
        "switchover",
        switch,
        Duration::from_secs(2),
    )
    .await;
    assert!(cluster.has_role(0, "primary").await, "node1 leads again");
    report("patronictl switchover", &switched);
    revocations_cross(&apps).await;
    cluster.wait_role(1, "sync", CLUSTER_LIMIT).await;

    // 3. etcd down: Patroni keeps the primary (failsafe mode), authd keeps
    // serving, for longer than the leader key lives (ttl 10 s).
    let etcd = cluster.etcd.take();
    let stop_etcd = async move { tokio::task::block_in_place(move || drop(etcd)) };
    let hold = Duration::from_secs(15);
    let lost_etcd = across(&cluster, &apps, "etcd down", stop_etcd, hold).await;
    report("etcd down for 15 s", &lost_etcd);
    assert_eq!(lost_etcd.failed, 0, "authd kept serving without etcd");
    assert!(
        cluster.has_role(0, "primary").await,
        "node1 kept the primary"
    );
    revocations_cross(&apps).await;
    cluster.start_etcd().await;
    cluster.wait_role(1, "sync", CLUSTER_LIMIT).await;

    // 4. node1's machine lost: node2 takes over once node1's leader key
    // expires (ttl 10 s), with nobody left to release it.
    let lose = async { cluster.lose_node(0) };
    let lost = across(&cluster, &apps, "node lost", lose, Duration::from_secs(2)).await;
    report("the primary's machine lost", &lost);
    assert!(cluster.has_role(1, "primary").await, "node2 was promoted");
    revocations_cross(&apps).await;
    // Back, it rejoins as the synchronous standby.
    cluster.restart_node(0);
    cluster.wait_role(0, "sync", CLUSTER_LIMIT).await;
}

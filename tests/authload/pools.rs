//! The scenarios built on sessions made before the timed window (`revoke`
//! with `--pool`, `revoke-seen` across two instances) and the `mixed`
//! loop's fixed shape, against authd on both backends; `revoke-seen`
//! also against the stand-in that never refuses a token, so a revocation
//! that is never seen is seen to be reported.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{authload, short, u};
use crate::standin;
use crate::support::{spawn_app, Backend, TestApp};

fn endpoint_names(json: &Value) -> BTreeSet<String> {
    json["endpoints"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

fn requests(json: &Value, op: &str) -> u64 {
    json["endpoints"][op]["requests"].as_u64().unwrap_or(0)
}

async fn revoke_pool(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    // A pool larger than the run can use: only revokes are timed.
    let mut args = short(&app.address, "revoke", "4");
    args.extend(["--pool", "4000"]);
    let json = authload(&args).await.ok_json();
    assert_eq!(
        endpoint_names(&json),
        BTreeSet::from(["revoke".to_string()]),
        "{json}"
    );
    assert!(json["errors"].as_object().unwrap().is_empty(), "{json}");
    let pool = &json["pool"];
    assert_eq!(u(&pool["sessions"]), 4000);
    assert_eq!(u(&pool["exhausted_connections"]), 0, "{json}");
    let revoked = u(&json["requests"]);
    assert!(revoked > 0, "{json}");
    assert!(revoked + u(&pool["left"]) <= 4000, "{json}");
    assert_eq!(u(&json["resyncs"]), 0);

    // A pool smaller than the run: every connection runs out, each session
    // was revoked once (no 401 for a second revoke), nothing is left.
    let mut args = short(&app.address, "revoke", "4");
    args.extend(["--pool", "10"]);
    let run = authload(&args).await;
    let json = run.ok_json();
    let pool = &json["pool"];
    assert_eq!(u(&pool["sessions"]), 10);
    assert_eq!(u(&pool["exhausted_connections"]), 4, "{json}");
    assert_eq!(u(&pool["left"]), 0, "{json}");
    assert!(u(&json["requests"]) <= 10, "{json}");
    assert!(json["errors"].as_object().unwrap().is_empty(), "{json}");
    assert!(
        run.stdout.contains("4 connection(s) ran out"),
        "{}",
        run.stdout
    );

    // Fewer sessions than connections cannot be shared out.
    let mut args = short(&app.address, "revoke", "4");
    args.extend(["--pool", "3"]);
    let run = authload(&args).await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("--pool"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_revokes_a_pool_made_in_setup_sqlite() {
    revoke_pool(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_revokes_a_pool_made_in_setup_postgres() {
    revoke_pool(Backend::Postgres).await;
}

/// Per connection: sign-in, 20 x (refresh + 5 authorizes), revoke. Each
/// connection's counts inside the window are off its proportions by at
/// most one partial session at each end.
async fn mixed_loop(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    let connections = 3u64;
    let json = authload(&short(&app.address, "mixed", "3")).await.ok_json();
    assert!(json["errors"].as_object().unwrap().is_empty(), "{json}");
    let (signin, refresh, authorize, revoke) = (
        requests(&json, "signin"),
        requests(&json, "refresh"),
        requests(&json, "authorize"),
        requests(&json, "revoke"),
    );
    assert!(refresh > 0 && authorize > 0, "{json}");
    assert!(authorize.abs_diff(5 * refresh) <= 5 * connections, "{json}");
    assert!(refresh.abs_diff(20 * revoke) <= 20 * connections, "{json}");
    assert!(signin.abs_diff(revoke) <= connections, "{json}");
    // The loop's sign-ins follow its revokes: none is a broken chain.
    assert_eq!(u(&json["resyncs"]), 0, "{json}");
    for op in ["refresh", "authorize"] {
        let e = &json["endpoints"][op];
        assert!(e["p50_ms"].as_f64().unwrap() <= e["p99_ms"].as_f64().unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_is_the_sign_in_refresh_authorize_revoke_loop_sqlite() {
    mixed_loop(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_is_the_sign_in_refresh_authorize_revoke_loop_postgres() {
    mixed_loop(Backend::Postgres).await;
}

fn assert_all_seen(json: &Value) {
    assert!(json["errors"].as_object().unwrap().is_empty(), "{json}");
    assert_eq!(u(&json["never_seen"]), 0, "{json}");
    let samples = u(&json["samples"]);
    assert!(samples > 0, "{json}");
    let (p50, p99, max) = (
        json["p50_ms"].as_f64().unwrap(),
        json["p99_ms"].as_f64().unwrap(),
        json["max_ms"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{json}");
    // Every session taken from the pool was warmed, and the counted ones
    // (acknowledged after the warm-up) are at most those.
    let pool = &json["pool"];
    assert!(samples <= u(&json["warm_ups"]), "{json}");
    assert!(
        u(&json["warm_ups"]) + u(&pool["left"]) <= u(&pool["sessions"]),
        "{json}"
    );
}

fn seen_args<'a>(first: &'a str, second: &'a str) -> Vec<&'a str> {
    vec![
        "--url",
        first,
        "--url",
        second,
        "--scenario",
        "revoke-seen",
        "-c",
        "2",
        "--pool",
        "400",
        "--duration",
        "1500ms",
        "--warmup",
        "200ms",
        "--json",
        "--quiet",
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_seen_by_a_second_instance_on_one_postgres_database() {
    let Some(first) = spawn_app(Backend::Postgres, &[]).await else {
        return;
    };
    let second = TestApp::spawn_on(first.db.clone(), &[]).await;
    let run = authload(&seen_args(&first.address, &second.address)).await;
    let json = run.ok_json();
    assert_eq!(json["scenario"], "revoke-seen");
    assert_all_seen(&json);
    assert!(run.stdout.contains("acknowledged revoke"), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_seen_on_one_sqlite_instance_is_immediate() {
    let app = spawn_app(Backend::Sqlite, &[]).await.expect("sqlite app");
    // The same instance on both sides: its own revoke is seen at once, so
    // no authorize after the acknowledgement may still succeed.
    let json = authload(&seen_args(&app.address, &app.address))
        .await
        .ok_json();
    assert_all_seen(&json);
    assert_eq!(u(&json["stale_accepts"]), 0, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_seen_reports_an_observer_that_never_refuses() {
    let standin = standin::start(Duration::ZERO).await;
    let mut args = seen_args(&standin, &standin);
    args.extend(["--seen-within", "100ms"]);
    let json = authload(&args).await.ok_json();
    assert!(u(&json["never_seen"]) > 0, "{json}");
    assert_eq!(u(&json["samples"]), 0, "{json}");
    assert!(u(&json["stale_accepts"]) > 0, "{json}");

    // One --url is not two instances.
    let run = authload(&[
        "--url",
        &standin,
        "--scenario",
        "revoke-seen",
        "--json",
        "--quiet",
    ])
    .await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("two --url"), "{}", run.stderr);
}

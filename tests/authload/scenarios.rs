//! The multi-tab storm and the replay attack, against authd on both
//! backends, and against a stand-in server that accepts every token (so
//! authload's own checks are seen to fail when the server is wrong).

use std::time::Duration;

use serde_json::Value;

use crate::harness::{authload, short, u};
use crate::support::{spawn_app, Backend};

/// The storm's counters must account for every refresh and sign-in answer.
fn assert_storm_accounts(json: &Value) {
    let tabs = &json["multi_tab"];
    let refreshes = u(&json["endpoints"]["refresh"]["requests"]);
    let sorted = u(&tabs["rotated"])
        + u(&tabs["grace_duplicates"])
        + u(&tabs["reuse_refused"])
        + u(&tabs["revoked_refused"])
        + u(&tabs["forked"]);
    assert_eq!(sorted, refreshes, "{json}");
    let signins = json["endpoints"]["signin"]["requests"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(u(&tabs["resignins"]), signins, "{json}");
}

async fn multi_tab_storm(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    // 8 tabs on 2 sessions, the default grace window (5 s).
    let mut args = short(&app.address, "multi-tab", "8");
    args.extend(["--sessions", "2"]);
    let run = authload(&args).await;
    let json = run.ok_json();
    assert_storm_accounts(&json);
    let tabs = &json["multi_tab"];
    assert_eq!(u(&tabs["sessions"]), 2);
    assert!(u(&tabs["rotated"]) > 0, "{json}");
    // Four tabs present each token at once: the others get the same successor.
    assert!(u(&tabs["grace_duplicates"]) > 0, "{json}");
    assert_eq!(u(&tabs["forked"]), 0, "{json}");
    // Whatever is refused is refused as reuse (401), never a server error.
    for (status, _) in json["errors"].as_object().unwrap() {
        assert_eq!(status, "401", "{json}");
    }
    assert!(run.stdout.contains("grace duplicates"), "{}", run.stdout);

    // Without a grace window every duplicate is reuse: the session is
    // revoked and a tab signs in again.
    let Some(strict) = spawn_app(backend, &[("AUTHD_REFRESH_GRACE_MS", "0")]).await else {
        return;
    };
    let mut args = short(&strict.address, "multi-tab", "6");
    args.extend(["--sessions", "1"]);
    let json = authload(&args).await.ok_json();
    assert_storm_accounts(&json);
    let tabs = &json["multi_tab"];
    assert_eq!(u(&tabs["grace_duplicates"]), 0, "{json}");
    assert!(u(&tabs["reuse_refused"]) > 0, "{json}");
    assert!(u(&tabs["resignins"]) > 0, "{json}");
    assert_eq!(u(&tabs["forked"]), 0, "{json}");
}

async fn replay_attack(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    let mut args = short(&app.address, "replay", "3");
    args.extend(["--threshold", "errors==0"]);
    let run = authload(&args).await;
    let json = run.ok_json();
    let replay = &json["replay"];
    let replays = u(&replay["replays"]);
    assert!(replays > 0, "{json}");
    assert_eq!(u(&replay["refused"]), replays, "{json}");
    assert_eq!(u(&replay["accepted"]), 0);
    assert_eq!(u(&replay["sessions_alive"]), 0);
    // Each replay is followed by its check; per connection, one pair may
    // straddle the start or the end of the measured window.
    let revoked = u(&replay["sessions_revoked"]);
    assert!(revoked.abs_diff(replays) <= 3, "{json}");
    assert!(revoked > 0);
    assert!(json["errors"].as_object().unwrap().is_empty(), "{json}");
    assert_eq!(u(&json["endpoints"]["replay"]["requests"]), replays);
}

both_backends!(multi_tab_storm, replay_attack);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_accepts_replays_fails_the_run() {
    let address = crate::standin::start(Duration::ZERO).await;
    let mut args = short(&address, "replay", "2");
    args.extend(["--threshold", "errors==0"]);
    let run = authload(&args).await;
    assert_eq!(run.code, Some(99), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("threshold failed: errors==0"));
    let json = run.json();
    let replay = &json["replay"];
    assert!(u(&replay["replays"]) > 0, "{json}");
    assert_eq!(u(&replay["accepted"]), u(&replay["replays"]), "{json}");
    assert_eq!(u(&replay["refused"]), 0);
    assert!(u(&replay["sessions_alive"]) > 0);
    assert!(u(&json["errors"]["200"]) > 0, "{json}");
    assert!(run.stdout.contains("ACCEPTED"), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_forks_token_chains_is_caught_by_the_storm() {
    // Every refresh gets a brand-new token: duplicates get different successors.
    let address = crate::standin::start(Duration::from_millis(5)).await;
    let mut args = short(&address, "multi-tab", "6");
    args.extend(["--sessions", "1"]);
    let json = authload(&args).await.ok_json();
    assert_storm_accounts(&json);
    assert!(u(&json["multi_tab"]["forked"]) > 0, "{json}");
    assert_eq!(u(&json["multi_tab"]["grace_duplicates"]), 0, "{json}");
}

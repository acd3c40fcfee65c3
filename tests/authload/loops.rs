//! Closed loop (and the JSON line `.ci/bench.py` reads), live progress,
//! open loop (against authd and against a server that stalls), and a fleet.

use std::time::Duration;

use crate::harness::{authload, short, u};
use crate::support::{spawn_app, Backend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_keeps_the_summary_and_json_bench_reads() {
    let app = spawn_app(Backend::Sqlite, &[]).await.expect("sqlite app");
    let run = authload(&short(&app.address, "refresh", "4")).await;
    let json = run.ok_json();
    // The keys .ci/bench.py reads, with their types.
    assert_eq!(json["scenario"], "refresh");
    assert_eq!(json["mode"], "closed");
    for key in ["rps", "p50_ms", "p99_ms", "p999_ms", "max_ms", "mean_ms"] {
        assert!(json[key].as_f64().is_some(), "{key} in {json}");
    }
    assert!(
        json["errors"].as_object().expect("errors map").is_empty(),
        "{json}"
    );
    let requests = u(&json["requests"]);
    assert!(requests > 0);
    assert_eq!(u(&json["ok"]), requests);
    assert_eq!(u(&json["endpoints"]["refresh"]["requests"]), requests);
    assert!(json["p50_ms"].as_f64() <= json["p99_ms"].as_f64());
    // The text summary is still there, first.
    assert!(run
        .stdout
        .starts_with("scenario refresh · closed loop · 4 connections"));
    assert!(run.stdout.contains("errors      none"), "{}", run.stdout);
    // Not a terminal and --quiet: no progress lines.
    assert!(!run.stderr.contains("req/s"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_prints_a_line_a_second_on_stderr() {
    let app = spawn_app(Backend::Sqlite, &[]).await.expect("sqlite app");
    let mut args = short(&app.address, "health", "2");
    args.retain(|a| *a != "--quiet");
    let at = args.iter().position(|a| *a == "--duration").unwrap();
    args[at + 1] = "3s";
    args.push("--progress");
    let run = authload(&args).await;
    let json = run.ok_json();
    let lines: Vec<&str> = run.stderr.lines().filter(|l| l.contains("s/3s]")).collect();
    assert_eq!(
        lines.len(),
        3,
        "one line per measured second:\n{}",
        run.stderr
    );
    assert!(lines[0].contains("[   1s/3s]") && lines[2].contains("[   3s/3s]"));
    assert!(lines
        .iter()
        .all(|l| l.contains("req/s") && l.contains("p99")));
    // The per-second counts of the lines add up to the run's requests.
    let counted: u64 = lines
        .iter()
        .map(|l| {
            let after = l.split(']').nth(1).expect("a count after the bracket");
            after
                .split_whitespace()
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(counted, u(&json["requests"]));
    // Without --progress (stderr is a pipe here) there is no live view.
    let quiet = authload(&short(&app.address, "health", "2")).await;
    quiet.ok_json();
    assert!(!quiet.stderr.contains("s/2s]"), "{}", quiet.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_sends_at_the_rate_and_accounts_for_every_slot() {
    let app = spawn_app(Backend::Sqlite, &[]).await.expect("sqlite app");
    let mut args = short(&app.address, "authorize", "4");
    args.extend(["--rate", "50"]);
    let json = authload(&args).await.ok_json();
    assert_eq!(json["mode"], "open");
    let open = &json["open_loop"];
    // 50/s over a 2 s window: exactly 100 intended send times.
    assert_eq!(u(&open["scheduled"]), 100, "{json}");
    let sent = u(&open["sent"]);
    assert_eq!(sent + u(&open["dropped"]), 100, "{json}");
    // Every request sent was answered (and counted) after the drain.
    assert_eq!(u(&json["requests"]), sent, "{json}");
    assert!(json["errors"].as_object().unwrap().is_empty(), "{json}");
    assert!(u(&open["late"]) <= sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_shows_a_stall_as_latency_and_counts_late_and_dropped() {
    // Each answer takes 200 ms and only 2 connections are allowed: 10
    // answers a second at most, while 100 a second are due.
    let stall = Duration::from_millis(200);
    let address = crate::standin::start(stall).await;
    let run = authload(&[
        "--url",
        &address,
        "--scenario",
        "health",
        "-c",
        "2",
        "--rate",
        "100",
        "--duration",
        "1s",
        "--warmup",
        "0s",
        "--json",
        "--quiet",
    ])
    .await;
    let json = run.ok_json();
    let open = &json["open_loop"];
    let (scheduled, sent, late, dropped) = (
        u(&open["scheduled"]),
        u(&open["sent"]),
        u(&open["late"]),
        u(&open["dropped"]),
    );
    assert_eq!(scheduled, 100, "{json}");
    assert_eq!(sent + dropped, scheduled, "{json}");
    assert!(dropped > 0, "most slots cannot be sent: {json}");
    assert!(late > 0, "queued requests go out late: {json}");
    assert!(run.stdout.contains("late (> 10 ms)"), "{}", run.stdout);
    // Measured from the intended send time, queued requests show their
    // wait: the worst one waited for several earlier answers. (Measured
    // from the actual send time, every latency would be about 200 ms.)
    let max_ms = json["max_ms"].as_f64().unwrap();
    assert!(max_ms >= 2.0 * stall.as_millis() as f64, "{json}");
    assert!(json["p50_ms"].as_f64().unwrap() >= stall.as_millis() as f64);

    // The same server in closed loop: every latency is one stall, no queue.
    let closed = authload(&[
        "--url",
        &address,
        "--scenario",
        "health",
        "-c",
        "2",
        "--duration",
        "1s",
        "--warmup",
        "0s",
        "--json",
        "--quiet",
    ])
    .await
    .ok_json();
    assert!(closed.get("open_loop").is_none());
    assert!(
        closed["max_ms"].as_f64().unwrap() < max_ms,
        "{closed} vs {json}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_gets_the_connections_round_robin_and_a_report_each() {
    let one = spawn_app(Backend::Sqlite, &[]).await.expect("sqlite app");
    let two = spawn_app(Backend::Sqlite, &[]).await.expect("sqlite app");
    let mut args = short(&one.address, "refresh", "4");
    args.extend(["--url", &two.address]);
    let run = authload(&args).await;
    let json = run.ok_json();
    let targets = json["targets"].as_array().expect("targets");
    assert_eq!(targets.len(), 2, "{json}");
    let mut total = 0;
    for (target, address) in targets.iter().zip([&one.address, &two.address]) {
        assert_eq!(target["url"], address.as_str());
        assert_eq!(u(&target["connections"]), 2);
        assert!(u(&target["requests"]) > 0, "{json}");
        assert!(target["errors"].as_object().unwrap().is_empty(), "{json}");
        total += u(&target["requests"]);
    }
    assert_eq!(total, u(&json["requests"]));
    // The text summary has a row per target.
    assert!(
        run.stdout.contains(&format!("{:<32}", one.address)),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!("{:<32}", two.address)),
        "{}",
        run.stdout
    );
}

//! `--out` (CSV and JSON lines) and `--threshold` (exit status 99 naming
//! the failed expression).

use std::collections::BTreeSet;

use serde_json::Value;

use crate::harness::{authload, short, u};
use crate::support::{spawn_app, Backend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_series_as_json_lines_and_csv() {
    let app = spawn_app(Backend::Sqlite, &[]).await.expect("sqlite app");
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("series.jsonl");
    let csv = dir.path().join("series.csv");

    // The mixed loop sends four operations (sign-in, refresh, authorize,
    // revoke); refresh and authorize come every second.
    let mut args = short(&app.address, "mixed", "2");
    let jsonl_arg = jsonl.display().to_string();
    args.extend(["--out", &jsonl_arg]);
    let json = authload(&args).await.ok_json();
    let rows: Vec<Value> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    // One row per second of the 2 s window and operation.
    let seconds: BTreeSet<u64> = rows.iter().map(|r| u(&r["second"])).collect();
    let ops: BTreeSet<&str> = rows.iter().map(|r| r["op"].as_str().unwrap()).collect();
    assert_eq!(seconds, BTreeSet::from([0, 1]), "{rows:?}");
    assert!(
        ops.is_superset(&BTreeSet::from(["refresh", "authorize"])),
        "{ops:?}"
    );
    assert!(ops.is_subset(&BTreeSet::from([
        "signin",
        "refresh",
        "authorize",
        "revoke"
    ])));
    let pairs: BTreeSet<(u64, &str)> = rows
        .iter()
        .map(|r| (u(&r["second"]), r["op"].as_str().unwrap()))
        .collect();
    assert_eq!(pairs.len(), rows.len(), "one row per second and operation");
    assert!(rows.len() >= 4);
    let counted: u64 = rows.iter().map(|r| u(&r["count"])).sum();
    assert_eq!(counted, u(&json["requests"]));
    for r in &rows {
        assert_eq!(u(&r["count"]), u(&r["ok"]), "no errors expected: {r}");
        assert!(r["errors"].as_object().unwrap().is_empty());
        let (p50, p99, max) = (
            r["p50_ms"].as_f64().unwrap(),
            r["p99_ms"].as_f64().unwrap(),
            r["max_ms"].as_f64().unwrap(),
        );
        assert!(p50 <= p99 && p99 <= max, "{r}");
    }

    // CSV: a fixed header, a row per second.
    let mut args = short(&app.address, "health", "2");
    let csv_arg = csv.display().to_string();
    args.extend(["--out", &csv_arg]);
    let json = authload(&args).await.ok_json();
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("second,op,count,ok,errors,p50_ms,p99_ms,max_ms")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2, "{text}");
    let mut counted = 0;
    for (second, row) in rows.iter().enumerate() {
        assert_eq!(row.len(), 8);
        assert_eq!(row[0], second.to_string());
        assert_eq!(row[1], "health");
        counted += row[2].parse::<u64>().unwrap();
        assert_eq!(row[4], "0");
    }
    assert_eq!(counted, u(&json["requests"]));

    // An unknown extension is refused before any load is sent.
    let bad = dir.path().join("series.txt").display().to_string();
    let mut args = short(&app.address, "health", "1");
    args.extend(["--out", &bad]);
    let run = authload(&args).await;
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains(".csv, .json"), "{}", run.stderr);
    assert!(!run.stderr.contains("setup done"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_has_a_column_per_error_status() {
    // A real source of errors: the multi-tab storm without a grace
    // window, where every duplicate refresh is refused as reuse (401).
    let app = spawn_app(Backend::Sqlite, &[("AUTHD_REFRESH_GRACE_MS", "0")])
        .await
        .expect("sqlite app");
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("storm.csv").display().to_string();
    let mut args = short(&app.address, "multi-tab", "6");
    args.extend(["--sessions", "1", "--out", &csv]);
    let json = authload(&args).await.ok_json();
    let refused = u(&json["errors"]["401"]);
    assert!(refused > 0, "{json}");
    let text = std::fs::read_to_string(&csv).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let column = header
        .iter()
        .position(|h| *h == "errors_401")
        .unwrap_or_else(|| panic!("no errors_401 column: {header:?}"));
    let summed: u64 = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(column).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(summed, refused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_fail_the_run_and_name_the_failed_one() {
    let app = spawn_app(Backend::Sqlite, &[]).await.expect("sqlite app");
    // Limits no machine misses (or meets): the verdict, not the speed, is tested.
    let mut args = short(&app.address, "health", "2");
    args.extend([
        "--threshold",
        "p99<1h",
        "--threshold",
        "errors<0.1%",
        "--threshold",
        "health.max<=3600s",
        "--threshold",
        "requests>0",
    ]);
    let run = authload(&args).await;
    let json = run.ok_json();
    let verdicts = json["thresholds"].as_array().unwrap();
    assert_eq!(verdicts.len(), 4);
    assert!(verdicts.iter().all(|v| v["passed"] == true), "{json}");
    assert_eq!(run.stdout.matches("threshold   passed").count(), 4);

    let mut args = short(&app.address, "health", "2");
    args.extend([
        "--threshold",
        "p99<1h",
        "--threshold",
        "rps>1e15",
        "--threshold",
        "errors==0",
    ]);
    let run = authload(&args).await;
    assert_eq!(run.code, Some(99), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("threshold failed: rps>1e15 (measured "),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("threshold failed: p99<1h"));
    assert!(!run.stderr.contains("threshold failed: errors==0"));
    let json = run.json();
    let failed: Vec<&str> = json["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["passed"] == false)
        .map(|v| v["expr"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["rps>1e15"]);

    // A threshold that does not parse is a command-line error, before any load.
    let mut args = short(&app.address, "health", "1");
    args.extend(["--threshold", "p99 is small"]);
    let run = authload(&args).await;
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("p99 is small"), "{}", run.stderr);
}

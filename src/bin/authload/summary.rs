//! The end-of-run summary on stdout: a few lines of text and, with
//! `--json`, one line of JSON (the line `.ci/bench.py` parses: its keys
//! only ever grow).

use std::fmt::Write;

use serde_json::{json, Map, Value};

use crate::cli::Scenario;
use crate::ops::{Op, OPS};
use crate::results::RunResult;
use crate::stats::{ms, Stats};
use crate::threshold::Verdict;

pub fn text(run: &RunResult, verdicts: &[Verdict]) -> String {
    let mut out = String::new();
    headline(&mut out, run);
    error_lines(&mut out, &run.total);
    scenario_line(&mut out, run);
    endpoint_table(&mut out, run);
    target_table(&mut out, run);
    for v in verdicts {
        let _ = writeln!(
            out,
            "threshold   {} {} (measured {})",
            if v.passed { "passed" } else { "FAILED" },
            v.expr,
            v.actual
        );
    }
    out
}

/// The run's parameters, throughput and latency.
fn headline(out: &mut String, run: &RunResult) {
    let p = &run.params;
    let s = &run.total;
    let secs = run.seconds();
    let latency = s.latency();
    let requests = s.requests();
    let _ = writeln!(
        out,
        "scenario {} · {} · {} connections · {:.1}s measured after {:.1}s warm-up",
        p.scenario.label(),
        p.mode(),
        p.connections,
        secs,
        p.warmup.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "requests    {requests} ({} ok, {} errors)",
        s.ok(),
        requests - s.ok()
    );
    let _ = writeln!(
        out,
        "throughput  {:.1} req/s ({:.1} ok/s)",
        requests as f64 / secs,
        s.ok() as f64 / secs
    );
    let _ = writeln!(
        out,
        "latency     p50 {:.3} ms · p99 {:.3} ms · p99.9 {:.3} ms · max {:.3} ms · mean {:.3} ms{}",
        ms(latency.quantile(0.50)),
        ms(latency.quantile(0.99)),
        ms(latency.quantile(0.999)),
        ms(latency.max()),
        latency.mean() / 1000.0,
        if p.rate.is_some() {
            " (from intended send times)"
        } else {
            ""
        }
    );
    if let Some(scheduled) = run.scheduled {
        let _ = writeln!(
            out,
            "open loop   {scheduled} scheduled · {} sent · {} late (> {} ms) · {} dropped",
            s.sent,
            s.late,
            p.late_after.as_millis(),
            run.dropped()
        );
    }
}

/// Errors by kind, the first transport error, reconnections.
fn error_lines(out: &mut String, s: &Stats) {
    if s.errors.is_empty() {
        let _ = writeln!(out, "errors      none");
    } else {
        let list: Vec<String> = s.errors.iter().map(|(k, n)| format!("{k}: {n}")).collect();
        let _ = writeln!(out, "errors      {}", list.join(", "));
    }
    if let Some(e) = &s.first_transport_error {
        let _ = writeln!(out, "first transport error: {e}");
    }
    let _ = writeln!(
        out,
        "reconnects  {} · chain re-sign-ins {}",
        s.reconnects, s.resyncs
    );
}

/// The scenario's own counters (multi-tab, replay, revoke).
fn scenario_line(out: &mut String, run: &RunResult) {
    let p = &run.params;
    let s = &run.total;
    match p.scenario {
        Scenario::MultiTab => {
            let t = &s.tabs;
            let _ = writeln!(
                out,
                "multi-tab   {} sessions · {} rotated · {} grace duplicates · {} reuse refused · {} refused after revocation · {} re-sign-ins · {} forked",
                p.sessions.unwrap_or(0),
                t.rotated,
                t.grace_duplicates,
                t.reuse_refused,
                t.revoked_refused,
                t.resignins,
                t.forked
            );
        }
        Scenario::Replay => {
            let r = &s.replay;
            let _ = writeln!(
                out,
                "replay      {} replays · {} refused · {} ACCEPTED · sessions revoked {} · still alive {}",
                r.replays, r.refused, r.accepted, r.sessions_revoked, r.sessions_alive
            );
        }
        Scenario::Revoke => {
            let _ = writeln!(
                out,
                "pool        {} sessions made in setup · {} left · {} connection(s) ran out",
                p.pool.unwrap_or(0),
                s.pool_left,
                s.pool_exhausted
            );
        }
        _ => {}
    }
}

/// Figures per endpoint, when the run used more than one.
fn endpoint_table(out: &mut String, run: &RunResult) {
    let s = &run.total;
    let secs = run.seconds();
    let used = s.used_ops();
    if used.len() > 1 {
        let _ = writeln!(
            out,
            "{:<12} {:>9} {:>10} {:>7} {:>9} {:>9} {:>9}",
            "endpoint", "requests", "req/s", "errors", "p50 ms", "p99 ms", "p99.9 ms"
        );
        for op in used {
            let o = s.op(op);
            let n = o.requests();
            let _ = writeln!(
                out,
                "{:<12} {:>9} {:>10.1} {:>7} {:>9.3} {:>9.3} {:>9.3}",
                op.label(),
                n,
                n as f64 / secs,
                o.errors,
                ms(o.latency.quantile(0.50)),
                ms(o.latency.quantile(0.99)),
                ms(o.latency.quantile(0.999)),
            );
        }
    }
}

/// Figures per target, when there is more than one.
fn target_table(out: &mut String, run: &RunResult) {
    let secs = run.seconds();
    if run.targets.len() > 1 {
        let _ = writeln!(
            out,
            "{:<32} {:>5} {:>9} {:>10} {:>7} {:>9} {:>9}",
            "target", "conns", "requests", "req/s", "errors", "p50 ms", "p99 ms"
        );
        for t in &run.targets {
            let latency = t.stats.latency();
            let _ = writeln!(
                out,
                "{:<32} {:>5} {:>9} {:>10.1} {:>7} {:>9.3} {:>9.3}",
                t.label,
                t.connections,
                t.stats.requests(),
                t.stats.requests() as f64 / secs,
                t.stats.error_count(),
                ms(latency.quantile(0.50)),
                ms(latency.quantile(0.99)),
            );
        }
    }
}

fn errors_map(stats: &Stats) -> Map<String, Value> {
    stats
        .errors
        .iter()
        .map(|(k, n)| (k.to_string(), (*n).into()))
        .collect()
}

fn endpoints(stats: &Stats, secs: f64) -> Map<String, Value> {
    OPS.into_iter()
        .filter_map(|op: Op| {
            let o = stats.op(op);
            let n = o.requests();
            (n > 0).then(|| {
                (
                    op.label().to_string(),
                    json!({
                        "requests": n,
                        "errors": o.errors,
                        "rps": n as f64 / secs,
                        "p50_ms": ms(o.latency.quantile(0.50)),
                        "p99_ms": ms(o.latency.quantile(0.99)),
                        "p999_ms": ms(o.latency.quantile(0.999)),
                    }),
                )
            })
        })
        .collect()
}

pub fn json(run: &RunResult, verdicts: &[Verdict]) -> String {
    let p = &run.params;
    let s = &run.total;
    let secs = run.seconds();
    let latency = s.latency();
    let targets = targets_json(run);
    let mut out = json!({
        "scenario": p.scenario.label(),
        "mode": if p.rate.is_some() { "open" } else { "closed" },
        "connections": p.connections,
        "duration_s": secs,
        "warmup_s": p.warmup.as_secs_f64(),
        "requests": s.requests(),
        "ok": s.ok(),
        "rps": s.requests() as f64 / secs,
        "p50_ms": ms(latency.quantile(0.50)),
        "p99_ms": ms(latency.quantile(0.99)),
        "p999_ms": ms(latency.quantile(0.999)),
        "max_ms": ms(latency.max()),
        "mean_ms": latency.mean() / 1000.0,
        "errors": errors_map(s),
        "reconnects": s.reconnects,
        "resyncs": s.resyncs,
        "endpoints": endpoints(s, secs),
        "targets": targets,
        "thresholds": verdicts.iter().map(|v| json!({
            "expr": v.expr, "passed": v.passed, "actual": v.actual,
        })).collect::<Vec<_>>(),
    });
    if let (Some(rate), Some(scheduled)) = (p.rate, run.scheduled) {
        out["open_loop"] = json!({
            "rate": rate,
            "scheduled": scheduled,
            "sent": s.sent,
            "late": s.late,
            "late_after_ms": p.late_after.as_secs_f64() * 1000.0,
            "dropped": run.dropped(),
        });
    }
    scenario_json(&mut out, run);
    out.to_string()
}

/// Figures per target.
fn targets_json(run: &RunResult) -> Vec<Value> {
    let secs = run.seconds();
    run.targets
        .iter()
        .map(|t| {
            let latency = t.stats.latency();
            json!({
                "url": t.label,
                "connections": t.connections,
                "requests": t.stats.requests(),
                "ok": t.stats.ok(),
                "rps": t.stats.requests() as f64 / secs,
                "p50_ms": ms(latency.quantile(0.50)),
                "p99_ms": ms(latency.quantile(0.99)),
                "max_ms": ms(latency.max()),
                "errors": errors_map(&t.stats),
            })
        })
        .collect()
}

/// The scenario's own counters (multi-tab, replay, revoke), under a key of
/// the scenario's name.
fn scenario_json(out: &mut Value, run: &RunResult) {
    let p = &run.params;
    let s = &run.total;
    match p.scenario {
        Scenario::MultiTab => {
            let t = &s.tabs;
            out["multi_tab"] = json!({
                "sessions": p.sessions,
                "rotated": t.rotated,
                "grace_duplicates": t.grace_duplicates,
                "reuse_refused": t.reuse_refused,
                "revoked_refused": t.revoked_refused,
                "resignins": t.resignins,
                "forked": t.forked,
            });
        }
        Scenario::Replay => {
            let r = &s.replay;
            out["replay"] = json!({
                "replays": r.replays,
                "refused": r.refused,
                "accepted": r.accepted,
                "sessions_revoked": r.sessions_revoked,
                "sessions_alive": r.sessions_alive,
            });
        }
        Scenario::Revoke => {
            out["pool"] = json!({
                "sessions": p.pool,
                "left": s.pool_left,
                "exhausted_connections": s.pool_exhausted,
            });
        }
        _ => {}
    }
}

//! `--report FILE.html`: one self-contained page (inline CSS and SVG, no
//! script, no external resource) with the run's parameters, throughput and
//! p50/p99 over time, a latency percentile plot, errors by status, the
//! per-endpoint and per-target tables, the scenario's own counters and the
//! thresholds.

use std::fmt::Write;

use crate::cli::Scenario;
use crate::histogram::Histogram;
use crate::results::RunResult;
use crate::stats::ms;
use crate::svg::{bar_chart, escape, line_chart, LineChart, Series, PALETTE};
use crate::threshold::Verdict;

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:960px;color:#222}\
h1{font-size:22px}h2{font-size:17px;margin-top:28px}table{border-collapse:collapse;margin:8px 0}\
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}\
.pass{color:#006400}.fail{color:#b00000;font-weight:bold}.note{color:#555;font-size:13px}";

pub fn render(run: &RunResult, verdicts: &[Verdict]) -> String {
    let p = &run.params;
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>authload {} · run {}</title><style>{STYLE}</style></head><body>",
        escape(p.scenario.label()),
        escape(&p.run_id)
    );
    let _ = write!(
        page,
        "<h1>authload: {} scenario, {}</h1>",
        escape(p.scenario.label()),
        escape(&p.mode())
    );

    run_table(&mut page, run);
    thresholds_table(&mut page, verdicts);
    throughput_chart(&mut page, run);
    latency_chart(&mut page, run);
    percentile_chart(&mut page, run);
    errors_by_status(&mut page, run);
    endpoints_table(&mut page, run);
    targets_table(&mut page, run);
    scenario_table(&mut page, run);
    page.push_str("<p class=\"note\">Written by authload. Latencies from HDR histograms: within 0.1%, the per-second charts within 1%.</p></body></html>\n");
    page
}

/// The run's parameters and headline figures.
fn run_table(page: &mut String, run: &RunResult) {
    let p = &run.params;
    let s = &run.total;
    let latency = s.latency();
    let secs = run.seconds();
    let mut rows: Vec<(String, String)> = vec![
        ("run".into(), p.run_id.clone()),
        ("measured from".into(), utc(p.started_unix)),
        ("scenario".into(), p.scenario.label().into()),
        ("mode".into(), p.mode()),
        ("connections".into(), p.connections.to_string()),
        ("warm-up".into(), format!("{:.1} s", p.warmup.as_secs_f64())),
        ("measured".into(), format!("{secs:.1} s")),
        ("targets".into(), p.targets.join(", ")),
        (
            "requests".into(),
            format!("{} ({} ok)", s.requests(), s.ok()),
        ),
        (
            "throughput".into(),
            format!("{:.1} req/s", s.requests() as f64 / secs),
        ),
        (
            "latency".into(),
            format!(
                "p50 {:.3} ms · p99 {:.3} ms · p99.9 {:.3} ms · max {:.3} ms",
                ms(latency.quantile(0.5)),
                ms(latency.quantile(0.99)),
                ms(latency.quantile(0.999)),
                ms(latency.max())
            ),
        ),
    ];
    if let Some(sessions) = p.sessions {
        rows.push(("shared sessions".into(), sessions.to_string()));
    }
    if let Some(scheduled) = run.scheduled {
        rows.push((
            "open loop".into(),
            format!(
                "{scheduled} scheduled · {} sent · {} late (> {} ms) · {} dropped",
                s.sent,
                s.late,
                p.late_after.as_millis(),
                run.dropped()
            ),
        ));
    }
    page.push_str("<h2>Run</h2><table id=\"params\">");
    for (name, value) in rows {
        let _ = write!(
            page,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(&name),
            escape(&value)
        );
    }
    page.push_str("</table>");
}

/// Each `--threshold` and whether the run passed it.
fn thresholds_table(page: &mut String, verdicts: &[Verdict]) {
    if !verdicts.is_empty() {
        page.push_str("<h2>Thresholds</h2><table id=\"thresholds\"><tr><th>threshold</th><th>measured</th><th>result</th></tr>");
        for v in verdicts {
            let (class, word) = if v.passed {
                ("pass", "passed")
            } else {
                ("fail", "FAILED")
            };
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{}</td><td class=\"{class}\">{word}</td></tr>",
                escape(&v.expr),
                escape(&v.actual)
            );
        }
        page.push_str("</table>");
    }
}

/// Throughput over time, per operation, plus errors.
fn throughput_chart(page: &mut String, run: &RunResult) {
    let ops = run.total.used_ops();
    let seconds = &run.timeline;
    let mut series: Vec<Series> = ops
        .iter()
        .enumerate()
        .map(|(i, op)| Series {
            name: op.label().to_string(),
            color: PALETTE[i % PALETTE.len()],
            points: seconds
                .iter()
                .enumerate()
                .map(|(t, sec)| (t as f64 + 1.0, sec.ops[op.index()].requests() as f64))
                .collect(),
        })
        .collect();
    series.push(Series {
        name: "errors".into(),
        color: PALETTE[6],
        points: seconds
            .iter()
            .enumerate()
            .map(|(t, sec)| (t as f64 + 1.0, sec.all().error_count() as f64))
            .collect(),
    });
    page.push_str("<h2>Throughput over time</h2>");
    page.push_str(&line_chart(&LineChart {
        id: "throughput",
        x_label: "second of the measured window",
        y_label: "requests/s",
        series,
        x_ticks: None,
    }));
}

/// p50 and p99 over time, all operations together.
fn latency_chart(page: &mut String, run: &RunResult) {
    let seconds = &run.timeline;
    let over_time = |q: f64| -> Vec<(f64, f64)> {
        seconds
            .iter()
            .enumerate()
            .filter_map(|(t, sec)| {
                let all = sec.all();
                (all.latency.total() > 0).then(|| (t as f64 + 1.0, ms(all.latency.quantile(q))))
            })
            .collect()
    };
    page.push_str("<h2>Latency over time</h2>");
    page.push_str(&line_chart(&LineChart {
        id: "latency",
        x_label: "second of the measured window",
        y_label: "ms",
        series: vec![
            Series {
                name: "p50".into(),
                color: PALETTE[0],
                points: over_time(0.5),
            },
            Series {
                name: "p99".into(),
                color: PALETTE[1],
                points: over_time(0.99),
            },
        ],
        x_ticks: None,
    }));
    if run.params.rate.is_some() {
        page.push_str("<p class=\"note\">Open loop: latencies run from each request's intended send time, so time spent waiting for a free connection counts.</p>");
    }
}

/// Latency percentile plot: x in "nines" (p90 = 1, p99 = 2, ...), per
/// operation and (with several) all together.
fn percentile_chart(page: &mut String, run: &RunResult) {
    let s = &run.total;
    let ops = s.used_ops();
    let mut percentile_series = Vec::new();
    let mut all = Histogram::default();
    for (i, op) in ops.iter().enumerate() {
        let h = &s.op(*op).latency;
        all.merge(h);
        percentile_series.push(Series {
            name: op.label().to_string(),
            color: PALETTE[i % PALETTE.len()],
            points: percentile_points(h),
        });
    }
    if ops.len() > 1 {
        percentile_series.push(Series {
            name: "all".into(),
            color: PALETTE[6],
            points: percentile_points(&all),
        });
    }
    let ticks = (0..=5)
        .map(|n| {
            let label = match n {
                0 => "p0".to_string(),
                1 => "p90".to_string(),
                2 => "p99".to_string(),
                n => format!("p99.{}", "9".repeat(n - 2)),
            };
            (n as f64, label)
        })
        .collect();
    page.push_str("<h2>Latency percentiles</h2>");
    page.push_str(&line_chart(&LineChart {
        id: "percentiles",
        x_label: "percentile",
        y_label: "ms",
        series: percentile_series,
        x_ticks: Some(ticks),
    }));
}

/// Errors by status, as bars; a sentence when there were none.
fn errors_by_status(page: &mut String, run: &RunResult) {
    let s = &run.total;
    page.push_str("<h2>Errors by status</h2>");
    if s.errors.is_empty() {
        page.push_str("<p id=\"no-errors\">No errors: every answer had the intended status.</p>");
    } else {
        let bars: Vec<(String, f64)> = s
            .errors
            .iter()
            .map(|(kind, n)| (kind.to_string(), *n as f64))
            .collect();
        page.push_str(&bar_chart("errors", "count", &bars));
    }
}

/// Requests, errors and latency per operation.
fn endpoints_table(page: &mut String, run: &RunResult) {
    let s = &run.total;
    let secs = run.seconds();
    page.push_str("<h2>Endpoints</h2><table id=\"endpoints\"><tr><th>endpoint</th><th>requests</th><th>req/s</th><th>errors</th><th>p50 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th></tr>");
    for op in &s.used_ops() {
        let o = s.op(*op);
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>",
            op.label(),
            o.requests(),
            o.requests() as f64 / secs,
            o.errors,
            ms(o.latency.quantile(0.5)),
            ms(o.latency.quantile(0.99)),
            ms(o.latency.quantile(0.999)),
            ms(o.latency.max())
        );
    }
    page.push_str("</table>");
}

/// Requests, errors and latency per `--target`.
fn targets_table(page: &mut String, run: &RunResult) {
    let secs = run.seconds();
    page.push_str("<h2>Targets</h2><table id=\"targets\"><tr><th>target</th><th>connections</th><th>requests</th><th>req/s</th><th>errors</th><th>p50 ms</th><th>p99 ms</th></tr>");
    for t in &run.targets {
        let latency = t.stats.latency();
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td></tr>",
            escape(&t.label),
            t.connections,
            t.stats.requests(),
            t.stats.requests() as f64 / secs,
            t.stats.error_count(),
            ms(latency.quantile(0.5)),
            ms(latency.quantile(0.99))
        );
    }
    page.push_str("</table>");
}

/// The counters of the scenarios that check an invariant (multi-tab,
/// replay); nothing for the others.
fn scenario_table(page: &mut String, run: &RunResult) {
    let p = &run.params;
    let s = &run.total;
    let counters: Vec<(&str, u64)> = match p.scenario {
        Scenario::MultiTab => vec![
            ("rotated", s.tabs.rotated),
            ("grace duplicates", s.tabs.grace_duplicates),
            ("reuse refused", s.tabs.reuse_refused),
            ("refused after revocation", s.tabs.revoked_refused),
            ("re-sign-ins", s.tabs.resignins),
            ("forked (must be 0)", s.tabs.forked),
        ],
        Scenario::Replay => vec![
            ("replays", s.replay.replays),
            ("refused", s.replay.refused),
            ("accepted (must be 0)", s.replay.accepted),
            ("sessions revoked", s.replay.sessions_revoked),
            ("sessions still alive (must be 0)", s.replay.sessions_alive),
        ],
        _ => Vec::new(),
    };
    if !counters.is_empty() {
        let _ = write!(
            page,
            "<h2>{} scenario</h2><table id=\"scenario\">",
            escape(p.scenario.label())
        );
        for (name, value) in counters {
            let _ = write!(page, "<tr><th>{name}</th><td>{value}</td></tr>");
        }
        page.push_str("</table>");
    }
}

/// (nines, ms) points of a histogram, up to the resolution its count allows.
fn percentile_points(h: &Histogram) -> Vec<(f64, f64)> {
    if h.total() == 0 {
        return Vec::new();
    }
    let deepest = (h.total() as f64).log10().clamp(0.0, 5.0);
    let mut points = Vec::new();
    let mut nines = 0.0;
    while nines <= deepest + 1e-9 {
        let q = 1.0 - 10f64.powf(-nines);
        points.push((nines, ms(h.quantile(q))));
        nines += 0.1;
    }
    points.push((deepest.max(0.1), ms(h.max())));
    points
}

/// Seconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC` (the civil
/// calendar from days, after Howard Hinnant's `civil_from_days`).
fn utc(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_796_162_264), "2026-12-01 21:57:44 UTC");
    }
}

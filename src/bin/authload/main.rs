//! `authload`: an HTTP load generator for authd.
//!
//! ```text
//! authload --url http://127.0.0.1:8000 [--url http://...:8001] --scenario refresh \
//!          --connections 64 --duration 10s [--warmup 2s] [--rate 5000] [--json] \
//!          [--out series.csv|series.jsonl] [--report report.html] \
//!          [--threshold 'p99<10ms' --threshold 'errors<0.1%'] [--quiet|--progress]
//! ```
//!
//! Each of the `--connections` workers owns one HTTP/1.1 keep-alive
//! connection (re-opened when the server closes it or a transport error
//! breaks it). In the default closed loop a connection sends its next
//! request only once the previous answer has been read, so the offered load
//! adapts to the server: this measures what the service sustains at a fixed
//! concurrency. With `--rate N` the loop is open: requests are due at a
//! constant N per second whatever the server does, each latency runs from
//! its *intended* send time (so a stall shows as latency, not as fewer
//! requests: no coordinated omission), and requests sent late or never
//! sent (dropped, every connection busy) are counted.
//!
//! Before measuring, a setup phase opens every connection and signs up the
//! users the scenario needs. Then come `--warmup` (load not counted) and
//! `--duration` (the measured window). Closed loop: a request counts when
//! its answer arrives inside the window. Open loop: when its intended time
//! falls inside it (answers still in flight at the end are waited for).
//!
//! Scenarios: `health`, `signup`, `signin`, `refresh` (each connection
//! along its own token chain), `revoke` (revokes sessions signed in during
//! setup, `--pool` of them, so the timed window holds revokes alone),
//! `authorize`, `mixed` (per connection, looping: a sign-in, 20 times a
//! refresh followed by 5 authorizes, then a revoke; reported per operation),
//! `revoke-seen` (two `--url`s: revoke at the first, then authorize at the
//! second until it answers 401; reports that delay), `multi-tab` (the connections are tabs sharing `--sessions` sessions and
//! refreshing them at once: rotations, grace duplicates, reuse refusals) and
//! `replay` (sign in, rotate twice, present the first token again: it must
//! be refused and the session revoked).
//!
//! Reported on stdout: requests and requests/s, errors by HTTP status
//! (anything but the intended one) plus `transport`, `timeout` and
//! `bad_body`; latency p50/p99/p99.9/max; per endpoint, per target and the
//! scenario's own counters; with `--json`, one final line of JSON. Live
//! progress goes to stderr once a second. Exit status: 0, 1 when the run
//! could not be made (2: a command-line error), 99 when a `--threshold`
//! failed.

mod cli;
mod client;
mod exchange;
mod histogram;
mod html;
mod ops;
mod pacer;
mod progress;
mod replay;
mod results;
mod run;
mod seen;
mod series;
mod stats;
mod summary;
mod svg;
mod tabs;
mod target;
mod threshold;
mod timeline;
mod worker;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Args;
use crate::threshold::Verdict;

/// Exit status when the run completed but a `--threshold` failed (k6's
/// choice; 2 is taken by command-line errors).
const THRESHOLD_FAILED: u8 = 99;

fn main() -> ExitCode {
    let args = Args::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(threads) = args.threads {
        builder.worker_threads(threads.max(1));
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("authload: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_and_report(&args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("authload: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_and_report(args: &Args) -> Result<ExitCode, String> {
    // Check the output names before spending a run on them.
    let out_format = args.out.as_deref().map(series::Format::of).transpose()?;
    if args.scenario == cli::Scenario::RevokeSeen {
        let (text, json) = seen::run(args).await?;
        print!("{text}");
        if args.json {
            println!("{json}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let result = run::run(args).await?;
    let verdicts: Vec<Verdict> = args.threshold.iter().map(|t| t.check(&result)).collect();
    print!("{}", summary::text(&result, &verdicts));
    if args.json {
        println!("{}", summary::json(&result, &verdicts));
    }
    if let (Some(path), Some(format)) = (&args.out, out_format) {
        series::write(path, &result, format)?;
    }
    if let Some(path) = &args.report {
        std::fs::write(path, html::render(&result, &verdicts))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let failed: Vec<&Verdict> = verdicts.iter().filter(|v| !v.passed).collect();
    for v in &failed {
        eprintln!(
            "authload: threshold failed: {} (measured {})",
            v.expr, v.actual
        );
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(THRESHOLD_FAILED)
    })
}

//! The coordinator of a run: resolves the targets, builds every
//! connection's worker (spread round-robin over the targets; tabs spread
//! over the shared sessions), waits until all are set up, then opens the
//! warm-up and the measured window, runs the live progress, and gathers the
//! results.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::cli::{Args, Scenario};
use crate::exchange::credentials_body;
use crate::pacer::Pacer;
use crate::replay::ReplayCycle;
use crate::results::{Params, RunResult, TargetResult};
use crate::stats::Stats;
use crate::tabs::TabSession;
use crate::target::TargetPlan;
use crate::timeline::Timeline;
use crate::worker::{Plan, Role, Window, Worker};

/// Sent by the coordinator once every connection is set up.
#[derive(Clone, Copy)]
enum Phase {
    Waiting,
    Go(Window),
    Abort,
}

pub async fn run(args: &Args) -> Result<RunResult, String> {
    if args.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    if args.duration.is_zero() {
        return Err("--duration must be positive".into());
    }
    if args.password.chars().count() < 8 {
        return Err("--password must have at least 8 characters".into());
    }
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate > 0.0) {
            return Err("--rate must be a positive number of requests per second".into());
        }
    }
    if args.scenario == Scenario::Revoke && args.pool < args.connections {
        return Err("--pool must be at least --connections (one session each)".into());
    }
    if args.scenario == Scenario::MultiTab && args.sessions == 0 {
        return Err("--sessions must be at least 1".into());
    }
    let mut targets = Vec::with_capacity(args.url.len());
    for url in &args.url {
        targets.push(Arc::new(TargetPlan::resolve(url, &args.base_path).await?));
    }
    let sessions = args.sessions.min(args.connections);
    let timeline = Arc::new(Timeline::default());
    let plan = Arc::new(Plan {
        scenario: args.scenario,
        run_id: format!("{:08x}", rand::random::<u32>()),
        password: args.password.clone(),
        timeout: args.timeout,
        late_after: args.late_after,
        timeline: timeline.clone(),
    });
    let labels: Vec<String> = targets.iter().map(|t| t.label.clone()).collect();
    eprintln!(
        "authload: run {} · {} against {} · {} connections · {} · warm-up {:.1}s · measure {:.1}s",
        plan.run_id,
        args.scenario.label(),
        labels.join(", "),
        args.connections,
        match args.rate {
            Some(rate) => format!("open loop at {rate} req/s"),
            None => "closed loop".into(),
        },
        args.warmup.as_secs_f64(),
        args.duration.as_secs_f64()
    );

    let tab_sessions: Vec<Arc<TabSession>> = (0..sessions)
        .map(|k| {
            let email = format!("load-{}-s{k}@example.com", plan.run_id);
            let credentials = credentials_body(&email, &plan.password);
            Arc::new(TabSession::new(email, credentials))
        })
        .collect();

    // Setup: every worker connects (and signs up its user), then waits.
    let setup_started = Instant::now();
    let (phase_tx, phase_rx) = watch::channel(Phase::Waiting);
    let (pacer_tx, pacer_rx) = watch::channel::<Option<Arc<Pacer>>>(None);
    let (ready_tx, mut ready_rx) = mpsc::channel::<Result<(), String>>(args.connections);
    let mut handles = Vec::with_capacity(args.connections);
    for id in 0..args.connections {
        let role = match args.scenario {
            Scenario::MultiTab => Role::Tab {
                session: tab_sessions[id % sessions].clone(),
                lead: id < sessions,
            },
            Scenario::Replay => Role::Replay(ReplayCycle::default()),
            Scenario::Revoke => Role::Pool {
                tokens: Vec::new(),
                want: pool_share(args.pool, args.connections, id),
            },
            _ => Role::Chain,
        };
        let target = id % targets.len();
        let mut worker = Worker::new(id, plan.clone(), target, targets[target].clone(), role);
        let ready = ready_tx.clone();
        let mut phase = phase_rx.clone();
        let pacer = pacer_rx.clone();
        let open = args.rate.is_some();
        handles.push(tokio::spawn(async move {
            let outcome = worker.setup().await;
            let ok = outcome.is_ok();
            let _ = ready.send(outcome).await;
            if !ok {
                return None;
            }
            let go = phase
                .wait_for(|p| !matches!(p, Phase::Waiting))
                .await
                .map(|p| *p);
            let Ok(Phase::Go(window)) = go else {
                return None;
            };
            if open {
                let pacer = pacer.borrow().clone()?;
                Some(worker.run_open(window, pacer).await)
            } else {
                Some(worker.run_closed(window).await)
            }
        }));
    }
    drop(ready_tx);
    let mut failure = None;
    for _ in 0..args.connections {
        match ready_rx.recv().await {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                failure.get_or_insert(e);
            }
            None => {
                failure.get_or_insert_with(|| "a worker stopped during setup".into());
            }
        }
    }
    if let Some(e) = failure {
        let _ = phase_tx.send(Phase::Abort);
        for handle in handles {
            let _ = handle.await;
        }
        return Err(format!("setup failed: {e}"));
    }
    eprintln!(
        "authload: setup done in {:.2}s",
        setup_started.elapsed().as_secs_f64()
    );

    let now = Instant::now();
    let window = Window {
        measure_from: now + args.warmup,
        end: now + args.warmup + args.duration,
    };
    let pacer = args.rate.map(|rate| Arc::new(Pacer::new(now, rate)));
    let _ = pacer_tx.send(pacer.clone());
    let _ = phase_tx.send(Phase::Go(window));
    let started_unix = (SystemTime::now() + args.warmup)
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());

    let show_progress = !args.quiet && (args.progress || std::io::stderr().is_terminal());
    let (done_tx, done_rx) = watch::channel(false);
    let progress = show_progress.then(|| {
        tokio::spawn(crate::progress::report(
            timeline.clone(),
            window.measure_from,
            args.duration,
            done_rx,
        ))
    });

    let mut total = Stats::default();
    let mut per_target: Vec<TargetResult> = labels
        .iter()
        .map(|label| TargetResult {
            label: label.clone(),
            connections: 0,
            stats: Stats::default(),
        })
        .collect();
    let mut lost = 0;
    for handle in handles {
        match handle.await {
            Ok(Some(worker)) => {
                total.merge(&worker.stats);
                let t = &mut per_target[worker.target];
                t.connections += 1;
                t.stats.merge(&worker.stats);
            }
            _ => lost += 1,
        }
    }
    let _ = done_tx.send(true);
    if let Some(progress) = progress {
        let _ = progress.await;
    }
    if lost > 0 {
        eprintln!("authload: {lost} worker(s) ended abnormally; their numbers are missing");
    }
    let measured_secs = args.duration.as_secs_f64().ceil() as usize;
    Ok(RunResult {
        params: Params {
            scenario: args.scenario,
            connections: args.connections,
            warmup: args.warmup,
            duration: args.duration,
            rate: args.rate,
            late_after: args.late_after,
            sessions: (args.scenario == Scenario::MultiTab).then_some(sessions),
            pool: (args.scenario == Scenario::Revoke).then(|| {
                (0..args.connections)
                    .map(|id| pool_share(args.pool, args.connections, id))
                    .sum()
            }),
            targets: labels,
            run_id: plan.run_id.clone(),
            started_unix,
        },
        total,
        targets: per_target,
        timeline: timeline.snapshot(measured_secs),
        scheduled: pacer.map(|p| p.scheduled_between(window.measure_from, window.end)),
    })
}

/// Connection `id`'s share of `pool` sessions (at least one: its sign-up's).
pub fn pool_share(pool: usize, connections: usize, id: usize) -> usize {
    (pool / connections + usize::from(id < pool % connections)).max(1)
}

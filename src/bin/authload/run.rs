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
    check_args(args)?;
    let targets = resolve_targets(args).await?;
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
    let tab_sessions = tab_sessions(&plan, sessions);
    let labels: Vec<String> = targets.iter().map(|t| t.label.clone()).collect();
    announce(args, &plan, &labels);

    // Setup: every worker connects (and signs up its user), then waits.
    let setup_started = Instant::now();
    let (phase_tx, phase_rx) = watch::channel(Phase::Waiting);
    let (pacer_tx, pacer_rx) = watch::channel::<Option<Arc<Pacer>>>(None);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>(args.connections);
    let mut handles = Vec::with_capacity(args.connections);
    for id in 0..args.connections {
        let target = id % targets.len();
        let role = role_of(args, id, &tab_sessions);
        let worker = Worker::new(id, plan.clone(), target, targets[target].clone(), role);
        handles.push(tokio::spawn(set_up_and_run(
            worker,
            ready_tx.clone(),
            phase_rx.clone(),
            pacer_rx.clone(),
            args.rate.is_some(),
        )));
    }
    drop(ready_tx);
    if let Some(e) = setup_failure(ready_rx, args.connections).await {
        abort(&phase_tx, handles).await;
        return Err(format!("setup failed: {e}"));
    }
    eprintln!(
        "authload: setup done in {:.2}s",
        setup_started.elapsed().as_secs_f64()
    );

    let (window, pacer, started_unix) = go(args, &phase_tx, &pacer_tx);
    let (done_tx, progress) = start_progress(args, &timeline, window);
    let (total, per_target, lost) = gather(handles, &labels).await;
    stop_progress(done_tx, progress).await;
    if lost > 0 {
        eprintln!("authload: {lost} worker(s) ended abnormally; their numbers are missing");
    }
    let measured_secs = args.duration.as_secs_f64().ceil() as usize;
    Ok(RunResult {
        params: params(args, sessions, labels, plan.run_id.clone(), started_unix),
        total,
        targets: per_target,
        timeline: timeline.snapshot(measured_secs),
        scheduled: pacer.map(|p| p.scheduled_between(window.measure_from, window.end)),
    })
}

/// The multi-tab scenario's shared sessions, each with its user.
fn tab_sessions(plan: &Plan, sessions: usize) -> Vec<Arc<TabSession>> {
    (0..sessions)
        .map(|k| {
            let email = format!("load-{}-s{k}@example.com", plan.run_id);
            let credentials = credentials_body(&email, &plan.password);
            Arc::new(TabSession::new(email, credentials))
        })
        .collect()
}

/// Opens the warm-up and the measured window for every worker (with the
/// pacer first, in open loop): the window, the pacer, and the Unix time
/// the measured window starts at.
fn go(
    args: &Args,
    phase: &watch::Sender<Phase>,
    pacer_slot: &watch::Sender<Option<Arc<Pacer>>>,
) -> (Window, Option<Arc<Pacer>>, u64) {
    let now = Instant::now();
    let window = Window {
        measure_from: now + args.warmup,
        end: now + args.warmup + args.duration,
    };
    let pacer = args.rate.map(|rate| Arc::new(Pacer::new(now, rate)));
    let _ = pacer_slot.send(pacer.clone());
    let _ = phase.send(Phase::Go(window));
    let started_unix = (SystemTime::now() + args.warmup)
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (window, pacer, started_unix)
}

/// The live progress on stderr (on a terminal, or with `--progress`; never
/// with `--quiet`), and the switch that ends it.
fn start_progress(
    args: &Args,
    timeline: &Arc<Timeline>,
    window: Window,
) -> (watch::Sender<bool>, Option<tokio::task::JoinHandle<()>>) {
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
    (done_tx, progress)
}

/// Ends the live progress and waits until it has written its last line.
async fn stop_progress(done: watch::Sender<bool>, progress: Option<tokio::task::JoinHandle<()>>) {
    let _ = done.send(true);
    if let Some(progress) = progress {
        let _ = progress.await;
    }
}

/// Every `--url`, resolved.
async fn resolve_targets(args: &Args) -> Result<Vec<Arc<TargetPlan>>, String> {
    let mut targets = Vec::with_capacity(args.url.len());
    for url in &args.url {
        targets.push(Arc::new(TargetPlan::resolve(url, &args.base_path).await?));
    }
    Ok(targets)
}

/// Tells the workers waiting for the go that there is none, and waits for
/// them to stop.
async fn abort(
    phase: &watch::Sender<Phase>,
    handles: Vec<tokio::task::JoinHandle<Option<Worker>>>,
) {
    let _ = phase.send(Phase::Abort);
    for handle in handles {
        let _ = handle.await;
    }
}

/// Refuses arguments a run cannot be made with.
fn check_args(args: &Args) -> Result<(), String> {
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
    Ok(())
}

/// The run's one line on stderr: what is about to be measured.
fn announce(args: &Args, plan: &Plan, labels: &[String]) {
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
}

/// What connection `id` does in the scenario: in multi-tab, a tab of one of
/// the shared sessions (the first connection of each session leads it).
fn role_of(args: &Args, id: usize, tab_sessions: &[Arc<TabSession>]) -> Role {
    match args.scenario {
        Scenario::MultiTab => Role::Tab {
            session: tab_sessions[id % tab_sessions.len()].clone(),
            lead: id < tab_sessions.len(),
        },
        Scenario::Replay => Role::Replay(ReplayCycle::default()),
        Scenario::Revoke => Role::Pool {
            tokens: Vec::new(),
            want: pool_share(args.pool, args.connections, id),
        },
        _ => Role::Chain,
    }
}

/// One worker's life: set up, report on `ready`, wait for the coordinator's
/// go, run the window (paced when `open`). `None` when setup failed or the
/// run was aborted.
async fn set_up_and_run(
    mut worker: Worker,
    ready: mpsc::Sender<Result<(), String>>,
    mut phase: watch::Receiver<Phase>,
    pacer: watch::Receiver<Option<Arc<Pacer>>>,
    open: bool,
) -> Option<Worker> {
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
}

/// Waits for all `connections` workers to report their setup: the first
/// failure, if any.
async fn setup_failure(
    mut ready: mpsc::Receiver<Result<(), String>>,
    connections: usize,
) -> Option<String> {
    let mut failure = None;
    for _ in 0..connections {
        match ready.recv().await {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                failure.get_or_insert(e);
            }
            None => {
                failure.get_or_insert_with(|| "a worker stopped during setup".into());
            }
        }
    }
    failure
}

/// Waits for every worker and adds up their figures, in total and per
/// target; and how many ended abnormally (their figures are missing).
async fn gather(
    handles: Vec<tokio::task::JoinHandle<Option<Worker>>>,
    labels: &[String],
) -> (Stats, Vec<TargetResult>, usize) {
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
    (total, per_target, lost)
}

/// The run's parameters, as the results report them.
fn params(
    args: &Args,
    sessions: usize,
    labels: Vec<String>,
    run_id: String,
    started_unix: u64,
) -> Params {
    Params {
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
        run_id,
        started_unix,
    }
}

/// Connection `id`'s share of `pool` sessions (at least one: its sign-up's).
pub fn pool_share(pool: usize, connections: usize, id: usize) -> usize {
    (pool / connections + usize::from(id < pool % connections)).max(1)
}

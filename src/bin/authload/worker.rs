//! One connection of the load: its client, its user and token chain (or
//! its shared multi-tab session, its replay cycle, or its pool of sessions
//! made in setup to be revoked), and the loop that
//! sends its requests, closed (next request once the answer is in) or open
//! (requests at the times a shared [`Pacer`] hands out), recording every
//! answer into its own [`Stats`] and the shared [`Timeline`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper::Request;
use tokio::time::Instant;

use crate::cli::Scenario;
use crate::client::Client;
use crate::exchange::credentials_body;
use crate::ops::{ErrKind, Op};
use crate::pacer::Pacer;
use crate::replay::ReplayCycle;
use crate::stats::Stats;
use crate::tabs::{TabAction, TabSession};
use crate::target::TargetPlan;
use crate::timeline::Timeline;

mod answer;
mod request;
mod setup;

/// Shared, read-only description of the run.
pub struct Plan {
    pub scenario: Scenario,
    pub run_id: String,
    pub password: String,
    pub timeout: Duration,
    pub late_after: Duration,
    pub timeline: Arc<Timeline>,
}

/// The measured window: warm-up until `measure_from`, measured until `end`.
#[derive(Clone, Copy)]
pub struct Window {
    pub measure_from: Instant,
    pub end: Instant,
}

/// What drives the connection's choice of requests.
pub enum Role {
    /// Its own user and token chain (every scenario but the two below).
    Chain,
    /// A tab of a shared session; the lead tab signs its user up in setup.
    Tab {
        session: Arc<TabSession>,
        lead: bool,
    },
    Replay(ReplayCycle),
    /// Sessions signed in during setup (`want` of them), each revoked once
    /// in the timed window.
    Pool {
        tokens: Vec<String>,
        want: usize,
    },
}

/// Requests of one `mixed` session after its sign-in: 20 x (a refresh and
/// 5 authorizes), then the revoke that ends it.
const MIXED_SESSION: u32 = 20 * 6;

/// How one request ended, before the scenario's bookkeeping.
enum Answer {
    Http(u16, Bytes),
    Lost(ErrKind),
}

enum Step {
    Sent,
    /// Nothing sent (a tab waiting for another tab's sign-in).
    Waited,
    /// The window closed while the request was in flight (closed loop).
    Cut,
    /// The connection's pool of sessions to revoke is used up.
    Exhausted,
}

pub struct Worker {
    id: usize,
    pub target: usize,
    plan: Arc<Plan>,
    peer: Arc<TargetPlan>,
    client: Client,
    email: String,
    credentials: Bytes,
    token: Option<String>,
    bearer: Option<HeaderValue>,
    signups: u64,
    /// `mixed`: requests sent in the current session since its sign-in.
    mixed_pos: u32,
    /// `mixed`: the last session ended with its planned revoke (so the next
    /// sign-in is the loop's, not a resync).
    ended_by_revoke: bool,
    role: Role,
    pub stats: Stats,
}

impl Worker {
    pub fn new(
        id: usize,
        plan: Arc<Plan>,
        target: usize,
        peer: Arc<TargetPlan>,
        role: Role,
    ) -> Self {
        let (email, credentials) = match &role {
            Role::Tab { session, .. } => (session.email.clone(), session.credentials.clone()),
            _ => {
                let email = format!("load-{}-{id}@example.com", plan.run_id);
                let credentials = credentials_body(&email, &plan.password);
                (email, credentials)
            }
        };
        Worker {
            id,
            target,
            client: Client::new(peer.addrs.clone()),
            peer,
            plan,
            email,
            credentials,
            token: None,
            bearer: None,
            signups: 0,
            mixed_pos: 0,
            ended_by_revoke: false,
            role,
            stats: Stats::default(),
        }
    }

    fn pool_len(&self) -> usize {
        match &self.role {
            Role::Pool { tokens, .. } => tokens.len(),
            _ => 0,
        }
    }

    /// Closed loop: the next request goes out once the previous answer is in.
    pub async fn run_closed(mut self, window: Window) -> Self {
        let connects_before = self.client.connects;
        loop {
            let now = Instant::now();
            if now >= window.end {
                break;
            }
            match self.step(now, window, false).await {
                Step::Sent => {}
                Step::Waited => tokio::time::sleep(Duration::from_millis(2)).await,
                Step::Cut => break,
                Step::Exhausted => {
                    self.stats.pool_exhausted += 1;
                    break;
                }
            }
        }
        self.stats.reconnects = self.client.connects.saturating_sub(connects_before);
        self.stats.pool_left = self.pool_len() as u64;
        self
    }

    /// Open loop: each request at the next time the pacer hands out; the
    /// latency runs from that intended time. Requests still in flight when
    /// the window closes are waited for (up to `--timeout`).
    pub async fn run_open(mut self, window: Window, pacer: Arc<Pacer>) -> Self {
        let connects_before = self.client.connects;
        'slots: loop {
            let intended = pacer.claim();
            if intended >= window.end {
                break;
            }
            loop {
                let now = Instant::now();
                if now >= window.end {
                    // The coordinator counts the slots nobody sent as dropped.
                    break 'slots;
                }
                if intended > now {
                    tokio::time::sleep_until(intended).await;
                }
                match self.step(intended, window, true).await {
                    Step::Waited => tokio::time::sleep(Duration::from_millis(2)).await,
                    Step::Sent | Step::Cut => break,
                    Step::Exhausted => {
                        self.stats.pool_exhausted += 1;
                        break 'slots;
                    }
                }
            }
        }
        self.stats.reconnects = self.client.connects.saturating_sub(connects_before);
        self.stats.pool_left = self.pool_len() as u64;
        self
    }

    /// The next request and the token it presents (`None`: wait).
    fn next(&mut self) -> Option<(Op, Option<String>)> {
        let scenario = self.plan.scenario;
        if let Role::Pool { tokens, .. } = &mut self.role {
            return tokens.pop().map(|t| (Op::Revoke, Some(t)));
        }
        match &self.role {
            Role::Tab { session, .. } => match session.next() {
                TabAction::Refresh(token) => Some((Op::Refresh, Some(token))),
                TabAction::Signin => Some((Op::Signin, None)),
                TabAction::Wait => None,
            },
            Role::Replay(cycle) => Some(cycle.next()),
            Role::Pool { .. } => None,
            Role::Chain if scenario == Scenario::Mixed => {
                if self.token.is_none() {
                    self.mixed_pos = 0;
                    return Some((Op::Signin, None));
                }
                let pos = self.mixed_pos;
                self.mixed_pos += 1;
                let op = match pos {
                    MIXED_SESSION.. => Op::Revoke,
                    p if p % 6 == 0 => Op::Refresh,
                    _ => Op::Authorize,
                };
                Some((op, None))
            }
            Role::Chain => {
                if scenario.needs_own_user() && scenario != Scenario::Signin && self.token.is_none()
                {
                    return Some((Op::Signin, None));
                }
                let op = match scenario {
                    Scenario::Health => Op::Health,
                    Scenario::Signup => Op::Signup,
                    Scenario::Revoke => Op::Revoke,
                    Scenario::Authorize => Op::Authorize,
                    Scenario::Signin => Op::Signin,
                    Scenario::Mixed
                    | Scenario::Refresh
                    | Scenario::MultiTab
                    | Scenario::Replay
                    | Scenario::RevokeSeen => Op::Refresh,
                };
                // The chain's own token is read from `self.token` in `request`.
                Some((op, None))
            }
        }
    }

    /// One request: send, read, sort the answer, record it.
    async fn step(&mut self, intended: Instant, window: Window, open: bool) -> Step {
        let Some((op, presented)) = self.next() else {
            if matches!(self.role, Role::Pool { .. }) {
                return Step::Exhausted;
            }
            return Step::Waited;
        };
        let chain_broken = matches!(self.role, Role::Chain)
            && op == Op::Signin
            && match self.plan.scenario {
                Scenario::Signin => false,
                Scenario::Mixed => !self.ended_by_revoke,
                _ => true,
            };
        let request = self.request(op, presented.as_deref());
        let sent = Instant::now();
        // In open loop the slot's time decides whether it counts.
        let counted_at = if open { intended } else { sent };
        let in_window = counted_at >= window.measure_from && counted_at < window.end;
        if open && in_window {
            self.stats.sent += 1;
            if sent.saturating_duration_since(intended) > self.plan.late_after {
                self.stats.late += 1;
            }
        }
        let Some((answer, finished)) = self.exchange(request, sent, window, open).await else {
            return Step::Cut;
        };
        let counted = if open {
            in_window
        } else {
            finished >= window.measure_from && finished < window.end
        };
        let latency = match answer {
            Answer::Http(..) => {
                let micros = finished.duration_since(intended.min(sent)).as_micros();
                Some(u64::try_from(micros).unwrap_or(u64::MAX))
            }
            Answer::Lost(_) => None,
        };
        let transport = matches!(answer, Answer::Lost(ErrKind::Transport));
        let result = self.absorb(op, presented.as_deref(), answer, counted);
        if counted {
            self.record(op, result, latency, chain_broken, finished, window);
        }
        if transport {
            // Do not spin when the server is unreachable.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Step::Sent
    }

    /// Sends `request` (sent at `sent`) and waits for its answer: until
    /// `--timeout`, in closed loop at most until the window's end. The
    /// answer and when it finished; `None` when the end of a closed-loop
    /// run cut the request off, which is not a slow answer.
    async fn exchange(
        &mut self,
        request: Request<Full<Bytes>>,
        sent: Instant,
        window: Window,
        open: bool,
    ) -> Option<(Answer, Instant)> {
        let deadline = if open {
            sent + self.plan.timeout
        } else {
            (sent + self.plan.timeout).min(window.end)
        };
        let answer = tokio::time::timeout_at(deadline, self.client.send(request)).await;
        let finished = Instant::now();
        let answer = match answer {
            Err(_) => {
                self.client.drop_connection();
                if !open && finished >= window.end {
                    return None;
                }
                Answer::Lost(ErrKind::Timeout)
            }
            Ok(Err(e)) => {
                if finished >= window.measure_from && self.stats.first_transport_error.is_none() {
                    self.stats.first_transport_error = Some(e.to_string());
                }
                Answer::Lost(ErrKind::Transport)
            }
            Ok(Ok((status, body))) => Answer::Http(status, body),
        };
        Some((answer, finished))
    }

    /// Records a counted answer in the connection's stats and, by the
    /// second of the window it finished in, in the shared timeline.
    fn record(
        &mut self,
        op: Op,
        result: Result<(), ErrKind>,
        latency: Option<u64>,
        chain_broken: bool,
        finished: Instant,
        window: Window,
    ) {
        self.stats.record(op, result, latency);
        if chain_broken {
            self.stats.resyncs += 1;
        }
        let second = finished
            .saturating_duration_since(window.measure_from)
            .as_secs();
        self.plan
            .timeline
            .record(second as usize, op, result, latency);
    }
}

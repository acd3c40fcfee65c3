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
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::Request;
use tokio::time::Instant;

use crate::cli::Scenario;
use crate::client::Client;
use crate::exchange::{check, credentials_body, token_body};
use crate::ops::{ErrKind, Op};
use crate::pacer::Pacer;
use crate::replay::ReplayCycle;
use crate::stats::Stats;
use crate::tabs::{TabAction, TabSession};
use crate::target::TargetPlan;
use crate::timeline::Timeline;

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

    fn needs_user(&self) -> bool {
        match self.role {
            Role::Tab { lead, .. } => lead,
            _ => self.plan.scenario.needs_own_user(),
        }
    }

    /// Opens the connection, creates the user the scenario needs and, for
    /// a pool, signs in the pool's sessions.
    pub async fn setup(&mut self) -> Result<(), String> {
        self.setup_user().await?;
        let want = match &self.role {
            Role::Pool { want, .. } => *want,
            _ => return Ok(()),
        };
        let mut failures = 0u64;
        while self.pool_len() < want {
            let request = self.request(Op::Signin, None);
            let answer = tokio::time::timeout(self.plan.timeout, self.client.send(request)).await;
            let (status, body) = match answer {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) | Err(_) => (0, Bytes::new()),
            };
            match check(Op::Signin, status, &body) {
                (Ok(()), Some(token)) => {
                    if let Role::Pool { tokens, .. } = &mut self.role {
                        tokens.push(token);
                    }
                }
                // Transient (a full hashing queue, a dropped connection): retry.
                (Err(ErrKind::Status(0 | 503 | 429)), _) if failures < 50 => {
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(20 * failures.min(10))).await;
                }
                (result, _) => {
                    return Err(format!(
                        "pool sign-in of {} answered {status} ({result:?}): {}",
                        self.email,
                        String::from_utf8_lossy(&body)
                    ))
                }
            }
        }
        Ok(())
    }

    fn pool_len(&self) -> usize {
        match &self.role {
            Role::Pool { tokens, .. } => tokens.len(),
            _ => 0,
        }
    }

    /// Opens the connection and, if the scenario needs it, creates the
    /// connection's (or its session's) user. Retries what looks transient
    /// (503, 429, transport).
    async fn setup_user(&mut self) -> Result<(), String> {
        let mut last = String::new();
        for attempt in 0..10u64 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(50 * attempt.min(10))).await;
            }
            if !self.needs_user() {
                match self.client.connect().await {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        last = e.to_string();
                        continue;
                    }
                }
            }
            let op = if last.starts_with("409") {
                Op::Signin
            } else {
                Op::Signup
            };
            let request = self.request(op, None);
            match tokio::time::timeout(self.plan.timeout, self.client.send(request)).await {
                Err(_) => {
                    self.client.drop_connection();
                    last = "timeout".into();
                }
                Ok(Err(e)) => last = e.to_string(),
                Ok(Ok((status, body))) => match check(op, status, &body) {
                    (Ok(()), token) => {
                        let token = token.unwrap_or_default();
                        match &mut self.role {
                            Role::Chain => self.set_token(&token),
                            Role::Pool { tokens, .. } => tokens.push(token),
                            Role::Tab { session, .. } => {
                                session.after_signin(Some(&token));
                            }
                            Role::Replay(cycle) => {
                                cycle.after(
                                    Op::Signin,
                                    Some(200),
                                    Ok(()),
                                    Some(&token),
                                    &mut Default::default(),
                                );
                            }
                        }
                        return Ok(());
                    }
                    (Err(ErrKind::Status(409)), _) => last = "409 (user exists)".into(),
                    (Err(ErrKind::Status(503)), _) | (Err(ErrKind::Status(429)), _) => {
                        last = format!("{status}: {}", String::from_utf8_lossy(&body));
                    }
                    (Err(kind), _) => {
                        return Err(format!(
                            "{} of {} answered {kind}: {}",
                            op.label(),
                            self.email,
                            String::from_utf8_lossy(&body)
                        ))
                    }
                },
            }
        }
        Err(format!("connection {} setup failed: {last}", self.id))
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
                    return Step::Cut; // cut off by the end of the run, not slow
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
        if transport {
            // Do not spin when the server is unreachable.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Step::Sent
    }

    /// Sorts an answer for the scenario and updates the token state.
    fn absorb(
        &mut self,
        op: Op,
        presented: Option<&str>,
        answer: Answer,
        counted: bool,
    ) -> Result<(), ErrKind> {
        let (status, result, token) = match &answer {
            Answer::Http(status, body) => {
                let (result, token) = check(op, *status, body);
                (Some(*status), result, token)
            }
            Answer::Lost(kind) => (None, Err(*kind), None),
        };
        match &mut self.role {
            Role::Chain => self.absorb_chain(op, status, result, token.as_deref()),
            Role::Tab { session, .. } => {
                let event = match op {
                    Op::Signin => session.after_signin(token.as_deref()),
                    _ => session.after_refresh(
                        presented.unwrap_or_default(),
                        result,
                        token.as_deref(),
                    ),
                };
                if counted {
                    event.count(&mut self.stats.tabs);
                }
            }
            Role::Replay(cycle) => {
                let mut counters = Default::default();
                cycle.after(op, status, result, token.as_deref(), &mut counters);
                if counted {
                    let c = &mut self.stats.replay;
                    c.replays += counters.replays;
                    c.refused += counters.refused;
                    c.accepted += counters.accepted;
                    c.sessions_revoked += counters.sessions_revoked;
                    c.sessions_alive += counters.sessions_alive;
                }
            }
            // Each pooled session is presented once; nothing to keep.
            Role::Pool { .. } => {}
        }
        result
    }

    fn absorb_chain(
        &mut self,
        op: Op,
        status: Option<u16>,
        result: Result<(), ErrKind>,
        token: Option<&str>,
    ) {
        if op == Op::Signin && status.is_some() {
            self.ended_by_revoke = false;
        }
        if op == Op::Revoke {
            self.ended_by_revoke = status.is_some();
        }
        match (status, result) {
            // A request whose answer was lost may have consumed the token.
            (None, _) if matches!(op, Op::Refresh | Op::Revoke) => self.forget_token(),
            (None, _) => {}
            // A revoke ends the session whatever it answered.
            (Some(_), _) if op == Op::Revoke => self.forget_token(),
            (Some(401), Err(_)) if matches!(op, Op::Refresh | Op::Authorize) => self.forget_token(),
            (Some(_), Err(ErrKind::BadBody)) if op == Op::Refresh => self.forget_token(),
            (Some(_), Ok(())) => {
                if let Some(token) = token {
                    self.set_token(token);
                }
            }
            (Some(_), Err(_)) => {}
        }
    }

    fn request(&mut self, op: Op, presented: Option<&str>) -> Request<Full<Bytes>> {
        let own = matches!(self.role, Role::Chain);
        let body = match op {
            Op::Signup if self.plan.scenario == Scenario::Signup => {
                self.signups += 1;
                let email = format!(
                    "load-{}-{}-{}@example.com",
                    self.plan.run_id, self.id, self.signups
                );
                credentials_body(&email, &self.plan.password)
            }
            Op::Signup | Op::Signin => self.credentials.clone(),
            _ if op.takes_token_body() => {
                let token = if own {
                    self.token.as_deref()
                } else {
                    presented
                };
                token_body(token.unwrap_or_default())
            }
            _ => Bytes::new(),
        };
        let mut builder = Request::builder()
            .method(op.method())
            .uri(self.peer.uri(op))
            .header(HOST, self.peer.host.clone());
        if !body.is_empty() {
            builder = builder.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if op.takes_bearer() {
            let bearer = if own {
                self.bearer()
            } else {
                presented.and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok())
            };
            if let Some(bearer) = bearer {
                builder = builder.header(AUTHORIZATION, bearer);
            }
        }
        match builder.body(Full::new(body)) {
            Ok(request) => request,
            // Every part above is pre-validated; keep the type total anyway.
            Err(_) => Request::new(Full::new(Bytes::new())),
        }
    }

    fn bearer(&mut self) -> Option<HeaderValue> {
        if self.bearer.is_none() {
            let token = self.token.as_deref()?;
            self.bearer =
                HeaderValue::from_maybe_shared(Bytes::from(format!("Bearer {token}"))).ok();
        }
        self.bearer.clone()
    }

    fn set_token(&mut self, token: &str) {
        let slot = self.token.get_or_insert_with(String::new);
        slot.clear();
        slot.push_str(token);
        self.bearer = None;
    }

    fn forget_token(&mut self) {
        self.token = None;
        self.bearer = None;
    }
}

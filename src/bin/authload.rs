//! `authload`: a closed-loop HTTP load generator for authd.
//!
//! ```text
//! authload --url http://127.0.0.1:8000 --scenario refresh \
//!          --connections 64 --duration 10s [--warmup 2s] [--json] \
//!          [--base-path /auth-prefix] [--password secret-pass] [--timeout 10s] [--threads N]
//! ```
//!
//! Each of the `--connections` workers owns one HTTP/1.1 keep-alive
//! connection (re-opened when the server closes it or a transport error
//! breaks it) and sends its next request only once the previous answer has
//! been read in full, so the offered load adapts to the server: this measures
//! the latency and throughput the service sustains at a fixed concurrency.
//!
//! Before measuring, a setup phase opens every connection and, for the
//! scenarios that need one, signs up the connection's own user
//! (`load-<runid>-<conn>@example.com`, with `--password`). Then come
//! `--warmup` (requests sent but not counted) and `--duration` (the measured
//! window). A request counts when its answer arrives inside the window;
//! requests still in flight when the window closes are abandoned uncounted.
//!
//! Scenarios:
//! - `health`: `GET /health`.
//! - `signup`: `POST /signup` with a fresh e-mail per request.
//! - `signin`: `POST /signin` of the connection's user, again and again.
//! - `refresh`: `POST /refresh` along the connection's own token chain,
//!   always presenting the token the previous refresh returned.
//! - `revoke`: `POST /revoke` of the current token, then `POST /signin` for a
//!   new one; both requests count, and the report breaks them down.
//! - `authorize`: `GET /authorize` with the connection's Bearer token.
//! - `mixed`: per request ~70% authorize, ~25% refresh, ~5% signin, each
//!   connection keeping its token chain consistent.
//!
//! When a connection's chain breaks (a 401, or a refresh lost to a transport
//! error), it signs in again before going on; those sign-ins count as
//! requests too and show up as `signin` in the per-endpoint breakdown.
//!
//! Reported: requests answered in the window and requests/s, successes,
//! errors by HTTP status (anything but 201 for signup and 200 otherwise) plus
//! `transport` (connect/IO/protocol failures), `timeout` (`--timeout`) and
//! `bad_body` (a token answer without a token); latency p50/p99/p99.9/max
//! over every request that got an HTTP answer, from a log-linear histogram
//! (exact below 128 µs, then 64 buckets per power of two: under 1.6% error,
//! reported as the bucket's upper bound). Latency includes a reconnect when
//! one was needed. With `--json`, one final line of JSON follows the text.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

#[derive(Parser, Debug)]
#[command(
    name = "authload",
    about = "Closed-loop load generator for authd",
    version
)]
struct Args {
    /// Base URL of the server (http only), e.g. http://127.0.0.1:8000.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    url: String,
    /// Prefix put in front of every route, e.g. "/authd" (appended to any path in --url).
    #[arg(long, default_value = "")]
    base_path: String,
    /// What each request does.
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Concurrent connections, each with its own user and one request in flight.
    #[arg(long, short = 'c', default_value_t = 16)]
    connections: usize,
    /// Measured window: "10s", "500ms", "2m", or plain seconds.
    #[arg(long, short = 'd', default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Load applied before the measured window and not counted.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Password of the load users (at least 8 characters).
    #[arg(long, default_value = "load-test-password")]
    password: String,
    /// A request taking longer than this counts as a `timeout` error.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Runtime worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Also print one final line of JSON with the results.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Health,
    Signup,
    Signin,
    Refresh,
    Revoke,
    Authorize,
    Mixed,
}

impl Scenario {
    fn label(self) -> &'static str {
        match self {
            Scenario::Health => "health",
            Scenario::Signup => "signup",
            Scenario::Signin => "signin",
            Scenario::Refresh => "refresh",
            Scenario::Revoke => "revoke",
            Scenario::Authorize => "authorize",
            Scenario::Mixed => "mixed",
        }
    }

    /// Whether each connection needs its own signed-up user.
    fn needs_user(self) -> bool {
        !matches!(self, Scenario::Health | Scenario::Signup)
    }
}

/// Parses "10s", "250ms", "2m", "1.5s", "3" (seconds).
fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let (number, unit) = match raw.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => raw.split_at(i),
        None => (raw, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {raw:?}"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ms, s, m or h)"
            ))
        }
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("invalid duration {raw:?}"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Where to connect and what to put in the Host header and request paths.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    authority: String,
    connect: String,
    prefix: String,
}

fn parse_target(url: &str, base_path: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--url must start with http:// (got {url:?})"))?;
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("--url has no usable host: {url:?}"));
    }
    if path.contains(['?', '#']) {
        return Err(format!("--url must not carry a query or fragment: {url:?}"));
    }
    // "[::1]" and "host" have no port; "[::1]:8000" and "host:8000" do.
    let has_port = match authority.rfind(']') {
        Some(bracket) => authority[bracket..].contains(':'),
        None => authority.contains(':'),
    };
    let connect = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let mut prefix = String::new();
    for part in [path, base_path] {
        let part = part.trim_matches('/');
        if !part.is_empty() {
            prefix.push('/');
            prefix.push_str(part);
        }
    }
    Ok(Target {
        authority: authority.to_string(),
        connect,
        prefix,
    })
}

// ---------------------------------------------------------------------------
// Operations and their statistics
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Health,
    Signup,
    Signin,
    Refresh,
    Revoke,
    Authorize,
}

const OPS: [Op; 6] = [
    Op::Health,
    Op::Signup,
    Op::Signin,
    Op::Refresh,
    Op::Revoke,
    Op::Authorize,
];

impl Op {
    fn index(self) -> usize {
        self as usize
    }

    fn label(self) -> &'static str {
        match self {
            Op::Health => "health",
            Op::Signup => "signup",
            Op::Signin => "signin",
            Op::Refresh => "refresh",
            Op::Revoke => "revoke",
            Op::Authorize => "authorize",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Op::Health => "/health",
            Op::Signup => "/signup",
            Op::Signin => "/signin",
            Op::Refresh => "/refresh",
            Op::Revoke => "/revoke",
            Op::Authorize => "/authorize",
        }
    }

    fn method(self) -> Method {
        match self {
            Op::Health | Op::Authorize => Method::GET,
            _ => Method::POST,
        }
    }

    fn expected_status(self) -> u16 {
        match self {
            Op::Signup => 201,
            _ => 200,
        }
    }

    /// Whether a successful answer carries an access token.
    fn issues_token(self) -> bool {
        matches!(self, Op::Signup | Op::Signin | Op::Refresh)
    }
}

/// What went wrong with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ErrKind {
    Status(u16),
    Transport,
    Timeout,
    BadBody,
}

impl fmt::Display for ErrKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrKind::Status(code) => write!(f, "{code}"),
            ErrKind::Transport => f.write_str("transport"),
            ErrKind::Timeout => f.write_str("timeout"),
            ErrKind::BadBody => f.write_str("bad_body"),
        }
    }
}

/// Significant bits kept per value: values below 2^SUB_BITS are exact, above
/// that each power of two is split into 2^(SUB_BITS-1) buckets.
const SUB_BITS: u32 = 7;
const HALF: u64 = 1 << (SUB_BITS - 1);
/// Largest value tracked exactly enough (about 19 hours in µs); larger ones clamp.
const MAX_VALUE: u64 = (1 << 36) - 1;
const BUCKETS: usize = bucket_of(MAX_VALUE) + 1;

const fn bucket_of(value: u64) -> usize {
    let v = if value > MAX_VALUE { MAX_VALUE } else { value };
    if v < (1 << SUB_BITS) {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb + 1 - SUB_BITS;
    ((shift as u64 + 1) * HALF + ((v >> shift) - HALF)) as usize
}

/// The largest value that falls in bucket `index`.
fn bucket_high(index: usize) -> u64 {
    let index = index as u64;
    if index < (1 << SUB_BITS) {
        return index;
    }
    let shift = index / HALF - 1;
    let offset = index % HALF;
    ((HALF + offset) << shift) + (1 << shift) - 1
}

/// A log-linear latency histogram of microseconds (HDR-like, fixed range).
#[derive(Clone, Default)]
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum: u64,
    max: u64,
}

impl Histogram {
    fn record(&mut self, micros: u64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS];
        }
        self.counts[bucket_of(micros)] += 1;
        self.total += 1;
        self.sum = self.sum.saturating_add(micros);
        self.max = self.max.max(micros);
    }

    fn merge(&mut self, other: &Histogram) {
        if other.total == 0 {
            return;
        }
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS];
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.sum = self.sum.saturating_add(other.sum);
        self.max = self.max.max(other.max);
    }

    /// The value at quantile `q` (0..=1), in µs; 0 when empty.
    fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return bucket_high(index).min(self.max);
            }
        }
        self.max
    }

    fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }
}

#[derive(Clone, Default)]
struct OpStats {
    latency: Histogram,
    ok: u64,
    errors: u64,
}

/// One connection's (or, merged, the whole run's) measured results.
#[derive(Default)]
struct Stats {
    ops: [OpStats; 6],
    errors: BTreeMap<ErrKind, u64>,
    reconnects: u64,
    resyncs: u64,
    first_transport_error: Option<String>,
}

impl Stats {
    fn merge(&mut self, other: Stats) {
        for (mine, theirs) in self.ops.iter_mut().zip(&other.ops) {
            mine.latency.merge(&theirs.latency);
            mine.ok += theirs.ok;
            mine.errors += theirs.errors;
        }
        for (kind, count) in other.errors {
            *self.errors.entry(kind).or_default() += count;
        }
        self.reconnects += other.reconnects;
        self.resyncs += other.resyncs;
        if self.first_transport_error.is_none() {
            self.first_transport_error = other.first_transport_error;
        }
    }

    fn requests(&self) -> u64 {
        self.ops.iter().map(|o| o.ok + o.errors).sum()
    }

    fn ok(&self) -> u64 {
        self.ops.iter().map(|o| o.ok).sum()
    }

    fn latency(&self) -> Histogram {
        let mut all = Histogram::default();
        for op in &self.ops {
            all.merge(&op.latency);
        }
        all
    }
}

// ---------------------------------------------------------------------------
// HTTP/1.1 keep-alive client: one connection, reopened when needed
// ---------------------------------------------------------------------------

#[derive(Debug)]
enum TransportError {
    Connect(std::io::Error),
    Http(hyper::Error),
    Closed,
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Connect(e) => write!(f, "connect: {e}"),
            TransportError::Http(e) => write!(f, "http: {e}"),
            TransportError::Closed => f.write_str("connection closed"),
        }
    }
}

struct Client {
    addrs: Arc<[SocketAddr]>,
    sender: Option<SendRequest<Full<Bytes>>>,
    connects: u64,
}

impl Client {
    fn new(addrs: Arc<[SocketAddr]>) -> Self {
        Client {
            addrs,
            sender: None,
            connects: 0,
        }
    }

    async fn connect(&mut self) -> Result<(), TransportError> {
        self.sender = None;
        let stream = TcpStream::connect(&self.addrs[..])
            .await
            .map_err(TransportError::Connect)?;
        // Latency matters more than packet count for a load generator.
        stream.set_nodelay(true).map_err(TransportError::Connect)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(TransportError::Http)?;
        tokio::spawn(async move {
            // Errors surface through the sender as well; nothing to do here.
            let _ = connection.await;
        });
        self.sender = Some(sender);
        self.connects += 1;
        Ok(())
    }

    /// Sends one request and reads the whole answer.
    async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<(u16, Bytes), TransportError> {
        let usable = match self.sender.as_mut() {
            Some(sender) if !sender.is_closed() => sender.ready().await.is_ok(),
            _ => false,
        };
        if !usable {
            self.connect().await?;
        }
        let Some(sender) = self.sender.as_mut() else {
            return Err(TransportError::Closed);
        };
        let result = async {
            let response = sender.send_request(request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            Ok((status, body))
        }
        .await;
        if result.is_err() {
            self.sender = None;
        }
        result.map_err(TransportError::Http)
    }

    fn drop_connection(&mut self) {
        self.sender = None;
    }
}

// ---------------------------------------------------------------------------
// Workers
// ---------------------------------------------------------------------------

#[derive(Serialize)]
struct Credentials<'a> {
    email: &'a str,
    password: &'a str,
}

#[derive(Deserialize)]
struct TokenAnswer<'a> {
    #[serde(borrow)]
    access_token: std::borrow::Cow<'a, str>,
}

/// Shared, read-only description of the run.
struct Plan {
    scenario: Scenario,
    host: HeaderValue,
    json: HeaderValue,
    uris: [Uri; 6],
    run_id: String,
    password: String,
    timeout: Duration,
    addrs: Arc<[SocketAddr]>,
}

/// Sent by the coordinator once every connection is set up.
#[derive(Clone, Copy)]
enum Phase {
    Waiting,
    Go { measure_from: Instant, end: Instant },
    Abort,
}

struct Worker {
    id: usize,
    plan: Arc<Plan>,
    client: Client,
    email: String,
    credentials: Bytes,
    token: Option<String>,
    bearer: Option<HeaderValue>,
    signups: u64,
    stats: Stats,
}

impl Worker {
    fn new(id: usize, plan: Arc<Plan>) -> Self {
        let email = format!("load-{}-{id}@example.com", plan.run_id);
        let credentials = credentials_body(&email, &plan.password);
        Worker {
            id,
            client: Client::new(plan.addrs.clone()),
            plan,
            email,
            credentials,
            token: None,
            bearer: None,
            signups: 0,
            stats: Stats::default(),
        }
    }

    /// Opens the connection and, if the scenario needs it, creates the
    /// connection's user. Retries what looks transient (503, transport).
    async fn setup(&mut self) -> Result<(), String> {
        let mut last = String::new();
        for attempt in 0..10u64 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(50 * attempt.min(10))).await;
            }
            if !self.plan.scenario.needs_user() {
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
            let request = self.request(op);
            match tokio::time::timeout(self.plan.timeout, self.client.send(request)).await {
                Err(_) => {
                    self.client.drop_connection();
                    last = "timeout".into();
                }
                Ok(Err(e)) => last = e.to_string(),
                Ok(Ok((status, body))) => match self.absorb(op, status, &body) {
                    Ok(()) => return Ok(()),
                    Err(ErrKind::Status(409)) => last = "409 (user exists)".into(),
                    Err(ErrKind::Status(503)) | Err(ErrKind::Status(429)) => {
                        last = format!("{status}: {}", String::from_utf8_lossy(&body));
                    }
                    Err(kind) => {
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

    /// The next operation, given the scenario and the token chain's state.
    fn next_op(&self) -> Op {
        let scenario = self.plan.scenario;
        if scenario.needs_user() && scenario != Scenario::Signin && self.token.is_none() {
            return Op::Signin;
        }
        match scenario {
            Scenario::Health => Op::Health,
            Scenario::Signup => Op::Signup,
            Scenario::Signin => Op::Signin,
            Scenario::Refresh => Op::Refresh,
            Scenario::Revoke => Op::Revoke,
            Scenario::Authorize => Op::Authorize,
            Scenario::Mixed => match rand::random_range(0..100u32) {
                0..70 => Op::Authorize,
                70..95 => Op::Refresh,
                _ => Op::Signin,
            },
        }
    }

    fn request(&mut self, op: Op) -> Request<Full<Bytes>> {
        let body = match op {
            Op::Health | Op::Authorize => Bytes::new(),
            Op::Signin => self.credentials.clone(),
            Op::Signup if self.plan.scenario == Scenario::Signup => {
                self.signups += 1;
                let email = format!(
                    "load-{}-{}-{}@example.com",
                    self.plan.run_id, self.id, self.signups
                );
                credentials_body(&email, &self.plan.password)
            }
            Op::Signup => self.credentials.clone(),
            Op::Refresh | Op::Revoke => token_body(self.token.as_deref().unwrap_or_default()),
        };
        let mut builder = Request::builder()
            .method(op.method())
            .uri(self.plan.uris[op.index()].clone())
            .header(HOST, self.plan.host.clone());
        if !body.is_empty() {
            builder = builder.header(CONTENT_TYPE, self.plan.json.clone());
        }
        if op == Op::Authorize {
            if let Some(bearer) = self.bearer() {
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

    /// Checks an answer and updates the token chain.
    fn absorb(&mut self, op: Op, status: u16, body: &[u8]) -> Result<(), ErrKind> {
        if status != op.expected_status() {
            // A 401 means the token is dead; a revoke ends the session whatever it answered.
            if op == Op::Revoke || (status == 401 && matches!(op, Op::Refresh | Op::Authorize)) {
                self.forget_token();
            }
            return Err(ErrKind::Status(status));
        }
        match op {
            Op::Revoke => {
                self.forget_token();
                Ok(())
            }
            _ if op.issues_token() => match serde_json::from_slice::<TokenAnswer>(body) {
                Ok(answer) => {
                    self.set_token(&answer.access_token);
                    Ok(())
                }
                Err(_) => {
                    if op == Op::Refresh {
                        self.forget_token();
                    }
                    Err(ErrKind::BadBody)
                }
            },
            _ => Ok(()),
        }
    }

    /// The closed loop: warm-up, then the measured window until `end`.
    async fn run(mut self, measure_from: Instant, end: Instant) -> Stats {
        let connects_before = self.client.connects;
        loop {
            let started = Instant::now();
            if started >= end {
                break;
            }
            let op = self.next_op();
            let chain_broken = self.plan.scenario.needs_user()
                && self.token.is_none()
                && self.plan.scenario != Scenario::Revoke
                && self.plan.scenario != Scenario::Signin;
            let request = self.request(op);
            let deadline = (started + self.plan.timeout).min(end);
            let answer = tokio::time::timeout_at(deadline, self.client.send(request)).await;
            let finished = Instant::now();
            let (result, latency) = match answer {
                Err(_) => {
                    self.client.drop_connection();
                    if finished >= end {
                        break; // cut off by the end of the run, not slow
                    }
                    self.after_lost(op);
                    (Err(ErrKind::Timeout), None)
                }
                Ok(Err(e)) => {
                    if finished >= measure_from && self.stats.first_transport_error.is_none() {
                        self.stats.first_transport_error = Some(e.to_string());
                    }
                    self.after_lost(op);
                    (Err(ErrKind::Transport), None)
                }
                Ok(Ok((status, body))) => {
                    let micros = finished.duration_since(started).as_micros();
                    (
                        self.absorb(op, status, &body),
                        Some(u64::try_from(micros).unwrap_or(u64::MAX)),
                    )
                }
            };
            let counted = finished >= measure_from && finished < end;
            if counted {
                let stats = &mut self.stats.ops[op.index()];
                if let Some(micros) = latency {
                    stats.latency.record(micros);
                }
                match result {
                    Ok(()) => stats.ok += 1,
                    Err(kind) => {
                        stats.errors += 1;
                        *self.stats.errors.entry(kind).or_default() += 1;
                    }
                }
                if chain_broken {
                    self.stats.resyncs += 1;
                }
            }
            if matches!(result, Err(ErrKind::Transport)) {
                // Do not spin when the server is unreachable.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        self.stats.reconnects = self.client.connects.saturating_sub(connects_before);
        self.stats
    }

    /// A request whose answer was lost may have consumed the token.
    fn after_lost(&mut self, op: Op) {
        if matches!(op, Op::Refresh | Op::Revoke) {
            self.forget_token();
        }
    }
}

fn credentials_body(email: &str, password: &str) -> Bytes {
    // Serializing two &str fields cannot fail.
    Bytes::from(serde_json::to_vec(&Credentials { email, password }).unwrap_or_default())
}

fn token_body(token: &str) -> Bytes {
    let mut body = Vec::with_capacity(token.len() + 20);
    body.extend_from_slice(b"{\"access_token\":");
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut body, token);
    body.push(b'}');
    Bytes::from(body)
}

// ---------------------------------------------------------------------------
// Coordination and reporting
// ---------------------------------------------------------------------------

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
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authload: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    if args.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    if args.duration.is_zero() {
        return Err("--duration must be positive".into());
    }
    if args.password.chars().count() < 8 {
        return Err("--password must have at least 8 characters".into());
    }
    let target = parse_target(&args.url, &args.base_path)?;
    let addrs: Arc<[SocketAddr]> = tokio::net::lookup_host(&target.connect)
        .await
        .map_err(|e| format!("cannot resolve {}: {e}", target.connect))?
        .collect::<Vec<_>>()
        .into();
    if addrs.is_empty() {
        return Err(format!("{} resolves to no address", target.connect));
    }
    let uri = |op: Op| -> Result<Uri, String> {
        format!("{}{}", target.prefix, op.path())
            .parse()
            .map_err(|e| format!("bad --base-path: {e}"))
    };
    let plan = Arc::new(Plan {
        scenario: args.scenario,
        host: HeaderValue::from_str(&target.authority).map_err(|e| format!("bad host: {e}"))?,
        json: HeaderValue::from_static("application/json"),
        uris: [
            uri(Op::Health)?,
            uri(Op::Signup)?,
            uri(Op::Signin)?,
            uri(Op::Refresh)?,
            uri(Op::Revoke)?,
            uri(Op::Authorize)?,
        ],
        run_id: format!("{:08x}", rand::random::<u32>()),
        password: args.password.clone(),
        timeout: args.timeout,
        addrs,
    });

    eprintln!(
        "authload: run {} · {} against http://{}{} · {} connections · warm-up {:.1}s · measure {:.1}s",
        plan.run_id,
        args.scenario.label(),
        target.authority,
        target.prefix,
        args.connections,
        args.warmup.as_secs_f64(),
        args.duration.as_secs_f64()
    );

    // Setup: every worker connects (and signs up its user), then waits.
    let setup_started = Instant::now();
    let (phase_tx, phase_rx) = watch::channel(Phase::Waiting);
    let (ready_tx, mut ready_rx) = mpsc::channel::<Result<(), String>>(args.connections);
    let mut handles = Vec::with_capacity(args.connections);
    for id in 0..args.connections {
        let mut worker = Worker::new(id, plan.clone());
        let ready = ready_tx.clone();
        let mut phase = phase_rx.clone();
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
            match go {
                Ok(Phase::Go { measure_from, end }) => Some(worker.run(measure_from, end).await),
                _ => None,
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
    let measure_from = now + args.warmup;
    let end = measure_from + args.duration;
    let _ = phase_tx.send(Phase::Go { measure_from, end });

    let mut total = Stats::default();
    let mut lost = 0;
    for handle in handles {
        match handle.await {
            Ok(Some(stats)) => total.merge(stats),
            _ => lost += 1,
        }
    }
    if lost > 0 {
        eprintln!("authload: {lost} worker(s) ended abnormally; their numbers are missing");
    }

    let report = Report {
        scenario: args.scenario,
        connections: args.connections,
        warmup: args.warmup,
        duration: args.duration,
        stats: total,
    };
    print!("{}", report.text());
    if args.json {
        println!("{}", report.json());
    }
    Ok(())
}

struct Report {
    scenario: Scenario,
    connections: usize,
    warmup: Duration,
    duration: Duration,
    stats: Stats,
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl Report {
    fn seconds(&self) -> f64 {
        self.duration.as_secs_f64()
    }

    fn text(&self) -> String {
        use std::fmt::Write;
        let s = &self.stats;
        let secs = self.seconds();
        let latency = s.latency();
        let requests = s.requests();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "scenario {} · {} connections · {:.1}s measured after {:.1}s warm-up",
            self.scenario.label(),
            self.connections,
            secs,
            self.warmup.as_secs_f64()
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
            "latency     p50 {:.3} ms · p99 {:.3} ms · p99.9 {:.3} ms · max {:.3} ms · mean {:.3} ms",
            ms(latency.quantile(0.50)),
            ms(latency.quantile(0.99)),
            ms(latency.quantile(0.999)),
            ms(latency.max),
            latency.mean() / 1000.0
        );
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
        let used: Vec<Op> = OPS
            .into_iter()
            .filter(|op| s.ops[op.index()].ok + s.ops[op.index()].errors > 0)
            .collect();
        if used.len() > 1 {
            let _ = writeln!(
                out,
                "{:<10} {:>9} {:>10} {:>7} {:>9} {:>9} {:>9}",
                "endpoint", "requests", "req/s", "errors", "p50 ms", "p99 ms", "p99.9 ms"
            );
            for op in used {
                let o = &s.ops[op.index()];
                let n = o.ok + o.errors;
                let _ = writeln!(
                    out,
                    "{:<10} {:>9} {:>10.1} {:>7} {:>9.3} {:>9.3} {:>9.3}",
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
        out
    }

    fn json(&self) -> String {
        let s = &self.stats;
        let secs = self.seconds();
        let latency = s.latency();
        let errors: serde_json::Map<String, serde_json::Value> = s
            .errors
            .iter()
            .map(|(k, n)| (k.to_string(), (*n).into()))
            .collect();
        let endpoints: serde_json::Map<String, serde_json::Value> = OPS
            .into_iter()
            .filter_map(|op| {
                let o = &s.ops[op.index()];
                let n = o.ok + o.errors;
                (n > 0).then(|| {
                    (
                        op.label().to_string(),
                        serde_json::json!({
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
            .collect();
        serde_json::json!({
            "scenario": self.scenario.label(),
            "connections": self.connections,
            "duration_s": secs,
            "warmup_s": self.warmup.as_secs_f64(),
            "requests": s.requests(),
            "ok": s.ok(),
            "rps": s.requests() as f64 / secs,
            "p50_ms": ms(latency.quantile(0.50)),
            "p99_ms": ms(latency.quantile(0.99)),
            "p999_ms": ms(latency.quantile(0.999)),
            "max_ms": ms(latency.max),
            "mean_ms": latency.mean() / 1000.0,
            "errors": errors,
            "reconnects": s.reconnects,
            "resyncs": s.resyncs,
            "endpoints": endpoints,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_bounded() {
        let mut previous = 0;
        for v in 0..200_000u64 {
            let b = bucket_of(v);
            assert!(b == previous || b == previous + 1, "gap at {v}");
            assert!(bucket_high(b) >= v);
            // Relative error stays under 1/64.
            assert!((bucket_high(b) - v) as f64 <= v as f64 / 64.0 + 1.0);
            previous = b;
        }
        assert_eq!(bucket_of(MAX_VALUE), BUCKETS - 1);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_high(BUCKETS - 1), MAX_VALUE);
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        for v in 1..=1000 {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), 500u64.max(bucket_high(bucket_of(500))));
        let p99 = h.quantile(0.99);
        assert!((990..=1000).contains(&p99), "{p99}");
        assert_eq!(h.quantile(1.0), 1000);
        assert_eq!(Histogram::default().quantile(0.5), 0);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn targets() {
        let t = parse_target("http://127.0.0.1:8000", "").unwrap();
        assert_eq!(t.connect, "127.0.0.1:8000");
        assert_eq!(t.prefix, "");
        let t = parse_target("http://example.com/api/", "/authd/").unwrap();
        assert_eq!(t.connect, "example.com:80");
        assert_eq!(t.authority, "example.com");
        assert_eq!(t.prefix, "/api/authd");
        let t = parse_target("http://[::1]:9000", "x").unwrap();
        assert_eq!(t.connect, "[::1]:9000");
        assert_eq!(t.prefix, "/x");
        assert!(parse_target("https://a:1", "").is_err());
        assert!(parse_target("http://a:1/?q", "").is_err());
    }

    #[test]
    fn token_body_is_json() {
        let body = token_body("a.b\"c");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["access_token"], "a.b\"c");
    }
}

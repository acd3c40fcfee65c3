//! The `revoke-seen` scenario: how long a second instance keeps accepting a
//! session after the first one acknowledged its revocation.
//!
//! With `--url A --url B`, each connection signs up a user at A and signs
//! in its share of `--pool` sessions there during setup. Then, per session:
//! authorize at B until it answers 200 (so B has the session cached, the
//! state a revocation must reach), revoke at A, and from the moment A's
//! 200 arrives authorize at B back to back until B answers 401. The sample
//! is the time from A's acknowledgement to the arrival of B's first 401 (an
//! upper bound: it includes that last request's round trip). A session B
//! still accepts `--seen-within` after the acknowledgement counts as never
//! seen. Samples acknowledged during `--warmup` are not counted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::Request;
use serde_json::json;
use tokio::time::Instant;

use crate::cli::Args;
use crate::client::Client;
use crate::exchange::{check, credentials_body, token_body};
use crate::histogram::Histogram;
use crate::ops::{ErrKind, Op};
use crate::run::pool_share;
use crate::stats::ms;
use crate::target::TargetPlan;

/// What the probes measured, merged over the connections.
#[derive(Default)]
pub struct Seen {
    /// Acknowledged revoke → first 401 at the other instance, µs.
    pub delay: Histogram,
    /// Revocations the other instance still accepted after `--seen-within`.
    pub never_seen: u64,
    /// Authorizes at the other instance answered 200 after the acknowledgement.
    pub stale_accepts: u64,
    /// Authorizes answered before the revocation (warming the other's cache).
    pub warm_ups: u64,
    /// Anything but the intended answer, by status (or transport/timeout).
    pub errors: BTreeMap<ErrKind, u64>,
    pub pool: usize,
    pub pool_left: u64,
    pub exhausted_connections: u64,
}

impl Seen {
    fn merge(&mut self, other: &Seen) {
        self.delay.merge(&other.delay);
        self.never_seen += other.never_seen;
        self.stale_accepts += other.stale_accepts;
        self.warm_ups += other.warm_ups;
        for (kind, n) in &other.errors {
            *self.errors.entry(*kind).or_default() += n;
        }
        self.pool += other.pool;
        self.pool_left += other.pool_left;
        self.exhausted_connections += other.exhausted_connections;
    }

    fn error(&mut self, kind: ErrKind) {
        *self.errors.entry(kind).or_default() += 1;
    }
}

struct Side {
    peer: Arc<TargetPlan>,
    client: Client,
}

impl Side {
    fn new(peer: Arc<TargetPlan>) -> Self {
        Side {
            client: Client::new(peer.addrs.clone()),
            peer,
        }
    }

    async fn send(
        &mut self,
        op: Op,
        body: Bytes,
        token: Option<&str>,
        timeout: Duration,
    ) -> Answer {
        let mut builder = Request::builder()
            .method(op.method())
            .uri(self.peer.uri(op))
            .header(HOST, self.peer.host.clone());
        if !body.is_empty() {
            builder = builder.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Some(token) = token {
            if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
                builder = builder.header(AUTHORIZATION, value);
            }
        }
        let Ok(request) = builder.body(Full::new(body)) else {
            return Answer::Lost(ErrKind::BadBody);
        };
        match tokio::time::timeout(timeout, self.client.send(request)).await {
            Ok(Ok((status, body))) => Answer::Http(status, body),
            Ok(Err(_)) => Answer::Lost(ErrKind::Transport),
            Err(_) => {
                self.client.drop_connection();
                Answer::Lost(ErrKind::Timeout)
            }
        }
    }
}

enum Answer {
    Http(u16, Bytes),
    Lost(ErrKind),
}

struct Probe {
    revoker: Side,
    observer: Side,
    credentials: Bytes,
    tokens: Vec<String>,
    timeout: Duration,
    seen_within: Duration,
    seen: Seen,
}

impl Probe {
    /// Signs up the probe's user at the revoking instance and signs in its
    /// share of sessions there (retrying what looks transient).
    async fn setup(&mut self, want: usize) -> Result<(), String> {
        let mut op = Op::Signup;
        let mut failures = 0u64;
        while self.tokens.len() < want {
            let answer = self
                .revoker
                .send(op, self.credentials.clone(), None, self.timeout)
                .await;
            let (status, body) = match answer {
                Answer::Http(status, body) => (status, body),
                Answer::Lost(_) => (0, Bytes::new()),
            };
            match check(op, status, &body) {
                (Ok(()), Some(token)) => {
                    self.tokens.push(token);
                    op = Op::Signin;
                }
                (Err(ErrKind::Status(409)), _) if op == Op::Signup => op = Op::Signin,
                (Err(ErrKind::Status(0 | 429 | 503)), _) if failures < 50 => {
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(20 * failures.min(10))).await;
                }
                (result, _) => {
                    return Err(format!(
                        "{} answered {status} ({result:?}): {}",
                        op.label(),
                        String::from_utf8_lossy(&body)
                    ))
                }
            }
        }
        self.seen.pool = self.tokens.len();
        Ok(())
    }

    async fn run(mut self, measure_from: Instant, end: Instant) -> Seen {
        while Instant::now() < end {
            let Some(token) = self.tokens.pop() else {
                self.seen.exhausted_connections += 1;
                break;
            };
            self.one(&token, measure_from).await;
        }
        self.seen.pool_left = self.tokens.len() as u64;
        self.seen
    }

    /// One session: warm the observer, revoke at the revoker, wait for the 401.
    async fn one(&mut self, token: &str, measure_from: Instant) {
        if !self.warm_up(token).await {
            return;
        }
        self.seen.warm_ups += 1;
        match self
            .revoker
            .send(Op::Revoke, token_body(token), None, self.timeout)
            .await
        {
            Answer::Http(200, _) => {}
            Answer::Http(status, _) => return self.seen.error(ErrKind::Status(status)),
            Answer::Lost(kind) => return self.seen.error(kind),
        }
        let acked = Instant::now();
        self.wait_for_refusal(token, acked, acked >= measure_from)
            .await;
    }

    /// Has the observer accept `token` (up to 20 tries), so that it holds
    /// the session before the revocation: what is measured is how a known
    /// session's revocation reaches another instance.
    async fn warm_up(&mut self, token: &str) -> bool {
        for _ in 0..20 {
            match self
                .observer
                .send(Op::Authorize, Bytes::new(), Some(token), self.timeout)
                .await
            {
                Answer::Http(200, _) => return true,
                Answer::Http(status, _) => self.seen.error(ErrKind::Status(status)),
                Answer::Lost(kind) => self.seen.error(kind),
            }
        }
        false
    }

    /// Asks the observer about `token`, revoked at `acked`, until it
    /// refuses it or `--seen-within` has passed; records the delay (when
    /// `counted`: acknowledged in the measured window).
    async fn wait_for_refusal(&mut self, token: &str, acked: Instant, counted: bool) {
        loop {
            let answer = self
                .observer
                .send(Op::Authorize, Bytes::new(), Some(token), self.timeout)
                .await;
            let now = Instant::now();
            match answer {
                Answer::Http(401, _) => {
                    if counted {
                        let micros = now.duration_since(acked).as_micros();
                        self.seen
                            .delay
                            .record(u64::try_from(micros).unwrap_or(u64::MAX));
                    }
                    return;
                }
                Answer::Http(200, _) => {
                    if counted {
                        self.seen.stale_accepts += 1;
                    }
                }
                Answer::Http(status, _) => self.seen.error(ErrKind::Status(status)),
                Answer::Lost(kind) => self.seen.error(kind),
            }
            if now.duration_since(acked) > self.seen_within {
                if counted {
                    self.seen.never_seen += 1;
                }
                return;
            }
        }
    }
}

/// Runs the scenario and returns the text summary and the JSON line.
pub async fn run(args: &Args) -> Result<(String, String), String> {
    check_args(args)?;
    let revoker = Arc::new(TargetPlan::resolve(&args.url[0], &args.base_path).await?);
    let observer = Arc::new(TargetPlan::resolve(&args.url[1], &args.base_path).await?);
    let run_id = format!("{:08x}", rand::random::<u32>());
    eprintln!(
        "authload: run {run_id} · revoke-seen · revoke at {} · observe at {} · {} connections · pool {}",
        revoker.label, observer.label, args.connections, args.pool
    );
    let setup_started = Instant::now();
    let probes = set_up_probes(args, &revoker, &observer, &run_id).await?;
    eprintln!(
        "authload: setup done in {:.2}s",
        setup_started.elapsed().as_secs_f64()
    );
    let now = Instant::now();
    let (measure_from, end) = (now + args.warmup, now + args.warmup + args.duration);
    let handles: Vec<_> = probes
        .into_iter()
        .map(|probe| tokio::spawn(probe.run(measure_from, end)))
        .collect();
    let mut seen = Seen::default();
    for handle in handles {
        match handle.await {
            Ok(one) => seen.merge(&one),
            Err(e) => return Err(format!("a probe stopped: {e}")),
        }
    }
    Ok((text(&seen, args), json_line(&seen, args)))
}

/// Refuses arguments the scenario cannot run with.
fn check_args(args: &Args) -> Result<(), String> {
    if args.url.len() != 2 {
        return Err(
            "revoke-seen needs exactly two --url: the revoking instance, then the observing one"
                .into(),
        );
    }
    if !args.threshold.is_empty() || args.rate.is_some() {
        return Err("revoke-seen takes neither --threshold nor --rate".into());
    }
    if args.connections == 0 || args.pool < args.connections {
        return Err("--connections must be at least 1 and --pool at least --connections".into());
    }
    Ok(())
}

/// One probe per connection, each with its user and its share of the pool
/// of sessions signed in, set up concurrently.
async fn set_up_probes(
    args: &Args,
    revoker: &Arc<TargetPlan>,
    observer: &Arc<TargetPlan>,
    run_id: &str,
) -> Result<Vec<Probe>, String> {
    let mut setups = Vec::with_capacity(args.connections);
    for id in 0..args.connections {
        let email = format!("load-{run_id}-{id}@example.com");
        let mut probe = Probe {
            revoker: Side::new(revoker.clone()),
            observer: Side::new(observer.clone()),
            credentials: credentials_body(&email, &args.password),
            tokens: Vec::new(),
            timeout: args.timeout,
            seen_within: args.seen_within,
            seen: Seen::default(),
        };
        let want = pool_share(args.pool, args.connections, id);
        setups.push(tokio::spawn(async move {
            probe.setup(want).await.map(|()| probe)
        }));
    }
    let mut probes = Vec::with_capacity(args.connections);
    for setup in setups {
        match setup.await {
            Ok(Ok(probe)) => probes.push(probe),
            Ok(Err(e)) => return Err(format!("setup failed: {e}")),
            Err(e) => return Err(format!("setup failed: {e}")),
        }
    }
    Ok(probes)
}

fn text(seen: &Seen, args: &Args) -> String {
    let d = &seen.delay;
    let errors = if seen.errors.is_empty() {
        "none".to_string()
    } else {
        let list: Vec<String> = seen
            .errors
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        list.join(", ")
    };
    format!(
        "scenario    revoke-seen · revoke at {} · observe at {}\n\
         samples     {} · never seen within {:?}: {}\n\
         delay ms    p50 {:.2} · p99 {:.2} · max {:.2} (acknowledged revoke → first 401 at the observer)\n\
         stale       {} authorizes accepted after the acknowledgement\n\
         pool        {} sessions · {} left · {} connection(s) ran out\n\
         errors      {errors}\n",
        args.url[0],
        args.url[1],
        d.total(),
        args.seen_within,
        seen.never_seen,
        ms(d.quantile(0.50)),
        ms(d.quantile(0.99)),
        ms(d.max()),
        seen.stale_accepts,
        seen.pool,
        seen.pool_left,
        seen.exhausted_connections,
    )
}

fn json_line(seen: &Seen, args: &Args) -> String {
    let d = &seen.delay;
    let errors: serde_json::Map<String, serde_json::Value> = seen
        .errors
        .iter()
        .map(|(k, n)| (k.to_string(), (*n).into()))
        .collect();
    json!({
        "scenario": "revoke-seen",
        "connections": args.connections,
        "duration_s": args.duration.as_secs_f64(),
        "samples": d.total(),
        "p50_ms": ms(d.quantile(0.50)),
        "p99_ms": ms(d.quantile(0.99)),
        "max_ms": ms(d.max()),
        "never_seen": seen.never_seen,
        "stale_accepts": seen.stale_accepts,
        "warm_ups": seen.warm_ups,
        "errors": errors,
        "pool": {
            "sessions": seen.pool,
            "left": seen.pool_left,
            "exhausted_connections": seen.exhausted_connections,
        },
    })
    .to_string()
}

//! Measured results: per operation (latency histogram, successes, errors),
//! errors by kind, and the counters the multi-tab and replay scenarios and
//! the open loop keep. One [`Stats`] per connection, merged per target and
//! for the whole run.

use std::collections::BTreeMap;

use crate::histogram::Histogram;
use crate::ops::{ErrKind, Op, OPS, OP_COUNT};

#[derive(Clone, Default)]
pub struct OpStats {
    pub latency: Histogram,
    pub ok: u64,
    pub errors: u64,
}

impl OpStats {
    pub fn requests(&self) -> u64 {
        self.ok + self.errors
    }
}

/// What the multi-tab storm saw: how each refresh answer relates to the
/// session's token chain.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct TabCounters {
    /// 200 with a new successor: this tab's refresh did the rotation.
    pub rotated: u64,
    /// 200 with the successor another tab already got for the same token
    /// (the server's grace window): nobody is logged out.
    pub grace_duplicates: u64,
    /// 401 for an already-rotated token: reuse detected, the session revoked.
    pub reuse_refused: u64,
    /// 401 for the session's latest token: revoked by an earlier reuse.
    pub revoked_refused: u64,
    /// 200 with a successor different from the one another tab got for the
    /// same token: the chain forked. Must stay 0.
    pub forked: u64,
    /// Sign-ins that started a new session after a revocation.
    pub resignins: u64,
}

impl TabCounters {
    fn merge(&mut self, o: &TabCounters) {
        self.rotated += o.rotated;
        self.grace_duplicates += o.grace_duplicates;
        self.reuse_refused += o.reuse_refused;
        self.revoked_refused += o.revoked_refused;
        self.forked += o.forked;
        self.resignins += o.resignins;
    }
}

/// What the replay attack saw.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct ReplayCounters {
    /// Rotated tokens presented again.
    pub replays: u64,
    /// ... and refused (401), as they must be.
    pub refused: u64,
    /// ... and accepted (any 2xx): a security failure.
    pub accepted: u64,
    /// The session's latest token refused after the replay: session revoked.
    pub sessions_revoked: u64,
    /// The session's latest token still accepted after the replay: a failure.
    pub sessions_alive: u64,
}

impl ReplayCounters {
    fn merge(&mut self, o: &ReplayCounters) {
        self.replays += o.replays;
        self.refused += o.refused;
        self.accepted += o.accepted;
        self.sessions_revoked += o.sessions_revoked;
        self.sessions_alive += o.sessions_alive;
    }
}

/// One connection's (or, merged, a target's or the whole run's) results.
#[derive(Default)]
pub struct Stats {
    pub ops: [OpStats; OP_COUNT],
    pub errors: BTreeMap<ErrKind, u64>,
    pub reconnects: u64,
    pub resyncs: u64,
    pub first_transport_error: Option<String>,
    /// Open loop: requests sent (their intended time in the window).
    pub sent: u64,
    /// Open loop: requests sent later than `--late-after` after their intended time.
    pub late: u64,
    pub tabs: TabCounters,
    pub replay: ReplayCounters,
    /// Connections whose pool of sessions to revoke ran out before the end.
    pub pool_exhausted: u64,
    /// Pooled sessions made in setup and not revoked by the end.
    pub pool_left: u64,
}

impl Stats {
    pub fn merge(&mut self, other: &Stats) {
        for (mine, theirs) in self.ops.iter_mut().zip(&other.ops) {
            mine.latency.merge(&theirs.latency);
            mine.ok += theirs.ok;
            mine.errors += theirs.errors;
        }
        for (kind, count) in &other.errors {
            *self.errors.entry(*kind).or_default() += count;
        }
        self.reconnects += other.reconnects;
        self.resyncs += other.resyncs;
        if self.first_transport_error.is_none() {
            self.first_transport_error = other.first_transport_error.clone();
        }
        self.sent += other.sent;
        self.late += other.late;
        self.tabs.merge(&other.tabs);
        self.replay.merge(&other.replay);
        self.pool_exhausted += other.pool_exhausted;
        self.pool_left += other.pool_left;
    }

    pub fn record(&mut self, op: Op, result: Result<(), ErrKind>, latency: Option<u64>) {
        let stats = &mut self.ops[op.index()];
        if let Some(micros) = latency {
            stats.latency.record(micros);
        }
        match result {
            Ok(()) => stats.ok += 1,
            Err(kind) => {
                stats.errors += 1;
                *self.errors.entry(kind).or_default() += 1;
            }
        }
    }

    pub fn op(&self, op: Op) -> &OpStats {
        &self.ops[op.index()]
    }

    pub fn requests(&self) -> u64 {
        self.ops.iter().map(OpStats::requests).sum()
    }

    pub fn ok(&self) -> u64 {
        self.ops.iter().map(|o| o.ok).sum()
    }

    pub fn error_count(&self) -> u64 {
        self.requests() - self.ok()
    }

    pub fn latency(&self) -> Histogram {
        let mut all = Histogram::default();
        for op in &self.ops {
            all.merge(&op.latency);
        }
        all
    }

    /// The operations this run actually sent, in a fixed order.
    pub fn used_ops(&self) -> Vec<Op> {
        OPS.into_iter()
            .filter(|op| self.op(*op).requests() > 0)
            .collect()
    }
}

/// Microseconds as milliseconds.
pub fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

//! The per-second picture of a run, shared by every connection: each
//! answer in the measured window lands in the second (since the window
//! opened) in which it arrived. Live progress reads it while the run goes
//! on; the time series (`--out`) and the HTML report read it at the end.
//!
//! One mutex for the whole timeline: it is held for a histogram increment
//! only, far below the cost of the HTTP exchange around it.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use crate::histogram::Histogram;
use crate::ops::{ErrKind, Op, OP_COUNT};

#[derive(Clone)]
pub struct SecondOp {
    pub latency: Histogram,
    pub ok: u64,
    pub errors: BTreeMap<ErrKind, u64>,
}

impl Default for SecondOp {
    fn default() -> Self {
        SecondOp {
            latency: Histogram::coarse(),
            ok: 0,
            errors: BTreeMap::new(),
        }
    }
}

impl SecondOp {
    pub fn requests(&self) -> u64 {
        self.ok + self.errors.values().sum::<u64>()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

#[derive(Clone, Default)]
pub struct Second {
    pub ops: [SecondOp; OP_COUNT],
}

impl Second {
    /// Every operation of this second together.
    pub fn all(&self) -> SecondOp {
        let mut all = SecondOp::default();
        for op in &self.ops {
            all.latency.merge(&op.latency);
            all.ok += op.ok;
            for (kind, n) in &op.errors {
                *all.errors.entry(*kind).or_default() += n;
            }
        }
        all
    }
}

#[derive(Default)]
pub struct Timeline {
    seconds: Mutex<Vec<Second>>,
}

impl Timeline {
    pub fn record(&self, second: usize, op: Op, result: Result<(), ErrKind>, latency: Option<u64>) {
        // A panic elsewhere cannot leave a histogram half-updated in a way
        // that matters for a report; keep going with the data.
        let mut seconds = self.seconds.lock().unwrap_or_else(PoisonError::into_inner);
        if seconds.len() <= second {
            seconds.resize_with(second + 1, Second::default);
        }
        let slot = &mut seconds[second].ops[op.index()];
        if let Some(micros) = latency {
            slot.latency.record(micros);
        }
        match result {
            Ok(()) => slot.ok += 1,
            Err(kind) => *slot.errors.entry(kind).or_default() += 1,
        }
    }

    /// All operations of second `second` together (empty if none arrived).
    pub fn second(&self, second: usize) -> SecondOp {
        let seconds = self.seconds.lock().unwrap_or_else(PoisonError::into_inner);
        seconds.get(second).map(Second::all).unwrap_or_default()
    }

    /// The whole timeline, at least `len` seconds long (quiet seconds at the
    /// end of the window are rows too: a stall must show).
    pub fn snapshot(&self, len: usize) -> Vec<Second> {
        let mut seconds = self
            .seconds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if seconds.len() < len {
            seconds.resize_with(len, Second::default);
        }
        seconds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_land_in_their_second() {
        let t = Timeline::default();
        t.record(0, Op::Refresh, Ok(()), Some(100));
        t.record(2, Op::Refresh, Err(ErrKind::Status(401)), Some(300));
        t.record(2, Op::Signin, Ok(()), Some(900));
        let all = t.snapshot(4);
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].ops[Op::Refresh.index()].ok, 1);
        assert_eq!(all[1].all().requests(), 0);
        let two = t.second(2);
        assert_eq!(two.requests(), 2);
        assert_eq!(two.errors.get(&ErrKind::Status(401)), Some(&1));
        assert_eq!(two.latency.max(), 900);
    }
}

//! The replay attack: each connection signs in, rotates its token twice,
//! then presents the first (rotated, two generations old, so outside any
//! grace window) again. The server must refuse it (401) and revoke the
//! session, so the latest token must be refused as well; then the cycle
//! starts over with a new sign-in.

use crate::ops::{ErrKind, Op};
use crate::stats::ReplayCounters;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    SignIn,
    FirstRotation,
    SecondRotation,
    Replay,
    Check,
}

/// One connection's position in the cycle.
pub struct ReplayCycle {
    stage: Stage,
    first: Option<String>,
    latest: Option<String>,
}

impl Default for ReplayCycle {
    fn default() -> Self {
        ReplayCycle {
            stage: Stage::SignIn,
            first: None,
            latest: None,
        }
    }
}

impl ReplayCycle {
    /// The next request and the token it presents.
    pub fn next(&self) -> (Op, Option<String>) {
        match self.stage {
            Stage::SignIn => (Op::Signin, None),
            Stage::FirstRotation | Stage::SecondRotation => (Op::Refresh, self.latest.clone()),
            Stage::Replay => (Op::Replay, self.first.clone()),
            Stage::Check => (Op::ReplayCheck, self.latest.clone()),
        }
    }

    /// Moves on after an answer (`status`: `None` when none came) and
    /// counts what the replay stages saw into `counters`.
    pub fn after(
        &mut self,
        op: Op,
        status: Option<u16>,
        result: Result<(), ErrKind>,
        token: Option<&str>,
        counters: &mut ReplayCounters,
    ) {
        let accepted = status.is_some_and(|s| (200..300).contains(&s));
        self.stage = match (self.stage, op, result) {
            (Stage::SignIn, Op::Signin, Ok(())) => {
                self.first = token.map(str::to_owned);
                self.latest = self.first.clone();
                Stage::FirstRotation
            }
            (Stage::FirstRotation, Op::Refresh, Ok(())) => {
                self.latest = token.map(str::to_owned);
                Stage::SecondRotation
            }
            (Stage::SecondRotation, Op::Refresh, Ok(())) => {
                self.latest = token.map(str::to_owned);
                Stage::Replay
            }
            (Stage::Replay, Op::Replay, _) if status.is_some() => {
                counters.replays += 1;
                if result.is_ok() {
                    counters.refused += 1;
                } else if accepted {
                    counters.accepted += 1;
                }
                Stage::Check
            }
            (Stage::Check, Op::ReplayCheck, _) if status.is_some() => {
                if result.is_ok() {
                    counters.sessions_revoked += 1;
                } else if accepted {
                    counters.sessions_alive += 1;
                }
                Stage::SignIn
            }
            // Anything unexpected (a failed sign-in or rotation, a lost
            // answer): start the cycle over.
            _ => Stage::SignIn,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cycle() {
        let mut c = ReplayCycle::default();
        let mut n = ReplayCounters::default();
        assert_eq!(c.next(), (Op::Signin, None));
        c.after(Op::Signin, Some(200), Ok(()), Some("t0"), &mut n);
        assert_eq!(c.next(), (Op::Refresh, Some("t0".into())));
        c.after(Op::Refresh, Some(200), Ok(()), Some("t1"), &mut n);
        c.after(Op::Refresh, Some(200), Ok(()), Some("t2"), &mut n);
        assert_eq!(c.next(), (Op::Replay, Some("t0".into())));
        c.after(Op::Replay, Some(401), Ok(()), None, &mut n);
        assert_eq!(c.next(), (Op::ReplayCheck, Some("t2".into())));
        c.after(
            Op::ReplayCheck,
            Some(200),
            Err(ErrKind::Status(200)),
            None,
            &mut n,
        );
        assert_eq!(c.next(), (Op::Signin, None));
        assert_eq!(
            n,
            ReplayCounters {
                replays: 1,
                refused: 1,
                accepted: 0,
                sessions_revoked: 0,
                sessions_alive: 1
            }
        );
    }
}

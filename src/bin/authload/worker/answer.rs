//! What an answer means for the connection's role: the chain's token kept
//! or dropped, the tab session or replay cycle moved on, and the
//! scenario's counters.

use super::{Answer, Role, Worker};
use crate::exchange::check;
use crate::ops::{ErrKind, Op};

impl Worker {
    /// Sorts an answer for the scenario and updates the token state.
    pub(super) fn absorb(
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
}

//! The multi-tab storm: many connections ("tabs") share a few sessions and
//! all refresh them at once, as browser tabs of one user do. A
//! [`TabSession`] holds the session's current token for its tabs and sorts
//! every refresh answer: the rotation itself, a grace-window duplicate
//! (the same successor another tab already got), a reuse refusal (an
//! already-rotated token presented outside the grace window: the server
//! revokes the session), or a fork (two different successors for one
//! token, which must never happen). After a revocation one tab signs in
//! again and the storm goes on with the new session.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;

use crate::ops::ErrKind;
use crate::stats::TabCounters;

/// How many rotations back a session remembers which successor each token got.
const REMEMBERED: usize = 64;

/// What a tab should send next.
pub enum TabAction {
    Refresh(String),
    Signin,
    /// Another tab is signing in again; try again shortly.
    Wait,
}

/// What one refresh or sign-in answer meant for the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TabEvent {
    Rotated,
    GraceDuplicate,
    ReuseRefused,
    RevokedRefused,
    Forked,
    Resigned,
    Nothing,
}

impl TabEvent {
    pub fn count(self, counters: &mut TabCounters) {
        match self {
            TabEvent::Rotated => counters.rotated += 1,
            TabEvent::GraceDuplicate => counters.grace_duplicates += 1,
            TabEvent::ReuseRefused => counters.reuse_refused += 1,
            TabEvent::RevokedRefused => counters.revoked_refused += 1,
            TabEvent::Forked => counters.forked += 1,
            TabEvent::Resigned => counters.resignins += 1,
            TabEvent::Nothing => {}
        }
    }
}

#[derive(Default)]
struct TabState {
    token: Option<String>,
    /// (rotated token, the successor it got), newest last.
    successors: VecDeque<(String, String)>,
    /// Tokens that were current when their session was found revoked: a
    /// late 200 for one is a rotation that happened before the revocation.
    retired: VecDeque<String>,
    resigning: bool,
}

pub struct TabSession {
    pub email: String,
    pub credentials: Bytes,
    state: Mutex<TabState>,
}

impl TabSession {
    pub fn new(email: String, credentials: Bytes) -> Self {
        TabSession {
            email,
            credentials,
            state: Mutex::new(TabState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, TabState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn next(&self) -> TabAction {
        let mut state = self.state();
        match &state.token {
            Some(token) => TabAction::Refresh(token.clone()),
            None if !state.resigning => {
                state.resigning = true;
                TabAction::Signin
            }
            None => TabAction::Wait,
        }
    }

    /// Sorts the answer to a refresh that presented `presented`.
    pub fn after_refresh(
        &self,
        presented: &str,
        result: Result<(), ErrKind>,
        successor: Option<&str>,
    ) -> TabEvent {
        let mut state = self.state();
        let known = state
            .successors
            .iter()
            .find(|(rotated, _)| rotated == presented)
            .map(|(_, successor)| successor.clone());
        let current = state.token.as_deref() == Some(presented);
        let retired = state.retired.iter().any(|t| t == presented);
        match (result, successor) {
            (Ok(()), Some(new)) => match known {
                Some(earlier) if earlier == new => TabEvent::GraceDuplicate,
                Some(_) => TabEvent::Forked,
                None if current => {
                    state
                        .successors
                        .push_back((presented.to_owned(), new.to_owned()));
                    if state.successors.len() > REMEMBERED {
                        state.successors.pop_front();
                    }
                    state.token = Some(new.to_owned());
                    TabEvent::Rotated
                }
                None if retired => TabEvent::Rotated,
                // A token older than what is remembered.
                None if state.token.as_deref() == Some(new) => TabEvent::GraceDuplicate,
                None => TabEvent::Forked,
            },
            (Err(ErrKind::Status(401)), _) if known.is_some() => TabEvent::ReuseRefused,
            (Err(ErrKind::Status(401)), _) => {
                if current {
                    // The session is gone (an earlier reuse revoked it).
                    state.token = None;
                    state.retired.push_back(presented.to_owned());
                    if state.retired.len() > REMEMBERED {
                        state.retired.pop_front();
                    }
                }
                TabEvent::RevokedRefused
            }
            _ => TabEvent::Nothing,
        }
    }

    /// Takes the token of a sign-in (`None`: it failed, let a tab retry).
    pub fn after_signin(&self, token: Option<&str>) -> TabEvent {
        let mut state = self.state();
        state.resigning = false;
        match token {
            Some(token) => {
                state.token = Some(token.to_owned());
                TabEvent::Resigned
            }
            None => TabEvent::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(token: &str) -> TabSession {
        let s = TabSession::new("a@example.com".into(), Bytes::new());
        s.after_signin(Some(token));
        s
    }

    #[test]
    fn sorts_a_storm() {
        let s = session("t0");
        assert!(matches!(s.next(), TabAction::Refresh(t) if t == "t0"));
        assert_eq!(s.after_refresh("t0", Ok(()), Some("t1")), TabEvent::Rotated);
        assert_eq!(
            s.after_refresh("t0", Ok(()), Some("t1")),
            TabEvent::GraceDuplicate
        );
        assert_eq!(s.after_refresh("t0", Ok(()), Some("tX")), TabEvent::Forked);
        assert_eq!(s.after_refresh("t1", Ok(()), Some("t2")), TabEvent::Rotated);
        assert_eq!(
            s.after_refresh("t0", Err(ErrKind::Status(401)), None),
            TabEvent::ReuseRefused
        );
        assert_eq!(
            s.after_refresh("t2", Err(ErrKind::Status(401)), None),
            TabEvent::RevokedRefused
        );
        assert!(matches!(s.next(), TabAction::Signin));
        assert!(matches!(s.next(), TabAction::Wait));
        assert_eq!(s.after_signin(Some("u0")), TabEvent::Resigned);
        assert!(matches!(s.next(), TabAction::Refresh(t) if t == "u0"));
        // t2 had rotated just before the revocation; its answer came late.
        assert_eq!(s.after_refresh("t2", Ok(()), Some("t3")), TabEvent::Rotated);
        assert_eq!(
            s.after_refresh("t1", Ok(()), Some("t2")),
            TabEvent::GraceDuplicate
        );
        assert_eq!(
            s.after_refresh("u0", Err(ErrKind::Timeout), None),
            TabEvent::Nothing
        );
    }
}

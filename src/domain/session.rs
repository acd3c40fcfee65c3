//! Sessions and the refresh state machine.
//!
//! A sign-in starts a session. The session remembers only the generation of
//! its one live access token, so memory grows with live sessions, not with
//! the number of refreshes. Refreshing generation `g` rotates the session to
//! `g + 1`; the rules for what an older generation means (a duplicate inside
//! the grace window, or token theft) live in [`Session::decide_refresh`] so
//! they can be tested without any I/O.

use uuid::Uuid;

/// Identifies a user; the `sub` claim of every access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct UserId(pub Uuid);

/// Identifies a session; the `sid` claim of every access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub Uuid);

impl UserId {
    pub fn new_random() -> Self {
        UserId(Uuid::new_v4())
    }
}

impl SessionId {
    pub fn new_random() -> Self {
        SessionId(Uuid::new_v4())
    }
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The durable state of one session (a row of the `sessions` table, and an
/// entry of `TokenActor`'s cache).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    /// The user's integer id: the old service's `users.id` for an account
    /// adopted from it, a number from authd's own range otherwise. Read
    /// from the user's row, never from a token.
    pub user_int_id: i64,
    /// Generation of the one access token of this session that is live.
    pub generation: u32,
    /// When that generation was issued (its `iat`, in milliseconds). A
    /// duplicate refresh inside the grace window re-creates exactly the same
    /// token from it, so the successor needs no storage of its own.
    pub issued_at_ms: i64,
    /// End of the absolute lifetime: no refresh after this instant.
    pub expires_at_ms: i64,
    pub revoked: bool,
}

/// A session without its id: what `TokenActor`'s cache stores under the id.
/// Kept small on purpose (48 bytes): the cache holds one per live session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionState {
    pub user_id: UserId,
    pub user_int_id: i64,
    pub issued_at_ms: i64,
    pub expires_at_ms: i64,
    pub generation: u32,
    pub revoked: bool,
}

impl SessionState {
    pub fn with_id(self, id: SessionId) -> Session {
        Session {
            id,
            user_id: self.user_id,
            user_int_id: self.user_int_id,
            generation: self.generation,
            issued_at_ms: self.issued_at_ms,
            expires_at_ms: self.expires_at_ms,
            revoked: self.revoked,
        }
    }

    /// Folds in a change learned from the database. Generations only move
    /// forward and revocation is permanent, so changes may arrive in any
    /// order, more than once, and still leave the same state.
    pub fn merge(&mut self, change: &SessionChange) {
        if change.generation > self.generation {
            self.generation = change.generation;
            self.issued_at_ms = change.issued_at_ms;
        }
        self.revoked |= change.revoked;
    }
}

/// The part of a session that changes after creation: what a rotation or
/// revocation on one instance tells the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionChange {
    pub id: SessionId,
    pub generation: u32,
    pub issued_at_ms: i64,
    pub revoked: bool,
}

/// What a refresh presenting generation `presented` of a session should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshDecision {
    /// The live token: rotate to the next generation.
    Rotate,
    /// The token just rotated away, presented again inside the grace window
    /// (two tabs, a client retry): answer with the current token again.
    GraceDuplicate,
    /// An already-rotated token outside the grace window: assume it was
    /// stolen and revoke the whole session.
    Reuse,
    /// The session is revoked or past its lifetime.
    Refused,
}

impl Session {
    pub fn start(user_id: UserId, user_int_id: i64, now_ms: i64, lifetime_ms: i64) -> Self {
        Session {
            id: SessionId::new_random(),
            user_id,
            user_int_id,
            generation: 0,
            issued_at_ms: now_ms,
            expires_at_ms: now_ms.saturating_add(lifetime_ms),
            revoked: false,
        }
    }

    pub fn is_live(&self, now_ms: i64) -> bool {
        !self.revoked && now_ms < self.expires_at_ms
    }

    /// Whether an (unexpired, correctly signed) access token of generation
    /// `generation` may be used now.
    pub fn authorizes(&self, generation: u32, now_ms: i64) -> bool {
        self.is_live(now_ms) && generation == self.generation
    }

    pub fn decide_refresh(&self, presented: u32, now_ms: i64, grace_ms: i64) -> RefreshDecision {
        if !self.is_live(now_ms) {
            return RefreshDecision::Refused;
        }
        if presented == self.generation {
            return RefreshDecision::Rotate;
        }
        if presented > self.generation {
            // A generation this session never issued: only a forged or
            // foreign token can carry it. Refuse without side effects.
            return RefreshDecision::Refused;
        }
        let just_rotated = presented + 1 == self.generation;
        if just_rotated && now_ms - self.issued_at_ms < grace_ms {
            RefreshDecision::GraceDuplicate
        } else {
            RefreshDecision::Reuse
        }
    }

    pub fn state(&self) -> SessionState {
        SessionState {
            user_id: self.user_id,
            user_int_id: self.user_int_id,
            issued_at_ms: self.issued_at_ms,
            expires_at_ms: self.expires_at_ms,
            generation: self.generation,
            revoked: self.revoked,
        }
    }

    /// The session after a rotation issued at `now_ms`.
    pub fn rotated(&self, now_ms: i64) -> Session {
        Session {
            generation: self.generation + 1,
            issued_at_ms: now_ms,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session::start(UserId::new_random(), 7, 1_000_000, 60_000)
    }

    #[test]
    fn rotation_and_reuse() {
        let s0 = session();
        assert_eq!(
            s0.decide_refresh(0, 1_000_100, 5_000),
            RefreshDecision::Rotate
        );
        let s1 = s0.rotated(1_000_100);
        assert!(s1.authorizes(1, 1_000_200));
        assert!(!s1.authorizes(0, 1_000_200));
        assert_eq!(
            s1.decide_refresh(0, 1_000_200, 5_000),
            RefreshDecision::GraceDuplicate
        );
        assert_eq!(
            s1.decide_refresh(0, 1_006_000, 5_000),
            RefreshDecision::Reuse
        );
        assert_eq!(s1.decide_refresh(0, 1_000_200, 0), RefreshDecision::Reuse);
        assert_eq!(
            s1.decide_refresh(7, 1_000_200, 5_000),
            RefreshDecision::Refused
        );
        let s2 = s1.rotated(1_000_300);
        // Two generations back is reuse even inside the window.
        assert_eq!(
            s2.decide_refresh(0, 1_000_400, 5_000),
            RefreshDecision::Reuse
        );
    }

    #[test]
    fn merge_is_order_independent() {
        let base = session().state();
        let rotated = SessionChange {
            id: SessionId::new_random(),
            generation: 2,
            issued_at_ms: 1_000_500,
            revoked: false,
        };
        let revoked = SessionChange {
            generation: 1,
            issued_at_ms: 1_000_100,
            revoked: true,
            ..rotated
        };
        let mut a = base;
        a.merge(&rotated);
        a.merge(&revoked);
        let mut b = base;
        b.merge(&revoked);
        b.merge(&rotated);
        b.merge(&rotated);
        assert_eq!(a, b);
        assert_eq!(
            (a.generation, a.issued_at_ms, a.revoked),
            (2, 1_000_500, true)
        );
        let id = SessionId::new_random();
        assert_eq!(a.with_id(id).state(), a);
    }

    #[test]
    fn revoked_or_expired_sessions_refuse() {
        let mut s = session();
        assert_eq!(
            s.decide_refresh(0, 1_060_000, 5_000),
            RefreshDecision::Refused
        );
        s.revoked = true;
        assert_eq!(
            s.decide_refresh(0, 1_000_100, 5_000),
            RefreshDecision::Refused
        );
        assert!(!s.authorizes(0, 1_000_100));
    }
}

//! [`SessionCache`]: `TokenActor`'s in-memory copy of the *committed* state
//! of every session it has seen, and the only way to change it.
//!
//! The map is private: each kind of change has a method of its own, named
//! for where the change comes from, so a new kind of change is a new method
//! here (and the reader of this file sees every way the cache can move):
//!
//! | change | method | caller |
//! |---|---|---|
//! | a session this instance created, now durable | [`SessionCache::insert_committed`] | `TokenActor` (issue), `TokenHandle::issue_committed` (sign-up) |
//! | the changes of a batch this instance committed | [`SessionCache::merge_batch`] | the [writer](super::writer) |
//! | changes another instance committed | [`SessionCache::merge_from_peer`] | the [feed](super::feed) |
//! | revocations of a password change or account deletion this instance committed | [`SessionCache::merge_account_revocations`] | `TokenHandle::sessions_revoked` (`UserActor`: password change, account deletion) |
//! | a session the database no longer has | [`SessionCache::forget`] | `TokenActor` (revoke conflict) |
//! | sessions no longer live (expired or revoked) | [`SessionCache::prune`] | `TokenActor` (prune timer) |
//! | a session read from the database on a miss | [`SessionCache::fold_loaded`] | `TokenActor` (read-through) |
//!
//! Changes commute (generations only grow, revocation is permanent; see
//! [`SessionState::merge`]), so they may arrive in any order. Every change
//! of membership republishes the cache-size gauge.

use dashmap::DashMap;

use crate::domain::{Session, SessionChange, SessionId, SessionState};
use crate::telemetry::metrics as m;

/// The committed state of every cached session, by id.
#[derive(Default)]
pub struct SessionCache {
    map: DashMap<SessionId, SessionState>,
}

impl SessionCache {
    pub fn new() -> Self {
        let cache = SessionCache::default();
        cache.publish_size();
        cache
    }

    /// The cached committed state of session `id`.
    pub fn get(&self, id: SessionId) -> Option<Session> {
        self.map.get(&id).map(|s| s.with_id(id))
    }

    /// Sessions cached.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// A session this instance created, once its row is durable.
    pub fn insert_committed(&self, session: &Session) {
        self.map.insert(session.id, session.state());
        self.publish_size();
    }

    /// The final states of the sessions a batch of this instance's rotated
    /// or revoked. Sessions not cached are left alone: a later read-through
    /// loads their committed state.
    pub fn merge_batch(&self, changes: &[SessionChange]) {
        self.merge_cached(changes);
    }

    /// Changes another instance committed (the change feed and its
    /// catch-up read). Like [`merge_batch`](Self::merge_batch), only
    /// sessions already cached are touched.
    pub fn merge_from_peer(&self, changes: &[SessionChange]) {
        self.merge_cached(changes);
    }

    /// The sessions a password change or an account deletion revoked, in
    /// a transaction of this instance's own (outside the session writer),
    /// now committed. Like the batches', only cached sessions are touched.
    pub fn merge_account_revocations(&self, changes: &[SessionChange]) {
        self.merge_cached(changes);
    }

    /// Drops a session the database no longer has (pruned).
    pub fn forget(&self, id: SessionId) {
        self.map.remove(&id);
        self.publish_size();
    }

    /// Drops sessions whose lifetime ended by `now_ms`, and revoked ones:
    /// memory follows *live* sessions. One presented again is read through
    /// (and refused) like any miss. Returns how many left.
    pub fn prune(&self, now_ms: i64) -> usize {
        let before = self.map.len();
        self.map
            .retain(|_, s| s.expires_at_ms > now_ms && !s.revoked);
        self.publish_size();
        before.saturating_sub(self.map.len())
    }

    /// Folds in what a read of session `id` from the database found:
    /// merged rather than overwritten, since a change folded in while the
    /// read was in flight may be newer than what was read. A session the
    /// database no longer has (`None`) leaves the cache.
    pub fn fold_loaded(&self, id: SessionId, loaded: Option<&Session>) {
        match loaded {
            Some(loaded) => {
                let change = SessionChange {
                    id,
                    generation: loaded.generation,
                    issued_at_ms: loaded.issued_at_ms,
                    revoked: loaded.revoked,
                };
                self.map
                    .entry(id)
                    .and_modify(|cached| cached.merge(&change))
                    .or_insert(loaded.state());
            }
            None => {
                self.map.remove(&id);
            }
        }
        self.publish_size();
    }

    fn merge_cached(&self, changes: &[SessionChange]) {
        for change in changes {
            if let Some(mut cached) = self.map.get_mut(&change.id) {
                cached.merge(change);
            }
        }
    }

    fn publish_size(&self) {
        metrics::gauge!(m::CACHE_SESSIONS).set(self.map.len() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{now_ms, UserId};

    fn session(expires_in_ms: i64) -> Session {
        Session::start(UserId::new_random(), 1, now_ms(), expires_in_ms)
    }

    #[test]
    fn merges_touch_only_cached_sessions() {
        let cache = SessionCache::new();
        let cached = session(60_000);
        let absent = session(60_000);
        cache.insert_committed(&cached);
        let change = |s: &Session| SessionChange {
            id: s.id,
            generation: s.generation + 1,
            issued_at_ms: s.issued_at_ms + 1,
            revoked: true,
        };
        cache.merge_batch(&[change(&cached), change(&absent)]);
        cache.merge_from_peer(&[change(&absent)]);
        assert_eq!(cache.len(), 1);
        let now = cache.get(cached.id).expect("cached");
        assert!(now.revoked);
        assert_eq!(now.generation, cached.generation + 1);
        assert!(cache.get(absent.id).is_none());
    }

    #[test]
    fn fold_loaded_merges_never_rewinds_and_forgets_missing() {
        let cache = SessionCache::new();
        let original = session(60_000);
        cache.insert_committed(&original);
        cache.merge_batch(&[SessionChange {
            id: original.id,
            generation: original.generation + 2,
            issued_at_ms: original.issued_at_ms + 2,
            revoked: false,
        }]);
        // An older read must not undo the newer change.
        cache.fold_loaded(original.id, Some(&original));
        assert_eq!(
            cache.get(original.id).expect("cached").generation,
            original.generation + 2
        );
        cache.fold_loaded(original.id, None);
        assert!(cache.get(original.id).is_none());
    }

    #[test]
    fn prune_and_forget() {
        let cache = SessionCache::new();
        let live = session(60_000);
        let dead = session(-1);
        let revoked = session(60_000);
        cache.insert_committed(&live);
        cache.insert_committed(&dead);
        cache.insert_committed(&revoked);
        cache.merge_batch(&[SessionChange {
            id: revoked.id,
            generation: revoked.generation,
            issued_at_ms: revoked.issued_at_ms,
            revoked: true,
        }]);
        assert_eq!(cache.prune(now_ms()), 2);
        assert!(cache.get(live.id).is_some());
        cache.forget(live.id);
        assert!(cache.is_empty());
    }
}

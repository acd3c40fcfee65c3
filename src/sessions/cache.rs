//! [`SessionCache`]: `TokenActor`'s in-memory copy of the *committed* state
//! of the sessions it uses, at most `capacity` of them, and the only way to
//! change it.
//!
//! The map is private: each kind of change has a method of its own, named
//! for where the change comes from, so a new kind of change is a new method
//! here (and the reader of this file sees every way the cache can move):
//!
//! | change | method | caller |
//! |---|---|---|
//! | a session this instance created, now durable | [`SessionCache::insert_committed`] | `TokenActor` (issue), `TokenHandle::issue_committed` (sign-up) |
//! | the changes of a batch this instance committed | [`SessionCache::merge_batch`] | the [writer](super::writer) |
//! | changes another instance committed, as announced | [`SessionCache::merge_from_peer`] | the [feed](super::feed) |
//! | changes read from the change log | [`SessionCache::merge_caught_up`] | the [feed](super::feed) |
//! | the change log lost changes: start again | [`SessionCache::resync`] | the [feed](super::feed) |
//! | revocations of a password change or account deletion this instance committed | [`SessionCache::merge_account_revocations`] | `TokenHandle::sessions_revoked` (`UserActor`: password change, account deletion) |
//! | a session the database no longer has | [`SessionCache::forget`] | `TokenActor` (revoke conflict) |
//! | sessions no longer live (expired or revoked) | [`SessionCache::prune`] | `TokenActor` (prune timer) |
//! | a session read from the database on a miss | [`SessionCache::read_through`] | `TokenActor` (read-through) |
//!
//! Changes commute (generations only grow, revocation is permanent; see
//! [`SessionState::merge`]), so they may arrive in any order. A change for
//! a session that is not cached is dropped: the next use reads the
//! committed state through (and [`guard`](super::guard) keeps a read in
//! flight from caching a state older than the dropped change).
//!
//! Bounded: admitting a session beyond `capacity` evicts one not used
//! lately ([`eviction`](super::eviction)); an evicted session is simply read
//! through again on its next use, and changes to it are dropped meanwhile,
//! so eviction never makes an answer wrong, only slower. Admissions take one
//! lock (the queue's) and evict before releasing it, so the size never
//! exceeds the capacity; hits take none but the map's.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use dashmap::mapref::entry::Entry as MapEntry;
use dashmap::DashMap;

use super::eviction::{EvictionQueue, Look};
use super::guard::{Guards, LoadGuard};
use crate::domain::{Session, SessionChange, SessionId, SessionState};
use crate::store::{Store, StoreError};
use crate::telemetry::metrics as m;

/// Loads of one session spoiled in a row (by changes dropped while each
/// was in flight) before a read-through gives up with 503.
const MAX_SPOILED_LOADS: usize = 8;

struct Entry {
    state: SessionState,
    /// The admission this entry belongs to (see [`EvictionQueue`]).
    stamp: u64,
    /// Used since the eviction queue last looked at it.
    used: AtomicBool,
}

/// The committed state of the cached sessions, by id.
pub struct SessionCache {
    map: DashMap<SessionId, Entry>,
    capacity: usize,
    /// Admission lock: held to insert into the map and to evict. Lock
    /// order: this, then the map's shard locks (never the other way).
    queue: Mutex<EvictionQueue>,
    guards: Guards,
    /// Catch-up reads of the change log folded in (a test hook reads it).
    catch_ups: AtomicU64,
    hits: metrics::Counter,
    misses: metrics::Counter,
    evictions: metrics::Counter,
    size: metrics::Gauge,
}

impl SessionCache {
    /// A cache holding at most `capacity` sessions (at least one).
    pub fn new(capacity: usize) -> Self {
        let cache = SessionCache {
            map: DashMap::new(),
            capacity: capacity.max(1),
            queue: Mutex::new(EvictionQueue::default()),
            guards: Guards::default(),
            catch_ups: AtomicU64::new(0),
            hits: metrics::counter!(m::CACHE_HITS),
            misses: metrics::counter!(m::CACHE_MISSES),
            evictions: metrics::counter!(m::CACHE_EVICTIONS),
            size: metrics::gauge!(m::CACHE_SESSIONS),
        };
        metrics::gauge!(m::CACHE_CAPACITY).set(cache.capacity as f64);
        cache.publish_size(&cache.admission());
        cache
    }

    /// The cached committed state of session `id` (a hit marks it used).
    pub fn get(&self, id: SessionId) -> Option<Session> {
        match self.map.get(&id) {
            Some(entry) => {
                self.hits.increment(1);
                if !entry.used.load(Ordering::Relaxed) {
                    entry.used.store(true, Ordering::Relaxed);
                }
                Some(entry.state.with_id(id))
            }
            None => {
                self.misses.increment(1);
                None
            }
        }
    }

    /// Sessions cached.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Most sessions cached at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// A session this instance created, once its row is durable.
    pub fn insert_committed(&self, session: &Session) {
        let mut queue = self.admission();
        match self.map.entry(session.id) {
            MapEntry::Occupied(mut cached) => cached.get_mut().state = session.state(),
            MapEntry::Vacant(slot) => {
                let stamp = queue.admit(session.id);
                slot.insert(Entry {
                    state: session.state(),
                    stamp,
                    used: AtomicBool::new(true),
                });
            }
        }
        self.make_room(&mut queue);
    }

    /// The final states of the sessions a batch of this instance's rotated
    /// or revoked.
    pub fn merge_batch(&self, changes: &[SessionChange]) {
        self.merge_cached(changes);
    }

    /// Changes another instance committed, as its notification announced
    /// them.
    pub fn merge_from_peer(&self, changes: &[SessionChange]) {
        self.merge_cached(changes);
    }

    /// Changes a catch-up read of the change log found (any instance's).
    pub fn merge_caught_up(&self, changes: &[SessionChange]) {
        self.merge_cached(changes);
        self.catch_ups.fetch_add(1, Ordering::SeqCst);
    }

    /// The change log no longer holds every change since the last read:
    /// forget every session (each is read through again on its next use)
    /// and spoil every load in flight.
    pub fn resync(&self) {
        let mut queue = self.admission();
        self.guards.spoil_all();
        self.map.clear();
        queue.clear();
        self.catch_ups.fetch_add(1, Ordering::SeqCst);
        self.publish_size(&queue);
    }

    /// How many catch-up reads (and resyncs) were folded in.
    pub fn catch_ups(&self) -> u64 {
        self.catch_ups.load(Ordering::SeqCst)
    }

    /// The sessions a password change or an account deletion revoked, in
    /// a transaction of this instance's own (outside the session writer),
    /// now committed.
    pub fn merge_account_revocations(&self, changes: &[SessionChange]) {
        self.merge_cached(changes);
    }

    /// Drops a session the database no longer has (pruned).
    pub fn forget(&self, id: SessionId) {
        self.map.remove(&id);
        self.publish_size(&self.admission());
    }

    /// Drops sessions whose lifetime ended by `now_ms`, and revoked ones:
    /// memory follows *live* sessions. One presented again is read through
    /// (and refused) like any miss. Returns how many left.
    pub fn prune(&self, now_ms: i64) -> usize {
        let before = self.map.len();
        self.map
            .retain(|_, e| e.state.expires_at_ms > now_ms && !e.state.revoked);
        self.publish_size(&self.admission());
        before.saturating_sub(self.map.len())
    }

    /// Reads session `id` from `store` and folds it in: merged into the
    /// cached state if there is one (a change folded in meanwhile may be
    /// newer than what was read), admitted otherwise, unless a change for
    /// it was dropped while the read was in flight (then it is read
    /// again). Returns the session's state, `None` if the database no
    /// longer has it (and then neither has the cache).
    pub async fn read_through(
        &self,
        store: &dyn Store,
        id: SessionId,
    ) -> Result<Option<Session>, StoreError> {
        for _ in 0..MAX_SPOILED_LOADS {
            let guard = self.guards.take(id);
            let loaded = store.load_session(id).await?;
            let Some(loaded) = loaded else {
                self.forget(id);
                return Ok(None);
            };
            if let Some(state) = self.fold_loaded(&loaded, guard) {
                return Ok(Some(state.with_id(id)));
            }
            tracing::debug!(session_id = %id, "a change arrived during a read-through; reading again");
        }
        Err(StoreError::unavailable(
            "session changes faster than it can be read",
        ))
    }

    /// The state to use after folding in `loaded`, or `None` if the load
    /// was spoiled.
    fn fold_loaded(&self, loaded: &Session, guard: LoadGuard) -> Option<SessionState> {
        let change = SessionChange {
            id: loaded.id,
            generation: loaded.generation,
            issued_at_ms: loaded.issued_at_ms,
            revoked: loaded.revoked,
        };
        let mut queue = self.admission();
        let state = match self.map.entry(loaded.id) {
            MapEntry::Occupied(mut cached) => {
                cached.get_mut().state.merge(&change);
                cached.get().state
            }
            MapEntry::Vacant(slot) => {
                // Checked under the shard lock that `merge_cached` takes to
                // drop a change: either it saw this entry, or this sees its
                // bump.
                if !self.guards.holds(loaded.id, guard) {
                    return None;
                }
                let stamp = queue.admit(loaded.id);
                slot.insert(Entry {
                    state: loaded.state(),
                    stamp,
                    used: AtomicBool::new(true),
                });
                loaded.state()
            }
        };
        self.make_room(&mut queue);
        Some(state)
    }

    fn merge_cached(&self, changes: &[SessionChange]) {
        for change in changes {
            match self.map.entry(change.id) {
                MapEntry::Occupied(mut cached) => cached.get_mut().state.merge(change),
                // Bumped while the shard lock is held (by `slot`).
                MapEntry::Vacant(slot) => {
                    self.guards.spoil(change.id);
                    drop(slot);
                }
            }
        }
    }

    fn admission(&self) -> MutexGuard<'_, EvictionQueue> {
        // The queue stays consistent across a panic (at worst it holds
        // stale items), so a poisoned lock is used as is.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Evicts until the size is within the capacity, then publishes it.
    fn make_room(&self, queue: &mut EvictionQueue) {
        while self.map.len() > self.capacity {
            let victim = queue.victim(|id, stamp| match self.map.get(&id) {
                Some(e) if e.stamp == stamp => {
                    if e.used.swap(false, Ordering::Relaxed) {
                        Look::Used
                    } else {
                        Look::Idle
                    }
                }
                _ => Look::Gone,
            });
            let Some((id, stamp)) = victim else { break };
            if self.map.remove_if(&id, |_, e| e.stamp == stamp).is_some() {
                self.evictions.increment(1);
            }
        }
        queue.compact(self.capacity, |id, stamp| {
            self.map.get(&id).is_some_and(|e| e.stamp == stamp)
        });
        self.publish_size(queue);
    }

    /// Publishes the size. Only under the admission lock (the caller
    /// proves it holds it), where no admission is half done, so the gauge
    /// never shows more than the capacity.
    fn publish_size(&self, _locked: &EvictionQueue) {
        self.size.set(self.map.len() as f64);
    }
}

#[cfg(test)]
mod tests;

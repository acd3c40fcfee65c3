use super::*;
use crate::domain::{now_ms, UserId};

fn session(expires_in_ms: i64) -> Session {
    Session::start(UserId::new_random(), 1, now_ms(), expires_in_ms)
}

fn change(s: &Session, generation: u32, revoked: bool) -> SessionChange {
    SessionChange {
        id: s.id,
        generation,
        issued_at_ms: s.issued_at_ms + i64::from(generation),
        revoked,
    }
}

#[test]
fn merges_touch_only_cached_sessions() {
    let cache = SessionCache::new(16);
    let cached = session(60_000);
    let absent = session(60_000);
    cache.insert_committed(&cached);
    let bump = |s: &Session| change(s, s.generation + 1, true);
    cache.merge_batch(&[bump(&cached), bump(&absent)]);
    cache.merge_from_peer(&[bump(&absent)]);
    assert_eq!(cache.len(), 1);
    let now = cache.get(cached.id).expect("cached");
    assert!(now.revoked);
    assert_eq!(now.generation, cached.generation + 1);
    assert!(cache.get(absent.id).is_none());
}

#[test]
fn a_load_never_rewinds_a_cached_session() {
    let cache = SessionCache::new(16);
    let original = session(60_000);
    cache.insert_committed(&original);
    cache.merge_batch(&[change(&original, original.generation + 2, false)]);
    let guard = cache.guards.take(original.id);
    let state = cache.fold_loaded(&original, guard).expect("not spoiled");
    assert_eq!(state.generation, original.generation + 2);
    assert_eq!(
        cache.get(original.id).expect("cached").generation,
        original.generation + 2
    );
}

#[test]
fn a_change_dropped_during_a_load_spoils_it() {
    let cache = SessionCache::new(16);
    let s = session(60_000);
    let guard = cache.guards.take(s.id);
    // While the load is in flight another instance revokes the session;
    // the change is dropped (not cached)...
    cache.merge_from_peer(&[change(&s, 0, true)]);
    // ...so the stale state read before it must not be cached.
    assert_eq!(cache.fold_loaded(&s, guard), None);
    assert!(cache.is_empty());
    // A fresh load (after the change) is admitted.
    let mut revoked = s.clone();
    revoked.revoked = true;
    let guard = cache.guards.take(s.id);
    assert!(
        cache
            .fold_loaded(&revoked, guard)
            .expect("admitted")
            .revoked
    );
    assert!(cache.get(s.id).expect("cached").revoked);
}

#[test]
fn a_resync_empties_the_cache_and_spoils_loads_in_flight() {
    let cache = SessionCache::new(16);
    let (kept, loading) = (session(60_000), session(60_000));
    cache.insert_committed(&kept);
    let guard = cache.guards.take(loading.id);
    cache.resync();
    assert!(cache.is_empty());
    assert_eq!(cache.fold_loaded(&loading, guard), None);
    assert_eq!(cache.catch_ups(), 1);
}

#[test]
fn the_size_never_exceeds_the_capacity_and_idle_sessions_go_first() {
    let cache = SessionCache::new(4);
    let s: Vec<Session> = (0..4).map(|_| session(60_000)).collect();
    for one in &s {
        cache.insert_committed(one);
    }
    // Every session is admitted as used, so the first eviction takes one
    // pass over the queue (clearing every flag) and then the oldest.
    cache.insert_committed(&session(60_000));
    assert_eq!(cache.len(), 4);
    assert!(cache.get(s[0].id).is_none());
    // Sessions 1 and 2 are used again, 3 is not: 3 goes next.
    for one in [&s[1], &s[2]] {
        assert!(cache.get(one.id).is_some());
    }
    cache.insert_committed(&session(60_000));
    assert_eq!(cache.len(), 4);
    assert!(cache.get(s[1].id).is_some());
    assert!(cache.get(s[2].id).is_some());
    assert!(cache.get(s[3].id).is_none());
}

#[test]
fn many_admissions_stay_within_the_capacity() {
    let cache = SessionCache::new(100);
    for i in 0..10_000 {
        let s = session(60_000);
        cache.insert_committed(&s);
        if i % 3 == 0 {
            let _ = cache.get(s.id);
        }
        assert!(cache.len() <= 100);
    }
    assert_eq!(cache.len(), 100);
    // The queue is compacted: stale items do not pile up.
    assert!(cache.admission().len() <= 2 * 1024);
}

#[test]
fn prune_and_forget() {
    let cache = SessionCache::new(16);
    let live = session(60_000);
    let dead = session(-1);
    let revoked = session(60_000);
    cache.insert_committed(&live);
    cache.insert_committed(&dead);
    cache.insert_committed(&revoked);
    cache.merge_batch(&[change(&revoked, revoked.generation, true)]);
    assert_eq!(cache.prune(now_ms()), 2);
    assert!(cache.get(live.id).is_some());
    cache.forget(live.id);
    assert!(cache.is_empty());
}

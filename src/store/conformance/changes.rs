//! Conformance scenarios of the catch-up read ([`Store::changes_after`]).

use super::{change, new_user, sorted};
use crate::domain::{Session, SessionOrigin};
use crate::store::{ChangeCursor, ChangeRead, SessionChange, SessionWrite, Store};

/// The changes after `cursor` (sorted) and the next position; fails the
/// test if the store asks for a resync.
pub(crate) async fn changes_after(
    store: &dyn Store,
    cursor: &ChangeCursor,
) -> (Vec<SessionChange>, ChangeCursor) {
    match store.changes_after(cursor).await.expect("changes after") {
        ChangeRead::Changes { changes, next } => (sorted(changes), next),
        ChangeRead::Lost { why, .. } => panic!("unexpected resync: {why}"),
    }
}

/// A read returns the current state of each session changed since the
/// position, once; creations are not changes; the next read starts after.
pub(crate) async fn changes_after_reads_each_change_once_from_the_position(store: &dyn Store) {
    let user = new_user("dan@example.com");
    store.insert_user(&user).await.expect("insert");
    let [early, rotated, late, untouched] =
        std::array::from_fn(|_| Session::start(user.id, 0, 1_000, 60_000));
    let start = store.change_cursor().await.expect("cursor");
    let creates: Vec<_> = [&early, &rotated, &late, &untouched]
        .into_iter()
        .map(|s| SessionWrite::Create(s.clone(), SessionOrigin::default()))
        .collect();
    store.write_sessions(&creates).await.expect("create");
    assert_eq!(changes_after(store, &start).await.0, Vec::new());
    store
        .write_sessions(&[SessionWrite::Revoke {
            id: early.id,
            revoked_at_ms: 1_999,
        }])
        .await
        .expect("early");
    let (first, cursor) = changes_after(store, &start).await;
    assert_eq!(first, vec![change(&early, 0, 1_000, true)]);
    store
        .write_sessions(&[
            SessionWrite::Rotate {
                id: rotated.id,
                from_generation: 0,
                issued_at_ms: 2_000,
            },
            SessionWrite::Revoke {
                id: late.id,
                revoked_at_ms: 2_500,
            },
        ])
        .await
        .expect("late");
    // Rotated twice: read once, in its latest state.
    store
        .write_sessions(&[SessionWrite::Rotate {
            id: rotated.id,
            from_generation: 1,
            issued_at_ms: 2_600,
        }])
        .await
        .expect("again");
    let (second, cursor) = changes_after(store, &cursor).await;
    assert_eq!(
        second,
        sorted(vec![
            change(&rotated, 2, 2_600, false),
            change(&late, 0, 1_000, true),
        ])
    );
    assert_eq!(changes_after(store, &cursor).await.0, Vec::new());
    // From the start: every change, each session once.
    assert_eq!(changes_after(store, &start).await.0.len(), 3);
    // A position taken now sees nothing before it.
    let now = store.change_cursor().await.expect("cursor");
    assert_eq!(changes_after(store, &now).await.0, Vec::new());
}

//! Conformance scenarios for what a user does to their own sessions and
//! account: listing, sparing one session in a user-wide revocation,
//! changing the password, deleting the account.

use super::{change, new_user, sorted};
use crate::domain::{Session, SessionCursor, SessionOrigin, UserId};
use crate::store::{SessionWrite, Store, WriteOutcome};

fn origin(address: &str, agent: &str) -> SessionOrigin {
    SessionOrigin {
        client_address: Some(address.into()),
        user_agent: Some(agent.into()),
    }
}

/// Live sessions only, newest first, a page at a time, with their origin;
/// never another user's.
pub(crate) async fn sessions_are_listed_newest_first_by_page(store: &dyn Store) {
    let user = new_user("lister@example.com");
    let other = new_user("other-lister@example.com");
    store.insert_user(&user).await.expect("insert");
    store.insert_user(&other).await.expect("insert");
    let now = 1_000_000;
    let old = Session::start(user.id, 1, now - 3_000, 60_000);
    let middle = Session::start(user.id, 1, now - 2_000, 60_000);
    let newest = Session::start(user.id, 1, now - 1_000, 60_000);
    let revoked = Session::start(user.id, 1, now - 500, 60_000);
    let expired = Session::start(user.id, 1, now - 90_000, 60_000);
    let foreign = Session::start(other.id, 2, now - 100, 60_000);
    let mut writes: Vec<SessionWrite> = [&old, &middle, &newest, &revoked, &expired, &foreign]
        .iter()
        .map(|s| SessionWrite::Create((*s).clone(), origin("10.0.0.1", "agent/1")))
        .collect();
    writes[1] = SessionWrite::Create(middle.clone(), SessionOrigin::default());
    store.write_sessions(&writes).await.expect("create");
    store
        .write_sessions(&[
            SessionWrite::Revoke {
                id: revoked.id,
                revoked_at_ms: now,
            },
            SessionWrite::Rotate {
                id: newest.id,
                from_generation: 0,
                issued_at_ms: now - 10,
            },
        ])
        .await
        .expect("revoke, rotate");

    let all = store
        .list_sessions(user.id, now, None, 10)
        .await
        .expect("list");
    let ids: Vec<_> = all.iter().map(|s| s.id).collect();
    assert_eq!(ids, vec![newest.id, middle.id, old.id]);
    assert_eq!(all[0].generation, 1);
    assert_eq!(all[0].issued_at_ms, now - 10);
    assert_eq!(all[0].created_at_ms, now - 1_000);
    assert_eq!(all[0].expires_at_ms, newest.expires_at_ms);
    assert_eq!(all[0].origin, origin("10.0.0.1", "agent/1"));
    assert_eq!(all[1].origin, SessionOrigin::default());

    let first = store
        .list_sessions(user.id, now, None, 2)
        .await
        .expect("page 1");
    assert_eq!(first.len(), 2);
    let cursor = first[1].cursor(user.id);
    let second = store
        .list_sessions(user.id, now, Some(cursor), 2)
        .await
        .expect("page 2");
    assert_eq!(
        second.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![old.id]
    );
    // A cursor only positions: the user is the one asked for.
    let theirs = store
        .list_sessions(other.id, now, Some(cursor), 10)
        .await
        .expect("other user's page");
    assert!(theirs.iter().all(|s| s.id == foreign.id), "{theirs:?}");
    let past_all = SessionCursor {
        created_at_ms: 0,
        ..cursor
    };
    assert!(store
        .list_sessions(user.id, now, Some(past_all), 10)
        .await
        .expect("empty page")
        .is_empty());
    assert!(store
        .list_sessions(UserId::new_random(), now, None, 10)
        .await
        .expect("unknown user")
        .is_empty());
}

/// `RevokeUser` with `except` spares that one session; two in one batch
/// that spare different sessions together spare none.
pub(crate) async fn revoke_user_can_spare_one_session(store: &dyn Store) {
    let user = new_user("sparer@example.com");
    store.insert_user(&user).await.expect("insert");
    let keep = Session::start(user.id, 1, 1_000, 60_000);
    let gone = Session::start(user.id, 1, 1_000, 60_000);
    store
        .write_sessions(&[
            SessionWrite::Create(keep.clone(), SessionOrigin::default()),
            SessionWrite::Create(gone.clone(), SessionOrigin::default()),
        ])
        .await
        .expect("create");
    let done = store
        .write_sessions(&[SessionWrite::RevokeUser {
            user_id: user.id,
            revoked_at_ms: 2_000,
            except: Some(keep.id),
        }])
        .await
        .expect("revoke others");
    assert_eq!(done.outcomes, vec![WriteOutcome::Applied]);
    assert_eq!(done.changes, vec![change(&gone, 0, 1_000, true)]);
    assert!(!store.load_session(keep.id).await.unwrap().unwrap().revoked);

    let a = Session::start(user.id, 1, 3_000, 60_000);
    store
        .write_sessions(&[SessionWrite::Create(a.clone(), SessionOrigin::default())])
        .await
        .expect("create");
    let done = store
        .write_sessions(&[
            SessionWrite::RevokeUser {
                user_id: user.id,
                revoked_at_ms: 4_000,
                except: Some(keep.id),
            },
            SessionWrite::RevokeUser {
                user_id: user.id,
                revoked_at_ms: 4_000,
                except: Some(a.id),
            },
        ])
        .await
        .expect("revoke twice");
    assert_eq!(
        sorted(done.changes),
        sorted(vec![
            change(&keep, 0, 1_000, true),
            change(&a, 0, 3_000, true)
        ])
    );
}

/// The new hash, the old service's credentials closed and every live
/// session revoked, together; an unknown user changes nothing.
pub(crate) async fn password_change_revokes_every_session(store: &dyn Store) {
    let user = new_user("changer@example.com");
    let bystander = new_user("bystander@example.com");
    store.insert_user(&user).await.expect("insert");
    store.insert_user(&bystander).await.expect("insert");
    let s1 = Session::start(user.id, 1, 1_000, 60_000);
    let s2 = Session::start(user.id, 1, 1_000, 60_000);
    let ended = Session::start(user.id, 1, 1_000, 60_000);
    let theirs = Session::start(bystander.id, 2, 1_000, 60_000);
    store
        .write_sessions(
            &[&s1, &s2, &ended, &theirs]
                .map(|s| SessionWrite::Create(s.clone(), SessionOrigin::default())),
        )
        .await
        .expect("create");
    store
        .write_sessions(&[SessionWrite::Revoke {
            id: ended.id,
            revoked_at_ms: 1_500,
        }])
        .await
        .expect("revoke");
    let before = store.change_cursor().await.expect("cursor");
    let changes = store
        .change_password(user.id, "$argon2id$new", 2_000)
        .await
        .expect("change")
        .expect("user exists");
    assert_eq!(
        sorted(changes),
        sorted(vec![
            change(&s1, 0, 1_000, true),
            change(&s2, 0, 1_000, true)
        ])
    );
    let stored = store
        .find_user_by_id(user.id)
        .await
        .expect("find")
        .expect("present");
    assert_eq!(stored.password_hash, "$argon2id$new");
    assert!(stored.legacy_tokens_closed);
    assert_eq!(stored.email, user.email.as_str());
    assert!(
        !store
            .load_session(theirs.id)
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    // The catch-up read after a feed outage sees the revocations.
    let (logged, _) = super::changes_after(store, &before).await;
    assert_eq!(
        logged,
        sorted(vec![
            change(&s1, 0, 1_000, true),
            change(&s2, 0, 1_000, true)
        ])
    );
    assert!(store
        .change_password(UserId::new_random(), "x", 3_000)
        .await
        .expect("unknown")
        .is_none());
}

/// The user goes, the e-mail is free, and the revoked sessions stay behind
/// (without their origin) for the catch-up read, until pruned.
pub(crate) async fn deleting_a_user_leaves_revoked_tombstones(store: &dyn Store) {
    let user = new_user("leaver@example.com");
    store.insert_user(&user).await.expect("insert");
    let live = Session::start(user.id, 1, 1_000, 60_000);
    let ended = Session::start(user.id, 1, 1_000, 60_000);
    store
        .write_sessions(&[
            SessionWrite::Create(live.clone(), origin("10.1.1.1", "ua")),
            SessionWrite::Create(ended.clone(), SessionOrigin::default()),
            SessionWrite::Revoke {
                id: ended.id,
                revoked_at_ms: 1_500,
            },
        ])
        .await
        .expect("create");
    let before = store.change_cursor().await.expect("cursor");
    let changes = store
        .delete_account(user.id, 2_000)
        .await
        .expect("delete")
        .expect("user exists");
    assert!(
        changes.contains(&change(&live, 0, 1_000, true)),
        "{changes:?}"
    );
    assert!(store
        .find_user_by_id(user.id)
        .await
        .expect("find")
        .is_none());
    assert!(store
        .find_user_by_email(user.email.as_str())
        .await
        .expect("find")
        .is_none());
    let tomb = store
        .load_session(live.id)
        .await
        .expect("load")
        .expect("tombstone");
    assert!(tomb.revoked);
    // The catch-up read sees the user's sessions revoked (the one revoked
    // before too, since its origin was stripped).
    let (logged, _) = super::changes_after(store, &before).await;
    assert!(
        logged.contains(&change(&live, 0, 1_000, true)),
        "{logged:?}"
    );
    assert!(logged.iter().all(|c| c.revoked), "{logged:?}");
    // No session can be started for the deleted user.
    let late = Session::start(user.id, 1, 3_000, 60_000);
    let done = store
        .write_sessions(&[SessionWrite::Create(late, SessionOrigin::default())])
        .await
        .expect("create");
    assert_eq!(done.outcomes, vec![WriteOutcome::Conflict]);
    // The address signs up again as a new user.
    let again = new_user("leaver@example.com");
    store.insert_user(&again).await.expect("sign up again");
    assert!(store
        .list_sessions(again.id, 2_000, None, 10)
        .await
        .expect("list")
        .is_empty());
    assert!(store
        .delete_account(user.id, 3_000)
        .await
        .expect("again")
        .is_none());
    // Tombstones leave with their lifetime.
    assert_eq!(store.prune_sessions(61_001).await.expect("prune"), 2);
    assert!(store.load_session(live.id).await.expect("load").is_none());
}

//! The conformance suite: what every [`Store`] backend must do, written
//! once and run against each backend.
//!
//! A backend's tests implement [`Fixture`] (where a fresh database lives,
//! how to open it, how to clean up) and invoke [`suite!`] with it, which
//! generates one `#[tokio::test]` per scenario below. Each scenario gets a
//! fresh, empty, migrated store. Behaviour only one backend has (the
//! PostgreSQL change feed, SQLite's `:memory:`, ...) is tested next to that
//! backend, not here.

use super::{
    BatchOutcome, NewUser, SessionChange, SessionWrite, SigningKeyRecord, Store, StoreError,
    WriteOutcome,
};
use crate::domain::{Email, Session, SessionId, SessionOrigin, UserId};
use WriteOutcome::{Applied, Conflict};

mod accounts;
mod changes;
mod signup;
pub(crate) use accounts::{
    deleting_a_user_leaves_revoked_tombstones, password_change_revokes_every_session,
    revoke_user_can_spare_one_session, sessions_are_listed_newest_first_by_page,
};
pub(crate) use changes::{changes_after, changes_after_reads_each_change_once_from_the_position};
pub(crate) use signup::sign_up_stores_user_and_session_together;

/// What a backend's tests provide for the suite to run on that backend.
pub(crate) trait Fixture: Sized {
    type Store: Store;
    /// What [`Store::kind`] answers.
    const KIND: &'static str;
    /// How many migrations the backend has (all are applied on open).
    const MIGRATIONS: usize;
    /// How many sessions [`Store::prune_sessions`] deletes per statement.
    const PRUNE_CHUNK: usize;

    /// A fresh place for a database that does not exist yet.
    fn fresh() -> Self;
    /// Opens the store there, creating and migrating it on first use.
    async fn open(&self) -> Self::Store;
    /// The rows of `schema_migrations`.
    async fn applied_migrations(store: &Self::Store) -> i64;
    /// Deletes the database (best effort).
    async fn remove(self);
}

/// Runs `scenario` on a fresh store of `F`, then removes the database.
pub(crate) async fn run<F: Fixture>(scenario: impl AsyncFnOnce(&dyn Store)) {
    let fixture = F::fresh();
    let store = fixture.open().await;
    scenario(&store).await;
    drop(store);
    fixture.remove().await;
}

/// One `#[tokio::test]` per scenario of this module, on the [`Fixture`]
/// given: `conformance::suite!(MyFixture);` inside a backend's tests.
macro_rules! suite {
    ($fixture:ty) => {
        $crate::store::conformance::suite!(@each $fixture;
            users,
            sign_up_stores_user_and_session_together,
            sessions_and_batches,
            revoke_user_revokes_only_that_users_live_sessions,
            changes_after_reads_each_change_once_from_the_position,
            signing_keys_round_trip_oldest_first,
            signing_secret_is_stored_once,
            sessions_are_listed_newest_first_by_page,
            revoke_user_can_spare_one_session,
            password_change_revokes_every_session,
            deleting_a_user_leaves_revoked_tombstones
        );

        #[tokio::test]
        async fn prune_deletes_expired_sessions_only() {
            use $crate::store::conformance::{self, Fixture};
            conformance::run::<$fixture>(async |store| {
                let chunk = <$fixture as Fixture>::PRUNE_CHUNK;
                conformance::prune_deletes_expired_sessions_only(store, chunk).await
            })
            .await;
        }

        #[tokio::test]
        async fn creates_and_migrates_once() {
            use $crate::store::conformance::{self, Fixture};
            let fixture = <$fixture as Fixture>::fresh();
            conformance::creates_and_migrates_once(&fixture).await;
            fixture.remove().await;
        }
    };
    (@each $fixture:ty; $($scenario:ident),+) => {$(
        #[tokio::test]
        async fn $scenario() {
            use $crate::store::conformance;
            conformance::run::<$fixture>(conformance::$scenario).await;
        }
    )+};
}
pub(crate) use suite;

pub(crate) fn new_user(email: &str) -> NewUser {
    NewUser {
        id: UserId::new_random(),
        email: Email::parse(email).expect("email"),
        password_hash: "$argon2id$fake".into(),
    }
}

pub(crate) fn change(
    session: &Session,
    generation: u32,
    issued_at_ms: i64,
    revoked: bool,
) -> SessionChange {
    SessionChange {
        id: session.id,
        generation,
        issued_at_ms,
        revoked,
    }
}

fn sorted(mut changes: Vec<SessionChange>) -> Vec<SessionChange> {
    changes.sort_by_key(|c| c.id.0);
    changes
}

fn key(kid: &str, created_at_ms: i64) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: kid.into(),
        algorithm: "EdDSA".into(),
        private_key: format!("private-{kid}"),
        public_key: format!("public-{kid}"),
        created_at_ms,
    }
}

/// The first open creates the database (and a missing directory) and
/// applies every migration; opening again applies none and keeps the data.
pub(crate) async fn creates_and_migrates_once<F: Fixture>(fixture: &F) {
    let store = fixture.open().await;
    assert_eq!(store.kind(), F::KIND);
    store.ping().await.expect("ping");
    assert_eq!(F::applied_migrations(&store).await, F::MIGRATIONS as i64);
    store
        .insert_user(&new_user("dave@example.com"))
        .await
        .expect("insert");
    drop(store);
    let store = fixture.open().await;
    assert_eq!(store.kind(), F::KIND);
    store.ping().await.expect("ping");
    assert_eq!(F::applied_migrations(&store).await, F::MIGRATIONS as i64);
    // Data survived the reopen.
    let email = Email::parse("dave@example.com").expect("email");
    assert!(store
        .find_user_by_email(email.as_str())
        .await
        .expect("find")
        .is_some());
}

pub(crate) async fn users(store: &dyn Store) {
    let user = new_user("Alice@Example.com");
    store.insert_user(&user).await.expect("insert");
    let found = store
        .find_user_by_email(Email::parse("alice@example.COM").expect("email").as_str())
        .await
        .expect("find")
        .expect("present");
    assert_eq!(found.id, user.id);
    assert_eq!(found.password_hash, user.password_hash);
    let missing = store
        .find_user_by_email(Email::parse("bob@example.com").expect("email").as_str())
        .await
        .expect("find");
    assert!(missing.is_none());
    let twin = new_user("alice@example.com");
    assert!(matches!(
        store.insert_user(&twin).await,
        Err(StoreError::EmailTaken)
    ));
    // A colliding id is not an e-mail problem.
    let same_id = NewUser {
        email: Email::parse("other@example.com").expect("email"),
        ..user.clone()
    };
    assert!(matches!(
        store.insert_user(&same_id).await,
        Err(StoreError::Fault(f)) if !f.is_unavailable()
    ));
}

pub(crate) async fn sessions_and_batches(store: &dyn Store) {
    let user = new_user("carol@example.com");
    store.insert_user(&user).await.expect("insert");

    let a = Session::start(user.id, 0, 1_000, 60_000);
    let b = Session::start(user.id, 0, 1_000, 60_000);
    let outcomes = store
        .write_sessions(&[
            SessionWrite::Create(a.clone(), SessionOrigin::default()),
            SessionWrite::Create(b.clone(), SessionOrigin::default()),
        ])
        .await
        .expect("create");
    // Creates are not changes.
    assert!(outcomes.changes.is_empty());
    assert_eq!(outcomes.outcomes, vec![Applied; 2]);
    assert_eq!(
        store.load_session(a.id).await.expect("load"),
        Some(a.clone())
    );
    assert_eq!(
        store
            .load_session(SessionId::new_random())
            .await
            .expect("load"),
        None
    );

    let c = Session::start(user.id, 0, 2_000, 60_000);
    let orphan = Session::start(UserId::new_random(), 0, 2_000, 60_000);
    let missing = SessionId::new_random();
    let batch = [
        SessionWrite::Rotate {
            id: a.id,
            from_generation: 0,
            issued_at_ms: 2_000,
        },
        // Stale: `a` is at generation 0 before this batch, and the rotation
        // above moves it to 1.
        SessionWrite::Rotate {
            id: a.id,
            from_generation: 0,
            issued_at_ms: 2_001,
        },
        SessionWrite::Revoke {
            id: b.id,
            revoked_at_ms: 2_002,
        },
        SessionWrite::Create(c.clone(), SessionOrigin::default()),
        SessionWrite::Revoke {
            id: missing,
            revoked_at_ms: 2_003,
        },
        SessionWrite::Rotate {
            id: missing,
            from_generation: 0,
            issued_at_ms: 2_004,
        },
        // Revoking twice is fine.
        SessionWrite::Revoke {
            id: b.id,
            revoked_at_ms: 2_005,
        },
        SessionWrite::Rotate {
            id: b.id,
            from_generation: 0,
            issued_at_ms: 2_006,
        },
        // A duplicate id and a user that does not exist.
        SessionWrite::Create(a.clone(), SessionOrigin::default()),
        SessionWrite::Create(orphan, SessionOrigin::default()),
        // A chained rotation in the same batch.
        SessionWrite::Rotate {
            id: a.id,
            from_generation: 1,
            issued_at_ms: 2_007,
        },
    ];
    let done = store.write_sessions(&batch).await.expect("batch");
    assert_eq!(
        done.outcomes,
        vec![
            Applied, Conflict, Applied, Applied, Conflict, Conflict, Applied, Applied, Conflict,
            Conflict, Applied
        ]
    );
    // One entry per changed session, in its final state.
    assert_eq!(
        sorted(done.changes),
        sorted(vec![
            SessionChange {
                id: a.id,
                generation: 2,
                issued_at_ms: 2_007,
                revoked: false,
            },
            SessionChange {
                id: b.id,
                generation: 1,
                issued_at_ms: 2_006,
                revoked: true,
            },
        ])
    );
    let a2 = store.load_session(a.id).await.expect("load").expect("a");
    assert_eq!(
        (a2.generation, a2.issued_at_ms, a2.revoked),
        (2, 2_007, false)
    );
    // Rotations run before revocations inside a batch, so the rotation of
    // `b` listed after its revocation still applied; `b` ends revoked.
    let b2 = store.load_session(b.id).await.expect("load").expect("b");
    assert!(b2.revoked);
    assert_eq!(b2.generation, 1);
    assert_eq!(store.load_session(c.id).await.expect("load"), Some(c));

    // Revoked sessions refuse rotation; revoking again stays applied.
    let outcomes = store
        .write_sessions(&[
            SessionWrite::Rotate {
                id: b.id,
                from_generation: b2.generation,
                issued_at_ms: 3_000,
            },
            SessionWrite::Revoke {
                id: b.id,
                revoked_at_ms: 3_001,
            },
        ])
        .await
        .expect("batch");
    assert_eq!(outcomes.outcomes, vec![Conflict, Applied]);
    // Revoking a revoked session changes nothing, but reports its state.
    assert_eq!(
        outcomes.changes,
        vec![SessionChange {
            id: b.id,
            generation: 1,
            issued_at_ms: 2_006,
            revoked: true,
        }]
    );
    assert_eq!(
        store.write_sessions(&[]).await.expect("empty"),
        BatchOutcome::default()
    );
}

pub(crate) async fn revoke_user_revokes_only_that_users_live_sessions(store: &dyn Store) {
    let alice = new_user("alice@example.com");
    let bob = new_user("bob@example.com");
    store.insert_user(&alice).await.expect("insert");
    store.insert_user(&bob).await.expect("insert");
    let s1 = Session::start(alice.id, 0, 1_000, 60_000);
    let s2 = Session::start(alice.id, 0, 1_000, 60_000);
    let s3 = Session::start(alice.id, 0, 1_000, 60_000);
    let t1 = Session::start(bob.id, 0, 1_000, 60_000);
    store
        .write_sessions(&[
            SessionWrite::Create(s1.clone(), SessionOrigin::default()),
            SessionWrite::Create(s2.clone(), SessionOrigin::default()),
            SessionWrite::Create(s3.clone(), SessionOrigin::default()),
            SessionWrite::Create(t1.clone(), SessionOrigin::default()),
        ])
        .await
        .expect("create");
    store
        .write_sessions(&[SessionWrite::Revoke {
            id: s3.id,
            revoked_at_ms: 1_500,
        }])
        .await
        .expect("revoke");

    let s4 = Session::start(alice.id, 0, 2_000, 60_000);
    let before = store.change_cursor().await.expect("cursor");
    let done = store
        .write_sessions(&[
            SessionWrite::Rotate {
                id: s1.id,
                from_generation: 0,
                issued_at_ms: 2_000,
            },
            SessionWrite::RevokeUser {
                user_id: alice.id,
                revoked_at_ms: 2_100,
                except: None,
            },
            // Created in the same batch: creates apply first, so the user
            // revocation catches it too.
            SessionWrite::Create(s4.clone(), SessionOrigin::default()),
            SessionWrite::RevokeUser {
                user_id: alice.id,
                revoked_at_ms: 2_200,
                except: None,
            },
            SessionWrite::Rotate {
                id: t1.id,
                from_generation: 0,
                issued_at_ms: 2_050,
            },
            // Rotations apply before user revocations.
            SessionWrite::Rotate {
                id: s2.id,
                from_generation: 0,
                issued_at_ms: 2_300,
            },
        ])
        .await
        .expect("batch");
    assert_eq!(done.outcomes, vec![Applied; 6]);
    // Not `s3`, which was already revoked; not `s4`'s creation.
    assert_eq!(
        sorted(done.changes.clone()),
        sorted(vec![
            change(&s1, 1, 2_000, true),
            change(&s2, 1, 2_300, true),
            change(&s4, 0, 2_000, true),
            change(&t1, 1, 2_050, false),
        ])
    );
    for s in [&s1, &s2, &s3, &s4] {
        let stored = store
            .load_session(s.id)
            .await
            .expect("load")
            .expect("session");
        assert!(stored.revoked, "{:?}", s.id);
    }
    let t = store.load_session(t1.id).await.expect("load").expect("t1");
    assert!(!t.revoked);
    // The change log lists what the batch changed, and not `s3` again.
    let (logged, _) = changes_after(store, &before).await;
    assert_eq!(logged, sorted(done.changes.clone()));
    let s3_now = store.load_session(s3.id).await.expect("load").expect("s3");
    assert!(s3_now.revoked);

    // Nothing left to revoke: still applied, no changes.
    let done = store
        .write_sessions(&[SessionWrite::RevokeUser {
            user_id: alice.id,
            revoked_at_ms: 3_000,
            except: None,
        }])
        .await
        .expect("again");
    assert_eq!(done.outcomes, vec![Applied]);
    assert!(done.changes.is_empty());
}

/// `chunk`: how many sessions the backend deletes per statement.
pub(crate) async fn prune_deletes_expired_sessions_only(store: &dyn Store, chunk: usize) {
    let user = new_user("erin@example.com");
    store.insert_user(&user).await.expect("insert");
    // More than one chunk of expired sessions.
    let mut expired: Vec<Session> = (0..chunk + 3)
        .map(|_| Session::start(user.id, 0, 1_000, 4_000))
        .collect();
    let last = Session::start(user.id, 0, 1_000, 8_999);
    expired.push(last.clone());
    let edge = Session::start(user.id, 0, 1_000, 9_000);
    let live = Session::start(user.id, 0, 1_000, 60_000);
    let mut creates: Vec<_> = expired
        .iter()
        .cloned()
        .map(|s| SessionWrite::Create(s, SessionOrigin::default()))
        .collect();
    creates.push(SessionWrite::Create(edge.clone(), SessionOrigin::default()));
    creates.push(SessionWrite::Create(live.clone(), SessionOrigin::default()));
    store.write_sessions(&creates).await.expect("create");

    let deleted = store.prune_sessions(10_000).await.expect("prune");
    assert_eq!(deleted, expired.len() as u64);
    assert_eq!(store.load_session(last.id).await.expect("load"), None);
    assert_eq!(
        store.load_session(edge.id).await.expect("load"),
        Some(edge.clone())
    );
    assert_eq!(store.load_session(live.id).await.expect("load"), Some(live));
    // `before_ms` is exclusive.
    assert_eq!(store.prune_sessions(10_000).await.expect("prune"), 0);
    assert_eq!(store.prune_sessions(10_001).await.expect("prune"), 1);
}

pub(crate) async fn signing_keys_round_trip_oldest_first(store: &dyn Store) {
    assert!(store.signing_keys().await.expect("keys").is_empty());
    for k in [key("b", 2_000), key("z", 1_000), key("a", 2_000)] {
        store.insert_signing_key(&k).await.expect("insert");
    }
    // An existing kid is kept, not replaced.
    let mut impostor = key("b", 500);
    impostor.private_key = "other".into();
    store.insert_signing_key(&impostor).await.expect("again");
    assert_eq!(
        store.signing_keys().await.expect("keys"),
        vec![key("z", 1_000), key("a", 2_000), key("b", 2_000)]
    );
    // The private key never reaches a log through Debug.
    assert!(!format!("{:?}", key("q", 1)).contains("private-q"));
}

pub(crate) async fn signing_secret_is_stored_once(store: &dyn Store) {
    let first = store
        .signing_secret("first-candidate")
        .await
        .expect("first");
    assert_eq!(first, "first-candidate");
    let second = store
        .signing_secret("second-candidate")
        .await
        .expect("second");
    assert_eq!(second, "first-candidate");
}

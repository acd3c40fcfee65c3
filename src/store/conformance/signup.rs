//! Conformance scenario of a sign-up: the user and its first session are
//! stored together or not at all.

use super::new_user;
use crate::domain::{SessionId, SessionOrigin};
use crate::store::{NewSession, Store, StoreError};

fn first_session(issued_at_ms: i64) -> NewSession {
    NewSession {
        id: SessionId::new_random(),
        issued_at_ms,
        expires_at_ms: issued_at_ms + 60_000,
        origin: SessionOrigin {
            client_address: Some("10.0.0.7".into()),
            user_agent: Some("signup/1".into()),
        },
    }
}

/// Both rows after a sign-up; a second sign-up with the same address is
/// refused as taken and stores no session; one whose session cannot be
/// stored (its id taken) stores no user either.
pub(crate) async fn sign_up_stores_user_and_session_together(store: &dyn Store) {
    let user = new_user("Newcomer@example.com");
    let first = first_session(1_000);
    let session = store.sign_up(&user, &first).await.expect("sign up");
    let found = store
        .find_user_by_email(user.email.as_str())
        .await
        .expect("find")
        .expect("user stored");
    assert_eq!(found.id, user.id);
    assert_eq!(session.user_id, user.id);
    assert_eq!(session.user_int_id, found.int_id);
    assert_eq!((session.id, session.generation), (first.id, 0));
    assert_eq!(
        (session.issued_at_ms, session.expires_at_ms, session.revoked),
        (1_000, 61_000, false)
    );
    let loaded = store.load_session(first.id).await.expect("load");
    assert_eq!(loaded.as_ref(), Some(&session));
    let listed = store
        .list_sessions(user.id, 2_000, None, 10)
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, first.id);
    assert_eq!(listed[0].origin, first.origin);

    let twin = new_user("newcomer@example.com");
    let second = first_session(2_000);
    assert!(matches!(
        store.sign_up(&twin, &second).await,
        Err(StoreError::EmailTaken)
    ));
    assert!(store.load_session(second.id).await.expect("load").is_none());
    assert!(store
        .list_sessions(twin.id, 3_000, None, 10)
        .await
        .expect("list")
        .is_empty());

    // The session's row fails (an id already stored): the user's is
    // rolled back with it, and the address stays free.
    let unlucky = new_user("unlucky@example.com");
    let clash = NewSession {
        id: first.id,
        ..first_session(3_000)
    };
    assert!(matches!(
        store.sign_up(&unlucky, &clash).await,
        Err(StoreError::Fault(f)) if !f.is_unavailable()
    ));
    assert!(store
        .find_user_by_email(unlucky.email.as_str())
        .await
        .expect("find")
        .is_none());
    let retry = first_session(4_000);
    let retried = store.sign_up(&unlucky, &retry).await.expect("retry");
    assert_eq!(retried.user_id, unlucky.id);
}

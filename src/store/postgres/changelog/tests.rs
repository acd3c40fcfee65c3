//! The change log on a live PostgreSQL: no entry is skipped whatever the
//! commit order, and the catch-up read's plan never scans `sessions`.

use super::super::tests::TestDb;
use super::*;
use crate::domain::{Session, SessionOrigin};
use crate::store::conformance::{changes_after, new_user, Fixture};
use crate::store::{SessionWrite, Store};

async fn with_sessions(store: &PostgresStore, n: usize) -> Vec<Session> {
    let user = new_user(&format!("log-{}@example.com", Uuid::new_v4().simple()));
    store.insert_user(&user).await.expect("insert");
    let sessions: Vec<Session> = (0..n)
        .map(|_| Session::start(user.id, 0, 1_000, 60_000))
        .collect();
    let creates: Vec<_> = sessions
        .iter()
        .map(|s| SessionWrite::Create(s.clone(), SessionOrigin::default()))
        .collect();
    store.write_sessions(&creates).await.expect("create");
    sessions
}

fn rotate(s: &Session, from: u32) -> SessionWrite {
    SessionWrite::Rotate {
        id: s.id,
        from_generation: from,
        issued_at_ms: 2_000 + i64::from(from),
    }
}

/// T1 writes its entry first but commits after T2: a read between the two
/// commits takes T2's entry, and the next read still finds T1's.
#[tokio::test]
async fn an_entry_that_commits_after_a_later_one_is_not_skipped() {
    let db = TestDb::fresh();
    let store = db.open().await;
    let s = with_sessions(&store, 2).await;
    let start = store.change_cursor().await.expect("cursor");

    let mut slow = store.pool.get().await.expect("client");
    let t1 = slow.transaction().await.expect("begin");
    t1.execute(
        "WITH changed AS (UPDATE sessions SET generation = 1 WHERE id = $1 \
           RETURNING id, generation, issued_at_ms) \
         INSERT INTO session_changes (ids, generations, issued, revoked) \
         SELECT array_agg(id), array_agg(generation), array_agg(issued_at_ms), \
           array_agg(false) FROM changed",
        &[&s[0].id.0],
    )
    .await
    .expect("T1 writes");
    store.write_sessions(&[rotate(&s[1], 0)]).await.expect("T2");

    let (first, cursor) = changes_after(&store, &start).await;
    assert_eq!(
        first.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![s[1].id]
    );
    assert!(!cursor.pending.is_empty(), "T1 is in progress at the read");
    t1.commit().await.expect("T1 commits");

    let (second, cursor) = changes_after(&store, &cursor).await;
    assert_eq!(second.len(), 1, "{second:?}");
    assert_eq!((second[0].id, second[0].generation), (s[0].id, 1));
    assert_eq!(changes_after(&store, &cursor).await.0, Vec::new());
    drop((slow, store));
    db.remove().await;
}

/// The plan of the catch-up read on a database of many sessions (made
/// quickly with SQL) and a long log of older transactions: `sessions` not
/// at all, the log only by its index; and it returns only the changes.
#[tokio::test]
async fn the_catch_up_read_does_not_scan_sessions() {
    let db = TestDb::fresh();
    let store = db.open().await;
    let s = with_sessions(&store, 3).await;
    let client = store.pool.get().await.expect("client");
    client
        .batch_execute(&format!(
            "INSERT INTO sessions (id, user_id, generation, issued_at_ms, expires_at_ms, \
               created_at_ms) \
             SELECT gen_random_uuid(), '{user}', 0, 1000, 9000000000000, 1000 \
             FROM generate_series(1, 200000); \
             INSERT INTO session_changes (xid, at_ms, ids, generations, issued, revoked) \
             SELECT (3 + g % (pg_current_xact_id()::text::bigint - 3))::text::xid8, 0, \
               ARRAY[gen_random_uuid()], ARRAY[1::bigint], ARRAY[1::bigint], ARRAY[false] \
             FROM generate_series(1, 50000) AS g; \
             ANALYZE sessions; ANALYZE session_changes;",
            user = s[0].user_id.0
        ))
        .await
        .expect("fill");
    let cursor = store.change_cursor().await.expect("cursor");
    store
        .write_sessions(&[rotate(&s[0], 0), rotate(&s[2], 0)])
        .await
        .expect("rotate");

    client
        .batch_execute(&format!(
            "PREPARE catch_up(bigint, bigint[], bigint) AS {CHANGES_AFTER}"
        ))
        .await
        .expect("prepare");
    let pending = format!(
        "ARRAY[{}]::bigint[]",
        cursor
            .pending
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    for mode in ["force_custom_plan", "force_generic_plan"] {
        client
            .batch_execute(&format!("SET plan_cache_mode = {mode}"))
            .await
            .expect("mode");
        let plan: Vec<String> = client
            .query(
                &format!(
                    "EXPLAIN EXECUTE catch_up({}, {pending}, {})",
                    cursor.after, CHANGE_READ_MAX_ENTRIES
                ),
                &[],
            )
            .await
            .expect("explain")
            .iter()
            .map(|row| row.get(0))
            .collect();
        let plan = plan.join("\n");
        assert!(!plan.contains(" on sessions "), "{mode}:\n{plan}");
        assert!(
            !plan
                .lines()
                .any(|l| l.contains("Seq Scan on session_changes ")),
            "{mode}:\n{plan}"
        );
        assert!(plan.contains("session_changes_xid_idx"), "{mode}:\n{plan}");
    }

    let (changes, _) = changes_after(&store, &cursor).await;
    let mut expected = vec![s[0].id, s[2].id];
    expected.sort_by_key(|id| id.0);
    assert_eq!(changes.iter().map(|c| c.id).collect::<Vec<_>>(), expected);
    drop((client, store));
    db.remove().await;
}

/// Entries older than the cut-off go; a reader whose position they were
/// after is told to resync, one after them is not.
#[tokio::test]
async fn a_pruned_change_log_asks_for_a_resync() {
    let db = TestDb::fresh();
    let opened = db.open().await;
    let store: &dyn Store = &opened;
    let user = new_user("pruned@example.com");
    store.insert_user(&user).await.expect("insert");
    let s = Session::start(user.id, 0, 1_000, 60_000);
    store
        .write_sessions(&[SessionWrite::Create(s.clone(), SessionOrigin::default())])
        .await
        .expect("create");
    let behind = store.change_cursor().await.expect("cursor");
    store
        .write_sessions(&[SessionWrite::Rotate {
            id: s.id,
            from_generation: 0,
            issued_at_ms: 2_000,
        }])
        .await
        .expect("rotate");
    let (_, current) = changes_after(store, &behind).await;
    // Nothing is older than an hour ago.
    let hour_ago = crate::domain::now_ms() - 3_600_000;
    assert_eq!(store.prune_change_log(hour_ago).await.expect("prune"), 0);
    assert_eq!(changes_after(store, &behind).await.0.len(), 1);
    // Everything is older than a minute from now.
    let soon = crate::domain::now_ms() + 60_000;
    assert_eq!(store.prune_change_log(soon).await.expect("prune"), 1);
    match store.changes_after(&behind).await.expect("read") {
        ChangeRead::Lost { next, .. } => {
            assert_eq!(changes_after(store, &next).await.0, Vec::new())
        }
        ChangeRead::Changes { changes, .. } => panic!("pruned entries not noticed: {changes:?}"),
    }
    assert_eq!(changes_after(store, &current).await.0, Vec::new());
    drop(opened);
    db.remove().await;
}

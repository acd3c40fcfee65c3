//! Reading and pruning the change log (`session_changes`, written by every
//! statement that rotates or revokes sessions; see sql/postgres/0006).
//!
//! A reader's position is a snapshot, not a counter. A counter (a sequence
//! value taken at insert) would skip entries: transaction T1 takes 10, T2
//! takes 11 and commits first, a reader reads up to 11, then T1 commits 10
//! behind it. Instead each entry carries its transaction id (`xid8`), and a
//! read keeps, from the snapshot it ran in, its `xmax` (every transaction
//! from there on started after the read) and its in-progress list `xip`
//! (transactions that may commit later). The next read takes the entries
//! of transactions at or above that `xmax` or in that list which its own
//! snapshot sees committed. By induction every committed entry is read
//! exactly once, whatever the commit order, and entries are found through
//! the index on `xid`. Entries carry the changed sessions' final states, so
//! the read never touches `sessions`. A long transaction elsewhere on the server
//! (in the `xip` list) delays nothing: entries of later transactions are
//! read as soon as they commit.
//!
//! Retention: [`Store::prune_change_log`] deletes entries older than a
//! cut-off, and records the highest `xid` it deleted. A reader whose
//! position is at or below it may have lost entries and is told to resync
//! ([`ChangeRead::Lost`]); so is one with more than
//! [`CHANGE_READ_MAX_ENTRIES`] entries to read. (An entry of a transaction
//! in the reader's `xip` list is lost only if that transaction committed
//! and its entry aged past the retention between two reads: the feed
//! resyncs on its own after going that long without a read.)

use super::*;
use crate::store::{ChangeCursor, ChangeRead, CHANGE_READ_MAX_ENTRIES};

/// Wraps a statement that rotates or revokes sessions, returning their
/// final states as `(id, generation, issued_at_ms, revoked)`, so that it
/// also writes one change-log entry listing them (none when it changed
/// none). One statement, so the entry commits or rolls back with the
/// changes; the result is the wrapped statement's rows. `$before`: other
/// CTEs (each ending in `, `) to run in the same statement.
macro_rules! logged {
    ($update:expr) => {
        logged!("", $update)
    };
    ($before:expr, $update:expr) => {
        concat!(
            "WITH ",
            $before,
            "changed (id, generation, issued_at_ms, revoked) AS (",
            $update,
            "), logged AS (INSERT INTO session_changes (ids, generations, issued, revoked) \
               SELECT array_agg(id), array_agg(generation), array_agg(issued_at_ms), \
                 array_agg(revoked) FROM changed HAVING count(*) > 0) \
             SELECT id, generation, issued_at_ms, revoked FROM changed"
        )
    };
}
pub(super) use logged;

/// The snapshot the statement runs in: its `xmax`, and its in-progress
/// transactions (as `bigint`: xid8 values stay far below 2^63).
const CHANGE_CURSOR: &str = "SELECT pg_snapshot_xmax(s)::text::bigint, \
       ARRAY(SELECT x::text::bigint FROM pg_snapshot_xip(s) AS x) \
     FROM pg_current_snapshot() AS s";

/// One statement, so one snapshot for the position it returns and the
/// entries it reads. `$1`: the previous `xmax`; `$2`: the previous `xip`;
/// `$3`: the most entries to read. The two halves (entries from `$1` on, in
/// `xid` order with a limit, and entries of the listed transactions) are
/// each an index range or lookup whatever the plan, generic or not. Returns
/// one row: the new position, the pruning mark, how many entries matched
/// (up to `$3 + 1`), and the changes they list, as parallel arrays (a
/// session changed by several entries appears once per entry).
const CHANGES_AFTER: &str = "WITH snap AS MATERIALIZED (SELECT pg_current_snapshot() AS s), \
     entries AS MATERIALIZED ( \
       (SELECT c.ids, c.generations, c.issued, c.revoked FROM session_changes c \
        WHERE c.xid >= $1::bigint::text::xid8 ORDER BY c.xid LIMIT $3::bigint + 1) \
       UNION ALL \
       (SELECT c.ids, c.generations, c.issued, c.revoked FROM session_changes c \
        WHERE c.xid = ANY($2::bigint[]::text[]::xid8[]))) \
     SELECT pg_snapshot_xmax(snap.s)::text::bigint, \
       ARRAY(SELECT x::text::bigint FROM pg_snapshot_xip(snap.s) AS x), \
       (SELECT through::text::bigint FROM session_changes_pruned), \
       (SELECT count(*) FROM entries), \
       COALESCE(agg.ids, '{}'), COALESCE(agg.generations, '{}'), \
       COALESCE(agg.issued, '{}'), COALESCE(agg.revoked, '{}') \
     FROM snap, LATERAL (SELECT array_agg(u.id) AS ids, array_agg(u.generation) AS generations, \
         array_agg(u.issued) AS issued, array_agg(u.revoked) AS revoked \
       FROM entries e, unnest(e.ids, e.generations, e.issued, e.revoked) \
         AS u(id, generation, issued, revoked)) AS agg";

/// Entries deleted per statement of [`Store::prune_change_log`].
const PRUNE_LOG_CHUNK: i64 = 5_000;

/// Deletes up to `$2` entries older than `$1` and raises the pruning mark
/// to the highest `xid` deleted; returns how many.
const PRUNE_CHANGE_LOG: &str = "WITH gone AS (DELETE FROM session_changes \
       WHERE ctid = ANY(ARRAY(SELECT ctid FROM session_changes WHERE at_ms < $1 LIMIT $2)) \
       RETURNING xid), \
     marked AS (UPDATE session_changes_pruned \
       SET through = GREATEST(through, (SELECT max(xid) FROM gone)) \
       WHERE EXISTS (SELECT 1 FROM gone)) \
     SELECT count(*) FROM gone";

impl PostgresStore {
    pub(super) async fn read_change_cursor(&self) -> Result<ChangeCursor, StoreError> {
        let row = self
            .on_connection("change_cursor", |c| {
                Box::pin(async move {
                    let statement = c.prepare_cached(CHANGE_CURSOR).await?;
                    c.query_one(&statement, &[]).await
                })
            })
            .await?;
        let read = |e| Failure::Db(e).into_store_error("reading the change log position");
        Ok(ChangeCursor {
            after: row.try_get(0).map_err(read)?,
            pending: row.try_get(1).map_err(read)?,
        })
    }

    pub(super) async fn read_changes_after(
        &self,
        cursor: &ChangeCursor,
    ) -> Result<ChangeRead, StoreError> {
        let (after, pending) = (cursor.after, cursor.pending.clone());
        let row = self
            .on_connection("changes_after", move |c| {
                Box::pin(async move {
                    let statement = c.prepare_cached(CHANGES_AFTER).await?;
                    c.query_one(&statement, &[&after, &pending, &CHANGE_READ_MAX_ENTRIES])
                        .await
                })
            })
            .await?;
        changes_from_row(&row, cursor)
    }

    pub(super) async fn delete_old_changes(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut deleted = 0;
        loop {
            let chunk: i64 = self
                .on_connection("prune_change_log", move |c| {
                    Box::pin(async move {
                        let statement = c.prepare_cached(PRUNE_CHANGE_LOG).await?;
                        c.query_one(&statement, &[&before_ms, &PRUNE_LOG_CHUNK])
                            .await?
                            .try_get(0)
                    })
                })
                .await?;
            deleted += chunk.unsigned_abs();
            if chunk < PRUNE_LOG_CHUNK {
                return Ok(deleted);
            }
        }
    }
}

/// The row of [`CHANGES_AFTER`], read from `cursor`.
fn changes_from_row(row: &Row, cursor: &ChangeCursor) -> Result<ChangeRead, StoreError> {
    let read = |e| Failure::Db(e).into_store_error("reading the change log");
    let next = ChangeCursor {
        after: row.try_get(0).map_err(read)?,
        pending: row.try_get(1).map_err(read)?,
    };
    let pruned_through: i64 = row.try_get(2).map_err(read)?;
    let entries: i64 = row.try_get(3).map_err(read)?;
    // Entries at or above the cursor's `xmax` were deleted: some may never
    // have been read.
    if pruned_through >= cursor.after {
        return Ok(ChangeRead::Lost {
            next,
            why: "entries after this instance's position were pruned",
        });
    }
    if entries > CHANGE_READ_MAX_ENTRIES {
        return Ok(ChangeRead::Lost {
            next,
            why: "too many changes to read at once",
        });
    }
    let ids: Vec<Uuid> = row.try_get(4).map_err(read)?;
    let generations: Vec<i64> = row.try_get(5).map_err(read)?;
    let issued: Vec<i64> = row.try_get(6).map_err(read)?;
    let revoked: Vec<bool> = row.try_get(7).map_err(read)?;
    // One change per session: folded as a cache folds them (the highest
    // generation wins, revocation is permanent), so the order of entries
    // does not matter.
    let mut changes: Vec<SessionChange> = Vec::new();
    let mut index: HashMap<Uuid, usize> = HashMap::new();
    for (((id, generation), issued_at_ms), revoked) in
        ids.into_iter().zip(generations).zip(issued).zip(revoked)
    {
        let change = SessionChange {
            id: SessionId(id),
            generation: u32::try_from(generation).map_err(|_| {
                StoreError::internal(format!("session generation {generation} out of range"))
            })?,
            issued_at_ms,
            revoked,
        };
        match index.get(&id) {
            Some(&at) => {
                let folded = &mut changes[at];
                if change.generation > folded.generation {
                    folded.generation = change.generation;
                    folded.issued_at_ms = change.issued_at_ms;
                }
                folded.revoked |= change.revoked;
            }
            None => {
                index.insert(id, changes.len());
                changes.push(change);
            }
        }
    }
    Ok(ChangeRead::Changes { changes, next })
}

#[cfg(test)]
mod tests;

//! Positions for the catch-up read on SQLite (see sql/sqlite/0006): one
//! writer, so a counter bumped by each transaction that rotates or revokes
//! sessions orders them, and the rows it changes carry its value
//! (`change_seq`). One instance serves a SQLite file and runs no change
//! feed, so the read (a scan of `sessions`) serves the [`Store`] contract
//! and its conformance tests, never a feed; nothing is ever lost.
//!
//! [`Store`]: crate::store::Store

use rusqlite::{Connection, Transaction};

use super::change_from_row;
use crate::store::{ChangeCursor, ChangeRead};

const NEXT_SEQ: &str = "UPDATE change_counter SET seq = seq + 1 RETURNING seq";
const CURRENT_SEQ: &str = "SELECT seq FROM change_counter";
const CHANGED_AFTER: &str = "SELECT id, generation, issued_at_ms, revoked_at_ms IS NOT NULL \
     FROM sessions WHERE change_seq > ?1 ORDER BY change_seq, id";

/// The value this write transaction stamps the rows it changes with.
pub(super) fn next_seq(tx: &Transaction<'_>) -> rusqlite::Result<i64> {
    tx.prepare_cached(NEXT_SEQ)?.query_row([], |row| row.get(0))
}

pub(super) fn cursor(conn: &Connection) -> rusqlite::Result<ChangeCursor> {
    Ok(ChangeCursor {
        after: conn.query_row(CURRENT_SEQ, [], |row| row.get(0))?,
        pending: Vec::new(),
    })
}

/// The sessions stamped after `cursor`, and the position now, in one read
/// transaction (one snapshot).
pub(super) fn read_after(
    conn: &mut Connection,
    cursor: &ChangeCursor,
) -> rusqlite::Result<ChangeRead> {
    let tx = conn.transaction()?;
    let next = self::cursor(&tx)?;
    let changes = tx
        .prepare_cached(CHANGED_AFTER)?
        .query_map([cursor.after], change_from_row)?
        .collect::<rusqlite::Result<_>>()?;
    tx.finish()?;
    Ok(ChangeRead::Changes { changes, next })
}

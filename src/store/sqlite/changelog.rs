//! The change log on SQLite (see sql/sqlite/0006): one entry per
//! transaction that rotated or revoked sessions, written in it. SQLite has
//! one writer, so entries commit in `seq` order and a position is the last
//! `seq` read. One instance serves a SQLite file and runs no change feed;
//! the log is kept so both backends honour one [`Store`] contract.
//!
//! [`Store`]: crate::store::Store

use rusqlite::{params, Connection, OptionalExtension};

use super::{change_from_row, LOAD_SESSION_CHANGE};
use crate::domain::{now_ms, SessionChange};
use crate::store::{ChangeCursor, ChangeRead, CHANGE_READ_MAX_ENTRIES};

const APPEND: &str = "INSERT INTO session_changes (at_ms, ids) VALUES (?1, ?2)";
/// The last `seq` handed out (AUTOINCREMENT keeps it in `sqlite_sequence`
/// even once its entry is pruned).
const LAST_SEQ: &str = "SELECT COALESCE((SELECT seq FROM sqlite_sequence \
     WHERE name = 'session_changes'), 0)";
const PRUNED_THROUGH: &str = "SELECT through FROM session_changes_pruned";
const ENTRIES_AFTER: &str = "SELECT seq, ids FROM session_changes WHERE seq > ?1 \
     ORDER BY seq LIMIT ?2";
/// Entries deleted per statement of a prune.
pub(super) const PRUNE_LOG_CHUNK: i64 = 5_000;
const PRUNE: &str = "DELETE FROM session_changes WHERE seq IN \
     (SELECT seq FROM session_changes WHERE at_ms < ?1 ORDER BY seq LIMIT ?2) RETURNING seq";
const MARK_PRUNED: &str = "UPDATE session_changes_pruned SET through = max(through, ?1)";

/// Appends the entry listing `changes` (none if empty), inside the caller's
/// transaction.
pub(super) fn append(conn: &Connection, changes: &[SessionChange]) -> rusqlite::Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = changes.iter().map(|c| c.id.0.to_string()).collect();
    conn.prepare_cached(APPEND)?
        .execute(params![now_ms(), ids.join(" ")])?;
    Ok(())
}

pub(super) fn cursor(conn: &Connection) -> rusqlite::Result<ChangeCursor> {
    let after: i64 = conn.query_row(LAST_SEQ, [], |row| row.get(0))?;
    Ok(ChangeCursor {
        after,
        pending: Vec::new(),
    })
}

/// Reads the entries after `cursor` and the current state of the sessions
/// they list, in one read transaction (one snapshot).
pub(super) fn read_after(
    conn: &mut Connection,
    cursor: &ChangeCursor,
) -> rusqlite::Result<ChangeRead> {
    let tx = conn.transaction()?;
    let pruned: i64 = tx.query_row(PRUNED_THROUGH, [], |row| row.get(0))?;
    let entries: Vec<(i64, String)> = tx
        .prepare_cached(ENTRIES_AFTER)?
        .query_map(params![cursor.after, CHANGE_READ_MAX_ENTRIES + 1], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let last = entries.last().map_or(cursor.after, |e| e.0);
    let next = ChangeCursor {
        after: last,
        pending: Vec::new(),
    };
    if pruned > cursor.after {
        return Ok(ChangeRead::Lost {
            next: self::cursor(&tx)?,
            why: "entries after this instance's position were pruned",
        });
    }
    if entries.len() as i64 > CHANGE_READ_MAX_ENTRIES {
        return Ok(ChangeRead::Lost {
            next: self::cursor(&tx)?,
            why: "too many changes to read at once",
        });
    }
    let mut seen = std::collections::HashSet::new();
    let mut changes = Vec::new();
    let mut load = tx.prepare_cached(LOAD_SESSION_CHANGE)?;
    for (_, ids) in &entries {
        for id in ids.split_ascii_whitespace() {
            if seen.insert(id.to_owned()) {
                if let Some(change) = load.query_row([id], change_from_row).optional()? {
                    changes.push(change);
                }
            }
        }
    }
    drop(load);
    tx.finish()?;
    Ok(ChangeRead::Changes { changes, next })
}

/// Deletes one chunk of entries older than `before_ms`, raising the pruning
/// mark; returns how many.
pub(super) fn prune_chunk(conn: &mut Connection, before_ms: i64) -> rusqlite::Result<i64> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let gone: Vec<i64> = tx
        .prepare_cached(PRUNE)?
        .query_map(params![before_ms, PRUNE_LOG_CHUNK], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if let Some(highest) = gone.iter().max() {
        tx.execute(MARK_PRUNED, [highest])?;
    }
    tx.commit()?;
    Ok(gone.len() as i64)
}

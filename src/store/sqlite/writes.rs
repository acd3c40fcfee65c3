//! Batch writes (group commit) on SQLite: a batch of [`SessionWrite`]s
//! applied in one transaction, one statement per write, and the outcomes
//! and final states they return.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::change_from_row;
use super::changelog;
use crate::domain::SessionChange;
use crate::store::shared::ChangeSet;
use crate::store::{BatchOutcome, SessionWrite, WriteOutcome};

/// Like PostgreSQL's: an existing id or a missing user is a conflict, not a
/// failure of the whole batch. (The `WHERE` also settles SQLite's parsing
/// ambiguity between a join's `ON` and the upsert's `ON CONFLICT`.)
pub(super) const CREATE_SESSION: &str = "INSERT INTO sessions \
     (id, user_id, generation, issued_at_ms, expires_at_ms, revoked_at_ms, created_at_ms, \
      user_int_id, client_address, user_agent) \
     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?4, ?7, ?8, ?9 \
     WHERE EXISTS (SELECT 1 FROM users WHERE id = ?2) \
     ON CONFLICT (id) DO NOTHING";
/// The updates return the final state of what they touched (a
/// [`SessionChange`]). `updated_at_ms` never moves backwards.
const ROTATE_SESSION: &str = "UPDATE sessions SET generation = ?2 + 1, issued_at_ms = ?3, \
       updated_at_ms = max(updated_at_ms, ?3), change_seq = ?4 \
     WHERE id = ?1 AND generation = ?2 AND revoked_at_ms IS NULL \
     RETURNING id, generation, issued_at_ms, revoked_at_ms IS NOT NULL";
/// Idempotent: revoking a revoked session keeps its first revocation time
/// and `updated_at_ms`, but still counts as applied (and as a change).
const REVOKE_SESSION: &str = "UPDATE sessions SET revoked_at_ms = COALESCE(revoked_at_ms, ?2), \
       updated_at_ms = CASE WHEN revoked_at_ms IS NULL \
         THEN max(updated_at_ms, ?2) ELSE updated_at_ms END, change_seq = ?3 \
     WHERE id = ?1 \
     RETURNING id, generation, issued_at_ms, revoked_at_ms IS NOT NULL";
/// `?3` is the session spared (`scope: "others"`), `''` for none.
const REVOKE_USER: &str = "UPDATE sessions SET revoked_at_ms = ?2, \
       updated_at_ms = max(updated_at_ms, ?2), change_seq = ?4 \
     WHERE user_id = ?1 AND revoked_at_ms IS NULL AND id <> ?3 \
     RETURNING id, generation, issued_at_ms, revoked_at_ms IS NOT NULL";

/// Applies `batch` in one `BEGIN IMMEDIATE` transaction, kind by kind (see
/// the module documentation of [`super`] for the order), every change
/// stamped with the transaction's change sequence.
pub(super) fn apply_batch(
    conn: &mut Connection,
    batch: &[SessionWrite],
) -> rusqlite::Result<BatchOutcome> {
    let mut outcomes = vec![WriteOutcome::Conflict; batch.len()];
    let mut changes = ChangeSet::default();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let seq = changelog::next_seq(&tx)?;
    create_sessions(&tx, batch, &mut outcomes)?;
    rotate_sessions(&tx, batch, seq, &mut outcomes, &mut changes)?;
    revoke_sessions(&tx, batch, seq, &mut outcomes, &mut changes)?;
    revoke_users(&tx, batch, seq, &mut outcomes, &mut changes)?;
    tx.commit()?;
    Ok(BatchOutcome {
        outcomes,
        changes: changes.into_list(),
    })
}

fn applied(yes: bool) -> WriteOutcome {
    if yes {
        WriteOutcome::Applied
    } else {
        WriteOutcome::Conflict
    }
}

/// The batch's `Create`s; each outcome at the write's index.
fn create_sessions(
    tx: &Connection,
    batch: &[SessionWrite],
    outcomes: &mut [WriteOutcome],
) -> rusqlite::Result<()> {
    let mut create = tx.prepare_cached(CREATE_SESSION)?;
    for (i, write) in batch.iter().enumerate() {
        if let SessionWrite::Create(s, origin) = write {
            let changed = create.execute(params![
                s.id.0.to_string(),
                s.user_id.0.to_string(),
                s.generation,
                s.issued_at_ms,
                s.expires_at_ms,
                s.revoked.then_some(s.issued_at_ms),
                s.user_int_id,
                origin.client_address,
                origin.user_agent,
            ])?;
            outcomes[i] = applied(changed == 1);
        }
    }
    Ok(())
}

/// The batch's `Rotate`s, in order, their changes logged under `seq`.
fn rotate_sessions(
    tx: &Connection,
    batch: &[SessionWrite],
    seq: i64,
    outcomes: &mut [WriteOutcome],
    changes: &mut ChangeSet,
) -> rusqlite::Result<()> {
    let mut rotate = tx.prepare_cached(ROTATE_SESSION)?;
    for (i, write) in batch.iter().enumerate() {
        if let SessionWrite::Rotate {
            id,
            from_generation,
            issued_at_ms,
        } = write
        {
            let change = rotate
                .query_row(
                    params![id.0.to_string(), from_generation, issued_at_ms, seq],
                    change_from_row,
                )
                .optional()?;
            outcomes[i] = record_change(changes, change);
        }
    }
    Ok(())
}

/// The batch's `Revoke`s, their changes logged under `seq`.
fn revoke_sessions(
    tx: &Connection,
    batch: &[SessionWrite],
    seq: i64,
    outcomes: &mut [WriteOutcome],
    changes: &mut ChangeSet,
) -> rusqlite::Result<()> {
    let mut revoke = tx.prepare_cached(REVOKE_SESSION)?;
    for (i, write) in batch.iter().enumerate() {
        if let SessionWrite::Revoke { id, revoked_at_ms } = write {
            let change = revoke
                .query_row(
                    params![id.0.to_string(), revoked_at_ms, seq],
                    change_from_row,
                )
                .optional()?;
            outcomes[i] = record_change(changes, change);
        }
    }
    Ok(())
}

/// The batch's `RevokeUser`s (always applied), their changes logged under
/// `seq`.
fn revoke_users(
    tx: &Connection,
    batch: &[SessionWrite],
    seq: i64,
    outcomes: &mut [WriteOutcome],
    changes: &mut ChangeSet,
) -> rusqlite::Result<()> {
    let mut revoke_user = tx.prepare_cached(REVOKE_USER)?;
    for (i, write) in batch.iter().enumerate() {
        if let SessionWrite::RevokeUser {
            user_id,
            revoked_at_ms,
            except,
        } = write
        {
            let keep = except.map(|id| id.0.to_string()).unwrap_or_default();
            let rows = revoke_user.query_map(
                params![user_id.0.to_string(), revoked_at_ms, keep, seq],
                change_from_row,
            )?;
            for change in rows {
                changes.record(change?);
            }
            outcomes[i] = WriteOutcome::Applied;
        }
    }
    Ok(())
}

/// A conditional write's outcome: applied when it changed the session
/// (whose final state is then recorded), a conflict when not.
fn record_change(changes: &mut ChangeSet, change: Option<SessionChange>) -> WriteOutcome {
    let outcome = applied(change.is_some());
    if let Some(change) = change {
        changes.record(change);
    }
    outcome
}

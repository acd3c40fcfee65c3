//! Batch writes (group commit): a batch of [`SessionWrite`]s regrouped
//! into one array-valued statement per kind, and the outcomes read back.

use std::collections::hash_map::Entry;

use super::changelog::logged;
use super::*;

/// Creates skip (and report as conflicts) ids that already exist and users
/// that do not, instead of failing the whole batch on a constraint. The
/// user's row is locked (`FOR KEY SHARE`, what a foreign key would take)
/// until the batch commits, so an account deletion waits for it and then
/// revokes the new session too, or the insert waits for the deletion and
/// finds no user.
const CREATE_SESSIONS: &str = "INSERT INTO sessions \
     (id, user_id, generation, issued_at_ms, expires_at_ms, revoked_at_ms, created_at_ms, \
      user_int_id, client_address, user_agent) \
     SELECT v.id, v.user_id, v.generation, v.issued, v.expires, v.revoked, v.issued, v.int_id, \
       v.address, v.agent \
     FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], \
       $7::bigint[], $8::text[], $9::text[]) \
       AS v(id, user_id, generation, issued, expires, revoked, int_id, address, agent) \
     WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = v.user_id FOR KEY SHARE) \
     ON CONFLICT (id) DO NOTHING \
     RETURNING id";
/// The updates return the final state of what they touched (a
/// [`SessionChange`]); the id comes first, for the outcomes. Each also
/// writes one change-log entry listing the sessions it changed and their
/// final states ([`logged!`]), in the same statement and so the same
/// transaction: a catch-up read sees the entry exactly when the changes
/// are committed. The log is a separate table, so the rotations stay HOT.
const ROTATE_SESSIONS: &str = logged!(
    "UPDATE sessions s \
     SET generation = v.from_gen + 1, issued_at_ms = v.issued, \
       updated_at_ms = GREATEST(s.updated_at_ms, v.issued) \
     FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[]) AS v(id, from_gen, issued) \
     WHERE s.id = v.id AND s.generation = v.from_gen AND s.revoked_at_ms IS NULL \
     RETURNING s.id, s.generation, s.issued_at_ms, s.revoked_at_ms IS NOT NULL"
);
/// Idempotent: revoking a revoked session keeps its first revocation time
/// and `updated_at_ms`, but still counts as applied (and as a change).
const REVOKE_SESSIONS: &str = logged!(
    "UPDATE sessions s \
     SET revoked_at_ms = COALESCE(s.revoked_at_ms, v.at), \
       updated_at_ms = CASE WHEN s.revoked_at_ms IS NULL \
         THEN GREATEST(s.updated_at_ms, v.at) ELSE s.updated_at_ms END \
     FROM UNNEST($1::uuid[], $2::bigint[]) AS v(id, at) \
     WHERE s.id = v.id \
     RETURNING s.id, s.generation, s.issued_at_ms, s.revoked_at_ms IS NOT NULL"
);
/// Also closes the old service's tokens of those users (see
/// `users.legacy_tokens_closed`), in the same statement. `keep` is the
/// session spared (`scope: "others"`), the nil UUID for none.
const REVOKE_USERS: &str = logged!(
    "closed AS (UPDATE users SET legacy_tokens_closed = true \
       WHERE id = ANY($1::uuid[]) AND NOT legacy_tokens_closed), ",
    "UPDATE sessions s \
     SET revoked_at_ms = v.at, updated_at_ms = GREATEST(s.updated_at_ms, v.at) \
     FROM UNNEST($1::uuid[], $2::bigint[], $3::uuid[]) AS v(user_id, at, keep) \
     WHERE s.user_id = v.user_id AND s.revoked_at_ms IS NULL AND s.id <> v.keep \
     RETURNING s.id, s.generation, s.issued_at_ms, s.revoked_at_ms IS NOT NULL"
);

/// A batch of session writes regrouped into the arrays of one statement per
/// kind. Rotations of the same session are split into rounds (the second
/// rotation of a session in the batch goes into round two, and so on): one
/// `UPDATE` changes a row at most once, and the rounds keep the batch's
/// order for chained rotations. Nearly every batch has one round.
pub(super) struct Plan {
    pub(super) creates: Creates,
    pub(super) rotation_rounds: Vec<Rotations>,
    pub(super) revokes: Revokes,
    /// `RevokeUser`s: user ids (and times) instead of session ids.
    pub(super) user_revokes: Revokes,
    /// The session each user's revocation spares (the nil UUID: none), in
    /// the order of `user_revokes`.
    pub(super) user_revoke_keeps: Vec<Uuid>,
}

#[derive(Default)]
pub(super) struct Creates {
    pub(super) ids: Vec<Uuid>,
    pub(super) user_ids: Vec<Uuid>,
    pub(super) generations: Vec<i64>,
    pub(super) issued: Vec<i64>,
    pub(super) expires: Vec<i64>,
    pub(super) revoked: Vec<Option<i64>>,
    pub(super) user_int_ids: Vec<i64>,
    pub(super) client_addresses: Vec<Option<String>>,
    pub(super) user_agents: Vec<Option<String>>,
}

#[derive(Default)]
pub(super) struct Rotations {
    pub(super) ids: Vec<Uuid>,
    pub(super) from_generations: Vec<i64>,
    pub(super) issued: Vec<i64>,
}

#[derive(Default)]
pub(super) struct Revokes {
    pub(super) ids: Vec<Uuid>,
    pub(super) at: Vec<i64>,
}

impl Revokes {
    /// By id, for the lock order (see [`Plan::new`]).
    pub(super) fn sort(&mut self) {
        let mut rows: Vec<_> = self
            .ids
            .iter()
            .copied()
            .zip(self.at.iter().copied())
            .collect();
        rows.sort_unstable_by_key(|row| row.0);
        self.ids = rows.iter().map(|row| row.0).collect();
        self.at = rows.iter().map(|row| row.1).collect();
    }
}

impl Plan {
    pub(super) fn new(batch: &[SessionWrite]) -> Self {
        let mut creates = Creates::default();
        let mut rotation_rounds: Vec<Rotations> = Vec::new();
        let mut rounds_of: HashMap<Uuid, usize> = HashMap::new();
        let mut revokes = Revokes::default();
        let mut revoked_ids = HashSet::new();
        let mut user_revokes = Revokes::default();
        let mut revoked_users: HashMap<Uuid, usize> = HashMap::new();
        let mut keeps: Vec<Uuid> = Vec::new();
        for write in batch {
            match write {
                SessionWrite::Create(s, origin) => {
                    creates.client_addresses.push(origin.client_address.clone());
                    creates.user_agents.push(origin.user_agent.clone());
                    creates.ids.push(s.id.0);
                    creates.user_ids.push(s.user_id.0);
                    creates.user_int_ids.push(s.user_int_id);
                    creates.generations.push(i64::from(s.generation));
                    creates.issued.push(s.issued_at_ms);
                    creates.expires.push(s.expires_at_ms);
                    // A session created revoked (not done today) is revoked
                    // from the start.
                    creates.revoked.push(s.revoked.then_some(s.issued_at_ms));
                }
                SessionWrite::Rotate {
                    id,
                    from_generation,
                    issued_at_ms,
                } => {
                    let round = rounds_of.entry(id.0).or_insert(0);
                    if rotation_rounds.len() <= *round {
                        rotation_rounds.push(Rotations::default());
                    }
                    let r = &mut rotation_rounds[*round];
                    r.ids.push(id.0);
                    r.from_generations.push(i64::from(*from_generation));
                    r.issued.push(*issued_at_ms);
                    *round += 1;
                }
                SessionWrite::Revoke { id, revoked_at_ms } => {
                    // The first revocation's time wins, as if applied in order.
                    if revoked_ids.insert(id.0) {
                        revokes.ids.push(id.0);
                        revokes.at.push(*revoked_at_ms);
                    }
                }
                SessionWrite::RevokeUser {
                    user_id,
                    revoked_at_ms,
                    except,
                } => {
                    // Likewise; and one `UPDATE` may change a row only once.
                    // Two revocations of one user sparing different
                    // sessions together spare none.
                    let keep = except.map_or(Uuid::nil(), |id| id.0);
                    match revoked_users.entry(user_id.0) {
                        Entry::Vacant(entry) => {
                            entry.insert(keeps.len());
                            user_revokes.ids.push(user_id.0);
                            user_revokes.at.push(*revoked_at_ms);
                            keeps.push(keep);
                        }
                        Entry::Occupied(entry) => {
                            if keeps[*entry.get()] != keep {
                                keeps[*entry.get()] = Uuid::nil();
                            }
                        }
                    }
                }
            }
        }
        // Rows are locked in the order the arrays list them; one order for
        // every instance means two batches touching the same sessions wait
        // for each other instead of deadlocking.
        for round in &mut rotation_rounds {
            let mut rows: Vec<_> = (0..round.ids.len())
                .map(|i| (round.ids[i], round.from_generations[i], round.issued[i]))
                .collect();
            rows.sort_unstable_by_key(|row| row.0);
            round.ids = rows.iter().map(|row| row.0).collect();
            round.from_generations = rows.iter().map(|row| row.1).collect();
            round.issued = rows.iter().map(|row| row.2).collect();
        }
        revokes.sort();
        let mut users: Vec<(Uuid, i64, Uuid)> = (0..user_revokes.ids.len())
            .map(|i| (user_revokes.ids[i], user_revokes.at[i], keeps[i]))
            .collect();
        users.sort_unstable_by_key(|row| row.0);
        user_revokes.ids = users.iter().map(|row| row.0).collect();
        user_revokes.at = users.iter().map(|row| row.1).collect();
        Plan {
            creates,
            rotation_rounds,
            revokes,
            user_revokes,
            user_revoke_keeps: users.iter().map(|row| row.2).collect(),
        }
    }

    /// How many statements the batch takes.
    pub(super) fn statements(&self) -> usize {
        usize::from(!self.creates.ids.is_empty())
            + self.rotation_rounds.len()
            + usize::from(!self.revokes.ids.is_empty())
            + usize::from(!self.user_revokes.ids.is_empty())
    }

    /// One outcome per write of `batch`, from the ids each statement
    /// returned (`rotated[k]`: round `k`).
    pub(super) fn outcomes(
        &self,
        batch: &[SessionWrite],
        created: &[Uuid],
        rotated: &[Vec<Uuid>],
        revoked: &[Uuid],
    ) -> Vec<WriteOutcome> {
        let mut created: HashSet<Uuid> = created.iter().copied().collect();
        let rotated: Vec<HashSet<Uuid>> = rotated
            .iter()
            .map(|round| round.iter().copied().collect())
            .collect();
        let revoked: HashSet<Uuid> = revoked.iter().copied().collect();
        let mut rounds_of: HashMap<Uuid, usize> = HashMap::new();
        let applied = |yes: bool| {
            if yes {
                WriteOutcome::Applied
            } else {
                WriteOutcome::Conflict
            }
        };
        batch
            .iter()
            .map(|write| match write {
                // Removed once claimed: a second create of the same id in
                // the batch is the one that was skipped.
                SessionWrite::Create(s, _) => applied(created.remove(&s.id.0)),
                SessionWrite::Rotate { id, .. } => {
                    let round = rounds_of.entry(id.0).or_insert(0);
                    let yes = rotated.get(*round).is_some_and(|r| r.contains(&id.0));
                    *round += 1;
                    applied(yes)
                }
                SessionWrite::Revoke { id, .. } => applied(revoked.contains(&id.0)),
                SessionWrite::RevokeUser { .. } => WriteOutcome::Applied,
            })
            .collect()
    }
}

/// What the statements of a batch returned.
pub(super) struct Written {
    pub(super) created: Vec<Uuid>,
    /// Per rotation round.
    pub(super) rotated: Vec<Vec<Uuid>>,
    pub(super) revoked: Vec<Uuid>,
    pub(super) changes: Vec<SessionChange>,
}

/// Runs the statements of `plan` on `c` (a transaction, or the bare
/// connection when there is one statement).
pub(super) async fn apply_plan<C: deadpool_postgres::GenericClient + Sync>(
    c: &C,
    plan: &Plan,
) -> Result<Result<Written, StoreError>, tokio_postgres::Error> {
    let mut changes = ChangeSet::default();
    let mut created = Vec::new();
    if !plan.creates.ids.is_empty() {
        let statement = c.prepare_cached(CREATE_SESSIONS).await?;
        let n = &plan.creates;
        let rows = c
            .query(
                &statement,
                &[
                    &n.ids,
                    &n.user_ids,
                    &n.generations,
                    &n.issued,
                    &n.expires,
                    &n.revoked,
                    &n.user_int_ids,
                    &n.client_addresses,
                    &n.user_agents,
                ],
            )
            .await?;
        created = ids(&rows)?;
    }
    let mut rotated = Vec::with_capacity(plan.rotation_rounds.len());
    for round in &plan.rotation_rounds {
        let statement = c.prepare_cached(ROTATE_SESSIONS).await?;
        let rows = c
            .query(
                &statement,
                &[&round.ids, &round.from_generations, &round.issued],
            )
            .await?;
        rotated.push(ids(&rows)?);
        if let Err(e) = record_rows(&mut changes, &rows) {
            return Ok(Err(e));
        }
    }
    let mut revoked = Vec::new();
    if !plan.revokes.ids.is_empty() {
        let statement = c.prepare_cached(REVOKE_SESSIONS).await?;
        let rows = c
            .query(&statement, &[&plan.revokes.ids, &plan.revokes.at])
            .await?;
        revoked = ids(&rows)?;
        if let Err(e) = record_rows(&mut changes, &rows) {
            return Ok(Err(e));
        }
    }
    if !plan.user_revokes.ids.is_empty() {
        let statement = c.prepare_cached(REVOKE_USERS).await?;
        let rows = c
            .query(
                &statement,
                &[
                    &plan.user_revokes.ids,
                    &plan.user_revokes.at,
                    &plan.user_revoke_keeps,
                ],
            )
            .await?;
        if let Err(e) = record_rows(&mut changes, &rows) {
            return Ok(Err(e));
        }
    }
    Ok(Ok(Written {
        created,
        rotated,
        revoked,
        changes: changes.into_list(),
    }))
}

fn ids(rows: &[Row]) -> Result<Vec<Uuid>, tokio_postgres::Error> {
    rows.iter().map(|row| row.try_get(0)).collect()
}

/// Records the final states a statement returned (rows `(id, generation,
/// issued_at_ms, revoked)`).
fn record_rows(changes: &mut ChangeSet, rows: &[Row]) -> Result<(), StoreError> {
    for row in rows {
        changes.record(change_from_row(row)?);
    }
    Ok(())
}

//! Batch writes (group commit): a batch of [`SessionWrite`]s regrouped
//! into one array-valued statement per kind, and the outcomes read back.

use std::collections::hash_map::Entry;

use super::*;

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

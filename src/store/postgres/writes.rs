//! Batch writes (group commit): a batch of [`SessionWrite`]s regrouped
//! into one array-valued statement per kind, and the outcomes read back.

use std::collections::hash_map::Entry;

use tokio_postgres::types::ToSql;

use super::changelog::logged;
use super::*;
use crate::domain::SessionOrigin;

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
    /// By id, for the lock order (see [`PlanBuilder::into_plan`]).
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

impl Creates {
    fn push(&mut self, s: &Session, origin: &SessionOrigin) {
        self.client_addresses.push(origin.client_address.clone());
        self.user_agents.push(origin.user_agent.clone());
        self.ids.push(s.id.0);
        self.user_ids.push(s.user_id.0);
        self.user_int_ids.push(s.user_int_id);
        self.generations.push(i64::from(s.generation));
        self.issued.push(s.issued_at_ms);
        self.expires.push(s.expires_at_ms);
        // A session created revoked (not done today) is revoked from the
        // start.
        self.revoked.push(s.revoked.then_some(s.issued_at_ms));
    }
}

impl Rotations {
    /// By id, for the lock order (see [`PlanBuilder::into_plan`]).
    fn sort(&mut self) {
        let mut rows: Vec<_> = (0..self.ids.len())
            .map(|i| (self.ids[i], self.from_generations[i], self.issued[i]))
            .collect();
        rows.sort_unstable_by_key(|row| row.0);
        self.ids = rows.iter().map(|row| row.0).collect();
        self.from_generations = rows.iter().map(|row| row.1).collect();
        self.issued = rows.iter().map(|row| row.2).collect();
    }
}

/// The arrays of a [`Plan`] as the batch's writes are added one by one,
/// with what it takes to keep the batch's order: the next rotation round
/// of each session, the sessions and users already revoked.
#[derive(Default)]
struct PlanBuilder {
    creates: Creates,
    rotation_rounds: Vec<Rotations>,
    rounds_of: HashMap<Uuid, usize>,
    revokes: Revokes,
    revoked_ids: HashSet<Uuid>,
    user_revokes: Revokes,
    /// Index into `user_revokes` (and `keeps`) of each user revoked.
    revoked_users: HashMap<Uuid, usize>,
    keeps: Vec<Uuid>,
}

impl PlanBuilder {
    fn add(&mut self, write: &SessionWrite) {
        match write {
            SessionWrite::Create(s, origin) => self.creates.push(s, origin),
            SessionWrite::Rotate {
                id,
                from_generation,
                issued_at_ms,
            } => self.rotate(id.0, i64::from(*from_generation), *issued_at_ms),
            SessionWrite::Revoke { id, revoked_at_ms } => {
                // The first revocation's time wins, as if applied in order.
                if self.revoked_ids.insert(id.0) {
                    self.revokes.ids.push(id.0);
                    self.revokes.at.push(*revoked_at_ms);
                }
            }
            SessionWrite::RevokeUser {
                user_id,
                revoked_at_ms,
                except,
            } => self.revoke_user(
                user_id.0,
                *revoked_at_ms,
                except.map_or(Uuid::nil(), |id| id.0),
            ),
        }
    }

    /// The n-th rotation of a session in the batch goes into round n.
    fn rotate(&mut self, id: Uuid, from_generation: i64, issued_at_ms: i64) {
        let round = self.rounds_of.entry(id).or_insert(0);
        if self.rotation_rounds.len() <= *round {
            self.rotation_rounds.push(Rotations::default());
        }
        let r = &mut self.rotation_rounds[*round];
        r.ids.push(id);
        r.from_generations.push(from_generation);
        r.issued.push(issued_at_ms);
        *round += 1;
    }

    /// The first revocation's time wins, as for sessions; and one `UPDATE`
    /// may change a row only once. Two revocations of one user sparing
    /// different sessions together spare none (`keep`: the nil UUID).
    fn revoke_user(&mut self, user_id: Uuid, revoked_at_ms: i64, keep: Uuid) {
        match self.revoked_users.entry(user_id) {
            Entry::Vacant(entry) => {
                entry.insert(self.keeps.len());
                self.user_revokes.ids.push(user_id);
                self.user_revokes.at.push(revoked_at_ms);
                self.keeps.push(keep);
            }
            Entry::Occupied(entry) => {
                if self.keeps[*entry.get()] != keep {
                    self.keeps[*entry.get()] = Uuid::nil();
                }
            }
        }
    }

    /// The plan, every array sorted by id. Rows are locked in the order the
    /// arrays list them; one order for every instance means two batches
    /// touching the same sessions wait for each other instead of
    /// deadlocking.
    fn into_plan(self) -> Plan {
        let PlanBuilder {
            creates,
            mut rotation_rounds,
            mut revokes,
            mut user_revokes,
            keeps,
            ..
        } = self;
        for round in &mut rotation_rounds {
            round.sort();
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
}

impl Plan {
    pub(super) fn new(batch: &[SessionWrite]) -> Self {
        let mut builder = PlanBuilder::default();
        for write in batch {
            builder.add(write);
        }
        builder.into_plan()
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
/// connection when there is one statement). The outer error is the
/// database's; the inner one a returned row that does not read back.
pub(super) async fn apply_plan<C: deadpool_postgres::GenericClient + Sync>(
    c: &C,
    plan: &Plan,
) -> Result<Result<Written, StoreError>, tokio_postgres::Error> {
    let mut changes = ChangeSet::default();
    let created = if plan.creates.ids.is_empty() {
        Vec::new()
    } else {
        create_sessions(c, &plan.creates).await?
    };
    let mut rotated = Vec::with_capacity(plan.rotation_rounds.len());
    for round in &plan.rotation_rounds {
        let params: [&(dyn ToSql + Sync); 3] = [&round.ids, &round.from_generations, &round.issued];
        match change_sessions(c, ROTATE_SESSIONS, &params, &mut changes).await? {
            Ok(ids) => rotated.push(ids),
            Err(e) => return Ok(Err(e)),
        }
    }
    let mut revoked = Vec::new();
    if !plan.revokes.ids.is_empty() {
        let params: [&(dyn ToSql + Sync); 2] = [&plan.revokes.ids, &plan.revokes.at];
        match change_sessions(c, REVOKE_SESSIONS, &params, &mut changes).await? {
            Ok(ids) => revoked = ids,
            Err(e) => return Ok(Err(e)),
        }
    }
    if !plan.user_revokes.ids.is_empty() {
        let params: [&(dyn ToSql + Sync); 3] = [
            &plan.user_revokes.ids,
            &plan.user_revokes.at,
            &plan.user_revoke_keeps,
        ];
        if let Err(e) = change_sessions(c, REVOKE_USERS, &params, &mut changes).await? {
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

/// Runs [`CREATE_SESSIONS`]: the ids of the sessions created.
async fn create_sessions<C: deadpool_postgres::GenericClient + Sync>(
    c: &C,
    n: &Creates,
) -> Result<Vec<Uuid>, tokio_postgres::Error> {
    let statement = c.prepare_cached(CREATE_SESSIONS).await?;
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
    ids(&rows)
}

/// Runs one of the statements that change sessions and return their final
/// states (rotate, revoke, revoke a user's): the ids of the sessions it
/// changed, their final states recorded in `changes`.
async fn change_sessions<C: deadpool_postgres::GenericClient + Sync>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    changes: &mut ChangeSet,
) -> Result<Result<Vec<Uuid>, StoreError>, tokio_postgres::Error> {
    let statement = c.prepare_cached(sql).await?;
    let rows = c.query(&statement, params).await?;
    let changed = ids(&rows)?;
    Ok(record_rows(changes, &rows).map(|()| changed))
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

//! The SQL both backends run, written once: statements PostgreSQL and
//! SQLite both accept as they are.
//!
//! Parameters are written `$1`, `$2`, ... PostgreSQL binds them by number;
//! SQLite reads `$1` as a *named* parameter and, binding by position,
//! numbers parameters in order of first appearance. So in every statement
//! here the parameters first appear in ascending order (`$1` before `$2`
//! before `$3`), which makes the two bindings agree; a test below checks
//! it. Where the dialects differ (`GREATEST` / `max`, `$3::bigint`) the
//! statements use what both accept (`CASE`, `CAST`).
//!
//! What only one backend runs stays with it: PostgreSQL's row locks and
//! the old service's tables, SQLite's `max(int_id) + 1`, and the session
//! batches and change feed of each.

/// A user row, in the column order both backends' `user_from_row` read:
/// `(id, int_id, password_hash, legacy_id, legacy_tokens_closed, email)`.
macro_rules! select_user {
    ($condition:literal) => {
        concat!(
            "SELECT id, int_id, password_hash, legacy_id, legacy_tokens_closed, email \
             FROM users WHERE ",
            $condition
        )
    };
}
pub(super) use select_user;

pub(super) const USER_BY_EMAIL: &str = select_user!("email = $1");
pub(super) const USER_BY_ID: &str = select_user!("id = $1");
pub(super) const DELETE_USER: &str = "DELETE FROM users WHERE id = $1";
/// A new password closes the old service's credentials of the account.
pub(super) const SET_PASSWORD: &str =
    "UPDATE users SET password_hash = $1, legacy_tokens_closed = true WHERE id = $2";

/// A session row `(id, user_id, generation, issued_at_ms, expires_at_ms,
/// revoked, user_int_id)`.
pub(super) const LOAD_SESSION: &str = "SELECT id, user_id, generation, issued_at_ms, \
     expires_at_ms, revoked_at_ms IS NOT NULL, user_int_id FROM sessions WHERE id = $1";
/// Newest first; `$3` (created_at_ms) and `$4` (id) are where the previous
/// page ended, or NULL. (PostgreSQL needs `$3`'s type where it first
/// appears: hence the casts.)
pub(super) const LIST_SESSIONS: &str = "SELECT id, created_at_ms, issued_at_ms, generation, \
     expires_at_ms, client_address, user_agent FROM sessions \
     WHERE user_id = $1 AND revoked_at_ms IS NULL AND expires_at_ms > $2 \
       AND (CAST($3 AS BIGINT) IS NULL \
         OR (created_at_ms, id) < (CAST($3 AS BIGINT), $4)) \
     ORDER BY created_at_ms DESC, id DESC LIMIT $5";
/// Revokes every live session of user `$2` at `$1`, returning their final
/// states. `updated_at_ms` never moves backwards. `$also_set`: more
/// assignments of a backend's own (SQLite stamps its change sequence);
/// PostgreSQL logs the changes by wrapping the statement in a CTE instead.
macro_rules! revoke_all_of_user {
    ($also_set:literal) => {
        concat!(
            "UPDATE sessions SET revoked_at_ms = $1, \
               updated_at_ms = CASE WHEN updated_at_ms < $1 THEN $1 ELSE updated_at_ms END",
            $also_set,
            " WHERE user_id = $2 AND revoked_at_ms IS NULL \
             RETURNING id, generation, issued_at_ms, revoked_at_ms IS NOT NULL"
        )
    };
}
pub(super) use revoke_all_of_user;

/// Every session of user `$2`, revoked ones included, loses its origin;
/// the live ones are revoked at `$1`. The rows stay as tombstones until
/// pruned. `$also_set` as in [`revoke_all_of_user`].
macro_rules! entomb_sessions {
    ($also_set:literal) => {
        concat!(
            "UPDATE sessions \
             SET revoked_at_ms = COALESCE(revoked_at_ms, $1), \
               updated_at_ms = CASE WHEN revoked_at_ms IS NULL AND updated_at_ms < $1 \
                 THEN $1 ELSE updated_at_ms END, \
               client_address = NULL, user_agent = NULL",
            $also_set,
            " WHERE user_id = $2 \
             RETURNING id, generation, issued_at_ms, revoked_at_ms IS NOT NULL"
        )
    };
}
pub(super) use entomb_sessions;

/// The stored HS256 secret (stored under the name `hs256`).
pub(super) const LOAD_SECRET: &str = "SELECT value FROM service_secrets WHERE name = 'hs256'";
/// Keeps the first secret stored: every instance and restart agree on it.
pub(super) const STORE_SECRET: &str =
    "INSERT INTO service_secrets (name, value) VALUES ('hs256', $1) ON CONFLICT (name) DO NOTHING";
pub(super) const LOAD_SIGNING_KEYS: &str =
    "SELECT kid, algorithm, private_key, public_key, created_at_ms \
     FROM signing_keys ORDER BY created_at_ms, kid";
/// A key already stored under the same `kid` is kept (a retried insert
/// whose first attempt committed is no error); callers read the keys back.
pub(super) const INSERT_SIGNING_KEY: &str = "INSERT INTO signing_keys \
     (kid, algorithm, private_key, public_key, created_at_ms) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (kid) DO NOTHING";

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers of the parameters of `sql` in order of first appearance.
    fn first_appearances(sql: &str) -> Vec<u32> {
        let mut seen = Vec::new();
        let mut rest = sql;
        while let Some(at) = rest.find('$') {
            rest = &rest[at + 1..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(n) = digits.parse::<u32>() {
                if !seen.contains(&n) {
                    seen.push(n);
                }
            }
        }
        seen
    }

    #[test]
    fn parameters_first_appear_in_ascending_order() {
        for sql in [
            USER_BY_EMAIL,
            USER_BY_ID,
            DELETE_USER,
            SET_PASSWORD,
            LOAD_SESSION,
            LIST_SESSIONS,
            revoke_all_of_user!(""),
            entomb_sessions!(""),
            LOAD_SECRET,
            STORE_SECRET,
            LOAD_SIGNING_KEYS,
            INSERT_SIGNING_KEY,
        ] {
            let order = first_appearances(sql);
            let ascending: Vec<u32> = (1..=order.len() as u32).collect();
            assert_eq!(order, ascending, "parameters out of order in: {sql}");
        }
        assert_eq!(first_appearances("a = $2 AND b = $1"), vec![2, 1]);
    }
}

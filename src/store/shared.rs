//! What both backends share, written once: the change set a batch builds,
//! and the SQL that is the same text on PostgreSQL and SQLite.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use uuid::Uuid;

use crate::domain::SessionChange;

/// The stored HS256 secret (both backends store it under the name `hs256`).
pub(super) const LOAD_SECRET: &str = "SELECT value FROM service_secrets WHERE name = 'hs256'";
pub(super) const LOAD_SIGNING_KEYS: &str =
    "SELECT kid, algorithm, private_key, public_key, created_at_ms \
     FROM signing_keys ORDER BY created_at_ms, kid";

/// The final state of every session a batch changed, one entry per
/// session, in the order they were first changed. The writes of a batch
/// apply in order (each statement sees the effects of the earlier ones), so
/// the last state recorded for a session is its final one.
#[derive(Default)]
pub(super) struct ChangeSet {
    list: Vec<SessionChange>,
    index: HashMap<Uuid, usize>,
}

impl ChangeSet {
    pub(super) fn record(&mut self, change: SessionChange) {
        match self.index.entry(change.id.0) {
            Entry::Occupied(entry) => self.list[*entry.get()] = change,
            Entry::Vacant(entry) => {
                entry.insert(self.list.len());
                self.list.push(change);
            }
        }
    }

    pub(super) fn into_list(self) -> Vec<SessionChange> {
        self.list
    }
}

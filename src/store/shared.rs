//! What both backends share, written once: the change set a batch builds.
//! (The SQL they share is in `sql`.)

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use uuid::Uuid;

use crate::domain::SessionChange;

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

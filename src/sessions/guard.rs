//! Load guards: what keeps a read-through from caching a state that a
//! change dropped meanwhile has already superseded.
//!
//! A change for a session that is not cached is dropped (a later read
//! loads the committed state). But a read-through of that session may be in
//! flight: it read the row before the change committed, and would cache
//! that older state after the change was dropped, and nothing would ever
//! correct it. So every dropped change bumps a counter for its session's
//! stripe (one of [`STRIPES`], by id), a resync bumps a global one, and a
//! load takes a [`LoadGuard`] (both counters) before it reads: it may cache
//! what it read only if neither moved. The check and the bump both happen
//! under the cache's map lock for the session, so one of them sees the
//! other.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::domain::SessionId;

/// Stripes of the per-session counters: a dropped change spoils the loads
/// of about 1/STRIPES of the sessions, each then simply read again.
const STRIPES: usize = 4096;

/// The counters a load was started under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LoadGuard {
    global: u64,
    stripe: u64,
}

pub(super) struct Guards {
    global: AtomicU64,
    stripes: Box<[AtomicU64]>,
}

impl Default for Guards {
    fn default() -> Self {
        Guards {
            global: AtomicU64::new(0),
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Guards {
    fn stripe(&self, id: SessionId) -> &AtomicU64 {
        // Session ids are random (v4): their low bits spread evenly.
        &self.stripes[(id.0.as_u128() as usize) % STRIPES]
    }

    /// Taken before a load reads the database.
    pub(super) fn take(&self, id: SessionId) -> LoadGuard {
        LoadGuard {
            global: self.global.load(Ordering::SeqCst),
            stripe: self.stripe(id).load(Ordering::SeqCst),
        }
    }

    /// Whether nothing that could spoil a load of `id` happened since
    /// `guard` was taken.
    pub(super) fn holds(&self, id: SessionId, guard: LoadGuard) -> bool {
        self.take(id) == guard
    }

    /// A change for `id` was dropped (not cached).
    pub(super) fn spoil(&self, id: SessionId) {
        self.stripe(id).fetch_add(1, Ordering::SeqCst);
    }

    /// Every session's state may have changed unseen (a resync).
    pub(super) fn spoil_all(&self) {
        self.global.fetch_add(1, Ordering::SeqCst);
    }
}

//! The order in which [`SessionCache`](super::SessionCache) evicts: a
//! second-chance FIFO (CLOCK) over the cached sessions, an approximation of
//! least recently used that costs a hit nothing but one relaxed store of a
//! flag.
//!
//! Every admitted session is queued with the stamp it was admitted under.
//! To make room, the oldest queued session is looked at: if it was used
//! since it was queued (or since its last look), its flag is cleared and it
//! goes to the back; otherwise it is evicted. Sessions that left the cache
//! some other way (pruned, forgotten, evicted and admitted again under a
//! new stamp) leave stale queue items behind, skipped when reached and
//! compacted away when the queue grows past twice the capacity.

use std::collections::VecDeque;

use crate::domain::SessionId;

/// The queue of admitted sessions, oldest first. Owned by the cache, behind
/// its admission lock.
#[derive(Default)]
pub(super) struct EvictionQueue {
    items: VecDeque<(SessionId, u64)>,
    next_stamp: u64,
}

/// What the cache tells the queue about a queued session.
pub(super) enum Look {
    /// Not cached under this stamp any more: drop the item.
    Gone,
    /// Used since last looked at (the flag is now cleared): requeue.
    Used,
    /// Not used: evict.
    Idle,
}

impl EvictionQueue {
    /// Queues a session being admitted; returns its stamp.
    pub(super) fn admit(&mut self, id: SessionId) -> u64 {
        self.next_stamp += 1;
        self.items.push_back((id, self.next_stamp));
        self.next_stamp
    }

    /// The next session to evict, consulting `look` for each candidate, or
    /// `None` if nothing queued is still cached.
    pub(super) fn victim(
        &mut self,
        mut look: impl FnMut(SessionId, u64) -> Look,
    ) -> Option<(SessionId, u64)> {
        // Each item is looked at most twice (the first look clears its
        // flag), so this ends.
        let mut budget = self.items.len().saturating_mul(2);
        while budget > 0 {
            budget -= 1;
            let (id, stamp) = self.items.pop_front()?;
            match look(id, stamp) {
                Look::Gone => {}
                Look::Used => self.items.push_back((id, stamp)),
                Look::Idle => return Some((id, stamp)),
            }
        }
        None
    }

    /// Drops stale items once the queue is more than twice `capacity`
    /// (`alive` tells whether a session is still cached under a stamp).
    pub(super) fn compact(&mut self, capacity: usize, alive: impl Fn(SessionId, u64) -> bool) {
        if self.items.len() > capacity.saturating_mul(2).max(1024) {
            self.items.retain(|&(id, stamp)| alive(id, stamp));
            self.items.shrink_to(capacity.saturating_mul(2));
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    /// Forgets everything (the cache was emptied).
    pub(super) fn clear(&mut self) {
        self.items = VecDeque::new();
    }
}

//! Keeps `TokenActor`'s cache in step with the other instances.
//!
//! Every instance announces the sessions it rotates or revokes through the
//! store's change feed (PostgreSQL LISTEN/NOTIFY, sent right after the
//! writing transaction committed, so only committed changes travel). This
//! task folds what arrives into the local cache; a revocation on one
//! instance is refused on all others as soon as the notification lands
//! (milliseconds).
//!
//! Notifications are at most once: one sent while our listening connection
//! was down, or never sent (the announcing instance died between its commit
//! and its `NOTIFY`, or its publisher could not reach the database), is
//! lost. So the task also reads the store's change log from where its last
//! read ended ([`Store::changes_after`]: by position, never by scanning the
//! sessions), after every (re)connect and every `catch_up_interval`: a
//! change another instance committed is applied here within one interval
//! (plus one read) even if its notification never arrives and the listener
//! never reconnects. The position is taken at start-up, before the cache
//! holds anything, so nothing the cache ever loads can miss a change.
//!
//! When the log no longer holds everything since the position (this
//! instance was away longer than the retention, or is too far behind), or
//! this task itself went longer than half the retention without a read,
//! the cache resyncs: it forgets every session (each is read through again
//! on its next use). That is logged at WARN and counted
//! (`authd_change_feed_resyncs_total`).
//!
//! SQLite serves one instance and has no feed; then this task does not run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::SessionCache;
use crate::store::{
    ChangeCursor, ChangeRead, FeedEvent, Store, StoreError, CHANGE_LOG_RETENTION_MS,
};
use crate::telemetry::metrics as m;

const CATCH_UP_RETRY: Duration = Duration::from_millis(500);

/// Longest this task may go without a successful read and still trust the
/// log to hold everything after its position: an entry of a transaction
/// still in progress at the last read ages past the retention only after
/// about that long.
const TRUSTED_GAP: Duration = Duration::from_millis((CHANGE_LOG_RETENTION_MS / 2) as u64);

/// Takes the change log's position and starts following the change feed,
/// if the store has one, catching up by reading every `catch_up_interval`.
/// Call before the cache loads anything.
pub(crate) async fn start(
    store: Arc<dyn Store>,
    cache: Arc<SessionCache>,
    catch_up_interval: Duration,
) -> Result<Option<tokio::task::JoinHandle<()>>, StoreError> {
    let Some(mut feed) = store.subscribe() else {
        return Ok(None);
    };
    let mut reader = Reader {
        cursor: store.change_cursor().await?,
        last_read: Instant::now(),
    };
    Ok(Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(catch_up_interval.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick completes at once; the position is fresh.
        tick.tick().await;
        loop {
            tokio::select! {
                event = feed.recv() => match event {
                    Some(FeedEvent::Changes(changes)) => {
                        metrics::counter!(m::FEED_CHANGES).increment(changes.len() as u64);
                        cache.merge_from_peer(&changes);
                    }
                    Some(FeedEvent::Connected) => {
                        metrics::counter!(m::FEED_RECONNECTS).increment(1);
                        reader.catch_up(&*store, &cache, "reconnect").await;
                        tick.reset();
                    }
                    None => return,
                },
                _ = tick.tick() => reader.catch_up(&*store, &cache, "periodic").await,
            }
        }
    })))
}

/// Where this instance stands in the change log.
struct Reader {
    cursor: ChangeCursor,
    /// When the last successful read started.
    last_read: Instant,
}

impl Reader {
    /// Reads and folds in every change after the position, retrying until
    /// the database answers (while it does not, nobody can commit changes
    /// either). Each read is bounded by the store's own timeout.
    async fn catch_up(&mut self, store: &dyn Store, cache: &SessionCache, why: &'static str) {
        loop {
            let started = Instant::now();
            match store.changes_after(&self.cursor).await {
                Ok(read) => {
                    metrics::histogram!(m::FEED_CATCH_UP_DURATION)
                        .record(started.elapsed().as_secs_f64());
                    metrics::counter!(m::FEED_CATCH_UPS).increment(1);
                    let gap = started.duration_since(self.last_read);
                    self.last_read = started;
                    self.apply(cache, read, gap, why);
                    return;
                }
                Err(e) => {
                    tracing::warn!(event = "catch_up_failed", error = %e, "change catch-up failed; retrying")
                }
            }
            tokio::time::sleep(CATCH_UP_RETRY).await;
        }
    }

    /// Folds in one read that started `gap` after the previous one.
    fn apply(&mut self, cache: &SessionCache, read: ChangeRead, gap: Duration, why: &'static str) {
        let (next, lost) = match read {
            ChangeRead::Changes { next, .. } if gap > TRUSTED_GAP => (
                next,
                Some("no read for longer than half the change log's retention"),
            ),
            ChangeRead::Changes { changes, next } => {
                cache.merge_caught_up(&changes);
                if why == "reconnect" {
                    tracing::info!(
                        event = "change_feed_caught_up",
                        changes = changes.len(),
                        "change feed listening; caught up from the change log"
                    );
                } else {
                    tracing::debug!(changes = changes.len(), "periodic catch-up");
                }
                (next, None)
            }
            ChangeRead::Lost { next, why } => (next, Some(why)),
        };
        self.cursor = next;
        if let Some(reason) = lost {
            metrics::counter!(m::FEED_RESYNCS).increment(1);
            tracing::warn!(
                event = "change_feed_resync",
                reason,
                dropped_sessions = cache.len(),
                "change log incomplete since this instance's position; session cache emptied, \
                 sessions are read again on use"
            );
            cache.resync();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{now_ms, Session, SessionChange, UserId};

    fn cached(cache: &SessionCache) -> Session {
        let s = Session::start(UserId::new_random(), 1, now_ms(), 60_000);
        cache.insert_committed(&s);
        s
    }

    fn reader() -> Reader {
        Reader {
            cursor: ChangeCursor::default(),
            last_read: Instant::now(),
        }
    }

    fn at(after: i64) -> ChangeCursor {
        ChangeCursor {
            after,
            pending: vec![after - 1],
        }
    }

    #[test]
    fn changes_are_folded_in_and_the_position_moves_on() {
        let cache = SessionCache::new(8);
        let s = cached(&cache);
        let mut r = reader();
        let revoked = SessionChange {
            id: s.id,
            generation: s.generation,
            issued_at_ms: s.issued_at_ms,
            revoked: true,
        };
        let read = ChangeRead::Changes {
            changes: vec![revoked],
            next: at(42),
        };
        r.apply(&cache, read, Duration::from_secs(5), "periodic");
        assert!(cache.get(s.id).expect("still cached").revoked);
        assert_eq!(r.cursor, at(42));
    }

    #[test]
    fn a_log_that_lost_entries_empties_the_cache() {
        let cache = SessionCache::new(8);
        cached(&cache);
        let mut r = reader();
        let read = ChangeRead::Lost {
            next: at(7),
            why: "pruned",
        };
        r.apply(&cache, read, Duration::from_secs(5), "periodic");
        assert!(cache.is_empty());
        assert_eq!(r.cursor, at(7));
    }

    #[test]
    fn a_read_after_too_long_a_gap_empties_the_cache() {
        let cache = SessionCache::new(8);
        let s = cached(&cache);
        let mut r = reader();
        let read = ChangeRead::Changes {
            changes: Vec::new(),
            next: at(9),
        };
        r.apply(
            &cache,
            read,
            TRUSTED_GAP + Duration::from_secs(1),
            "reconnect",
        );
        assert!(cache.get(s.id).is_none());
        assert_eq!(r.cursor, at(9));
    }
}

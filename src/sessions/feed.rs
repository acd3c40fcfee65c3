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
//! lost. So the task also reads from the database every change since the
//! last such read (minus a margin for clock skew between instances and for
//! commits that took long), after every (re)connect and every
//! `catch_up_interval`: a change another instance committed is applied here
//! within one interval (plus one read) even if its notification never
//! arrives and the listener never reconnects.
//!
//! SQLite serves one instance and has no feed; then this task does not run.

use std::sync::Arc;
use std::time::Duration;

use super::SessionCache;
use crate::domain::now_ms;
use crate::store::{FeedEvent, Store};
use crate::telemetry::metrics as m;

/// Changes stamped this long before the start of the previous catch-up
/// read are read again: tolerance for clocks of different instances and
/// for a write stamped before its (bounded) commit.
const CATCH_UP_MARGIN_MS: i64 = 5_000;
const CATCH_UP_RETRY: Duration = Duration::from_millis(500);

/// Starts following the change feed, if the store has one, catching up by
/// reading every `catch_up_interval`.
pub(crate) fn spawn(
    store: Arc<dyn Store>,
    cache: Arc<SessionCache>,
    catch_up_interval: Duration,
) -> Option<tokio::task::JoinHandle<()>> {
    let mut feed = store.subscribe()?;
    Some(tokio::spawn(async move {
        // Sessions enter the cache only after start-up, by reading their
        // committed state, so nothing before this instant matters.
        let mut read_until = now_ms();
        let mut tick = tokio::time::interval(catch_up_interval.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick completes at once; start-up needs no read.
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
                        read_until = catch_up(&*store, &cache, read_until, "reconnect").await;
                        tick.reset();
                    }
                    None => return,
                },
                _ = tick.tick() => {
                    read_until = catch_up(&*store, &cache, read_until, "periodic").await;
                }
            }
        }
    }))
}

/// Reads and folds in every change stamped since `read_until` minus the
/// margin, retrying until the database answers (while it does not, nobody
/// can commit changes either). Each read is bounded by the store's own
/// timeout. Returns the moment the successful read started: the next one
/// starts from there.
async fn catch_up(
    store: &dyn Store,
    cache: &SessionCache,
    read_until: i64,
    why: &'static str,
) -> i64 {
    loop {
        let started = now_ms();
        let since_ms = read_until - CATCH_UP_MARGIN_MS;
        match store.changes_since(since_ms).await {
            Ok(changes) => {
                metrics::counter!(m::FEED_CATCH_UPS).increment(1);
                cache.merge_from_peer(&changes);
                if why == "reconnect" {
                    tracing::info!(
                        event = "change_feed_caught_up",
                        changes = changes.len(),
                        since_ms,
                        "change feed listening; caught up from the database"
                    );
                } else {
                    tracing::debug!(changes = changes.len(), since_ms, "periodic catch-up");
                }
                return started;
            }
            Err(e) => {
                tracing::warn!(event = "catch_up_failed", error = %e, "change catch-up failed; retrying")
            }
        }
        tokio::time::sleep(CATCH_UP_RETRY).await;
    }
}

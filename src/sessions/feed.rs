//! Keeps `TokenActor`'s cache in step with the other instances.
//!
//! Every instance publishes the sessions it rotates or revokes through the
//! store's change feed (PostgreSQL LISTEN/NOTIFY, sent in the writing
//! transaction, so only committed changes travel). This task folds what
//! arrives into the local cache; a revocation on one instance is refused on
//! all others as soon as the notification lands (milliseconds).
//!
//! A notification sent while our listening connection is down is lost, so
//! after every (re)connect the task reads from the database every change
//! since the last moment it knows it was hearing everything (minus a
//! margin for clock skew between instances) and folds those in too: nothing
//! revoked while we were deaf stays valid here.
//!
//! SQLite serves one instance and has no feed; then this task does not run.

use std::sync::Arc;
use std::time::Duration;

use super::SessionCache;
use crate::domain::now_ms;
use crate::store::{FeedEvent, Store};
use crate::telemetry::metrics as m;

/// Changes stamped this long before our last known-good moment are read
/// again at catch-up: tolerance for clocks of different instances.
const CATCH_UP_MARGIN_MS: i64 = 5_000;
const CATCH_UP_RETRY: Duration = Duration::from_millis(500);

/// Starts following the change feed, if the store has one.
pub fn spawn(
    store: Arc<dyn Store>,
    cache: Arc<SessionCache>,
) -> Option<tokio::task::JoinHandle<()>> {
    let mut feed = store.subscribe()?;
    Some(tokio::spawn(async move {
        // Sessions enter the cache only after start-up, by reading their
        // committed state, so nothing before this instant matters.
        let mut heard_until = now_ms();
        while let Some(event) = feed.recv().await {
            match event {
                FeedEvent::Changes(changes) => {
                    metrics::counter!(m::FEED_CHANGES).increment(changes.len() as u64);
                    cache.merge_from_peer(&changes);
                    // Notifications arrive in commit order: having this one
                    // means we had every earlier one.
                    heard_until = now_ms();
                }
                FeedEvent::Connected => {
                    metrics::counter!(m::FEED_RECONNECTS).increment(1);
                    let listening_since = now_ms();
                    catch_up(&*store, &cache, heard_until - CATCH_UP_MARGIN_MS).await;
                    heard_until = listening_since;
                }
            }
        }
    }))
}

/// Reads and folds in every change since `since_ms`, retrying until the
/// database answers (while it does not, nobody can commit changes either).
/// Each read is bounded by the store's own timeout.
async fn catch_up(store: &dyn Store, cache: &SessionCache, since_ms: i64) {
    loop {
        match store.changes_since(since_ms).await {
            Ok(changes) => {
                cache.merge_from_peer(&changes);
                tracing::info!(
                    event = "change_feed_caught_up",
                    changes = changes.len(),
                    since_ms,
                    "change feed listening; caught up from the database"
                );
                return;
            }
            Err(e) => {
                tracing::warn!(event = "catch_up_failed", error = %e, "change catch-up failed; retrying")
            }
        }
        tokio::time::sleep(CATCH_UP_RETRY).await;
    }
}

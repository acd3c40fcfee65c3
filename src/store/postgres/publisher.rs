//! Publishing committed session changes to the other instances: one task
//! with a connection of its own sends them as coalesced `NOTIFY`s, outside
//! the transactions that wrote them.
//!
//! Why not in the writing transaction: PostgreSQL serialises the commits of
//! transactions that notified (a database-wide lock held until the commit
//! record is flushed), so notifying batches commit one at a time, each
//! waiting for its own fsync. Here the write transactions commit in
//! parallel and share WAL flushes; only this task notifies, one statement
//! at a time, with everything that was committed while the previous one
//! was in flight.
//!
//! Its connection runs with `synchronous_commit = off`: a transaction that
//! only notifies writes no data, so there is nothing to make durable, and
//! its commit does not wait for a flush. A notification is delivered only
//! after the change it announces committed (this task hears of a change
//! only once [`Store::write_sessions`] committed it).
//!
//! Notifications are best effort: a publish that fails (database away,
//! queue full, the instance killed between commit and publish) is lost.
//! The listeners' periodic catch-up read (`sessions::feed`) bounds how long
//! any instance can miss a change.

use super::*;

/// Batches of changes waiting for the publisher. Beyond this, changes are
/// not announced (the catch-up read brings them).
const PUBLISH_QUEUE: usize = 4096;
/// Most changes announced by one statement.
const PUBLISH_MAX_CHANGES: usize = 16_384;
/// `application_name` of the publisher's connection.
const PUBLISHER_APPLICATION_NAME: &str = "authd-publisher";
/// Wait before connecting again after the publisher's connection failed.
const PUBLISHER_RETRY: Duration = Duration::from_millis(200);

/// Handle to the publisher task; it stops when the handle is dropped.
pub(super) struct Publisher {
    queue: mpsc::Sender<Vec<SessionChange>>,
    /// Test hook: announce nothing (as if every notification were lost).
    #[cfg(feature = "test-hooks")]
    dropping: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Publisher {
    /// Starts the task; it connects (to the primary) on first use.
    pub(super) fn spawn(
        config: &tokio_postgres::Config,
        primary: &Arc<Primary>,
        timeout: Duration,
    ) -> Self {
        let mut config = config.clone();
        config
            .application_name(PUBLISHER_APPLICATION_NAME)
            .options(format!("-c search_path={SCHEMA} -c synchronous_commit=off"));
        let (queue, inbox) = mpsc::channel(PUBLISH_QUEUE);
        #[cfg(feature = "test-hooks")]
        let dropping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        tokio::spawn(run(
            Arc::clone(primary),
            config,
            timeout,
            inbox,
            #[cfg(feature = "test-hooks")]
            std::sync::Arc::clone(&dropping),
        ));
        Publisher {
            queue,
            #[cfg(feature = "test-hooks")]
            dropping,
        }
    }

    /// Announces committed `changes`, soon; never waits.
    pub(super) fn publish(&self, changes: Vec<SessionChange>) {
        if changes.is_empty() {
            return;
        }
        let count = changes.len() as u64;
        if self.queue.try_send(changes).is_err() {
            lost(count, "publish queue full");
        }
    }

    /// Test hook: while `on`, changes are discarded instead of announced.
    #[cfg(feature = "test-hooks")]
    pub(super) fn drop_notifications(&self, on: bool) {
        self.dropping.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Counts changes that will reach the other instances only through their
/// catch-up read.
fn lost(count: u64, why: &'static str) {
    use crate::telemetry::metrics as m;
    metrics::counter!(m::FEED_UNANNOUNCED).increment(count);
    tracing::debug!(changes = count, why, "changes not announced");
}

async fn run(
    primary: Arc<Primary>,
    config: tokio_postgres::Config,
    timeout: Duration,
    mut inbox: mpsc::Receiver<Vec<SessionChange>>,
    #[cfg(feature = "test-hooks")] dropping: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let mut client: Option<(tokio_postgres::Client, tokio_postgres::Statement)> = None;
    let mut warned = false;
    while let Some(changes) = next_changes(&mut inbox).await {
        #[cfg(feature = "test-hooks")]
        if dropping.load(std::sync::atomic::Ordering::SeqCst) {
            lost(changes.len() as u64, "dropped by the test hook");
            continue;
        }
        if client.as_ref().is_none_or(|(c, _)| c.is_closed()) {
            client = match connect(&primary, &config, timeout).await {
                Ok(c) => Some(c),
                Err(error) => {
                    if !warned {
                        tracing::warn!(
                            event = "publisher_unavailable",
                            %error,
                            "cannot announce session changes; other instances catch up by reading"
                        );
                        warned = true;
                    }
                    lost(changes.len() as u64, "publisher cannot connect");
                    tokio::time::sleep(PUBLISHER_RETRY).await;
                    continue;
                }
            };
        }
        let Some((c, notify)) = client.as_ref() else {
            continue;
        };
        if announce(c, notify, &changes, timeout).await {
            warned = false;
        } else {
            client = None;
        }
    }
}

/// The next changes to announce, `None` once every sender is gone. Waits
/// for some, then takes everything committed while the previous statement
/// was in flight too (up to [`PUBLISH_MAX_CHANGES`]), so it goes out in one
/// statement.
async fn next_changes(
    inbox: &mut mpsc::Receiver<Vec<SessionChange>>,
) -> Option<Vec<SessionChange>> {
    let mut changes = inbox.recv().await?;
    while changes.len() < PUBLISH_MAX_CHANGES {
        match inbox.try_recv() {
            Ok(more) => changes.extend(more),
            Err(_) => break,
        }
    }
    Some(changes)
}

/// Sends the `NOTIFY`s announcing `changes`. False (the changes counted as
/// lost) when that failed, and the connection is not to be trusted again.
async fn announce(
    c: &tokio_postgres::Client,
    notify: &tokio_postgres::Statement,
    changes: &[SessionChange],
    timeout: Duration,
) -> bool {
    let payloads = encode_changes(changes);
    let sent =
        tokio::time::timeout(timeout, c.execute(notify, &[&CHANGE_CHANNEL, &payloads])).await;
    match sent {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            let error = Failure::Db(e).into_store_error("announcing changes");
            tracing::warn!(event = "publish_failed", %error, "announcing changes failed");
            lost(changes.len() as u64, "publish failed");
            false
        }
        Err(_) => {
            tracing::warn!(event = "publish_failed", "announcing changes timed out");
            lost(changes.len() as u64, "publish timed out");
            false
        }
    }
}

/// The publisher's own connection (driven by a task of its own) and its
/// prepared `NOTIFY` statement.
async fn connect(
    primary: &Primary,
    config: &tokio_postgres::Config,
    timeout: Duration,
) -> Result<(tokio_postgres::Client, tokio_postgres::Statement), StoreError> {
    const CONTEXT: &str = "publisher connection";
    let work = async {
        let (client, connection) = primary
            .connect(config)
            .await
            .map_err(|none| none.into_store_error(CONTEXT))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "publisher connection ended");
            }
        });
        let notify = client
            .prepare(NOTIFY_CHANGES)
            .await
            .map_err(|e| Failure::Db(e).into_store_error(CONTEXT))?;
        Ok((client, notify))
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(Failure::Elapsed(timeout).into_store_error(CONTEXT)),
    }
}

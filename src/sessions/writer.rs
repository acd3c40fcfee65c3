//! Group commit for session writes, owned by `TokenActor`.
//!
//! `TokenActor` never waits on the database: it hands each write to this
//! task through a bounded queue and moves on to its next message. The task
//! takes everything queued (up to `max_batch`, optionally waiting up to
//! `max_wait` for more; up to `concurrency` batches in flight at once),
//! writes it with one [`Store::write_sessions`] call
//! (one transaction, one statement per kind of write), folds the sessions
//! the batch changed into `TokenActor`'s cache, and only then tells each
//! submitter its own outcome. So a caller is answered only after its row is
//! durable, the cache never shows an uncommitted state, and under load many
//! callers share one commit.
//!
//! When the last [`SessionWriter`] handle is dropped (the actor stopped or
//! crashed), the task still writes everything already queued, then exits;
//! nothing accepted is dropped.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};

use super::SessionCache;
use crate::store::{SessionWrite, Store, StoreError, WriteOutcome};
use crate::telemetry::metrics as m;

/// Submissions allowed to wait for the writer. Beyond this, submitting
/// fails at once and the request gets 503: memory stays bounded when the
/// database is slower than the traffic.
const QUEUE_CAPACITY: usize = 65_536;

pub(crate) type WriteResult = Result<WriteOutcome, StoreError>;

/// What to do with a write's outcome. Runs inside the writer task, right
/// after the batch: it must be quick and must not block (send a reply,
/// spawn a task for anything slower).
pub(crate) type OnDurable = Box<dyn FnOnce(WriteResult) + Send>;

struct Submission {
    write: SessionWrite,
    done: OnDurable,
}

/// How batches are formed and written.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Most writes in one batch.
    pub max_batch: usize,
    /// Longest a write waits for company (zero: flush what is queued).
    pub max_wait: Duration,
    /// Batches written at the same time; 0 (the default) counts as one.
    /// One suits both stores: SQLite has one writer, and on PostgreSQL a
    /// second batch in flight halves the batches (the next one no longer
    /// gathers what arrives during a commit), which cost 35–45% more
    /// PostgreSQL CPU per refresh for no more throughput (measured at 64
    /// and 256 connections on the 2-vCPU benchmark machine,
    /// `.ci/RESULTS.md`, "Notes on the run").
    pub concurrency: usize,
}

/// Handle to the writer task; cheap to clone.
#[derive(Clone)]
pub(crate) struct SessionWriter {
    queue: mpsc::Sender<Submission>,
}

impl SessionWriter {
    /// Starts the writer task.
    pub(crate) fn spawn(
        store: Arc<dyn Store>,
        cache: Arc<SessionCache>,
        limits: BatchLimits,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (queue, inbox) = mpsc::channel(QUEUE_CAPACITY);
        let task = tokio::spawn(run(store, cache, inbox, limits));
        (SessionWriter { queue }, task)
    }

    /// Queues a write; `done` gets its outcome once it is durable (or
    /// failed). If the queue is full, `done` gets `Unavailable` at once.
    pub(crate) fn submit(&self, write: SessionWrite, done: OnDurable) {
        if let Err(refused) = self.queue.try_send(Submission { write, done }) {
            let submission = match refused {
                mpsc::error::TrySendError::Full(s) | mpsc::error::TrySendError::Closed(s) => s,
            };
            (submission.done)(Err(StoreError::unavailable("session write queue is full")));
        }
    }
}

async fn run(
    store: Arc<dyn Store>,
    cache: Arc<SessionCache>,
    mut inbox: mpsc::Receiver<Submission>,
    limits: BatchLimits,
) {
    // Up to `concurrency` batches in flight: while one waits for its commit
    // (the fsync), the next is already being written, so the CPU is not idle
    // behind the disk.
    let in_flight = Arc::new(Semaphore::new(limits.concurrency.max(1)));
    let mut flushes = tokio::task::JoinSet::new();
    loop {
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            break;
        };
        let Some(first) = inbox.recv().await else {
            break;
        };
        let mut batch = Vec::with_capacity(limits.max_batch);
        batch.push(first);
        collect(&mut inbox, &mut batch, limits.max_batch, limits.max_wait).await;
        let (store, cache) = (Arc::clone(&store), Arc::clone(&cache));
        while flushes.try_join_next().is_some() {}
        flushes.spawn(async move {
            flush(&*store, &cache, batch).await;
            drop(permit);
        });
    }
    // The queue is closed and empty: let the last batches finish, so a
    // shutdown that waits for this task waits for every write.
    while flushes.join_next().await.is_some() {}
}

/// Writes one batch, folds its changes into the cache, answers everyone.
async fn flush(store: &dyn Store, cache: &SessionCache, mut batch: Vec<Submission>) {
    let writes: Vec<SessionWrite> = batch.iter().map(|s| s.write.clone()).collect();
    let started = std::time::Instant::now();
    // A database that accepts the connection but never answers must not
    // stall every session write forever: the store bounds the batch by its
    // own timeout (`db_timeout`), so it is not wrapped again here.
    let result = store.write_sessions(&writes).await;
    tracing::debug!(writes = writes.len(), ok = result.is_ok(), "session batch");
    metrics::histogram!(m::BATCH_SIZE).record(writes.len() as f64);
    metrics::histogram!(m::BATCH_DURATION).record(started.elapsed().as_secs_f64());
    if result.is_err() {
        metrics::counter!(m::BATCH_FAILURES).increment(1);
    }
    if let Ok(done) = &result {
        // Changes commute (generations only grow, revocation is
        // permanent), so batches finishing out of order merge correctly.
        cache.merge_batch(&done.changes);
    }
    answer(&mut batch, result.map(|done| done.outcomes));
}

/// Adds to `batch` whatever is already queued, and, if `max_wait` is set,
/// what arrives within it, up to `max_batch` submissions.
async fn collect(
    inbox: &mut mpsc::Receiver<Submission>,
    batch: &mut Vec<Submission>,
    max_batch: usize,
    max_wait: Duration,
) {
    while batch.len() < max_batch {
        match inbox.try_recv() {
            Ok(s) => batch.push(s),
            Err(_) => break,
        }
    }
    if max_wait.is_zero() {
        return;
    }
    let deadline = tokio::time::Instant::now() + max_wait;
    while batch.len() < max_batch {
        match tokio::time::timeout_at(deadline, inbox.recv()).await {
            Ok(Some(s)) => batch.push(s),
            Ok(None) | Err(_) => break,
        }
    }
}

fn answer(batch: &mut Vec<Submission>, result: Result<Vec<WriteOutcome>, StoreError>) {
    match result {
        Ok(outcomes) => {
            let mut outcomes = outcomes.into_iter();
            for submission in batch.drain(..) {
                // A store that returns fewer outcomes than writes is a bug;
                // report it instead of acknowledging blindly.
                let outcome = outcomes
                    .next()
                    .ok_or_else(|| StoreError::internal("store returned too few outcomes"));
                (submission.done)(outcome);
            }
        }
        Err(e) => {
            // Every write of a failed batch failed the same way.
            for submission in batch.drain(..) {
                (submission.done)(Err(e.clone()));
            }
        }
    }
}

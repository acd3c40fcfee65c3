//! Finding the primary: every connection authd makes (pooled, the change
//! feed's, the publisher's, the maintenance one that creates the database)
//! goes through [`Primary::connect`], which tries the configured hosts and
//! keeps the first that accepts writes (`target_session_attrs=read-write`:
//! a standby is refused at once, so no session state is ever read from
//! one). A PostgreSQL server cannot turn from primary into standby without
//! restarting, so a connection made to the primary stays on the primary
//! for its whole life; after a failover or switchover the old connections
//! fail, and the next ones land on the new primary.
//!
//! Hosts are tried from the one that was primary last time, so after a
//! failover new connections do not first knock at the old primary (which
//! may be dead, or back as a standby). Each host's TCP connect gets a share
//! of the store's timeout, so one unreachable host cannot use up the time
//! the others need.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::config::TargetSessionAttrs;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{Client, Connection, NoTls, Socket};

use super::errors::Failure;
use crate::settings::PgHost;
use crate::store::StoreError;

/// A host's TCP connect never gets less than this, however many hosts
/// share the timeout.
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_millis(250);

/// A new connection and the future that drives it.
pub(super) type Connected = (Client, Connection<Socket, NoTlsStream>);

/// The configured hosts and which of them was primary last; shared by
/// every connection of one store.
pub(super) struct Primary {
    hosts: Vec<PgHost>,
    /// Index into `hosts` of the last host found primary: tried first.
    last: AtomicUsize,
    connect_timeout: Duration,
}

/// Every host refused: the error of each, in the order tried.
pub(super) struct NoPrimary {
    attempts: Vec<(PgHost, tokio_postgres::Error)>,
}

impl Primary {
    /// `hosts` must not be empty (settings guarantee it); `timeout` is the
    /// store's bound on one connection attempt.
    pub(super) fn new(hosts: Vec<PgHost>, timeout: Duration) -> Arc<Primary> {
        let share = timeout / u32::try_from(hosts.len().max(1)).unwrap_or(u32::MAX);
        Arc::new(Primary {
            hosts,
            last: AtomicUsize::new(0),
            connect_timeout: share.max(MIN_CONNECT_TIMEOUT),
        })
    }

    /// Connects with `template` (everything but the host) to the first
    /// host, from the last primary on, that accepts writes.
    ///
    /// Callers bound the whole attempt with a timeout of their own. If that
    /// cancels it while a host hangs after accepting the TCP connection,
    /// the next attempt starts with the host after it.
    pub(super) async fn connect(
        &self,
        template: &tokio_postgres::Config,
    ) -> Result<Connected, NoPrimary> {
        let count = self.hosts.len();
        let first = self.last.load(Ordering::Relaxed) % count.max(1);
        let mut attempts = Vec::new();
        for index in (0..count).map(|k| (first + k) % count) {
            let host = &self.hosts[index];
            let mut config = template.clone();
            config
                .host(&host.host)
                .port(host.port)
                .target_session_attrs(TargetSessionAttrs::ReadWrite)
                .connect_timeout(self.connect_timeout);
            let skip_on_cancel = SkipOnCancel::new(&self.last, index, count);
            let result = config.connect(NoTls).await;
            skip_on_cancel.disarm();
            match result {
                Ok(connected) => {
                    self.found(index);
                    return Ok(connected);
                }
                Err(error) => attempts.push((host.clone(), error)),
            }
        }
        Err(NoPrimary { attempts })
    }

    /// [`connect`](Self::connect) with each attempt bounded by `limit`,
    /// attempting again (from the host after the one that hung) after a
    /// timeout, at most once per host; `None` when every attempt timed
    /// out. For start-up, where one hung host must not stop authd.
    pub(super) async fn connect_within(
        &self,
        template: &tokio_postgres::Config,
        limit: Duration,
    ) -> Option<Result<Connected, NoPrimary>> {
        for _ in 0..self.hosts.len().max(1) {
            if let Ok(result) = tokio::time::timeout(limit, self.connect(template)).await {
                return Some(result);
            }
        }
        None
    }

    /// Records `index` as the primary, logging when it moved.
    fn found(&self, index: usize) {
        let before = self.last.swap(index, Ordering::Relaxed);
        if before != index && self.hosts.len() > 1 {
            tracing::info!(
                event = "postgres_primary",
                primary = %self.hosts[index],
                "connected to the PostgreSQL primary"
            );
        }
    }

    /// The host found primary last (for the start-up log).
    pub(super) fn current(&self) -> Option<&PgHost> {
        self.hosts
            .get(self.last.load(Ordering::Relaxed) % self.hosts.len().max(1))
    }
}

/// Moves the next attempt's starting point past host `index` when dropped
/// armed, i.e. when the caller's timeout cancelled the attempt on it.
struct SkipOnCancel<'a> {
    last: &'a AtomicUsize,
    index: usize,
    count: usize,
    armed: bool,
}

impl<'a> SkipOnCancel<'a> {
    fn new(last: &'a AtomicUsize, index: usize, count: usize) -> Self {
        SkipOnCancel {
            last,
            index,
            count,
            armed: true,
        }
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for SkipOnCancel<'_> {
    fn drop(&mut self) {
        if self.armed && self.count > 1 {
            let next = (self.index + 1) % self.count;
            let _ =
                self.last
                    .compare_exchange(self.index, next, Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}

impl NoPrimary {
    /// One [`StoreError`] naming every host and why it was not used.
    /// Unavailable (503, retry later) unless a server gave a definitive
    /// answer, such as a refused login.
    pub(super) fn into_store_error(self, context: &str) -> StoreError {
        let mut definitive = false;
        let reasons: Vec<String> = self
            .attempts
            .into_iter()
            .map(|(host, error)| {
                let (unavailable, message) = Failure::Db(error).explain(&host.to_string());
                definitive |= !unavailable;
                message
            })
            .collect();
        let message = format!("{context}: no primary: {}", reasons.join("; "));
        if definitive {
            StoreError::internal(message)
        } else {
            StoreError::unavailable(message)
        }
    }

    /// The last host's error, for APIs that take a driver error.
    fn into_last(self) -> Option<tokio_postgres::Error> {
        self.attempts.into_iter().last().map(|(_, error)| error)
    }
}

/// The pool's way of connecting: through [`Primary`], with the connection
/// driven by a task of its own.
pub(super) struct PoolConnect(pub(super) Arc<Primary>);

type Connecting<'a> = Pin<
    Box<dyn Future<Output = Result<(Client, JoinHandle<()>), tokio_postgres::Error>> + Send + 'a>,
>;

impl deadpool_postgres::Connect for PoolConnect {
    fn connect(&self, template: &tokio_postgres::Config) -> Connecting<'_> {
        let template = template.clone();
        Box::pin(async move {
            let connected = self.0.connect(&template).await;
            let (client, connection) = match connected {
                Ok(pair) => pair,
                Err(none) => match none.into_last() {
                    Some(error) => return Err(error),
                    // No host at all: the driver itself says so.
                    None => template.connect(NoTls).await?,
                },
            };
            let task = tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "pooled PostgreSQL connection ended");
                }
            });
            Ok((client, task))
        })
    }
}

#[cfg(test)]
mod tests;

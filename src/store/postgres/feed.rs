//! The change feed: a dedicated `LISTEN` connection, its notification
//! payloads, and reconnection with backoff (see the module documentation of
//! [`super`] for why it is not a pooled connection).

use super::setup::quote_ident;
use super::*;

/// The notification payloads announcing `changes`: one line
/// `"<uuid> <generation> <issued_at_ms> <0|1>"` per change, `\n`-separated,
/// as few payloads as fit under [`MAX_PAYLOAD_BYTES`] each.
pub(super) fn encode_changes(changes: &[SessionChange]) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut payload = String::new();
    for change in changes {
        let line = format!(
            "{} {} {} {}",
            change.id,
            change.generation,
            change.issued_at_ms,
            u8::from(change.revoked)
        );
        // A line is at most ~70 bytes, so it always fits an empty payload.
        if !payload.is_empty() && payload.len() + 1 + line.len() >= MAX_PAYLOAD_BYTES {
            payloads.push(std::mem::take(&mut payload));
        }
        if !payload.is_empty() {
            payload.push('\n');
        }
        payload.push_str(&line);
    }
    if !payload.is_empty() {
        payloads.push(payload);
    }
    payloads
}

/// The changes a payload of [`encode_changes`] announces. Lines that do not
/// parse (another writer on the channel, a newer format) are skipped, never
/// an error: the feed must keep going.
pub(super) fn decode_changes(payload: &str) -> Vec<SessionChange> {
    payload
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let id = Uuid::parse_str(fields.next()?).ok()?;
            let generation = fields.next()?.parse().ok()?;
            let issued_at_ms = fields.next()?.parse().ok()?;
            let revoked = match fields.next()? {
                "0" => false,
                "1" => true,
                _ => return None,
            };
            if fields.next().is_some() {
                return None;
            }
            Some(SessionChange {
                id: SessionId(id),
                generation,
                issued_at_ms,
                revoked,
            })
        })
        .collect()
}

/// What the change feed's errors say they were doing.
const FEED_CONTEXT: &str = "change feed";

/// Why one connection of the change feed ended.
enum FeedEnd {
    /// The receiver was dropped: stop.
    ReceiverGone,
    /// Connecting or `LISTEN` failed.
    ConnectFailed(StoreError),
    /// An established feed broke.
    Lost(StoreError),
}

/// The change feed task: listens, and reconnects with backoff whenever the
/// connection fails, until the receiver is dropped.
pub(super) async fn run_feed(
    primary: Arc<Primary>,
    config: tokio_postgres::Config,
    timeout: Duration,
    sender: mpsc::Sender<FeedEvent>,
) {
    let mut backoff = FEED_BACKOFF_MIN;
    let mut failed_attempts: u32 = 0;
    loop {
        match listen(&primary, &config, timeout, &sender).await {
            FeedEnd::ReceiverGone => {
                tracing::debug!("change feed receiver dropped; feed stopped");
                return;
            }
            FeedEnd::Lost(error) => {
                // It had connected, so the server was fine a moment ago:
                // retry soon.
                backoff = FEED_BACKOFF_MIN;
                failed_attempts = 0;
                tracing::warn!(
                    event = "change_feed_lost",
                    %error,
                    retry_in_ms = backoff.as_millis() as u64,
                    "change feed lost; reconnecting"
                );
            }
            FeedEnd::ConnectFailed(error) => {
                failed_attempts = failed_attempts.saturating_add(1);
                // Once per outage at WARN; the retries every couple of
                // seconds after that only at DEBUG.
                if failed_attempts == 1 {
                    tracing::warn!(
                        event = "change_feed_lost",
                        %error,
                        retry_in_ms = backoff.as_millis() as u64,
                        "change feed cannot connect; retrying"
                    );
                } else {
                    tracing::debug!(
                        event = "change_feed_lost",
                        %error,
                        attempt = failed_attempts,
                        retry_in_ms = backoff.as_millis() as u64,
                        "change feed still cannot connect"
                    );
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = sender.closed() => return,
        }
        backoff = (backoff * 2).min(FEED_BACKOFF_MAX);
    }
}

/// One connection of the change feed: connect, `LISTEN`, announce
/// [`FeedEvent::Connected`], then forward notifications until something
/// fails or the receiver goes away.
async fn listen(
    primary: &Primary,
    config: &tokio_postgres::Config,
    timeout: Duration,
    sender: &mpsc::Sender<FeedEvent>,
) -> FeedEnd {
    let listen_sql = format!("LISTEN {}", quote_ident(CHANGE_CHANNEL));
    let (client, mut connection, mut pending) =
        match connect_and_listen(primary, config, timeout, sender, &listen_sql).await {
            Ok(listening) => listening,
            Err(end) => return end,
        };
    tracing::info!(
        event = "change_feed_connected",
        channel = CHANGE_CHANNEL,
        "change feed listening"
    );
    if sender.send(FeedEvent::Connected).await.is_err() {
        return FeedEnd::ReceiverGone;
    }

    let heartbeat = heartbeat(&client, &listen_sql, timeout);
    tokio::pin!(heartbeat);

    // Receiving and forwarding are separate branches, so a slow receiver
    // does not stop the connection (and the heartbeat) from being driven,
    // up to FEED_CAPACITY notifications waiting here.
    let end = loop {
        tokio::select! {
            permit = sender.reserve(), if !pending.is_empty() => match (permit, pending.pop_front()) {
                (Ok(permit), Some(changes)) => permit.send(FeedEvent::Changes(changes)),
                (Ok(_), None) => {}
                (Err(_), _) => return FeedEnd::ReceiverGone,
            },
            message = next_changes(&mut connection), if pending.len() < FEED_CAPACITY => {
                match message {
                    Ok(Some(changes)) => pending.push_back(changes),
                    Ok(None) => {}
                    Err(error) => break error,
                }
            }
            error = &mut heartbeat => break error,
            () = sender.closed() => return FeedEnd::ReceiverGone,
        }
    };
    // What already arrived was committed: deliver it before reconnecting.
    for changes in pending {
        if sender.send(FeedEvent::Changes(changes)).await.is_err() {
            return FeedEnd::ReceiverGone;
        }
    }
    FeedEnd::Lost(end)
}

/// A listening connection of the feed: the client, its connection (to be
/// driven), and the changes it delivered while `LISTEN` ran.
type Listening = (
    tokio_postgres::Client,
    Connection<Socket, NoTlsStream>,
    VecDeque<Vec<SessionChange>>,
);

/// Connects to the primary and runs `listen_sql`, each within `timeout`;
/// gives up as soon as the receiver goes away.
async fn connect_and_listen(
    primary: &Primary,
    config: &tokio_postgres::Config,
    timeout: Duration,
    sender: &mpsc::Sender<FeedEvent>,
    listen_sql: &str,
) -> Result<Listening, FeedEnd> {
    let failed = |failure: Failure| FeedEnd::ConnectFailed(failure.into_store_error(FEED_CONTEXT));
    let connect = tokio::time::timeout(timeout, primary.connect(config));
    let (client, mut connection) = tokio::select! {
        connected = connect => match connected {
            Ok(Ok(pair)) => pair,
            Ok(Err(none)) => return Err(FeedEnd::ConnectFailed(none.into_store_error(FEED_CONTEXT))),
            Err(_) => return Err(failed(Failure::Elapsed(timeout))),
        },
        () = sender.closed() => return Err(FeedEnd::ReceiverGone),
    };

    // The connection only makes progress while polled, so drive it while
    // `LISTEN` runs (and keep anything it already delivers).
    let mut pending: VecDeque<Vec<SessionChange>> = VecDeque::new();
    {
        let listened = tokio::time::timeout(timeout, client.batch_execute(listen_sql));
        tokio::pin!(listened);
        loop {
            tokio::select! {
                done = &mut listened => match done {
                    Ok(Ok(())) => break,
                    Ok(Err(e)) => return Err(failed(Failure::Db(e))),
                    Err(_) => return Err(failed(Failure::Elapsed(timeout))),
                },
                message = next_changes(&mut connection) => match message {
                    Ok(Some(changes)) => pending.push_back(changes),
                    Ok(None) => {}
                    Err(error) => return Err(FeedEnd::ConnectFailed(error)),
                },
                () = sender.closed() => return Err(FeedEnd::ReceiverGone),
            }
        }
    }
    Ok((client, connection, pending))
}

/// Re-runs `listen_sql` every [`FEED_HEARTBEAT`]; completes only when the
/// server stopped answering. Re-listening is a no-op round trip that keeps
/// `LISTEN ...` as the connection's last query in `pg_stat_activity`.
async fn heartbeat(
    client: &tokio_postgres::Client,
    listen_sql: &str,
    timeout: Duration,
) -> StoreError {
    loop {
        tokio::time::sleep(FEED_HEARTBEAT).await;
        match tokio::time::timeout(timeout, client.batch_execute(listen_sql)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Failure::Db(e).into_store_error(FEED_CONTEXT),
            Err(_) => return Failure::Elapsed(timeout).into_store_error(FEED_CONTEXT),
        }
    }
}

/// Drives `connection` to its next message: `Some(changes)` for a
/// notification on [`CHANGE_CHANNEL`] announcing any, `None` for anything
/// else, an error once the connection has ended (after which it must not be
/// polled again).
async fn next_changes(
    connection: &mut Connection<Socket, NoTlsStream>,
) -> Result<Option<Vec<SessionChange>>, StoreError> {
    match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
        Some(Ok(AsyncMessage::Notification(notification))) => {
            if notification.channel() != CHANGE_CHANNEL {
                return Ok(None);
            }
            let changes = decode_changes(notification.payload());
            Ok((!changes.is_empty()).then_some(changes))
        }
        Some(Ok(AsyncMessage::Notice(notice))) => {
            tracing::debug!(notice = notice.message(), "change feed: server notice");
            Ok(None)
        }
        Some(Ok(_)) => Ok(None),
        Some(Err(e)) => Err(Failure::Db(e).into_store_error("change feed")),
        None => Err(StoreError::unavailable("change feed: connection closed")),
    }
}

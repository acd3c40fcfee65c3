//! The hyper server: accepts connections, serves HTTP/1.1 (keep-alive) and
//! HTTP/2 on each through hyper-util's auto builder, and drains on shutdown.
//!
//! Explicit limits, because a server without them belongs to its slowest
//! client: a header-read timeout (which only works with a timer installed,
//! hence `.timer(TokioTimer::new())`), a header-size limit (hyper's read
//! buffer is capped at twice `max_header_bytes`, beyond which hyper itself
//! answers 431 without a body; between the two authd answers a JSON 431),
//! body size and time limits (in `json`), HTTP/2 stream and reset limits,
//! and a connection cap: past `max_connections` the accept loop waits, so
//! excess clients queue in the kernel's backlog instead of in our memory.
//! Every connection ends with a lingering close (`linger`).
//!
//! The same loop serves the public listener and, when `admin_bind` is set,
//! the admin one; each has its [`Surface`].

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::linger::LingeringStream;
use super::routes::{route, AppContext, Surface};
use super::ApiError;
use crate::telemetry::metrics as m;

#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub http2_max_concurrent_streams: u32,
    pub http2_max_pending_reset_streams: usize,
}

/// Serves `listener` until `shutdown` completes with the shutdown's
/// deadline, then stops accepting and waits until that deadline at most
/// for in-flight requests to finish.
pub(crate) async fn serve(
    listener: TcpListener,
    surface: Surface,
    ctx: Arc<AppContext>,
    limits: ServerLimits,
    shutdown: impl Future<Output = tokio::time::Instant>,
) {
    let builder = connection_builder(&limits);
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let request_ids = Arc::new(AtomicU64::new(1));
    tokio::pin!(shutdown);

    let deadline = loop {
        let permit = tokio::select! {
            permit = Arc::clone(&connections).acquire_owned() => match permit {
                Ok(p) => p,
                // Never closed; were it, nothing more could be accepted.
                Err(_) => break (&mut shutdown).await,
            },
            deadline = &mut shutdown => break deadline,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(event = "accept_failed", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            deadline = &mut shutdown => break deadline,
        };
        let _ = stream.set_nodelay(true);
        spawn_connection(
            Accepted {
                stream,
                peer,
                permit,
            },
            surface,
            Arc::clone(&ctx),
            Arc::clone(&request_ids),
            builder.clone(),
            graceful.watcher(),
            limits.header_read_timeout,
        );
    };

    drop(listener);
    drain(graceful, deadline).await;
}

/// An accepted TCP connection and the connection slot it holds.
struct Accepted {
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    permit: tokio::sync::OwnedSemaphorePermit,
}

/// Serves one accepted connection on a task of its own, under `watcher` so
/// the drain can wait for it. A connection that does not start speaking
/// HTTP within `preface_timeout` is dropped with its slot.
fn spawn_connection(
    accepted: Accepted,
    surface: Surface,
    ctx: Arc<AppContext>,
    request_ids: Arc<AtomicU64>,
    builder: auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    preface_timeout: Duration,
) {
    let Accepted {
        stream,
        peer,
        permit,
    } = accepted;
    let service = service_fn(move |request: Request<Incoming>| {
        let ctx = Arc::clone(&ctx);
        let id = request_ids.fetch_add(1, Ordering::Relaxed);
        async move { Ok::<_, Infallible>(handle(request, surface, &ctx, id, peer).await) }
    });
    tokio::spawn(async move {
        if !protocol_known(&stream, preface_timeout).await {
            drop(permit);
            return;
        }
        // The permit goes with the stream: a lingering close holds it.
        let stream = LingeringStream::new(stream, permit);
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        if let Err(e) = watcher.watch(connection).await {
            tracing::debug!(error = %e, %peer, "connection ended with an error");
        }
    });
}

/// Waits for the in-flight connections to finish, or for `deadline`,
/// whichever comes first.
async fn drain(graceful: GracefulShutdown, deadline: tokio::time::Instant) {
    tracing::info!(
        event = "draining",
        "no longer accepting; draining in-flight requests"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!(event = "drained", "all connections closed"),
        () = tokio::time::sleep_until(deadline) => {
            tracing::warn!(event = "drain_timeout", "shutdown deadline reached; closing anyway");
        }
    }
}

/// HTTP/1.1 and HTTP/2 with this server's limits.
fn connection_builder(limits: &ServerLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper's default is ~400 KiB per connection; 8 KiB is its minimum.
        .max_buf_size((2 * limits.max_header_bytes).max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        // Streams a client resets before we accepted them (rapid reset):
        // past this the connection gets GOAWAY (ENHANCE_YOUR_CALM).
        .max_pending_accept_reset_streams(limits.http2_max_pending_reset_streams)
        // Streams we had to reset because the client misbehaved on them.
        .max_local_error_reset_streams(1024);
    builder
}

/// Waits, at most `timeout`, until the first bytes tell HTTP/2's preface
/// from anything else (a partial preface is neither yet); false if the
/// client closes or stays silent.
async fn protocol_known(stream: &tokio::net::TcpStream, timeout: Duration) -> bool {
    const H2: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let waited = tokio::time::timeout(timeout, async {
        let mut buf = [0u8; 24];
        loop {
            match stream.peek(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) if n >= H2.len() || !H2.starts_with(&buf[..n]) => return true,
                Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await;
    matches!(waited, Ok(true))
}

/// One request: route, run the handler inside a span carrying the request
/// id and the client address (so every log line of the request has them),
/// answer with the id.
async fn handle(
    request: Request<Incoming>,
    surface: Surface,
    ctx: &AppContext,
    id: u64,
    peer: std::net::SocketAddr,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let method = request.method().clone();
    let client = ctx.proxies.client_addr(peer.ip(), request.headers());
    let row = if header_block_len(&request) > ctx.max_header_bytes {
        Err(ApiError::HeadersTooLarge(ctx.max_header_bytes))
    } else {
        route(surface, &method, request.uri().path())
    };
    let label = row.as_ref().map_or("unmatched", |row| row.label);
    let span = tracing::info_span!("request", request_id = id, route = label, %client);
    let mut response = async {
        let result = match row {
            Ok(row) => (row.handler)(request, client, ctx).await,
            Err(e) => Err(e),
        };
        let response = result.unwrap_or_else(|e| e.into_response());
        let status = response.status().as_u16();
        ::metrics::counter!(m::HTTP_REQUESTS, "route" => label, "status" => status_label(status))
            .increment(1);
        ::metrics::histogram!(m::HTTP_DURATION, "route" => label)
            .record(started.elapsed().as_secs_f64());
        tracing::debug!(
            %method,
            %peer,
            status = response.status().as_u16(),
            micros = started.elapsed().as_micros() as u64,
            "request done"
        );
        response
    }
    .instrument(span)
    .await;
    if let Ok(value) = HeaderValue::from_str(&id.to_string()) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// The size of the request line and headers as sent (HTTP/1.1 framing:
/// `name: value\r\n` per header), to compare with `max_header_bytes`.
fn header_block_len(request: &Request<Incoming>) -> usize {
    let line = request.method().as_str().len()
        + request
            .uri()
            .path_and_query()
            .map_or(1, |p| p.as_str().len())
        + " HTTP/1.1\r\n".len()
        + 1;
    request.headers().iter().fold(line, |sum, (name, value)| {
        sum + name.as_str().len() + value.len() + 4
    })
}

/// Status codes as static labels (metrics labels want `&'static str`).
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        204 => "204",
        400 => "400",
        401 => "401",
        404 => "404",
        405 => "405",
        408 => "408",
        409 => "409",
        413 => "413",
        415 => "415",
        422 => "422",
        429 => "429",
        431 => "431",
        500 => "500",
        503 => "503",
        _ => "other",
    }
}

//! Lingering close, as nginx does it: when a connection ends, authd first
//! stops writing (FIN), then reads and discards what the client is still
//! sending, for at most [`LINGER_TIME`] or [`LINGER_MAX_BYTES`], and only
//! then closes the socket.
//!
//! Why: after an early answer (413 for a body over the limit, 408, 431) the
//! client may still be sending the body. Closing a socket with unread data
//! in its receive buffer makes the kernel send a RST instead of a FIN, and a
//! RST makes the client's kernel throw away the answer it had already
//! received but not yet read: the client sees "connection reset" or
//! "broken pipe" instead of the 413. Reading the rest first avoids the RST.
//!
//! A client that has already closed costs one read that returns 0. The
//! connection's slot (its `max_connections` permit) is held until the
//! socket is really closed, so lingering sockets stay bounded too.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

/// Longest a closing connection is read from.
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(3);
/// Most bytes read and discarded from a closing connection.
pub(crate) const LINGER_MAX_BYTES: usize = 8 * 1024 * 1024;

/// A TCP stream that lingers when dropped (see the module documentation).
pub(crate) struct LingeringStream {
    stream: Option<TcpStream>,
    permit: Option<OwnedSemaphorePermit>,
}

impl LingeringStream {
    pub(crate) fn new(stream: TcpStream, permit: OwnedSemaphorePermit) -> Self {
        LingeringStream {
            stream: Some(stream),
            permit: Some(permit),
        }
    }

    fn stream(&mut self) -> &mut TcpStream {
        self.stream
            .as_mut()
            .expect("the stream is only taken when dropped")
    }
}

impl Drop for LingeringStream {
    fn drop(&mut self) {
        let (Some(stream), permit) = (self.stream.take(), self.permit.take()) else {
            return;
        };
        // Outside a runtime (never, in practice) the socket simply closes.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(linger(stream, permit));
        }
    }
}

async fn linger(mut stream: TcpStream, permit: Option<OwnedSemaphorePermit>) {
    // hyper may have shut down writing already; a second shutdown is harmless.
    let _ = stream.shutdown().await;
    let _ = tokio::time::timeout(LINGER_TIME, async {
        let mut discard = vec![0u8; 16 * 1024];
        let mut total = 0usize;
        while total < LINGER_MAX_BYTES {
            match stream.read(&mut discard).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
    drop(stream);
    drop(permit);
}

impl AsyncRead for LingeringStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(self.stream()).poll_read(cx, buf)
    }
}

impl AsyncWrite for LingeringStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.stream()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.stream()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream()).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream()).poll_shutdown(cx)
    }
}

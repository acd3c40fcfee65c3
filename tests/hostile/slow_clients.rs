//! Slow and silent clients: a connection that never sends its request,
//! headers that trickle in, a partial HTTP/2 preface. Each is cut off
//! within the server's header-read timeout.

use super::*;

/// Reads until EOF (or a reset); returns how long that took.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                // Whatever it says (e.g. a 408), keep reading until it hangs up.
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the server kept a silent connection open for {limit:?}"
    );
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_disconnected() {
    let app = app(Backend::Sqlite, &[("AUTHD_HEADER_READ_TIMEOUT_MS", "500")])
        .await
        .expect("SQLite is always available");
    let addr = app.address.trim_start_matches("http://").to_owned();

    // Connects and sends nothing at all.
    let mut silent = TcpStream::connect(&addr).await.expect("connect");
    let took = until_closed(&mut silent, Duration::from_secs(3)).await;
    assert!(
        took >= Duration::from_millis(400),
        "closed too early: {took:?}"
    );
    alive(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off() {
    let app = app(Backend::Sqlite, &[("AUTHD_HEADER_READ_TIMEOUT_MS", "500")])
        .await
        .expect("SQLite is always available");
    let addr = app.address.trim_start_matches("http://").to_owned();

    // Starts a request and never finishes its headers (slowloris).
    let mut slow = TcpStream::connect(&addr).await.expect("connect");
    slow.write_all(b"POST /signin HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    until_closed(&mut slow, Duration::from_secs(3)).await;

    // Trickles header bytes, each well inside the timeout, never ending.
    let mut trickle = TcpStream::connect(&addr).await.expect("connect");
    let started = Instant::now();
    trickle
        .write_all(b"GET /health HTTP/1.1\r\n")
        .await
        .expect("write");
    let mut cut = false;
    for i in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if trickle
            .write_all(format!("X-{i}: y\r\n").as_bytes())
            .await
            .is_err()
        {
            cut = true;
            break;
        }
    }
    if !cut {
        until_closed(&mut trickle, Duration::from_secs(1)).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "trickled headers were allowed {:?}",
        started.elapsed()
    );

    // A keep-alive connection that goes quiet after a request is closed too.
    let mut idle = TcpStream::connect(&addr).await.expect("connect");
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    until_closed(&mut idle, Duration::from_secs(3)).await;

    alive(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_http2_preface_is_disconnected() {
    let app = app(Backend::Sqlite, &[("AUTHD_HEADER_READ_TIMEOUT_MS", "500")])
        .await
        .expect("SQLite is always available");
    let addr = app.address.trim_start_matches("http://").to_owned();

    // The start of the HTTP/2 connection preface, and then nothing.
    let mut stalled = TcpStream::connect(&addr).await.expect("connect");
    stalled
        .write_all(b"PRI * HTTP/2.0\r\n")
        .await
        .expect("write");
    until_closed(&mut stalled, Duration::from_secs(3)).await;
    alive(&app).await;
}

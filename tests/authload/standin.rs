//! A stand-in HTTP server for what authd must never do: answer slowly on
//! purpose (a stall), or accept every token (no rotation, no reuse
//! detection). It speaks just enough HTTP/1.1 keep-alive for authload.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Starts the stand-in; every answer waits `stall` and is a success (201
/// for a sign-up, 200 otherwise) carrying a token never seen before.
pub async fn start(stall: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let counter = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, stall, counter.clone()));
        }
    });
    address
}

async fn serve(mut stream: TcpStream, stall: Duration, counter: Arc<AtomicU64>) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // One request: headers up to the blank line, then content-length bytes.
        let head_end = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buffer.len() < head_end + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        buffer.drain(..head_end + length);
        tokio::time::sleep(stall).await;
        let status = if head.starts_with("post /signup") {
            "201 Created"
        } else {
            "200 OK"
        };
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let body = format!(
            r#"{{"access_token":"standin-{n}","token_type":"bearer","expires_in":900,"user_id":"u","status":"healthy"}}"#
        );
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

//! The HTTP/1.1 keep-alive client of one connection: opened during setup,
//! re-opened when the server closes it or a transport error breaks it.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why a request got no HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("http: {0}")]
    Http(hyper::Error),
    #[error("connection closed")]
    Closed,
}

pub struct Client {
    addrs: Arc<[SocketAddr]>,
    sender: Option<SendRequest<Full<Bytes>>>,
    pub connects: u64,
}

impl Client {
    pub fn new(addrs: Arc<[SocketAddr]>) -> Self {
        Client {
            addrs,
            sender: None,
            connects: 0,
        }
    }

    pub async fn connect(&mut self) -> Result<(), TransportError> {
        self.sender = None;
        let stream = TcpStream::connect(&self.addrs[..])
            .await
            .map_err(TransportError::Connect)?;
        // Latency matters more than packet count for a load generator.
        stream.set_nodelay(true).map_err(TransportError::Connect)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(TransportError::Http)?;
        tokio::spawn(async move {
            // Errors surface through the sender as well; nothing to do here.
            let _ = connection.await;
        });
        self.sender = Some(sender);
        self.connects += 1;
        Ok(())
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<(u16, Bytes), TransportError> {
        let usable = match self.sender.as_mut() {
            Some(sender) if !sender.is_closed() => sender.ready().await.is_ok(),
            _ => false,
        };
        if !usable {
            self.connect().await?;
        }
        let Some(sender) = self.sender.as_mut() else {
            return Err(TransportError::Closed);
        };
        let result = async {
            let response = sender.send_request(request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            Ok((status, body))
        }
        .await;
        if result.is_err() {
            self.sender = None;
        }
        result.map_err(TransportError::Http)
    }

    pub fn drop_connection(&mut self) {
        self.sender = None;
    }
}

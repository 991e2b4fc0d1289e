//! The TCP acceptor the service listens with.

use poem::http::uri::Scheme;
use poem::listener::{Acceptor, TcpAcceptor};
use poem::web::{LocalAddr, RemoteAddr};
use tokio::net::TcpStream;

/// Accepts TCP connections with Nagle's algorithm off. A response written
/// in more than one segment (headers, then a body of a few kilobytes)
/// otherwise waits for the client's delayed acknowledgement, adding about
/// 40 ms to every seat map on an otherwise idle connection.
pub struct NoDelay(pub TcpAcceptor);

impl std::fmt::Debug for NoDelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("NoDelay")
            .field(&self.0.local_addr())
            .finish()
    }
}

impl Acceptor for NoDelay {
    type Io = TcpStream;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.0.local_addr()
    }

    async fn accept(&mut self) -> std::io::Result<(TcpStream, LocalAddr, RemoteAddr, Scheme)> {
        let (stream, local, remote, scheme) = self.0.accept().await?;
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "TCP_NODELAY could not be set");
        }
        Ok((stream, local, remote, scheme))
    }
}

//! Fault injection for drills and tests.
//!
//! [`Proxy`] sits between Marquee and one dependency (a shard node, Redis, the
//! broker). It can cut the link, which drops every open connection and refuses
//! new ones as a crashed server would, and it can add latency to every chunk
//! of traffic, as a congested network would.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug)]
struct Faults {
    cut: watch::Sender<bool>,
    latency_micros: AtomicU64,
}

/// A TCP proxy to one upstream address; stops when dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    faults: Arc<Faults>,
    accept_loop: JoinHandle<()>,
}

impl Proxy {
    /// Listens on an ephemeral loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let faults = Arc::new(Faults {
            cut: watch::channel(false).0,
            latency_micros: AtomicU64::new(0),
        });
        let accept_loop = tokio::spawn(accept(listener, upstream, Arc::clone(&faults)));
        Ok(Self {
            addr,
            faults,
            accept_loop,
        })
    }

    /// The address clients should connect to instead of the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every open connection and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.faults.cut.send_replace(true);
    }

    pub fn restore(&self) {
        self.faults.cut.send_replace(false);
    }

    /// Delays every chunk in both directions by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.faults.latency_micros.store(micros, Ordering::Relaxed);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept_loop.abort();
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, faults: Arc<Faults>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if *faults.cut.borrow() {
            drop(client);
            continue;
        }
        tokio::spawn(relay(client, upstream, Arc::clone(&faults)));
    }
}

async fn relay(client: TcpStream, upstream: SocketAddr, faults: Arc<Faults>) {
    let server = match TcpStream::connect(upstream).await {
        Ok(server) => server,
        Err(err) => {
            tracing::debug!(%upstream, error = %err, "chaos proxy could not reach its upstream");
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let mut cut = faults.cut.subscribe();
    tokio::select! {
        _ = pump(client_read, server_write, &faults) => {}
        _ = pump(server_read, client_write, &faults) => {}
        _ = cut.wait_for(|cut| *cut) => {}
    }
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, faults: &Faults) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        let latency = faults.latency_micros.load(Ordering::Relaxed);
        if latency > 0 {
            tokio::time::sleep(Duration::from_micros(latency)).await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = socket.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        addr
    }

    async fn round_trip(addr: SocketAddr) -> io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(b"ping").await?;
        let mut reply = vec![0u8; 4];
        stream.read_exact(&mut reply).await?;
        Ok(reply)
    }

    #[tokio::test]
    async fn traffic_flows_until_the_link_is_cut_and_again_after_restore() {
        let proxy = Proxy::start(echo_server().await).await.expect("proxy");
        assert_eq!(round_trip(proxy.addr()).await.expect("open link"), b"ping");

        proxy.cut();
        assert!(
            round_trip(proxy.addr()).await.is_err(),
            "a cut link must not carry traffic"
        );

        proxy.restore();
        assert_eq!(
            round_trip(proxy.addr()).await.expect("restored link"),
            b"ping"
        );
    }

    #[tokio::test]
    async fn cutting_drops_connections_that_are_already_open() {
        let proxy = Proxy::start(echo_server().await).await.expect("proxy");
        let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
        stream.write_all(b"ping").await.expect("write");
        let mut reply = [0u8; 4];
        stream.read_exact(&mut reply).await.expect("echo");

        proxy.cut();
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "the open connection should close"
        );
    }

    #[tokio::test]
    async fn latency_delays_each_round_trip() {
        let proxy = Proxy::start(echo_server().await).await.expect("proxy");
        proxy.set_latency(Duration::from_millis(150));
        let started = tokio::time::Instant::now();
        round_trip(proxy.addr())
            .await
            .expect("slow link still works");
        assert!(started.elapsed() >= Duration::from_millis(300));
    }
}

//! Fault injection for drills and tests.
//!
//! [`Proxy`] sits between Marquee and one dependency (a shard node, Redis, the
//! broker). It can cut the link, which drops every open connection and refuses
//! new ones as a crashed server would; reset open connections as a peer that
//! crashed mid-stream would; and shape traffic with [`Toxics`]: latency with
//! jitter and a bandwidth cap as a congested network would, a blackhole that
//! swallows everything while connections stay open, or a timeout that carries
//! nothing and then closes, as a hung server would.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub mod api;

/// How a link treats its traffic. Every field applies to both directions
/// and to connections already open, from their next chunk on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Toxics {
    /// Added before every chunk is passed on.
    pub latency: Duration,
    /// Up to this much more latency, drawn afresh for every chunk.
    pub jitter: Duration,
    /// Bytes per second each way; `None` is unlimited.
    pub bandwidth: Option<u64>,
    /// Data is read and dropped; connections stay open.
    pub blackhole: bool,
    /// Data is dropped and each connection closes this long after its first
    /// chunk under the toxic.
    pub timeout: Option<Duration>,
}

#[derive(Debug)]
struct Faults {
    cut: watch::Sender<bool>,
    /// Bumped by every reset; each relay resets when it changes.
    resets: watch::Sender<u64>,
    toxics: Mutex<Toxics>,
}

impl Faults {
    fn toxics(&self) -> Toxics {
        *self.toxics.lock().unwrap_or_else(PoisonError::into_inner)
    }
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
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), upstream).await
    }

    /// Listens on `listen` and forwards to `upstream`.
    pub async fn start_on(listen: SocketAddr, upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let faults = Arc::new(Faults {
            cut: watch::channel(false).0,
            resets: watch::channel(0).0,
            toxics: Mutex::new(Toxics::default()),
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

    /// Resets every open connection (a TCP RST to both ends, as from a
    /// peer that crashed); new connections are carried as before.
    pub fn reset(&self) {
        self.faults
            .resets
            .send_modify(|generation| *generation += 1);
    }

    /// Delays every chunk in both directions by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.faults
            .toxics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .latency = latency;
    }

    /// Replaces every toxic at once; `Toxics::default()` clears them.
    pub fn set_toxics(&self, toxics: Toxics) {
        *self
            .faults
            .toxics
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = toxics;
    }

    pub fn toxics(&self) -> Toxics {
        self.faults.toxics()
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
    let (client_read, mut client_write) = client.into_split();
    let (server_read, mut server_write) = server.into_split();
    let mut cut = faults.cut.subscribe();
    let mut resets = faults.resets.subscribe();
    let reset = tokio::select! {
        () = pump(client_read, &mut server_write, &faults) => false,
        () = pump(server_read, &mut client_write, &faults) => false,
        _ = cut.wait_for(|cut| *cut) => false,
        _ = resets.changed() => true,
    };
    if reset {
        // Closing with a zero linger sends RST rather than FIN; `forget`
        // keeps the write halves from sending a FIN first as they drop.
        let _ = client_write.as_ref().set_zero_linger();
        let _ = server_write.as_ref().set_zero_linger();
        client_write.forget();
        server_write.forget();
    }
}

/// How often an idle connection looks at its toxics, so a timeout set while
/// nothing flows still closes it.
const IDLE_CHECK: Duration = Duration::from_millis(50);

async fn pump(mut from: OwnedReadHalf, to: &mut OwnedWriteHalf, faults: &Faults) {
    let mut buffer = vec![0u8; 16 * 1024];
    let mut closes_at: Option<tokio::time::Instant> = None;
    loop {
        let toxics = faults.toxics();
        match (toxics.timeout, closes_at) {
            (Some(timeout), None) => closes_at = Some(tokio::time::Instant::now() + timeout),
            (None, Some(_)) => closes_at = None,
            _ => {}
        }
        if closes_at.is_some_and(|at| tokio::time::Instant::now() >= at) {
            return;
        }
        // A bandwidth cap reads small chunks, so that the pauses between
        // them are short and the rate is even.
        let chunk = toxics.bandwidth.map_or(buffer.len(), |rate| {
            usize::try_from(rate / 20)
                .unwrap_or(usize::MAX)
                .clamp(1, buffer.len())
        });
        let read = match tokio::time::timeout(IDLE_CHECK, from.read(&mut buffer[..chunk])).await {
            Err(_) => continue,
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(read)) => read,
        };
        if toxics.blackhole || toxics.timeout.is_some() {
            continue;
        }
        let delay = toxics.latency + jitter(toxics.jitter);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
        if let Some(rate) = toxics.bandwidth.filter(|rate| *rate > 0) {
            let bytes = u64::try_from(read).unwrap_or(u64::MAX);
            tokio::time::sleep(Duration::from_nanos(
                bytes.saturating_mul(1_000_000_000) / rate,
            ))
            .await;
        }
    }
}

/// A delay drawn evenly from zero to `max`. Fault injection needs spread,
/// not unpredictability, so a mixed clock and counter serve.
fn jitter(max: Duration) -> Duration {
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    if max.is_zero() {
        return Duration::ZERO;
    }
    let clock = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| u64::from(since.subsec_nanos()));
    let mut x = clock ^ DRAWS.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    let micros = u64::try_from(max.as_micros()).unwrap_or(u64::MAX);
    Duration::from_micros(x % (micros + 1))
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
    #[tokio::test]
    async fn a_reset_breaks_open_connections_and_new_ones_still_work() {
        let proxy = Proxy::start(echo_server().await).await.expect("proxy");
        let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
        stream.write_all(b"ping").await.expect("write");
        let mut reply = [0u8; 4];
        stream.read_exact(&mut reply).await.expect("echo");

        proxy.reset();
        let mut rest = Vec::new();
        let broken = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest))
            .await
            .expect("the connection ends");
        assert_eq!(
            broken.expect_err("a reset, not a clean close").kind(),
            io::ErrorKind::ConnectionReset
        );
        assert_eq!(round_trip(proxy.addr()).await.expect("new link"), b"ping");
    }

    #[tokio::test]
    async fn a_blackhole_swallows_traffic_and_keeps_the_connection_open() {
        let proxy = Proxy::start(echo_server().await).await.expect("proxy");
        proxy.set_toxics(Toxics {
            blackhole: true,
            ..Toxics::default()
        });
        let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
        stream.write_all(b"ping").await.expect("write");
        let mut reply = [0u8; 4];
        let answer =
            tokio::time::timeout(Duration::from_millis(300), stream.read_exact(&mut reply)).await;
        assert!(answer.is_err(), "nothing comes back from a blackhole");
        stream.write_all(b"more").await.expect("still open");

        proxy.set_toxics(Toxics::default());
        assert_eq!(round_trip(proxy.addr()).await.expect("healed"), b"ping");
    }

    #[tokio::test]
    async fn a_timeout_carries_nothing_and_then_closes_the_connection() {
        let proxy = Proxy::start(echo_server().await).await.expect("proxy");
        let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
        proxy.set_toxics(Toxics {
            timeout: Some(Duration::from_millis(200)),
            ..Toxics::default()
        });
        stream.write_all(b"ping").await.expect("write");
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut rest))
            .await
            .expect("closed within the timeout and a check");
        assert!(
            rest.is_empty(),
            "no data passes a timeout: {closed:?} {rest:?}"
        );
    }

    #[tokio::test]
    async fn jitter_spreads_round_trips_within_its_bound() {
        let proxy = Proxy::start(echo_server().await).await.expect("proxy");
        proxy.set_toxics(Toxics {
            jitter: Duration::from_millis(100),
            ..Toxics::default()
        });
        let mut took = Vec::new();
        for _ in 0..8 {
            let started = tokio::time::Instant::now();
            round_trip(proxy.addr()).await.expect("jittery link works");
            took.push(started.elapsed());
        }
        let (fastest, slowest) = (
            took.iter().min().copied().unwrap_or_default(),
            took.iter().max().copied().unwrap_or_default(),
        );
        assert!(
            slowest - fastest >= Duration::from_millis(20),
            "round trips should vary: {took:?}"
        );
    }

    #[tokio::test]
    async fn a_bandwidth_cap_slows_a_large_transfer() {
        let proxy = Proxy::start(echo_server().await).await.expect("proxy");
        proxy.set_toxics(Toxics {
            bandwidth: Some(16 * 1024),
            ..Toxics::default()
        });
        let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
        let payload = vec![7u8; 8 * 1024];
        let started = tokio::time::Instant::now();
        stream.write_all(&payload).await.expect("write");
        let mut echoed = vec![0u8; payload.len()];
        stream.read_exact(&mut echoed).await.expect("echo");

        assert_eq!(echoed, payload);
        assert!(
            started.elapsed() >= Duration::from_millis(400),
            "8 KiB at 16 KiB/s takes half a second each way: {:?}",
            started.elapsed()
        );
    }
}

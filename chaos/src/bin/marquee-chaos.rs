//! The chaos proxy as a server: named TCP proxies driven over a REST API
//! (see `marquee_chaos::api`), for drills and tools outside Rust tests.
//!
//!   marquee-chaos --listen 127.0.0.1:8474

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use marquee_chaos::api::{routes, Proxies};
use poem::listener::TcpListener;
use poem::Server;

#[derive(Debug, Parser)]
#[command(
    about = "TCP proxies that cut, reset, slow, throttle or swallow traffic, driven over HTTP"
)]
struct Args {
    /// Where the REST API listens.
    #[arg(long, default_value = "127.0.0.1:8474")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    writeln!(std::io::stdout(), "chaos API on http://{}", args.listen)?;
    Server::new(TcpListener::bind(args.listen))
        .run(routes(Arc::new(Proxies::default())))
        .await?;
    Ok(())
}

//! A closed-loop HTTP load generator: `concurrency` clients each send a
//! request, wait for the answer and send the next, cycling through a list
//! of paths, for a fixed time after a warm-up. Closed-loop clients model
//! people waiting for a page, and report the latency they would see.
//!
//! - this file: the page-request loop behind `marquee-loadgen`, and the
//!   client and percentiles every load shares.
//! - [`storm`]: buyers racing for seats, behind `marquee-storm`.
//! - [`line`]: a hot release through a waiting room, measured for
//!   fairness, behind `marquee-line`.

pub mod line;
pub mod storm;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Debug, Clone)]
pub struct Plan {
    pub base: String,
    pub paths: Vec<String>,
    /// JSON bodies to POST, used in turn with the paths; empty sends GETs.
    pub bodies: Vec<String>,
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub requests: u64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub non_2xx: u64,
    pub errors: u64,
    pub concurrency: usize,
    pub seconds: f64,
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    non_2xx: u64,
    errors: u64,
}

/// A client that trusts the local cluster's certificate and keeps every
/// idle connection, so no client waits for a handshake it has paid before.
pub(crate) fn client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
        .use_rustls_tls()
        // The local cluster serves a self-signed development certificate.
        .danger_accept_invalid_certs(true)
        .pool_max_idle_per_host(usize::MAX)
        .timeout(Duration::from_secs(30))
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(client_builder().build()?)
}

/// The nearest-rank percentile `p` (0 to 1) of microsecond samples sorted
/// ascending, in milliseconds.
fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[rank.min(sorted.len() - 1)]) / 1000.0
}

pub async fn run(plan: &Plan) -> anyhow::Result<Report> {
    anyhow::ensure!(!plan.paths.is_empty(), "no paths to request");
    let client = client()?;
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..plan.concurrency.max(1))
        .map(|worker| {
            let (client, measuring, stop) =
                (client.clone(), Arc::clone(&measuring), Arc::clone(&stop));
            let urls: Vec<String> = plan
                .paths
                .iter()
                .map(|p| format!("{}{p}", plan.base))
                .collect();
            let bodies = plan.bodies.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                // Workers start at different points of the list so they do
                // not all ask for the same thing at once.
                let mut next = worker * 7919 % urls.len();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let request = if bodies.is_empty() {
                        client.get(&urls[next])
                    } else {
                        client
                            .post(&urls[next])
                            .header("content-type", "application/json")
                            .body(bodies[next % bodies.len()].clone())
                    };
                    let outcome = request.send().await;
                    let outcome = match outcome {
                        Ok(response) => {
                            let ok = response.status().is_success();
                            response.bytes().await.map(|_| ok)
                        }
                        Err(err) => Err(err),
                    };
                    let elapsed = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
                    if measuring.load(Ordering::Relaxed) {
                        tally.latencies_us.push(elapsed);
                        match outcome {
                            Ok(true) => {}
                            Ok(false) => tally.non_2xx += 1,
                            Err(_) => tally.errors += 1,
                        }
                    }
                    next = (next + 1) % urls.len();
                }
                tally
            })
        })
        .collect();
    tokio::time::sleep(plan.warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(plan.duration).await;
    measuring.store(false, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally::default();
    for tally in futures::future::join_all(workers).await {
        let tally = tally?;
        total.latencies_us.extend(tally.latencies_us);
        total.non_2xx += tally.non_2xx;
        total.errors += tally.errors;
    }
    total.latencies_us.sort_unstable();
    let requests = total.latencies_us.len() as u64;
    Ok(Report {
        requests,
        per_second: requests as f64 / seconds,
        p50_ms: percentile(&total.latencies_us, 0.50),
        p90_ms: percentile(&total.latencies_us, 0.90),
        p99_ms: percentile(&total.latencies_us, 0.99),
        max_ms: percentile(&total.latencies_us, 1.0),
        non_2xx: total.non_2xx,
        errors: total.errors,
        concurrency: plan.concurrency,
        seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let sorted: Vec<u32> = (1..=100).map(|ms| ms * 1000).collect();
        assert!((percentile(&sorted, 0.5) - 51.0).abs() < 1e-9);
        assert!((percentile(&sorted, 0.99) - 99.0).abs() < 1e-9);
        assert!((percentile(&sorted, 1.0) - 100.0).abs() < 1e-9);
        assert!(percentile(&[], 0.5).abs() < 1e-9);
    }
}

//! How soon a seat change reaches everyone watching the showtime's seat
//! map, against the local cluster and broker: serves the application
//! in-process, opens watchers on one showtime's live seat stream, holds
//! seats one at a time (each stays held, so every watcher must see every
//! hold: a hold released before the feed read the states would never show),
//! and times each hold from its answer to its arrival at every watcher.
//!
//! `cargo run --release -p marquee --example seat_push -- 200 60`
//! (watchers, holds; at most 200 holds, one seat each). Progress goes to stderr; one JSON line to stdout.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

mod bench;

/// When a watcher received each event, and the seats it listed as taken.
type Log = Arc<Mutex<Vec<(Instant, Vec<String>)>>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let watchers: usize = args.next().map_or(Ok(200), |n| n.parse())?;
    let holds: usize = args.next().map_or(Ok(60), |n| n.parse::<usize>())?.min(200);
    let bench = bench::Bench::start(
        "seats",
        &[
            ("MARQUEE__HTTP__RATE_LIMIT__PER_SECOND", "100000"),
            ("MARQUEE__HTTP__RATE_LIMIT__BURST", "100000"),
            // Every hold comes from this one machine.
            (
                "MARQUEE__BOOKING__FAIRNESS__MAX_UNPAID_SEATS_PER_DEVICE",
                "100000",
            ),
            (
                "MARQUEE__BOOKING__FAIRNESS__MAX_UNPAID_SEATS_PER_ADDRESS",
                "100000",
            ),
            (
                "MARQUEE__BOOKING__FAIRNESS__MAX_LIVE_HOLDS_PER_DEVICE",
                "100000",
            ),
            (
                "MARQUEE__BOOKING__FAIRNESS__MAX_LIVE_HOLDS_PER_ADDRESS",
                "100000",
            ),
            ("MARQUEE__BOOKING__WAITING_ROOM__AUTO", "false"),
        ],
    )
    .await?;
    let (base, http) = (&bench.base, &bench.http);
    let movie = bench
        .create(
            "/v1/admin/movies",
            json!({"title": "Seat Push", "genres": ["drama"], "runtime_minutes": 100, "release_date": "2020-01-01"}),
        )
        .await?;
    let venue = bench.venue(10, 20).await?;
    let showtime = bench.schedule(movie, venue).await?;

    let logs: Vec<Log> = (0..watchers).map(|_| Log::default()).collect();
    for log in &logs {
        let response = http
            .get(format!("{base}/v1/showtimes/{showtime}/seats/stream"))
            .send()
            .await?;
        anyhow::ensure!(response.status().is_success(), "stream refused");
        let log = Arc::clone(log);
        tokio::spawn(async move {
            let mut chunks = response.bytes_stream();
            let mut buffer = String::new();
            while let Some(Ok(chunk)) = chunks.next().await {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let event: String = buffer.drain(..end + 2).collect();
                    let Some(data) = event.lines().find_map(|line| line.strip_prefix("data: "))
                    else {
                        continue;
                    };
                    let Ok(states) = serde_json::from_str::<Value>(data) else {
                        continue;
                    };
                    let taken = states["taken"]
                        .as_object()
                        .map(|taken| taken.keys().cloned().collect())
                        .unwrap_or_default();
                    if let Ok(mut log) = log.lock() {
                        log.push((Instant::now(), taken));
                    }
                }
            }
        });
    }
    eprintln!("{watchers} watchers connected");
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut answered = Vec::new();
    for n in 0..holds {
        let seat = format!("{}-{}", bench::ROWS[n / 20], n % 20 + 1);
        let sent = Instant::now();
        let held = http
            .post(format!("{base}/v1/showtimes/{showtime}/holds"))
            .json(&json!({"email": format!("bench{n}@example.com"), "seats": [seat]}))
            .send()
            .await?;
        anyhow::ensure!(
            held.status().is_success(),
            "hold refused: {}",
            held.text().await?
        );
        answered.push((seat, sent, Instant::now()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        if (n + 1) % 10 == 0 {
            eprintln!("{} of {holds} holds", n + 1);
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut delays = Vec::new();
    let mut missed = 0usize;
    let mut slowest = vec![0.0f64; answered.len()];
    for log in &logs {
        let log = log.lock().map(|log| log.clone()).unwrap_or_default();
        for (hold, (seat, sent, at)) in answered.iter().enumerate() {
            // The first event since the request that shows the seat taken;
            // one that beat the answer to the client counts as no delay.
            match log
                .iter()
                .find(|(seen, taken)| *seen >= *sent && taken.contains(seat))
            {
                Some((seen, _)) => {
                    let delay = seen.saturating_duration_since(*at).as_secs_f64() * 1000.0;
                    slowest[hold] = slowest[hold].max(delay);
                    delays.push(delay);
                }
                None => missed += 1,
            }
        }
    }
    writeln!(
        std::io::stdout(),
        "{}",
        json!({
            "watchers": watchers,
            "holds": holds,
            "deliveries": delays.len(),
            "missed": missed,
            "delay_ms": bench::percentiles(delays),
            "slowest_holds_ms": slowest_holds(&slowest),
            "index_delay_s": index_delay(&bench.state.metrics.index_delay),
        })
    )?;
    bench.finish().await?;
    Ok(())
}

/// How long the same seat changes took to reach this instance's search
/// index and cache, per applied batch: the bucket bounds the median and
/// the 99th percentile fall under.
fn index_delay(histogram: &prometheus::Histogram) -> Value {
    use prometheus::core::Metric;
    let metric = histogram.metric();
    let buckets = metric.get_histogram();
    let total = buckets.get_sample_count();
    let under = |q: f64| {
        let wanted = (total as f64 * q).ceil() as u64;
        buckets
            .get_bucket()
            .iter()
            .find(|bucket| bucket.cumulative_count() >= wanted)
            .map(|bucket| bucket.upper_bound())
    };
    json!({"batches": total, "p50_at_most": under(0.5), "p99_at_most": under(0.99)})
}

/// The three holds that took longest to reach their last watcher, as
/// `[hold number, milliseconds]`.
fn slowest_holds(slowest: &[f64]) -> Vec<(usize, f64)> {
    let mut ranked: Vec<(usize, f64)> = slowest.iter().copied().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(3);
    ranked
}

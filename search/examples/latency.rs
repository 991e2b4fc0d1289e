//! Builds the synthetic index (3,200 movies, 1,000,000 showtimes) and runs
//! 20,000 searches mixed across the four typical kinds on one thread,
//! printing latency percentiles and throughput.
//!
//! `cargo run -p marquee-search --release --example latency`

// Printing the figures is this example's whole purpose.
#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use marquee_search::synthetic::{Catalogue, QueryKind};
use marquee_search::{Error, MovieIndex, SearchQuery};

const SHOWTIMES: u64 = 1_000_000;
const BATCH: usize = 10_000;
const QUERIES: u64 = 20_000;
/// Queries run before measuring, so first-touch page faults and lazily
/// built automata do not count.
const WARM_UP: u64 = 1_000;

fn percentile(sorted: &[Duration], share: f64) -> u128 {
    let rank = ((sorted.len() as f64 * share).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_micros()
}

fn summary(latencies: &mut [Duration]) -> String {
    latencies.sort_unstable();
    format!(
        "p50 {:>5} µs   p99 {:>5} µs   max {:>6} µs",
        percentile(latencies, 0.50),
        percentile(latencies, 0.99),
        latencies.last().map_or(0, Duration::as_micros),
    )
}

fn main() -> Result<(), Error> {
    let catalogue = Catalogue::standard();
    let index = MovieIndex::new()?;
    let started = Instant::now();
    catalogue.load(&index, SHOWTIMES, BATCH)?;
    println!(
        "indexed {} movies and {} showtimes in batches of {BATCH} in {:.1} s",
        index.movie_count(),
        index.showtime_count(),
        started.elapsed().as_secs_f64()
    );

    let query = |n: u64| -> (QueryKind, SearchQuery) {
        let kind = QueryKind::ALL[(n % 4) as usize];
        (kind, catalogue.query(kind, n))
    };
    for n in 0..WARM_UP {
        black_box(index.search(&query(QUERIES + n).1)?);
    }
    let queries: Vec<(QueryKind, SearchQuery)> = (0..QUERIES).map(query).collect();
    let mut latencies = Vec::with_capacity(queries.len());
    let mut by_kind: Vec<(QueryKind, Vec<Duration>, u64)> = QueryKind::ALL
        .iter()
        .map(|&kind| (kind, Vec::new(), 0))
        .collect();
    let started = Instant::now();
    for (kind, query) in &queries {
        let began = Instant::now();
        let results = index.search(query)?;
        let took = began.elapsed();
        latencies.push(took);
        if let Some((_, times, totals)) = by_kind.iter_mut().find(|(k, _, _)| k == kind) {
            times.push(took);
            *totals += results.total;
        }
        black_box(results);
    }
    let elapsed = started.elapsed();

    println!(
        "{QUERIES} queries on one thread: {}   {:.0} queries/s",
        summary(&mut latencies),
        QUERIES as f64 / elapsed.as_secs_f64()
    );
    for (kind, times, totals) in &mut by_kind {
        let mean_total = *totals as f64 / times.len().max(1) as f64;
        println!(
            "  {:<13} {}   {mean_total:>6.0} movies matched on average",
            format!("{kind:?}"),
            summary(times)
        );
    }
    Ok(())
}

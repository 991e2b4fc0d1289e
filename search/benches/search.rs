//! Search latency over the synthetic catalogue: 3,200 movies and 1,000,000
//! showtimes across 300 cities, 1,000 theaters and 14 days, for the four
//! typical kinds of query. The index is built once, up front.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use marquee_search::synthetic::{Catalogue, QueryKind};
use marquee_search::MovieIndex;

const SHOWTIMES: u64 = 1_000_000;
const BATCH: usize = 10_000;
/// Distinct queries each benchmark cycles through, so it measures a mix of
/// words, cities, days and places rather than one cached path.
const QUERIES_PER_KIND: u64 = 512;

fn typical_queries(c: &mut Criterion) {
    let catalogue = Catalogue::standard();
    let index = MovieIndex::new().expect("index");
    catalogue
        .load(&index, SHOWTIMES, BATCH)
        .expect("synthetic catalogue loads");
    let mut group = c.benchmark_group("search");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5));
    for kind in QueryKind::ALL {
        let queries: Vec<_> = (0..QUERIES_PER_KIND)
            .map(|n| catalogue.query(kind, n))
            .collect();
        let mut next = queries.iter().cycle();
        group.bench_function(format!("{kind:?}"), |b| {
            b.iter(|| {
                let query = next.next().expect("cycle never ends");
                black_box(index.search(query).expect("search"))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, typical_queries);
criterion_main!(benches);

//! Routing lookups: hash an id and read its owner from the slot table.
//!
//! `cargo bench -p marquee-sharding --bench routing`

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use marquee_sharding::simulate::node_names;
use marquee_sharding::Placement;

fn routing(c: &mut Criterion) {
    let ids: Vec<[u8; 16]> = (0u128..4096)
        .map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)).to_le_bytes())
        .collect();
    let mut group = c.benchmark_group("route");
    group.throughput(Throughput::Elements(ids.len() as u64));
    for nodes in [3usize, 20, 70] {
        let placement = Placement::new(node_names(nodes));
        group.bench_with_input(
            BenchmarkId::from_parameter(nodes),
            &placement,
            |b, placement| {
                b.iter(|| {
                    for id in &ids {
                        black_box(placement.route(black_box(id)));
                    }
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);

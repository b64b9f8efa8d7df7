//! Criterion benches of the CPU engine: single queries and batches at several N and d.
//! `cargo bench --bench search`. The faiss comparison lives in `compare_faiss.py`.

mod machine;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use needle_kernels::cpu::CpuShard;
use needle_kernels::{Metric, Shard};
use std::time::Duration;

fn floats(seed: u64, n: usize) -> Vec<f32> {
    needle_kernels::reference::pseudo_random_floats(seed, n)
}

fn shard(n: usize, d: usize, metric: Metric) -> CpuShard {
    let mut shard = CpuShard::new(d, metric).expect("dims > 0");
    for v in floats(1, n * d).chunks_exact(d) {
        shard.append(v).expect("append");
    }
    shard
}

fn bench(c: &mut Criterion) {
    println!("machine: {}", machine::describe());
    let mut group = c.benchmark_group("cpu_search");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    for (n, d) in [(10_000usize, 128usize), (100_000, 128), (100_000, 384)] {
        let s = shard(n, d, Metric::Dot);
        for q in [1usize, 4, 8, 16, 32, 64, 256] {
            let queries = floats(2, q * d);
            group.throughput(Throughput::Elements(q as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("n{n}_d{d}"), format!("q{q}")),
                &queries,
                |b, qs| b.iter(|| s.search_batch(qs, 10, None).expect("search")),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

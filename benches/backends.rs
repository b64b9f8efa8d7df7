//! Criterion benches of every backend present, against the CPU backend (the peer)
//! in the same run: `cargo bench --bench backends`. CUDA is skipped with a message
//! where no device exists; wgpu runs on any adapter, Mesa's lavapipe included (a
//! software rasteriser: its figures say the shader runs, not how fast a GPU is).

mod machine;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use needle_kernels::cpu::CpuBackend;
use needle_kernels::cuda::CudaBackend;
use needle_kernels::wgsl::WgpuBackend;
use needle_kernels::{Backend, Metric, Shard};
use std::time::{Duration, Instant};

const N: usize = 20_000;
const D: usize = 128;
const K: usize = 10;

fn backends() -> Vec<Box<dyn Backend>> {
    let mut list: Vec<Box<dyn Backend>> = vec![Box::new(CpuBackend::new())];
    match WgpuBackend::open_any() {
        Ok(b) => list.push(Box::new(b)),
        Err(e) => println!("wgpu skipped: {e}"),
    }
    match CudaBackend::open() {
        Ok(b) => list.push(Box::new(b)),
        Err(e) => println!("cuda skipped: {e}"),
    }
    list
}

fn loaded(backend: &dyn Backend) -> Box<dyn Shard> {
    let mut shard = backend.new_shard(D, Metric::Cosine).expect("shard");
    let data = needle_kernels::reference::pseudo_random_floats(1, N * D);
    for v in data.chunks_exact(D) {
        shard.append(v).expect("append");
    }
    // First search uploads the shard; keep that out of the timings.
    shard.search_batch(&data[..D], K, None).expect("warm-up");
    shard
}

fn median_ms(shard: &dyn Shard, queries: &[f32], runs: usize) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            shard.search_batch(queries, K, None).expect("search");
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn bench(c: &mut Criterion) {
    println!("machine: {}", machine::describe());
    let shards: Vec<(String, Box<dyn Shard>)> = backends()
        .into_iter()
        .map(|b| {
            (
                format!("{} [{}]", b.name(), b.describe()),
                loaded(b.as_ref()),
            )
        })
        .collect();
    let mut group = c.benchmark_group("backends");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    for q in [1usize, 64] {
        let queries = needle_kernels::reference::pseudo_random_floats(2, q * D);
        group.throughput(Throughput::Elements(q as u64));
        for (name, shard) in &shards {
            group.bench_with_input(
                BenchmarkId::new(name.as_str(), format!("q{q}")),
                &queries,
                |b, qs| b.iter(|| shard.search_batch(qs, K, None).expect("search")),
            );
        }
    }
    group.finish();
    println!(
        "\nN = {N}, d = {D}, k = {K}, cosine; peer: the CPU backend, same run (median of 15, \
         5 at Q = 1024); throughput = queries/s relative to the CPU backend's"
    );
    for q in [1usize, 64, 1024] {
        let queries = needle_kernels::reference::pseudo_random_floats(2, q * D);
        let runs = if q >= 1024 { 5 } else { 15 };
        let cpu = median_ms(shards[0].1.as_ref(), &queries, runs);
        for (name, shard) in &shards {
            let ms = median_ms(shard.as_ref(), &queries, runs);
            println!(
                "q{q:<4} {name}: {ms:.3} ms, {:.2}x the CPU backend's time, throughput {:.3}x",
                ms / cpu,
                cpu / ms
            );
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

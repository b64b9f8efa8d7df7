//! Why `gemm` and not `matrixmultiply`: both crates on the exact block shape the CPU
//! scan multiplies per worker (512 queries × 1024 rows × d), single-threaded, as in
//! the scan. `cargo bench --bench gemm_choice`; throughput is reported in FLOP/s.

mod machine;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;

const M: usize = 512;
const N: usize = 1024;

fn data(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32 / 16_777_216.0
                - 0.5
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    println!("machine: {}", machine::describe());
    let mut group = c.benchmark_group("block_gemm");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    for d in [128usize, 384, 768] {
        let queries = data(M * d, 1);
        let rows = data(N * d, 2);
        let mut out = vec![0.0f32; M * N];
        group.throughput(Throughput::Elements((2 * M * N * d) as u64));
        group.bench_function(BenchmarkId::new("gemm", d), |b| {
            b.iter(|| {
                // SAFETY: queries is M×d, rows is N×d (read as d×N), out is M×N.
                unsafe {
                    gemm::gemm(
                        M,
                        N,
                        d,
                        out.as_mut_ptr(),
                        1,
                        N as isize,
                        false,
                        queries.as_ptr(),
                        1,
                        d as isize,
                        rows.as_ptr(),
                        d as isize,
                        1,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    )
                }
            })
        });
        group.bench_function(BenchmarkId::new("matrixmultiply", d), |b| {
            b.iter(|| {
                // SAFETY: same shapes and strides as above.
                unsafe {
                    matrixmultiply::sgemm(
                        M,
                        d,
                        N,
                        1.0,
                        queries.as_ptr(),
                        d as isize,
                        1,
                        rows.as_ptr(),
                        1,
                        d as isize,
                        0.0,
                        out.as_mut_ptr(),
                        N as isize,
                        1,
                    )
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

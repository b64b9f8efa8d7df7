//! Every backend present gives the CPU backend's ids on the same data and queries:
//! random data, duplicates and ties, zero vectors, k above the row count, filters
//! that match nothing or a few rows, writes after the shard went to the device,
//! compaction, and k around the GPU paths' limit.
//!
//! CUDA runs where a device exists (`NEEDLE_REQUIRE_CUDA=1` turns its absence into a
//! failure, for the GPU host); wgpu runs on any adapter, lavapipe included
//! (`NEEDLE_REQUIRE_WGPU=1`, set by scripts/test.sh, which installs lavapipe).

use std::sync::OnceLock;

use needle_kernels::cpu::CpuShard;
use needle_kernels::cuda::{CudaBackend, TileSelect};
use needle_kernels::reference::pseudo_random_floats;
use needle_kernels::wgsl::WgpuBackend;
use needle_kernels::{F32Math, Hit, Metric, RowMask, Shard, Storage};

fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}

fn cuda() -> Option<&'static CudaBackend> {
    static CUDA: OnceLock<Option<CudaBackend>> = OnceLock::new();
    CUDA.get_or_init(|| match CudaBackend::open() {
        Ok(backend) => {
            eprintln!("CUDA: {}", needle_kernels::Backend::describe(&backend));
            Some(backend)
        }
        Err(e) if required("NEEDLE_REQUIRE_CUDA") => panic!("NEEDLE_REQUIRE_CUDA=1 but {e}"),
        Err(e) => {
            eprintln!("skipping CUDA parity: {e}");
            None
        }
    })
    .as_ref()
}

fn wgpu() -> Option<&'static WgpuBackend> {
    static WGPU: OnceLock<Option<WgpuBackend>> = OnceLock::new();
    WGPU.get_or_init(|| match WgpuBackend::open_any() {
        Ok(backend) => {
            eprintln!("wgpu: {}", needle_kernels::Backend::describe(&backend));
            Some(backend)
        }
        Err(e) if required("NEEDLE_REQUIRE_WGPU") => panic!("NEEDLE_REQUIRE_WGPU=1 but {e}"),
        Err(e) => {
            eprintln!("skipping wgpu parity: {e}");
            None
        }
    })
    .as_ref()
}

/// The non-CPU shards under test for `dims` and `metric`, with their names.
fn gpu_shards(dims: usize, metric: Metric) -> Vec<(&'static str, Box<dyn Shard>)> {
    let mut shards: Vec<(&'static str, Box<dyn Shard>)> = Vec::new();
    if let Some(cuda) = cuda() {
        let strict = cuda.with_f32_math(F32Math::Strict);
        shards.push((
            "cuda-tf32",
            Box::new(cuda.shard(dims, metric, Storage::F32).unwrap()),
        ));
        shards.push((
            "cuda-f32",
            Box::new(strict.shard(dims, metric, Storage::F32).unwrap()),
        ));
        shards.push((
            "cuda-f16",
            Box::new(cuda.shard(dims, metric, Storage::F16).unwrap()),
        ));
        // The warp tile select (NEEDLE_CUDA_KERNEL=warp), side by side with the block one.
        let warp = cuda.with_tile_select(TileSelect::Warp);
        shards.push((
            "cuda-tf32-warp",
            Box::new(warp.shard(dims, metric, Storage::F32).unwrap()),
        ));
        shards.push((
            "cuda-f16-warp",
            Box::new(warp.shard(dims, metric, Storage::F16).unwrap()),
        ));
    }
    if let Some(wgpu) = wgpu() {
        shards.push(("wgpu", Box::new(wgpu.shard(dims, metric).unwrap())));
        // f16 on the adapter where it has shader-f16 (lavapipe has), f32 otherwise.
        shards.push((
            "wgpu-f16",
            Box::new(wgpu.shard_stored(dims, metric, Storage::F16).unwrap()),
        ));
    }
    shards
}

/// Ids must match; a different id at a position is accepted only as a near-tie
/// (equal distance within `tol`), and distances must match everywhere.
fn assert_same(label: &str, expected: &[Vec<Hit>], got: &[Vec<Hit>]) {
    const TOL: f32 = 2e-5;
    assert_eq!(expected.len(), got.len(), "{label}: query count");
    for (q, (e, g)) in expected.iter().zip(got).enumerate() {
        assert_eq!(
            e.len(),
            g.len(),
            "{label}: query {q} hit count\nexpected {e:?}\ngot {g:?}"
        );
        for (i, (a, b)) in e.iter().zip(g).enumerate() {
            let close = (a.distance - b.distance).abs() <= TOL * (1.0 + a.distance.abs());
            assert!(
                close,
                "{label}: query {q} rank {i}: distance {} vs {}",
                a.distance, b.distance
            );
            if a.row != b.row {
                let tie = e
                    .iter()
                    .chain(g)
                    .filter(|h| h.row == a.row || h.row == b.row)
                    .all(|h| (h.distance - a.distance).abs() <= TOL * (1.0 + a.distance.abs()));
                assert!(tie, "{label}: query {q} rank {i}: row {} vs {} (not a tie)\nexpected {e:?}\ngot {g:?}", a.row, b.row);
            }
        }
    }
}

struct Case {
    dims: usize,
    metric: Metric,
    vectors: Vec<f32>,
}

impl Case {
    fn random(seed: u64, rows: usize, dims: usize, metric: Metric) -> Case {
        Case {
            dims,
            metric,
            vectors: pseudo_random_floats(seed, rows * dims),
        }
    }

    fn load(&self, shard: &mut dyn Shard) {
        for v in self.vectors.chunks(self.dims) {
            shard.append(v).unwrap();
        }
    }

    /// Loads the case into the CPU reference and every GPU shard, runs `act` on each
    /// (writes between searches), and compares every search `act` returns.
    fn check(&self, label: &str, act: impl Fn(&mut dyn Shard) -> Vec<Vec<Vec<Hit>>>) {
        let mut cpu = CpuShard::new(self.dims, self.metric).unwrap();
        self.load(&mut cpu);
        let expected = act(&mut cpu);
        for (name, mut shard) in gpu_shards(self.dims, self.metric) {
            self.load(shard.as_mut());
            let got = act(shard.as_mut());
            for (step, (e, g)) in expected.iter().zip(&got).enumerate() {
                assert_same(&format!("{label} on {name}, search {step}"), e, g);
            }
        }
    }
}

const METRICS: [Metric; 3] = [Metric::Cosine, Metric::Euclidean, Metric::Dot];

#[test]
fn random_data_every_metric() {
    for (i, metric) in METRICS.into_iter().enumerate() {
        let case = Case::random(10 + i as u64, 3000, 24, metric);
        let queries = pseudo_random_floats(99, 37 * 24);
        case.check(&format!("random {metric:?}"), |s| {
            vec![
                s.search_batch(&queries, 10, None).unwrap(),
                s.search_batch(&queries[..24], 1, None).unwrap(),
            ]
        });
    }
}

#[test]
fn many_tiles_and_query_counts() {
    // Enough rows and queries that the CUDA path tiles the rows and splits columns.
    let case = Case::random(7, 60_000, 64, Metric::Euclidean);
    let queries = pseudo_random_floats(8, 700 * 64);
    case.check("tiled", |s| {
        vec![
            s.search_batch(&queries, 10, None).unwrap(),
            s.search_batch(&queries[..64], 100, None).unwrap(),
            s.search_batch(&queries[..5 * 64], 3, None).unwrap(),
        ]
    });
}

#[test]
fn duplicates_and_ties_resolve_to_the_lower_row() {
    let base = pseudo_random_floats(3, 50 * 16);
    let mut vectors = Vec::new();
    for _ in 0..4 {
        vectors.extend_from_slice(&base);
    }
    for metric in METRICS {
        let case = Case {
            dims: 16,
            metric,
            vectors: vectors.clone(),
        };
        // Queries equal to stored rows: exact ties at distance 0 (or -‖x‖² for dot).
        let queries = base[..5 * 16].to_vec();
        case.check(&format!("duplicates {metric:?}"), |s| {
            vec![s.search_batch(&queries, 7, None).unwrap()]
        });
    }
}

#[test]
fn zero_vectors_and_zero_queries() {
    let mut vectors = pseudo_random_floats(4, 200 * 8);
    for r in (0..200).step_by(7) {
        vectors[r * 8..(r + 1) * 8].fill(0.0);
    }
    for metric in METRICS {
        let case = Case {
            dims: 8,
            metric,
            vectors: vectors.clone(),
        };
        let mut queries = vec![0.0; 8];
        queries.extend(pseudo_random_floats(5, 8));
        case.check(&format!("zeros {metric:?}"), |s| {
            vec![s.search_batch(&queries, 12, None).unwrap()]
        });
    }
}

#[test]
fn k_above_row_count_returns_every_live_row() {
    let case = Case::random(6, 5, 4, Metric::Cosine);
    let queries = pseudo_random_floats(7, 2 * 4);
    case.check("k > n", |s| {
        s.delete(2).unwrap();
        let hits = s.search_batch(&queries, 20, None).unwrap();
        assert_eq!(hits[0].len(), 4);
        vec![hits]
    });
}

#[test]
fn filters_matching_nothing_and_few_rows() {
    let case = Case::random(11, 2500, 12, Metric::Euclidean);
    let queries = pseudo_random_floats(12, 9 * 12);
    case.check("filters", |s| {
        let nothing = RowMask::none(s.rows());
        let mut few = RowMask::none(s.rows());
        for r in (0..s.rows()).step_by(97) {
            few.set(r);
        }
        let empty = s.search_batch(&queries, 5, Some(&nothing)).unwrap();
        assert!(
            empty.iter().all(Vec::is_empty),
            "a filter matching nothing returns nothing"
        );
        vec![empty, s.search_batch(&queries, 40, Some(&few)).unwrap()]
    });
}

#[test]
fn writes_after_upload_are_seen() {
    let case = Case::random(13, 3000, 20, Metric::Cosine);
    let queries = pseudo_random_floats(14, 11 * 20);
    let extra = pseudo_random_floats(15, 5000 * 20);
    case.check("writes", |s| {
        let before = s.search_batch(&queries, 10, None).unwrap();
        for r in (0..3000).step_by(3) {
            s.delete(r).unwrap();
        }
        for (i, r) in (1..3000u32).step_by(10).enumerate() {
            s.overwrite(r, &extra[i * 20..(i + 1) * 20]).unwrap();
        }
        // Appends past the first device allocation force a grow-and-copy.
        for v in extra.chunks(20) {
            s.append(v).unwrap();
        }
        // A revived row: overwrite of a deleted one.
        s.overwrite(0, &queries[..20]).unwrap();
        vec![before, s.search_batch(&queries, 10, None).unwrap()]
    });
}

#[test]
fn compacted_shard_searches_like_the_reference() {
    let case = Case::random(16, 4000, 10, Metric::Dot);
    let queries = pseudo_random_floats(17, 6 * 10);
    case.check("compaction", |s| {
        for r in (0..4000).step_by(2) {
            s.delete(r).unwrap();
        }
        let _ = s.search_batch(&queries, 5, None).unwrap();
        let (packed, compaction) = s.compacted();
        assert_eq!(compaction.remap.iter().flatten().count(), 2000);
        vec![packed.search_batch(&queries, 15, None).unwrap()]
    });
}

#[test]
fn k_at_and_above_the_device_limit() {
    let case = Case::random(18, 3000, 6, Metric::Euclidean);
    let queries = pseudo_random_floats(19, 3 * 6);
    case.check("large k", |s| {
        vec![
            s.search_batch(&queries, 1024, None).unwrap(),
            s.search_batch(&queries, 1500, None).unwrap(),
        ]
    });
}

#[test]
fn wgpu_shards_larger_than_one_buffer_are_split_into_chunks() {
    let Some(wgpu) = wgpu() else { return };
    let dims = 12;
    let data = pseudo_random_floats(30, 5500 * dims);
    let queries = pseudo_random_floats(31, 13 * dims);
    let mut cpu = CpuShard::new(dims, Metric::Euclidean).unwrap();
    let mut gpu = wgpu.shard(dims, Metric::Euclidean).unwrap();
    gpu.limit_chunk_rows(1000);
    for v in data[..3500 * dims].chunks(dims) {
        cpu.append(v).unwrap();
        gpu.append(v).unwrap();
    }
    let run = |s: &dyn Shard| s.search_batch(&queries, 25, None).unwrap();
    assert_same("chunks", &run(&cpu), &run(&gpu));
    // Growth past the last chunk, writes into earlier chunks, deletes.
    for v in data[3500 * dims..].chunks(dims) {
        cpu.append(v).unwrap();
        gpu.append(v).unwrap();
    }
    for r in [5u32, 1500, 2999, 4321] {
        cpu.overwrite(r, &queries[..dims]).unwrap();
        gpu.overwrite(r, &queries[..dims]).unwrap();
    }
    for r in (0..5500u32).step_by(7) {
        cpu.delete(r).unwrap();
        gpu.delete(r).unwrap();
    }
    assert_same("chunks after writes", &run(&cpu), &run(&gpu));
}

/// A query equal to a row finds that row wherever it sits in the shard. Blocks of
/// this shard are long enough that one dispatch per block would run past llvmpipe's
/// 65,535 loop iterations per invocation, after which it ends every loop silently
/// and the rows late in each block were never searched.
#[test]
fn wgpu_finds_rows_at_the_end_of_long_blocks() {
    let Some(wgpu) = wgpu() else { return };
    let (dims, rows, count) = (128, 40_000, 256);
    let data = pseudo_random_floats(40, rows * dims);
    for storage in [Storage::F32, Storage::F16] {
        let mut gpu = wgpu.shard_stored(dims, Metric::Euclidean, storage).unwrap();
        assert_eq!(gpu.storage(), wgpu.device().storage_for(storage));
        for v in data.chunks(dims) {
            gpu.append(v).unwrap();
        }
        let picked: Vec<usize> = (0..count).map(|i| (i + 1) * (rows / count) - 1).collect();
        let queries: Vec<f32> = picked
            .iter()
            .flat_map(|&r| data[r * dims..(r + 1) * dims].to_vec())
            .collect();
        let hits = gpu.search_batch(&queries, 1, None).unwrap();
        for (hit, &row) in hits.iter().zip(&picked) {
            assert_eq!(hit[0].row as usize, row, "{storage:?}: row {row} not found");
        }
    }
}

/// Euclidean neighbours of vectors that share a large common offset: ranked through
/// the norms (|q|² + |x|² − 2 q·x) in f32 the offset cancels their differences and
/// the true neighbours are lost; wgpu sums the squared differences instead. The
/// reference here is brute force with exact distances: the CPU backend and the CUDA
/// GEMM path rank through the norms, and lose these neighbours themselves.
#[test]
fn wgpu_euclidean_is_exact_on_data_with_a_common_offset() {
    let Some(wgpu) = wgpu() else { return };
    let dims = 64;
    let offset = |v: Vec<f32>| v.into_iter().map(|x| 300.0 + 0.1 * x).collect::<Vec<_>>();
    let data = offset(pseudo_random_floats(50, 6000 * dims));
    let queries = offset(pseudo_random_floats(51, 20 * dims));
    let mut gpu = wgpu.shard(dims, Metric::Euclidean).unwrap();
    for v in data.chunks(dims) {
        gpu.append(v).unwrap();
    }
    let expected: Vec<Vec<Hit>> = queries
        .chunks(dims)
        .map(|q| {
            let mut hits: Vec<Hit> = data
                .chunks(dims)
                .enumerate()
                .map(|(row, x)| Hit {
                    row: row as u32,
                    distance: Metric::Euclidean.distance(q, x),
                })
                .collect();
            hits.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.row.cmp(&b.row)));
            hits.truncate(10);
            hits
        })
        .collect();
    let got = gpu.search_batch(&queries, 10, None).unwrap();
    assert_same("common offset", &expected, &got);
}

/// A search with more dimensions than one software dispatch can take within
/// llvmpipe's loop budget is answered from the host copy, exactly.
#[test]
fn wgpu_answers_very_wide_vectors_on_a_software_adapter() {
    let Some(wgpu) = wgpu() else { return };
    let dims = 8192;
    let case = Case::random(60, 300, dims, Metric::Cosine);
    let queries = pseudo_random_floats(61, 3 * dims);
    let mut cpu = CpuShard::new(dims, Metric::Cosine).unwrap();
    let mut gpu = wgpu.shard(dims, Metric::Cosine).unwrap();
    case.load(&mut cpu);
    case.load(&mut gpu);
    let expected = cpu.search_batch(&queries, 5, None).unwrap();
    assert_same(
        "8,192 dimensions",
        &expected,
        &gpu.search_batch(&queries, 5, None).unwrap(),
    );
}

#[test]
fn cuda_refuses_rows_that_cannot_fit_unless_told_to_serve_from_host() {
    let Some(cuda) = cuda() else { return };
    let mut refuse = cuda.shard(64, Metric::Dot, Storage::F32).unwrap();
    refuse.append(&[0.5; 64]).unwrap();
    assert!(refuse.check_room(1000).is_ok());
    let huge = 1usize << 40;
    assert!(
        matches!(
            refuse.check_room(huge),
            Err(needle_kernels::KernelError::DeviceMemory { .. })
        ),
        "a terabyte of rows must not fit"
    );
    let host = cuda
        .with_on_device_full(needle_kernels::OnDeviceFull::ServeFromHost)
        .shard(64, Metric::Dot, Storage::F32)
        .unwrap();
    assert!(host.check_room(huge).is_ok());
    assert_eq!(refuse.on_device(), Some(true));
}

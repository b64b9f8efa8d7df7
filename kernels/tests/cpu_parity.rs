//! The CPU backend against the brute-force reference: same rows (ties aside) and the
//! same distances, for every metric, batch size and mask, after deletes, overwrites
//! and compaction.

use needle_kernels::cpu::CpuShard;
use needle_kernels::{reference, Hit, Metric, RowMask, Shard};
use proptest::prelude::*;

const METRICS: [Metric; 3] = [Metric::Cosine, Metric::Euclidean, Metric::Dot];

fn floats(seed: u64, n: usize) -> Vec<f32> {
    reference::pseudo_random_floats(seed, n)
}

/// Checks that `got` is a valid top-k answer: the same length as the reference, every
/// distance within tolerance of the reference distance at the same rank, and every
/// returned row's own distance correct. This accepts ties broken differently while
/// rejecting any wrong row.
fn assert_matches(got: &[Hit], want: &[Hit], data: &[f32], dims: usize, metric: Metric, q: &[f32]) {
    assert_eq!(got.len(), want.len(), "result count");
    for (g, w) in got.iter().zip(want) {
        let scale = 1.0 + w.distance.abs();
        assert!(
            (g.distance - w.distance).abs() <= 1e-3 * scale,
            "rank distance {g:?} vs {w:?}"
        );
        let row = g.row as usize;
        let own = reference::naive_distance(metric, q, &data[row * dims..(row + 1) * dims]);
        assert!(
            (g.distance - own).abs() <= 1e-3 * (1.0 + own.abs()),
            "row {row} distance"
        );
    }
    let mut rows: Vec<u32> = got.iter().map(|h| h.row).collect();
    rows.sort_unstable();
    rows.dedup();
    assert_eq!(rows.len(), got.len(), "duplicate rows in result");
}

fn check(rows: usize, dims: usize, nq: usize, k: usize, seed: u64, masked: bool) {
    let data = floats(seed, rows * dims);
    let queries = floats(seed + 1, nq * dims);
    for metric in METRICS {
        let mut shard = CpuShard::new(dims, metric).unwrap();
        for v in data.chunks_exact(dims) {
            shard.append(v).unwrap();
        }
        let mask = masked.then(|| {
            let mut m = RowMask::none(rows);
            for r in (0..rows).filter(|r| (r * 7 + seed as usize).is_multiple_of(3)) {
                m.set(r);
            }
            m
        });
        let got = shard.search_batch(&queries, k, mask.as_ref()).unwrap();
        assert_eq!(got.len(), nq);
        for (qi, hits) in got.iter().enumerate() {
            let q = &queries[qi * dims..(qi + 1) * dims];
            let want = reference::search(&data, dims, metric, q, k, mask.as_ref());
            assert_matches(hits, &want, &data, dims, metric, q);
        }
    }
}

#[test]
fn single_query_large_shard_spans_several_workers() {
    check(20_000, 33, 1, 10, 1, false);
}

#[test]
fn batched_queries_use_the_gemm_path_across_blocks_and_tiles() {
    check(9_000, 64, 300, 25, 2, false);
}

#[test]
fn filters_restrict_both_paths() {
    check(5_000, 16, 2, 50, 3, true);
    check(5_000, 16, 40, 50, 4, true);
}

#[test]
fn k_larger_than_rows_returns_every_allowed_row() {
    check(37, 5, 6, 100, 5, true);
}

#[test]
fn deletes_overwrites_and_compaction_keep_results_exact() {
    let dims = 12;
    let data = floats(9, 3000 * dims);
    for metric in METRICS {
        let mut shard = CpuShard::new(dims, metric).unwrap();
        for v in data.chunks_exact(dims) {
            shard.append(v).unwrap();
        }
        // Reference copy: the shard's intended contents, row for row.
        let mut expected = data.clone();
        let mut alive = RowMask::all(3000);
        for r in (0..3000).step_by(3) {
            assert!(shard.delete(r as u32).unwrap());
            alive.clear(r);
        }
        assert!(
            !shard.delete(0).unwrap(),
            "second delete reports nothing deleted"
        );
        let replacement = floats(10, 200 * dims);
        for (i, v) in replacement.chunks_exact(dims).enumerate() {
            let row = i * 5 + 1;
            shard.overwrite(row as u32, v).unwrap();
            expected[row * dims..(row + 1) * dims].copy_from_slice(v);
            alive.set(row);
        }
        assert_eq!(shard.live(), alive.count());
        let queries = floats(11, 8 * dims);
        let got = shard.search_batch(&queries, 20, None).unwrap();
        for (qi, hits) in got.iter().enumerate() {
            let q = &queries[qi * dims..(qi + 1) * dims];
            let want = reference::search(&expected, dims, metric, q, 20, Some(&alive));
            assert_matches(hits, &want, &expected, dims, metric, q);
        }
        // Compaction preserves order, so the reference is the live rows packed.
        let (shard, compaction) = shard.compacted();
        let packed: Vec<f32> = (0..3000)
            .filter(|r| alive.contains(*r))
            .flat_map(|r| expected[r * dims..(r + 1) * dims].to_vec())
            .collect();
        assert_eq!(
            compaction.remap.iter().filter(|r| r.is_some()).count(),
            alive.count()
        );
        assert_eq!(shard.rows(), alive.count());
        let got = shard.search_batch(&queries, 20, None).unwrap();
        for (qi, hits) in got.iter().enumerate() {
            let q = &queries[qi * dims..(qi + 1) * dims];
            let want = reference::search(&packed, dims, metric, q, 20, None);
            assert_matches(hits, &want, &packed, dims, metric, q);
        }
    }
}

#[test]
fn invalid_input_is_rejected_without_changing_the_shard() {
    let mut shard = CpuShard::new(4, Metric::Dot).unwrap();
    shard.append(&[1.0, 2.0, 3.0, 4.0]).unwrap();
    assert!(shard.append(&[1.0]).is_err());
    assert!(shard.overwrite(5, &[0.0; 4]).is_err());
    assert!(shard.delete(5).is_err());
    assert!(shard.search_batch(&[0.0; 4], 0, None).is_err());
    assert!(shard.search_batch(&[0.0; 4], 10_001, None).is_err());
    assert!(shard.search_batch(&[0.0; 5], 1, None).is_err());
    assert!(shard
        .search_batch(&[0.0; 4], 1, Some(&RowMask::all(7)))
        .is_err());
    assert_eq!(shard.rows(), 1);
    assert!(CpuShard::new(0, Metric::Dot).is_err());
}

#[test]
fn exact_duplicates_have_zero_euclidean_distance() {
    let mut shard = CpuShard::new(3, Metric::Euclidean).unwrap();
    let v = [1000.5f32, -2000.25, 3000.125];
    shard.append(&[0.0, 0.0, 0.0]).unwrap();
    shard.append(&v).unwrap();
    let queries: Vec<f32> = v.iter().copied().cycle().take(3 * 8).collect();
    for hits in shard.search_batch(&queries, 1, None).unwrap() {
        assert_eq!(hits[0].row, 1);
        assert_eq!(hits[0].distance, 0.0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_shards_match_the_reference(
        rows in 1usize..600,
        dims in 1usize..40,
        nq in 1usize..12,
        k in 1usize..30,
        seed in 0u64..1000,
        masked in any::<bool>(),
    ) {
        check(rows, dims, nq, k, seed, masked);
    }
}

#[test]
fn zero_vectors_have_cosine_distance_one() {
    let mut shard = CpuShard::new(2, Metric::Cosine).unwrap();
    shard.append(&[0.0, 0.0]).unwrap();
    shard.append(&[1.0, 0.0]).unwrap();
    // One query (SIMD path) and a batch of eight (GEMM path).
    for nq in [1usize, 8] {
        let queries: Vec<f32> = [1.0f32, 0.0].repeat(nq);
        for hits in shard.search_batch(&queries, 2, None).unwrap() {
            assert_eq!(hits[0].row, 1);
            assert!(hits[0].distance.abs() < 1e-6);
            assert_eq!((hits[1].row, hits[1].distance), (0, 1.0));
        }
    }
    let hits = shard.search_batch(&[0.0, 0.0], 2, None).unwrap();
    assert!(
        hits[0].iter().all(|h| h.distance == 1.0),
        "a zero query is orthogonal to everything"
    );
}

#[test]
fn a_query_reports_identical_distances_alone_and_in_a_batch() {
    let dims = 96;
    let data = floats(21, 5000 * dims);
    let queries = floats(22, 16 * dims);
    for metric in METRICS {
        let mut shard = CpuShard::new(dims, metric).unwrap();
        for v in data.chunks_exact(dims) {
            shard.append(v).unwrap();
        }
        let batched = shard.search_batch(&queries, 7, None).unwrap();
        for (qi, batch_hits) in batched.iter().enumerate() {
            let alone = shard
                .search_batch(&queries[qi * dims..(qi + 1) * dims], 7, None)
                .unwrap();
            assert_eq!(&alone[0], batch_hits, "{metric:?} query {qi}");
        }
    }
}

//! Exact re-ranking of GPU candidates on the host.
//!
//! GPU backends pick candidates with fast arithmetic (tensor-core GEMM in TF32 or
//! f16, or a WGSL shader) and over-fetch a margin; the final order and distances come
//! from the host copy in f32, computed the way [`Metric::distance`] does, so every
//! backend reports the same ids and distances as the CPU reference.

use rayon::prelude::*;

use crate::cpu::CpuShard;
use crate::{Hit, Shard};

/// Candidates to fetch for a final `k`: enough margin that the reduced-precision
/// first pass cannot push a true top-k row out, capped at what a GPU pass returns.
pub(crate) fn candidate_count(k: usize, cap: usize) -> usize {
    (k + 16).max(2 * k).min(cap).max(k)
}

/// The best `k` of each query's candidate rows, by exact distance then row.
/// `candidates[q]` may hold duplicates or be short; out-of-range rows are skipped.
pub(crate) fn rerank_on_host(
    host: &CpuShard,
    queries: &[f32],
    candidates: &[Vec<u32>],
    k: usize,
) -> Vec<Vec<Hit>> {
    let dims = host.dims();
    let metric = host.metric();
    let rows = host.rows();
    let rerank = |(q, rows_of_q): (usize, &Vec<u32>)| {
        let query = &queries[q * dims..(q + 1) * dims];
        let mut hits: Vec<Hit> = rows_of_q
            .iter()
            .filter(|&&r| (r as usize) < rows)
            .map(|&r| Hit {
                row: r,
                distance: metric.distance(query, host.vector(r as usize)),
            })
            .collect();
        sort_and_truncate(&mut hits, k);
        hits
    };
    // A few microseconds of work handed to the thread pool would add a cross-thread
    // wake-up to a single query's latency.
    let work: usize = candidates.iter().map(Vec::len).sum::<usize>() * dims;
    if work < PARALLEL_RERANK_WORK {
        candidates.iter().enumerate().map(rerank).collect()
    } else {
        candidates.par_iter().enumerate().map(rerank).collect()
    }
}

/// Multiply-adds below which the host re-rank stays on the calling thread.
const PARALLEL_RERANK_WORK: usize = 1 << 17;

/// Orders hits by (distance, row), drops repeated rows and keeps the first `k`.
pub(crate) fn sort_and_truncate(hits: &mut Vec<Hit>, k: usize) {
    hits.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.row.cmp(&b.row)));
    hits.dedup_by_key(|h| h.row);
    hits.truncate(k);
}

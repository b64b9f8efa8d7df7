//! The exact scan behind [`CpuShard::search_batch`](super::CpuShard).
//!
//! Rows are split into one contiguous range per worker. Each worker walks its range in
//! blocks; for a block it computes the dot products of every query with every row of
//! the block (a GEMM for 16 or more queries, SIMD dots four queries at a time below
//! that), turns them into
//! scores and offers them to per-query [`TopK`]s. Only a block-sized slice of the
//! Q×N score matrix exists at any time. Worker results are merged at the end.

use super::dot::{dot, dot4, l2_squared};
use super::shard::inverse_norm;
use crate::metric::cosine_distance;
use crate::{Hit, Metric, RowMask, TopK};
use rayon::prelude::*;

/// Rows per block and queries per GEMM tile. Measured on the 2-core EPYC of
/// benches/RESULTS.md (N=200k, d=384, Q=1000): 512×1024 ran at ~180 GFLOP/s, 256×1024
/// at ~168 and 128×1024 at ~150 — larger tiles amortise gemm's packing of the rows.
/// The score scratch is QUERY_TILE × BLOCK_ROWS floats (2 MiB) per worker.
const BLOCK_ROWS: usize = 1024;
const QUERY_TILE: usize = 512;
/// Below this many queries the scan reads each row once and dots it with every query
/// (four at a time); from here on a GEMM's packing pays for itself. Measured in one
/// session at N=100k, d=384 (benches/RESULTS.md, "small batches"): 8 queries 9.7 ms by
/// dots vs 17.6 ms by GEMM, 16 queries 20.2 vs 20.1, 32 queries 26.9 vs 27.3.
const GEMM_MIN_QUERIES: usize = 16;
/// Rows per block of the small-batch scan: 64 rows of 384 floats are 96 KiB.
const DOT_BLOCK_ROWS: usize = 64;
/// Fewer rows than this per worker are not worth a thread.
const MIN_ROWS_PER_WORKER: usize = 4096;

pub(crate) struct ShardView<'a> {
    pub dims: usize,
    pub metric: Metric,
    pub data: &'a [f32],
    pub norms_sq: &'a [f32],
    pub inv_norms: &'a [f32],
    /// Live rows that the request's filter allows.
    pub allowed: &'a RowMask,
}

/// Per-query constants for turning a dot product into a comparable score.
struct QueryNorms {
    norms_sq: Vec<f32>,
}

pub(crate) fn scan(view: &ShardView<'_>, queries: &[f32], nq: usize, k: usize) -> Vec<Vec<Hit>> {
    let rows = view.norms_sq.len();
    if nq == 0 {
        return Vec::new();
    }
    if rows == 0 || view.allowed.count() == 0 {
        return vec![Vec::new(); nq];
    }
    let qnorms = QueryNorms {
        norms_sq: (0..nq)
            .map(|q| {
                let v = &queries[q * view.dims..(q + 1) * view.dims];
                dot(v, v)
            })
            .collect(),
    };
    let workers = rayon::current_num_threads()
        .min(rows.div_ceil(MIN_ROWS_PER_WORKER))
        .max(1);
    let per_worker = rows.div_ceil(workers);
    let merged = (0..workers)
        .into_par_iter()
        .map(|w| {
            let start = w * per_worker;
            let end = ((w + 1) * per_worker).min(rows);
            scan_range(view, queries, nq, k, &qnorms, start, end)
        })
        .reduce_with(|mut a, b| {
            for (x, y) in a.iter_mut().zip(b) {
                x.merge(y);
            }
            a
        })
        .unwrap_or_default();
    merged
        .into_iter()
        .enumerate()
        .map(|(q, top)| {
            let query = &queries[q * view.dims..(q + 1) * view.dims];
            finish(view, query, qnorms.norms_sq[q], top)
        })
        .collect()
}

/// Scores from dot products: monotone in the final distance, cheaper to compute.
/// Euclidean drops the per-query constant ‖q‖² and the square root.
#[inline(always)]
fn score(metric: Metric, dot: f32, q_norm_sq: f32, x_norm_sq: f32) -> f32 {
    match metric {
        Metric::Dot => -dot,
        Metric::Cosine => cosine_distance(dot, q_norm_sq, x_norm_sq),
        Metric::Euclidean => x_norm_sq - 2.0 * dot,
    }
}

fn scan_range(
    view: &ShardView<'_>,
    queries: &[f32],
    nq: usize,
    k: usize,
    qnorms: &QueryNorms,
    start: usize,
    end: usize,
) -> Vec<TopK> {
    let mut tops: Vec<TopK> = (0..nq).map(|_| TopK::new(k)).collect();
    if nq < GEMM_MIN_QUERIES {
        scan_range_dots(view, queries, qnorms, start, end, &mut tops);
    } else {
        scan_range_gemm(view, queries, nq, qnorms, start, end, &mut tops);
    }
    tops
}

fn scan_range_dots(
    view: &ShardView<'_>,
    queries: &[f32],
    qnorms: &QueryNorms,
    start: usize,
    end: usize,
    tops: &mut [TopK],
) {
    let d = view.dims;
    let nq = tops.len();
    let quads = nq / 4;
    let q = |i: usize| &queries[i * d..(i + 1) * d];
    let offer = |qi: usize, dp: f32, row: usize, top: &mut TopK| {
        let s = score(view.metric, dp, qnorms.norms_sq[qi], view.norms_sq[row]);
        if s <= top.threshold() {
            top.push(s, row as u32);
        }
    };
    // Rows in small blocks, queries four at a time within a block: a block stays in
    // L2 while each quad of queries passes over it, so rows are read from memory once
    // and each quad's four queries stay in L1.
    let mut block = start;
    while block < end {
        let block_end = (block + DOT_BLOCK_ROWS).min(end);
        for g in 0..quads {
            let base = g * 4;
            let quad = [q(base), q(base + 1), q(base + 2), q(base + 3)];
            for row in block..block_end {
                if !view.allowed.contains(row) {
                    continue;
                }
                let dots = dot4(quad, &view.data[row * d..(row + 1) * d]);
                for (j, dp) in dots.into_iter().enumerate() {
                    offer(base + j, dp, row, &mut tops[base + j]);
                }
            }
        }
        for (qi, top) in tops.iter_mut().enumerate().skip(quads * 4) {
            for row in block..block_end {
                if view.allowed.contains(row) {
                    offer(qi, dot(q(qi), &view.data[row * d..(row + 1) * d]), row, top);
                }
            }
        }
        block = block_end;
    }
}

fn scan_range_gemm(
    view: &ShardView<'_>,
    queries: &[f32],
    nq: usize,
    qnorms: &QueryNorms,
    start: usize,
    end: usize,
    tops: &mut [TopK],
) {
    let d = view.dims;
    let tile = nq.min(QUERY_TILE);
    let mut scratch = vec![0.0f32; tile * BLOCK_ROWS];
    let mut block = start;
    while block < end {
        let b = (end - block).min(BLOCK_ROWS);
        if (block..block + b).all(|r| !view.allowed.contains(r)) {
            block += b;
            continue;
        }
        let xs = &view.data[block * d..(block + b) * d];
        let mut q0 = 0;
        while q0 < nq {
            let qt = (nq - q0).min(tile);
            let qs = &queries[q0 * d..(q0 + qt) * d];
            block_dots(qs, qt, xs, b, d, &mut scratch[..qt * b]);
            for (i, top) in tops[q0..q0 + qt].iter_mut().enumerate() {
                let dots = &mut scratch[i * b..(i + 1) * b];
                let rows = block..block + b;
                let allowed = view.allowed;
                // One loop per metric, so the score formula is not re-dispatched per row.
                match view.metric {
                    Metric::Dot => {
                        offer(top, dots, &view.norms_sq[rows], block, allowed, |d, _| -d)
                    }
                    Metric::Cosine => {
                        let inv_q = inverse_norm(qnorms.norms_sq[q0 + i]);
                        let inv_x = &view.inv_norms[rows];
                        offer(top, dots, inv_x, block, allowed, |d, inv| {
                            1.0 - d * inv_q * inv
                        })
                    }
                    Metric::Euclidean => {
                        offer(top, dots, &view.norms_sq[rows], block, allowed, |d, x| {
                            x - 2.0 * d
                        })
                    }
                }
            }
            q0 += qt;
        }
        block += b;
    }
}

/// Offers one query's scores for a block of rows to its top-k, overwriting `dots`
/// with the scores. Scoring is a plain map (vectorised); the threshold test then runs
/// on chunks of 16, and only a chunk with a candidate is walked row by row — almost
/// none are, once the heap is full.
#[inline(always)]
fn offer(
    top: &mut TopK,
    dots: &mut [f32],
    aux: &[f32],
    first_row: usize,
    allowed: &RowMask,
    score: impl Fn(f32, f32) -> f32,
) {
    for (d, &a) in dots.iter_mut().zip(aux) {
        *d = score(*d, a);
    }
    let mut threshold = top.threshold();
    for (c, chunk) in dots.chunks(16).enumerate() {
        if !chunk.iter().fold(false, |any, &s| any | (s <= threshold)) {
            continue;
        }
        for (j, &s) in chunk.iter().enumerate() {
            let row = first_row + c * 16 + j;
            if s <= threshold && allowed.contains(row) {
                top.push(s, row as u32);
                threshold = top.threshold();
            }
        }
    }
}

/// `out[i * b + j] = qs[i] · xs[j]` for `qt` queries and `b` rows, via `gemm`
/// (single-threaded: the parallelism is across row ranges).
fn block_dots(qs: &[f32], qt: usize, xs: &[f32], b: usize, d: usize, out: &mut [f32]) {
    assert!(qs.len() >= qt * d && xs.len() >= b * d && out.len() >= qt * b);
    // SAFETY: the asserts above bound every access gemm makes with these strides:
    // lhs is qt×d row-major, rhs is xsᵀ (d×b, rows of xs are its columns), dst qt×b.
    unsafe {
        gemm::gemm(
            qt,
            b,
            d,
            out.as_mut_ptr(),
            1,
            b as isize,
            false,
            qs.as_ptr(),
            1,
            d as isize,
            xs.as_ptr(),
            d as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Best-first hits with reported distances, recomputed for the kept rows with one
/// direct SIMD formula per metric. Two reasons: euclidean's ‖q‖² + ‖x‖² − 2q·x loses
/// precision for nearby vectors; and the GEMM and the single-query path round
/// differently, so without this the same query would report distances differing in
/// the last bits depending on what it was batched with. Hits are re-sorted by the
/// reported value (ties by row).
fn finish(view: &ShardView<'_>, q: &[f32], q_norm_sq: f32, top: TopK) -> Vec<Hit> {
    let d = view.dims;
    let mut hits: Vec<Hit> = top
        .into_sorted()
        .into_iter()
        .map(|(_, row)| {
            let r = row as usize;
            let x = &view.data[r * d..(r + 1) * d];
            let distance = match view.metric {
                Metric::Dot => -dot(q, x),
                Metric::Cosine => cosine_distance(dot(q, x), q_norm_sq, view.norms_sq[r]),
                Metric::Euclidean => l2_squared(q, x).sqrt(),
            };
            Hit { row, distance }
        })
        .collect();
    hits.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.row.cmp(&b.row)));
    hits
}

//! The exact scan behind [`CpuShard::search_batch`](super::CpuShard).
//!
//! Rows are split into one contiguous range per worker. Each worker walks its range in
//! blocks; for a block it computes the dot products of every query with every row of
//! the block (a GEMM for batches, SIMD dots for one or two queries), turns them into
//! scores and offers them to per-query [`TopK`]s. Only a block-sized slice of the
//! Q×N score matrix exists at any time. Worker results are merged at the end.

use super::dot::{dot, l2_squared};
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
/// Below this many queries a GEMM's packing costs more than it saves.
const GEMM_MIN_QUERIES: usize = 4;
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
        .map(|(q, top)| finish(view, &queries[q * view.dims..(q + 1) * view.dims], top))
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
    for row in start..end {
        if !view.allowed.contains(row) {
            continue;
        }
        let x = &view.data[row * d..(row + 1) * d];
        for (q, top) in tops.iter_mut().enumerate() {
            let s = score(
                view.metric,
                dot(&queries[q * d..(q + 1) * d], x),
                qnorms.norms_sq[q],
                view.norms_sq[row],
            );
            if s <= top.threshold() {
                top.push(s, row as u32);
            }
        }
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

/// Best-first hits with reported distances. Euclidean distances are recomputed
/// directly, since ‖q‖² + ‖x‖² − 2q·x loses precision for nearby vectors, and the
/// hits re-sorted by the exact value.
fn finish(view: &ShardView<'_>, q: &[f32], top: TopK) -> Vec<Hit> {
    let d = view.dims;
    let mut hits: Vec<Hit> = top
        .into_sorted()
        .into_iter()
        .map(|(s, row)| {
            let distance = match view.metric {
                Metric::Dot | Metric::Cosine => s,
                Metric::Euclidean => {
                    let r = row as usize;
                    l2_squared(q, &view.data[r * d..(r + 1) * d]).sqrt()
                }
            };
            Hit { row, distance }
        })
        .collect();
    if view.metric == Metric::Euclidean {
        hits.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.row.cmp(&b.row)));
    }
    hits
}

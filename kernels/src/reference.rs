//! Brute-force search, written for obviousness rather than speed: every backend's
//! results are tested against it.

use crate::{Hit, Metric, RowMask};

/// The `k` closest allowed rows of `data` (row-major, `dims` wide) to `query`, best
/// first, ties broken by the lower row. `allowed` of `None` allows every row.
pub fn search(
    data: &[f32],
    dims: usize,
    metric: Metric,
    query: &[f32],
    k: usize,
    allowed: Option<&RowMask>,
) -> Vec<Hit> {
    let mut hits: Vec<Hit> = data
        .chunks_exact(dims)
        .enumerate()
        .filter(|(row, _)| allowed.is_none_or(|m| m.contains(*row)))
        .map(|(row, x)| Hit {
            row: row as u32,
            distance: naive_distance(metric, query, x),
        })
        .collect();
    hits.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.row.cmp(&b.row)));
    hits.truncate(k);
    hits
}

/// Distance accumulated in f64 from the textbook definitions.
pub fn naive_distance(metric: Metric, q: &[f32], x: &[f32]) -> f32 {
    let dot: f64 = q.iter().zip(x).map(|(a, b)| *a as f64 * *b as f64).sum();
    match metric {
        Metric::Dot => -dot as f32,
        Metric::Euclidean => {
            let s: f64 = q
                .iter()
                .zip(x)
                .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                .sum();
            s.sqrt() as f32
        }
        Metric::Cosine => {
            let qq: f64 = q.iter().map(|a| (*a as f64).powi(2)).sum();
            let xx: f64 = x.iter().map(|a| (*a as f64).powi(2)).sum();
            let denom = (qq * xx).sqrt();
            if denom > 0.0 {
                (1.0 - dot / denom) as f32
            } else {
                1.0
            }
        }
    }
}

/// Deterministic pseudo-random floats in [-1, 1) (xorshift64): the same data for a
/// seed on every machine, for tests and benchmarks, without a RNG dependency.
pub fn pseudo_random_floats(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

//! Dot products and squared distances with runtime CPU-feature dispatch: AVX2+FMA
//! where the CPU has it, a portable loop (which the compiler vectorises to SSE2)
//! everywhere else. Dispatch is per call; `is_x86_feature_detected!` caches its answer.

/// `a · b`. Both slices must have the same length.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { x86::dot_avx2(a, b) };
        }
    }
    dot_portable(a, b)
}

/// `‖a - b‖²`. Both slices must have the same length.
#[inline]
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { x86::l2_squared_avx2(a, b) };
        }
    }
    l2_squared_portable(a, b)
}

/// `[q0·x, q1·x, q2·x, q3·x]`: four queries against one row, loading the row once.
/// The small-batch scan is bound by reading rows, so sharing each load between four
/// queries is what makes 4–32 queries cost little more than one.
#[inline]
pub fn dot4(q: [&[f32]; 4], x: &[f32]) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { x86::dot4_avx2(q, x) };
        }
    }
    q.map(|qi| dot_portable(qi, x))
}

/// Eight independent accumulators so the loop is not bound by add latency.
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let chunks = n / 8;
    for c in 0..chunks {
        for l in 0..8 {
            acc[l] += a[c * 8 + l] * b[c * 8 + l];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for i in chunks * 8..n {
        sum += a[i] * b[i];
    }
    sum
}

fn l2_squared_portable(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let chunks = n / 8;
    for c in 0..chunks {
        for l in 0..8 {
            let d = a[c * 8 + l] - b[c * 8 + l];
            acc[l] += d * d;
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for i in chunks * 8..n {
        let d = a[i] - b[i];
        sum += d * d;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (j, slot) in acc.iter_mut().enumerate() {
                let x = _mm256_loadu_ps(pa.add(i + 8 * j));
                let y = _mm256_loadu_ps(pb.add(i + 8 * j));
                *slot = _mm256_fmadd_ps(x, y, *slot);
            }
            i += 32;
        }
        while i + 8 <= n {
            let x = _mm256_loadu_ps(pa.add(i));
            let y = _mm256_loadu_ps(pb.add(i));
            acc[0] = _mm256_fmadd_ps(x, y, acc[0]);
            i += 8;
        }
        let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut sum = hsum(s);
        while i < n {
            sum += *pa.add(i) * *pb.add(i);
            i += 1;
        }
        sum
    }

    /// Two accumulators per query (eight in all) to cover FMA latency.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot4_avx2(q: [&[f32]; 4], x: &[f32]) -> [f32; 4] {
        let n = q.iter().map(|s| s.len()).min().unwrap_or(0).min(x.len());
        let px = x.as_ptr();
        let pq = q.map(|s| s.as_ptr());
        let mut a = [_mm256_setzero_ps(); 4];
        let mut b = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 16 <= n {
            let x0 = _mm256_loadu_ps(px.add(i));
            let x1 = _mm256_loadu_ps(px.add(i + 8));
            for j in 0..4 {
                a[j] = _mm256_fmadd_ps(_mm256_loadu_ps(pq[j].add(i)), x0, a[j]);
                b[j] = _mm256_fmadd_ps(_mm256_loadu_ps(pq[j].add(i + 8)), x1, b[j]);
            }
            i += 16;
        }
        let mut out = [0.0f32; 4];
        for j in 0..4 {
            out[j] = hsum(_mm256_add_ps(a[j], b[j]));
        }
        while i < n {
            let xi = *px.add(i);
            for j in 0..4 {
                out[j] += *pq[j].add(i) * xi;
            }
            i += 1;
        }
        out
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn l2_squared_avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (j, slot) in acc.iter_mut().enumerate() {
                let d = _mm256_sub_ps(
                    _mm256_loadu_ps(pa.add(i + 8 * j)),
                    _mm256_loadu_ps(pb.add(i + 8 * j)),
                );
                *slot = _mm256_fmadd_ps(d, d, *slot);
            }
            i += 32;
        }
        while i + 8 <= n {
            let d = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
            acc[0] = _mm256_fmadd_ps(d, d, acc[0]);
            i += 8;
        }
        let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut sum = hsum(s);
        while i < n {
            let d = *pa.add(i) - *pb.add(i);
            sum += d * d;
            i += 1;
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
    }

    #[test]
    fn dispatched_and_portable_agree_with_f64_reference_at_every_length() {
        for n in [0usize, 1, 7, 8, 9, 31, 32, 33, 100, 384, 1000] {
            let a: Vec<f32> = (0..n).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect();
            let b: Vec<f32> = (0..n)
                .map(|i| ((i * 104729) % 11) as f32 * 0.5 - 2.0)
                .collect();
            let want = naive_dot(&a, &b);
            assert!((dot(&a, &b) as f64 - want).abs() < 1e-3, "dot n={n}");
            assert!(
                (dot_portable(&a, &b) as f64 - want).abs() < 1e-3,
                "portable n={n}"
            );
            let want_l2: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| ((x - y) as f64).powi(2))
                .sum();
            assert!(
                (l2_squared(&a, &b) as f64 - want_l2).abs() < 1e-3,
                "l2 n={n}"
            );
            assert!((l2_squared_portable(&a, &b) as f64 - want_l2).abs() < 1e-3);
            let four = dot4([&a, &b, &a, &b], &b);
            let want_bb = naive_dot(&b, &b);
            for (got, want) in four.iter().zip([want, want_bb, want, want_bb]) {
                assert!((*got as f64 - want).abs() < 1e-3, "dot4 n={n}");
            }
        }
    }
}

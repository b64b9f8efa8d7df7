/// How closeness is measured. Every metric is reported as a distance where smaller is
/// closer, so callers sort one way regardless of metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// `1 - cos(q, x)`; a zero vector has cosine 0 with everything (distance 1).
    Cosine,
    /// `‖q - x‖₂`, not squared.
    Euclidean,
    /// `-(q · x)`, so the largest inner product is the closest.
    Dot,
}

impl Metric {
    /// The exact distance between two vectors, computed directly (no norm expansion).
    /// Used for reference results and to report final distances without the rounding
    /// error that the GEMM formulation `‖q‖² + ‖x‖² - 2q·x` introduces.
    pub fn distance(self, q: &[f32], x: &[f32]) -> f32 {
        match self {
            Metric::Dot => -crate::cpu::dot(q, x),
            Metric::Euclidean => crate::cpu::l2_squared(q, x).sqrt(),
            Metric::Cosine => {
                let qq = crate::cpu::dot(q, q);
                let xx = crate::cpu::dot(x, x);
                cosine_distance(crate::cpu::dot(q, x), qq, xx)
            }
        }
    }
}

/// `1 - q·x / (‖q‖‖x‖)` from squared norms; zero vectors are orthogonal to everything.
pub(crate) fn cosine_distance(dot: f32, q_norm_sq: f32, x_norm_sq: f32) -> f32 {
    let denom = (q_norm_sq * x_norm_sq).sqrt();
    if denom > 0.0 {
        1.0 - dot / denom
    } else {
        1.0
    }
}

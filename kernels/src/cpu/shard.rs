use super::dot::dot;
use super::scan::{scan, ShardView};
use crate::shard::validate_search;
use crate::{Compaction, Hit, KernelError, Metric, Row, RowMask, Shard};

/// Vectors in host memory, row-major and contiguous, with each row's squared norm
/// precomputed so cosine and euclidean reduce to a dot product per (query, row).
#[derive(Debug, Clone)]
pub struct CpuShard {
    dims: usize,
    metric: Metric,
    data: Vec<f32>,
    norms_sq: Vec<f32>,
    /// `1/‖x‖` (0 for a zero vector), so cosine scoring needs no square root per pair.
    inv_norms: Vec<f32>,
    live: RowMask,
    live_count: usize,
}

impl CpuShard {
    pub fn new(dims: usize, metric: Metric) -> Result<Self, KernelError> {
        if dims == 0 {
            return Err(KernelError::ZeroDimensions);
        }
        Ok(CpuShard {
            dims,
            metric,
            data: Vec::new(),
            norms_sq: Vec::new(),
            inv_norms: Vec::new(),
            live: RowMask::none(0),
            live_count: 0,
        })
    }

    /// Row `r`'s vector. Other backends keep a `CpuShard` as their host copy and read
    /// it for exact re-ranking and uploads.
    pub(crate) fn vector(&self, r: usize) -> &[f32] {
        &self.data[r * self.dims..(r + 1) * self.dims]
    }

    /// Rows `range` back to back.
    pub(crate) fn vectors(&self, range: std::ops::Range<usize>) -> &[f32] {
        &self.data[range.start * self.dims..range.end * self.dims]
    }

    pub(crate) fn norms_sq(&self) -> &[f32] {
        &self.norms_sq
    }

    pub(crate) fn inv_norms(&self) -> &[f32] {
        &self.inv_norms
    }

    pub(crate) fn live_mask(&self) -> &RowMask {
        &self.live
    }

    /// [`Shard::compacted`] without boxing, for backends that wrap a host copy.
    pub(crate) fn compacted_host(&self) -> (CpuShard, Compaction) {
        let rows = self.norms_sq.len();
        let live = self.live_count;
        let mut packed = CpuShard {
            dims: self.dims,
            metric: self.metric,
            data: Vec::with_capacity(live * self.dims),
            norms_sq: Vec::with_capacity(live),
            inv_norms: Vec::with_capacity(live),
            live: RowMask::all(live),
            live_count: live,
        };
        let mut remap = Vec::with_capacity(rows);
        for r in 0..rows {
            if self.live.contains(r) {
                remap.push(Some(packed.norms_sq.len() as Row));
                packed
                    .data
                    .extend_from_slice(&self.data[r * self.dims..(r + 1) * self.dims]);
                packed.norms_sq.push(self.norms_sq[r]);
                packed.inv_norms.push(self.inv_norms[r]);
            } else {
                remap.push(None);
            }
        }
        debug_assert_eq!(packed.norms_sq.len(), live);
        (packed, Compaction { remap })
    }

    fn check_dims(&self, vector: &[f32]) -> Result<(), KernelError> {
        if vector.len() != self.dims {
            return Err(KernelError::DimensionMismatch {
                expected: self.dims,
                got: vector.len(),
            });
        }
        Ok(())
    }

    fn check_row(&self, row: Row) -> Result<usize, KernelError> {
        let r = row as usize;
        if r >= self.norms_sq.len() {
            return Err(KernelError::NoSuchRow {
                row,
                rows: self.norms_sq.len(),
            });
        }
        Ok(r)
    }
}

impl Shard for CpuShard {
    fn dims(&self) -> usize {
        self.dims
    }

    fn metric(&self) -> Metric {
        self.metric
    }

    fn rows(&self) -> usize {
        self.norms_sq.len()
    }

    fn live(&self) -> usize {
        self.live_count
    }

    fn is_live(&self, row: Row) -> bool {
        self.live.contains(row as usize)
    }

    fn append(&mut self, vector: &[f32]) -> Result<Row, KernelError> {
        self.check_dims(vector)?;
        let row = self.norms_sq.len();
        if row >= u32::MAX as usize {
            return Err(KernelError::ShardFull {
                max: u32::MAX as usize,
            });
        }
        self.data.extend_from_slice(vector);
        let norm_sq = dot(vector, vector);
        self.norms_sq.push(norm_sq);
        self.inv_norms.push(inverse_norm(norm_sq));
        self.live.resize(row + 1, true);
        self.live_count += 1;
        Ok(row as Row)
    }

    fn overwrite(&mut self, row: Row, vector: &[f32]) -> Result<(), KernelError> {
        self.check_dims(vector)?;
        let r = self.check_row(row)?;
        self.data[r * self.dims..(r + 1) * self.dims].copy_from_slice(vector);
        self.norms_sq[r] = dot(vector, vector);
        self.inv_norms[r] = inverse_norm(self.norms_sq[r]);
        if !self.live.contains(r) {
            self.live.set(r);
            self.live_count += 1;
        }
        Ok(())
    }

    fn delete(&mut self, row: Row) -> Result<bool, KernelError> {
        let r = self.check_row(row)?;
        if self.live.contains(r) {
            self.live.clear(r);
            self.live_count -= 1;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn compacted(&self) -> (Box<dyn Shard>, Compaction) {
        let (packed, compaction) = self.compacted_host();
        (Box::new(packed), compaction)
    }

    fn search_batch(
        &self,
        queries: &[f32],
        k: usize,
        mask: Option<&RowMask>,
    ) -> Result<Vec<Vec<Hit>>, KernelError> {
        let nq = validate_search(self.dims, self.rows(), queries, k, mask)?;
        let mut allowed = self.live.clone();
        if let Some(mask) = mask {
            allowed.intersect(mask);
        }
        let view = ShardView {
            dims: self.dims,
            metric: self.metric,
            data: &self.data,
            norms_sq: &self.norms_sq,
            inv_norms: &self.inv_norms,
            allowed: &allowed,
        };
        Ok(scan(&view, queries, nq, k))
    }
}

/// `1/‖x‖` from `‖x‖²`; zero vectors get 0, which makes their cosine distance 1.
pub(crate) fn inverse_norm(norm_sq: f32) -> f32 {
    if norm_sq > 0.0 {
        1.0 / norm_sq.sqrt()
    } else {
        0.0
    }
}

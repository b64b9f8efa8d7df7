//! The CPU backend: host-memory shards, SIMD dot products for small batches and a
//! blocked GEMM for large ones, rayon across row ranges.

mod dot;
mod scan;
mod shard;

pub use dot::{dot, dot4, l2_squared};
pub use shard::CpuShard;

use crate::{Backend, KernelError, Metric, Shard};

/// Creates [`CpuShard`]s. Always available; the reference for every other backend.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuBackend;

impl CpuBackend {
    pub fn new() -> Self {
        CpuBackend
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn describe(&self) -> String {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        format!("{threads} CPU threads")
    }

    fn new_shard(&self, dims: usize, metric: Metric) -> Result<Box<dyn Shard>, KernelError> {
        Ok(Box::new(CpuShard::new(dims, metric)?))
    }
}

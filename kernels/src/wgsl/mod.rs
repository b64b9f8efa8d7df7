//! The wgpu backend: shards in GPU buffers on any Vulkan, Metal or DX12 adapter,
//! distances as tiles of a GEMM and a thresholded top-k per block in a WGSL compute
//! shader (`shaders/search.wgsl`), blocks merged by a second pass on the adapter,
//! candidates re-ranked in exact f32 on the host.
//!
//! It exists for GPUs without CUDA. It asks for the native APIs explicitly (never
//! GL, never the `WGPU_BACKEND` default), and `Auto` selection passes over software
//! adapters such as Mesa's lavapipe, which are slower than the CPU backend; forcing
//! `wgpu` accepts them, which is how CI tests the shader for real.

mod device;
mod resident;
mod search;
mod shard;
mod tile_plan;

use std::sync::{Arc, OnceLock};

pub use device::WgpuDevice;
pub use search::MAX_WGPU_K;
pub use shard::WgpuShard;

use crate::{Backend, KernelError, Metric, Shard, Storage};

/// Creates [`WgpuShard`]s on one adapter.
#[derive(Debug, Clone)]
pub struct WgpuBackend {
    device: Arc<WgpuDevice>,
}

impl WgpuBackend {
    /// The best hardware adapter; a software one is refused with the reason.
    /// Adapters are probed once per process.
    pub fn open() -> Result<WgpuBackend, KernelError> {
        static DEVICE: OnceLock<Result<Arc<WgpuDevice>, KernelError>> = OnceLock::new();
        let device = DEVICE.get_or_init(|| WgpuDevice::open(false)).clone()?;
        Ok(WgpuBackend { device })
    }

    /// The best adapter, software ones (lavapipe) included.
    pub fn open_any() -> Result<WgpuBackend, KernelError> {
        static DEVICE: OnceLock<Result<Arc<WgpuDevice>, KernelError>> = OnceLock::new();
        let device = DEVICE.get_or_init(|| WgpuDevice::open(true)).clone()?;
        Ok(WgpuBackend { device })
    }

    pub fn device(&self) -> &Arc<WgpuDevice> {
        &self.device
    }

    /// A concrete shard, for callers (benches, tests) that need its own methods.
    pub fn shard(&self, dims: usize, metric: Metric) -> Result<WgpuShard, KernelError> {
        WgpuShard::new(self.device.clone(), dims, metric, Storage::F32)
    }

    /// A concrete shard keeping its vectors as `storage` where the adapter can.
    pub fn shard_stored(
        &self,
        dims: usize,
        metric: Metric,
        storage: Storage,
    ) -> Result<WgpuShard, KernelError> {
        WgpuShard::new(self.device.clone(), dims, metric, storage)
    }
}

impl Backend for WgpuBackend {
    fn name(&self) -> &'static str {
        "wgpu"
    }

    fn describe(&self) -> String {
        self.device.describe()
    }

    fn new_shard(&self, dims: usize, metric: Metric) -> Result<Box<dyn Shard>, KernelError> {
        Ok(Box::new(self.shard(dims, metric)?))
    }

    fn new_shard_stored(
        &self,
        dims: usize,
        metric: Metric,
        storage: Storage,
    ) -> Result<Box<dyn Shard>, KernelError> {
        Ok(Box::new(self.shard_stored(dims, metric, storage)?))
    }
}

//! The CUDA backend: shards resident in device memory, distances by cuBLAS GEMM on
//! the tensor cores (TF32 for f32 shards, f16 with f32 accumulation for f16 shards),
//! top-k by needle's own selection kernels (`kernels/cuda/select.cu`, and the warp
//! select of `kernels/cuda/warp_select.cu` behind `NEEDLE_CUDA_KERNEL=warp`), results
//! re-ranked in exact f32.
//!
//! cudarc loads the CUDA libraries at run time, so this builds and runs on machines
//! without CUDA: [`CudaBackend::open`] then says why it is unavailable.

mod device;
mod module;
mod resident;
mod search;
mod shard;
mod tile_select;
mod trace;

use std::sync::{Arc, OnceLock};

pub use device::CudaDevice;
pub use search::MAX_DEVICE_K;
pub use shard::CudaShard;
pub use tile_select::TileSelect;

use crate::{Backend, F32Math, KernelError, Metric, OnDeviceFull, Shard, Storage};

/// Creates [`CudaShard`]s on one device.
#[derive(Debug, Clone)]
pub struct CudaBackend {
    device: Arc<CudaDevice>,
    math: F32Math,
    on_full: OnDeviceFull,
    select: TileSelect,
}

impl CudaBackend {
    /// Opens CUDA device 0, or returns [`KernelError::BackendUnavailable`] with the
    /// reason, or [`KernelError::InvalidSetting`] for a `NEEDLE_CUDA_KERNEL` that
    /// names no kernel (checked first, so it is reported on any machine). The device
    /// is opened once per process (context, cuBLAS handle, kernel module) and shared
    /// by every backend value.
    pub fn open() -> Result<CudaBackend, KernelError> {
        static DEVICE: OnceLock<Result<Arc<CudaDevice>, KernelError>> = OnceLock::new();
        let select = TileSelect::from_env()?;
        let device = DEVICE.get_or_init(|| CudaDevice::open(0)).clone()?;
        Ok(CudaBackend {
            device,
            math: F32Math::default(),
            on_full: OnDeviceFull::default(),
            select,
        })
    }

    /// The same device with `select` for the shards it creates from now on.
    pub fn with_tile_select(&self, select: TileSelect) -> CudaBackend {
        CudaBackend {
            select,
            ..self.clone()
        }
    }

    /// The same device with `math` for the f32 shards it creates from now on.
    pub fn with_f32_math(&self, math: F32Math) -> CudaBackend {
        CudaBackend {
            math,
            ..self.clone()
        }
    }

    /// The same device with `on_full` for the shards it creates from now on.
    pub fn with_on_device_full(&self, on_full: OnDeviceFull) -> CudaBackend {
        CudaBackend {
            on_full,
            ..self.clone()
        }
    }

    pub fn device(&self) -> &Arc<CudaDevice> {
        &self.device
    }

    /// A concrete shard, for callers (benches, tests) that need its CUDA methods.
    pub fn shard(
        &self,
        dims: usize,
        metric: Metric,
        storage: Storage,
    ) -> Result<CudaShard, KernelError> {
        let mut shard = CudaShard::new(
            self.device.clone(),
            dims,
            metric,
            storage,
            self.math,
            self.on_full,
        )?;
        shard.select = self.select;
        Ok(shard)
    }
}

impl Backend for CudaBackend {
    fn name(&self) -> &'static str {
        "cuda"
    }

    fn describe(&self) -> String {
        let (major, minor) = self.device.compute_capability();
        format!(
            "{} (compute capability {major}.{minor}, {} tile select)",
            self.device.name(),
            self.select.name()
        )
    }

    fn new_shard(&self, dims: usize, metric: Metric) -> Result<Box<dyn Shard>, KernelError> {
        self.new_shard_stored(dims, metric, Storage::F32)
    }

    fn new_shard_stored(
        &self,
        dims: usize,
        metric: Metric,
        storage: Storage,
    ) -> Result<Box<dyn Shard>, KernelError> {
        Ok(Box::new(self.shard(dims, metric, storage)?))
    }
}

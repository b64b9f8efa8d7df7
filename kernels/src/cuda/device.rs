//! One CUDA device: its context, streams, cuBLAS handle and loaded kernels.

use std::sync::Arc;

use cudarc::cublas::CudaBlas;
use cudarc::driver::{sys::CUdevice_attribute, CudaContext, CudaStream};
use parking_lot::Mutex;

use super::module::Kernels;
use crate::KernelError;

/// What the GPU does for a search runs on `compute` in order; the lock makes one
/// search own the stream and the cuBLAS handle at a time (a cuBLAS handle is not
/// safe to drive from two threads at once). Query uploads go on `copy`, outside the
/// lock, so the next batch's host-to-device copy overlaps the current batch's kernels.
pub struct CudaDevice {
    pub(crate) ctx: Arc<CudaContext>,
    pub(crate) copy: Arc<CudaStream>,
    pub(crate) compute: Mutex<Compute>,
    pub(crate) kernels: Kernels,
    pub(crate) name: String,
    pub(crate) compute_capability: (i32, i32),
    pub(crate) multiprocessors: usize,
    pub(crate) l2_bytes: usize,
}

pub(crate) struct Compute {
    pub stream: Arc<CudaStream>,
    pub blas: CudaBlas,
    /// The warp select's stream: a tile's select runs there while `stream` runs
    /// the next tile's GEMM.
    pub select_stream: Arc<CudaStream>,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaDevice")
            .field("name", &self.name)
            .field("compute_capability", &self.compute_capability)
            .finish()
    }
}

fn unavailable(reason: impl Into<String>) -> KernelError {
    KernelError::BackendUnavailable {
        backend: "cuda",
        reason: reason.into(),
    }
}

/// Freed device memory the stream-ordered allocator keeps for reuse (see
/// [`keep_scratch_pooled`]). Counted as used by `Shard::check_room`, which is the
/// conservative side.
const POOL_KEEP_BYTES: u64 = 256 << 20;

/// Each search takes its scratch (query copies, the tile of dot products, candidate
/// lists) from the default memory pool of the stream-ordered allocator. That pool's
/// default release threshold of 0 returns freed memory to the driver at every
/// synchronisation, so every search would map its scratch anew; keeping up to
/// [`POOL_KEEP_BYTES`] makes the next search reuse it. Best effort: a driver that
/// refuses leaves the default, which is slower but correct.
fn keep_scratch_pooled(ctx: &CudaContext) {
    use cudarc::driver::sys;
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    // SAFETY: the driver library is loaded (checked in `open`), the device handle comes
    // from a live context, and the attribute takes a pointer to a u64 (cuuint64_t).
    unsafe {
        if sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) != sys::CUresult::CUDA_SUCCESS
        {
            return;
        }
        let mut threshold = POOL_KEEP_BYTES;
        let _ = sys::cuMemPoolSetAttribute(
            pool,
            sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
            (&mut threshold as *mut u64).cast(),
        );
    }
}

impl CudaDevice {
    /// Opens device `ordinal`, or says why CUDA cannot run here. Checks that the
    /// driver, NVRTC and cuBLAS libraries load before touching any of them, because
    /// cudarc's dynamic loader panics on a missing library.
    pub fn open(ordinal: usize) -> Result<Arc<CudaDevice>, KernelError> {
        // SAFETY: these only try to dlopen the libraries; nothing is called in them.
        let (driver, nvrtc, cublas) = unsafe {
            (
                cudarc::driver::sys::is_culib_present(),
                cudarc::nvrtc::sys::is_culib_present(),
                cudarc::cublas::sys::is_culib_present(),
            )
        };
        if !driver {
            return Err(unavailable("no CUDA driver (libcuda) on this machine"));
        }
        if !nvrtc {
            return Err(unavailable(
                "the CUDA driver is present but NVRTC (libnvrtc) is not on the library path",
            ));
        }
        if !cublas {
            return Err(unavailable(
                "the CUDA driver is present but cuBLAS (libcublas) is not on the library path",
            ));
        }
        let count = CudaContext::device_count()
            .map_err(|e| unavailable(format!("CUDA driver failed to start: {e:?}")))?;
        if count <= 0 {
            return Err(unavailable("no CUDA device"));
        }
        if ordinal >= count as usize {
            return Err(unavailable(format!(
                "CUDA device {ordinal} requested, {count} present"
            )));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| KernelError::device("cuCtxCreate", e))?;
        // Streams are ordered by hand (one compute stream, events from the copy
        // stream), so cudarc's per-buffer event bookkeeping would only add overhead.
        // SAFETY: no buffer exists yet; every later cross-stream use waits on an event.
        unsafe { ctx.disable_event_tracking() };
        keep_scratch_pooled(&ctx);
        let name = ctx
            .name()
            .map_err(|e| KernelError::device("cuDeviceGetName", e))?;
        let compute_capability = ctx
            .compute_capability()
            .map_err(|e| KernelError::device("compute capability", e))?;
        let attribute = |a| {
            ctx.attribute(a)
                .map(|v| v.max(0) as usize)
                .map_err(|e| KernelError::device("cuDeviceGetAttribute", e))
        };
        let multiprocessors =
            attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?;
        let l2_bytes = attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)?;
        let kernels = Kernels::load(&ctx, compute_capability)?;
        let stream = ctx
            .new_stream()
            .map_err(|e| KernelError::device("cuStreamCreate", e))?;
        let copy = ctx
            .new_stream()
            .map_err(|e| KernelError::device("cuStreamCreate", e))?;
        let blas =
            CudaBlas::new(stream.clone()).map_err(|e| KernelError::device("cublasCreate", e))?;
        let select_stream = ctx
            .new_stream()
            .map_err(|e| KernelError::device("cuStreamCreate", e))?;
        Ok(Arc::new(CudaDevice {
            ctx,
            copy,
            compute: Mutex::new(Compute {
                stream,
                blas,
                select_stream,
            }),
            kernels,
            name,
            compute_capability,
            multiprocessors,
            l2_bytes,
        }))
    }

    /// The device's name as the driver reports it, e.g. `NVIDIA H100 80GB HBM3`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn compute_capability(&self) -> (i32, i32) {
        self.compute_capability
    }

    /// (free, total) device memory in bytes.
    pub fn memory(&self) -> Result<(usize, usize), KernelError> {
        self.ctx
            .mem_get_info()
            .map_err(|e| KernelError::device("cuMemGetInfo", e))
    }

    /// Bytes of L2 cache.
    pub fn l2_bytes(&self) -> usize {
        self.l2_bytes
    }

    /// Whether the kernels' PTX came from the on-disk cache.
    pub fn kernels_from_cache(&self) -> bool {
        self.kernels.from_cache
    }
}

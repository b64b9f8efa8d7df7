use crate::cpu::CpuBackend;
use crate::cuda::CudaBackend;
use crate::wgsl::WgpuBackend;
use crate::{KernelError, Metric, OnDeviceFull, Shard, Storage};

/// Which backend to run on. `Auto` picks the best one this machine has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    Auto,
    Cuda,
    Wgpu,
    Cpu,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Auto => "auto",
            BackendKind::Cuda => "cuda",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cpu => "cpu",
        }
    }

    pub fn parse(text: &str) -> Option<BackendKind> {
        match text {
            "auto" => Some(BackendKind::Auto),
            "cuda" => Some(BackendKind::Cuda),
            "wgpu" => Some(BackendKind::Wgpu),
            "cpu" => Some(BackendKind::Cpu),
            _ => None,
        }
    }
}

/// A source of shards. One backend serves every collection of a node.
pub trait Backend: Send + Sync {
    /// Short name reported by `/health` and metrics: `cpu`, `cuda`, `wgpu`.
    fn name(&self) -> &'static str;
    /// The hardware it runs on, for logs and `/health`.
    fn describe(&self) -> String;
    /// A new, empty shard.
    fn new_shard(&self, dims: usize, metric: Metric) -> Result<Box<dyn Shard>, KernelError>;
    /// A new, empty shard keeping its vectors as `storage` where the backend can; a
    /// backend without reduced-precision storage keeps f32 (results are the same).
    fn new_shard_stored(
        &self,
        dims: usize,
        metric: Metric,
        storage: Storage,
    ) -> Result<Box<dyn Shard>, KernelError> {
        let _ = storage;
        self.new_shard(dims, metric)
    }
}

/// The backend that was opened, and why each better one was not.
pub struct Selection {
    pub backend: Box<dyn Backend>,
    /// `(backend, reason)` for every backend `Auto` tried before the chosen one.
    pub passed_over: Vec<(BackendKind, String)>,
}

impl std::fmt::Debug for Selection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Selection")
            .field("backend", &self.backend.name())
            .field("passed_over", &self.passed_over)
            .finish()
    }
}

/// Opens the requested backend, or for `Auto` the best this machine has: CUDA, then
/// wgpu, then the CPU, recording why each one above the chosen one was skipped. A
/// forced backend that cannot run is an error, never a silent fallback; forcing
/// `wgpu` accepts a software adapter, which `Auto` passes over. `on_full` applies to
/// the CUDA backend, the one that measures its free memory.
pub fn select_backend(kind: BackendKind, on_full: OnDeviceFull) -> Result<Selection, KernelError> {
    let chosen = |backend: Box<dyn Backend>, passed_over| Selection {
        backend,
        passed_over,
    };
    let cuda = || CudaBackend::open().map(|b| b.with_on_device_full(on_full));
    match kind {
        BackendKind::Cpu => Ok(chosen(Box::new(CpuBackend::new()), Vec::new())),
        BackendKind::Cuda => Ok(chosen(Box::new(cuda()?), Vec::new())),
        BackendKind::Wgpu => Ok(chosen(Box::new(WgpuBackend::open_any()?), Vec::new())),
        BackendKind::Auto => {
            let mut passed_over = Vec::new();
            match cuda() {
                Ok(cuda) => return Ok(chosen(Box::new(cuda), passed_over)),
                // A misspelt setting stops the start-up rather than quietly sending
                // the node to another backend.
                Err(e @ KernelError::InvalidSetting { .. }) => return Err(e),
                Err(e) => passed_over.push((BackendKind::Cuda, e.to_string())),
            }
            match WgpuBackend::open() {
                Ok(wgpu) => return Ok(chosen(Box::new(wgpu), passed_over)),
                Err(e) => passed_over.push((BackendKind::Wgpu, e.to_string())),
            }
            Ok(chosen(Box::new(CpuBackend::new()), passed_over))
        }
    }
}

/// Opens the requested backend, or the best available one for `Auto`.
pub fn open_backend(kind: BackendKind) -> Result<Box<dyn Backend>, KernelError> {
    Ok(select_backend(kind, OnDeviceFull::default())?.backend)
}

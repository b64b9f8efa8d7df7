use crate::cpu::CpuBackend;
use crate::{KernelError, Metric, Shard};

/// Which backend to run on. `Auto` picks the best one this machine has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    Auto,
    Cpu,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Auto => "auto",
            BackendKind::Cpu => "cpu",
        }
    }
}

/// A source of shards. One backend serves every collection of a node.
pub trait Backend: Send + Sync {
    /// Short name reported by `/health` and metrics: `cpu`, `cuda`, `wgpu`.
    fn name(&self) -> &'static str;
    /// A new, empty shard.
    fn new_shard(&self, dims: usize, metric: Metric) -> Result<Box<dyn Shard>, KernelError>;
}

/// The backends this build can run here, best first.
pub fn available_backends() -> Vec<BackendKind> {
    vec![BackendKind::Cpu]
}

/// Opens the requested backend, or the best available one for `Auto`.
pub fn open_backend(kind: BackendKind) -> Result<Box<dyn Backend>, KernelError> {
    match kind {
        BackendKind::Auto | BackendKind::Cpu => Ok(Box::new(CpuBackend::new())),
    }
}

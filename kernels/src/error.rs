use thiserror::Error;

/// Errors a backend reports to its caller. Every variant is the caller's mistake or a
/// resource limit; none of them leaves a shard half-modified.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum KernelError {
    #[error("vector has {got} dimensions, shard expects {expected}")]
    DimensionMismatch { expected: usize, got: usize },
    #[error("query buffer of {len} floats is not a whole number of {dims}-dimensional vectors")]
    RaggedQueries { len: usize, dims: usize },
    #[error("k must be between 1 and {max}, got {k}")]
    InvalidK { k: usize, max: usize },
    #[error("row {row} does not exist in this shard ({rows} rows)")]
    NoSuchRow { row: u32, rows: usize },
    #[error("dimensions must be at least 1")]
    ZeroDimensions,
    #[error("shard is full: at most {max} rows")]
    ShardFull { max: usize },
    #[error("mask covers {mask} rows but the shard has {rows}")]
    MaskSize { mask: usize, rows: usize },
    /// A setting (an environment variable) that names nothing valid: an operator's
    /// mistake, which `Auto` reports instead of passing over the backend for it.
    #[error("{setting}: {message}")]
    InvalidSetting {
        setting: &'static str,
        message: String,
    },
    #[error("backend {backend} is not available on this machine: {reason}")]
    BackendUnavailable {
        backend: &'static str,
        reason: String,
    },
    #[error("not enough device memory: {needed} bytes needed, {free} bytes free")]
    DeviceMemory { needed: usize, free: usize },
    #[error("device error in {context}: {message}")]
    Device {
        context: &'static str,
        message: String,
    },
}

impl KernelError {
    /// A device error with the call that raised it; the message is the driver's.
    pub(crate) fn device(context: &'static str, err: impl std::fmt::Debug) -> Self {
        KernelError::Device {
            context,
            message: format!("{err:?}"),
        }
    }
}

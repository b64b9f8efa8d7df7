use needle_kernels::KernelError;
use thiserror::Error;

/// Everything the node library can fail with. Each variant has a stable `code` that
/// the HTTP edge returns to clients, so clients branch on codes, not messages.
#[derive(Debug, Error, Clone)]
pub enum Error {
    #[error("collection name must be 1 to 128 characters of [A-Za-z0-9_-], got {0:?}")]
    InvalidCollectionName(String),
    #[error("dimensions must be between 1 and 65536, got {0}")]
    InvalidDimensions(u64),
    #[error("unknown distance {0:?}: expected cosine, euclidean or dot")]
    InvalidDistance(String),
    #[error("unknown storage {0:?}: expected f32 or f16")]
    InvalidStorage(String),
    #[error("collection {0:?} already exists")]
    CollectionExists(String),
    #[error("collection {0:?} not found")]
    CollectionNotFound(String),
    #[error("vector has {got} dimensions, collection expects {expected}")]
    DimensionMismatch { expected: usize, got: usize },
    #[error("vector component {index} is {value}: only finite numbers within ±1e16 are allowed")]
    NonFiniteVector { index: usize, value: f32 },
    #[error("invalid id: {0}")]
    InvalidId(String),
    #[error("invalid metadata: {0}")]
    InvalidMetadata(String),
    #[error("vector {0:?} already exists")]
    VectorExists(String),
    #[error("vector {0:?} not found")]
    VectorNotFound(String),
    #[error("k must be between 1 and {max}, got {k}")]
    InvalidK { k: usize, max: usize },
    #[error("{queries} queries × k = {k} would produce more than {max} results; split the batch")]
    TooManyResults {
        queries: usize,
        k: usize,
        max: usize,
    },
    #[error("invalid filter: {0}")]
    InvalidFilter(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// One item of a batch failed validation; the whole batch was rejected.
    #[error("vectors[{index}]: {source}")]
    InvalidBatchItem {
        index: usize,
        #[source]
        source: Box<Error>,
    },
    #[error("storage error: {0}")]
    Storage(#[from] rocksdb::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Not a `#[source]`: the message already carries the kernel's, and error
    /// chains would print it twice.
    #[error("search engine error: {0}")]
    Kernel(KernelError),
    #[error("operation-log gap: the next sequence number is {expected}, got {got}")]
    LogGap { expected: u64, got: u64 },
    #[error("database is shutting down")]
    Closed,
    #[error("metrics registry: {0}")]
    Metrics(String),
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// The file given as a snapshot is not one this node can restore.
    #[error("invalid snapshot: {0}")]
    InvalidSnapshot(String),
    /// The client that asked went away before the answer was ready.
    #[error("the request was cancelled: its client went away")]
    Cancelled,
    /// An answer larger than the node's response budget (`--max-response-bytes`).
    #[error("the response would be at least {bytes} bytes, more than the {max}-byte limit: ask for fewer queries, a smaller k, or leave out vectors or metadata")]
    ResponseTooLarge { bytes: u64, max: u64 },
    /// A write too large to travel as one replication message.
    #[error("the write is {bytes} bytes encoded; at most {max} bytes fit one replicated log entry: split the batch")]
    OpTooLarge { bytes: u64, max: u64 },
    /// A queue in front of the writer or the search engine is full.
    #[error("the node is overloaded: {0}; retry shortly")]
    Overloaded(String),
    /// An `Idempotency-Key` that an earlier, different write already used.
    #[error("Idempotency-Key {key} was already used by a different request; use a new key for a new write")]
    IdempotencyKeyReused { key: String },
    /// The writer or the search engine was interrupted by an internal error (a panic,
    /// which was caught) while this request was in flight: a write may or may not be
    /// durable.
    #[error("the request was interrupted by an internal error (the node recovered); a write may or may not have been applied: read it back or retry it")]
    Interrupted,
    /// The node stopped applying writes after a failure it could not repair; it
    /// must be restarted (it reopens from its store).
    #[error("this node stopped taking writes: {0}")]
    Failed(String),
}

/// The broad class of an error, which the HTTP edge maps to a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ErrorKind {
    BadRequest,
    NotFound,
    Conflict,
    Unavailable,
    /// The write is valid but the GPU has no room for it (HTTP 507).
    InsufficientStorage,
    /// Applied, but not confirmed as durable enough in time (HTTP 504).
    Timeout,
    Internal,
    /// The client went away; nobody reads the answer (HTTP 499, logged only).
    ClientGone,
    /// A write too large to replicate (HTTP 413).
    TooLarge,
    /// Retry later: a bounded queue is full (HTTP 503 with `Retry-After`).
    Overloaded,
}

impl Error {
    /// Stable machine-readable code, e.g. `DIMENSION_MISMATCH`.
    pub fn code(&self) -> &str {
        match self {
            Error::InvalidCollectionName(_) => "INVALID_COLLECTION_NAME",
            Error::InvalidDimensions(_) => "INVALID_DIMENSIONS",
            Error::InvalidDistance(_) => "INVALID_DISTANCE",
            Error::InvalidStorage(_) => "INVALID_STORAGE",
            Error::CollectionExists(_) => "COLLECTION_EXISTS",
            Error::CollectionNotFound(_) => "COLLECTION_NOT_FOUND",
            Error::DimensionMismatch { .. } => "DIMENSION_MISMATCH",
            Error::NonFiniteVector { .. } => "INVALID_VECTOR",
            Error::InvalidId(_) => "INVALID_ID",
            Error::InvalidMetadata(_) => "INVALID_METADATA",
            Error::VectorExists(_) => "VECTOR_EXISTS",
            Error::VectorNotFound(_) => "VECTOR_NOT_FOUND",
            Error::InvalidK { .. } => "INVALID_K",
            Error::TooManyResults { .. } => "TOO_MANY_RESULTS",
            Error::InvalidFilter(_) => "INVALID_FILTER",
            Error::InvalidRequest(_) => "INVALID_REQUEST",
            Error::InvalidBatchItem { source, .. } => source.code(),
            Error::Storage(_) => "STORAGE_ERROR",
            Error::Corrupt(_) => "STORAGE_CORRUPT",
            Error::Kernel(KernelError::InvalidK { .. }) => "INVALID_K",
            Error::Kernel(KernelError::DimensionMismatch { .. }) => "DIMENSION_MISMATCH",
            Error::Kernel(KernelError::DeviceMemory { .. }) => "DEVICE_MEMORY_FULL",
            Error::Kernel(_) => "ENGINE_ERROR",
            Error::LogGap { .. } => "LOG_GAP",
            Error::Closed => "SHUTTING_DOWN",
            Error::Metrics(_) => "INTERNAL",
            Error::Snapshot(_) => "SNAPSHOT_FAILED",
            Error::InvalidSnapshot(_) => "INVALID_SNAPSHOT",
            Error::Cancelled => "CANCELLED",
            Error::ResponseTooLarge { .. } => "RESPONSE_TOO_LARGE",
            Error::OpTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            Error::Overloaded(_) => "OVERLOADED",
            Error::IdempotencyKeyReused { .. } => "IDEMPOTENCY_KEY_REUSED",
            Error::Failed(_) => "NODE_FAILED",
            Error::Interrupted => "INTERRUPTED",
        }
    }

    /// For a write of one record: the record's own error rather than
    /// `"vectors[0]: ..."`.
    pub fn single_item(self) -> Error {
        match self {
            Error::InvalidBatchItem { source, .. } => *source,
            other => other,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::CollectionNotFound(_) | Error::VectorNotFound(_) => ErrorKind::NotFound,
            Error::CollectionExists(_)
            | Error::VectorExists(_)
            | Error::LogGap { .. }
            | Error::IdempotencyKeyReused { .. } => ErrorKind::Conflict,
            Error::Cancelled => ErrorKind::ClientGone,
            Error::OpTooLarge { .. } => ErrorKind::TooLarge,
            Error::Overloaded(_) => ErrorKind::Overloaded,
            Error::Failed(_) | Error::Interrupted => ErrorKind::Unavailable,
            Error::InvalidBatchItem { source, .. } => source.kind(),
            Error::Storage(_) | Error::Corrupt(_) | Error::Metrics(_) | Error::Snapshot(_) => {
                ErrorKind::Internal
            }
            Error::Kernel(KernelError::InvalidK { .. })
            | Error::Kernel(KernelError::DimensionMismatch { .. }) => ErrorKind::BadRequest,
            Error::Kernel(KernelError::DeviceMemory { .. }) => ErrorKind::InsufficientStorage,
            Error::Kernel(_) => ErrorKind::Internal,
            Error::Closed => ErrorKind::Unavailable,
            _ => ErrorKind::BadRequest,
        }
    }
}

impl From<KernelError> for Error {
    fn from(e: KernelError) -> Self {
        Error::Kernel(e)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

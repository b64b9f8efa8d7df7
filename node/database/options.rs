//! How a database is opened, and what it chose to run on.

use needle_kernels::{BackendKind, OnDeviceFull};

/// When the write-ahead log is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncMode {
    /// Ops waiting together share one fsync (the default: the same durability as
    /// `PerWrite` — nothing is acknowledged before its fsync — with far higher
    /// throughput under concurrent writers).
    #[default]
    Group,
    /// Every op gets its own fsync, even when others are waiting.
    PerWrite,
}

/// Writes this node orders that may wait for the writer at once; more are refused
/// with `OVERLOADED` instead of queueing without bound.
pub const DEFAULT_WRITE_QUEUE: usize = 8192;

/// How to open a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatabaseOptions {
    pub backend: BackendKind,
    /// What a GPU backend does with a write that does not fit in device memory.
    pub on_device_full: OnDeviceFull,
    pub sync: SyncMode,
    /// How many of the newest operation-log entries to keep (at least 1). The log
    /// holds whole vectors, so an unbounded one would double the disk used and never
    /// give back space after deletes; replication catch-up needs only a recent window.
    pub log_retention: u64,
    /// Writes this node orders that may wait for the writer at once (`OVERLOADED`
    /// past it).
    pub write_queue: usize,
    /// What time it is (commit times, for replication lag).
    pub clock: crate::clock::Clock,
}

/// Default operation-log retention: the newest 100,000 ops.
pub const DEFAULT_LOG_RETENTION: u64 = 100_000;

impl Default for DatabaseOptions {
    fn default() -> Self {
        DatabaseOptions {
            backend: BackendKind::Auto,
            on_device_full: OnDeviceFull::default(),
            sync: SyncMode::Group,
            log_retention: DEFAULT_LOG_RETENTION,
            write_queue: DEFAULT_WRITE_QUEUE,
            clock: crate::clock::Clock::default(),
        }
    }
}

/// Which search backend a database runs on and why the better ones were not used.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackendSelection {
    /// `cuda`, `wgpu` or `cpu`.
    pub backend: &'static str,
    /// The hardware it runs on.
    pub device: String,
    /// `(backend, reason)` for each backend above the chosen one that could not run.
    pub passed_over: Vec<(&'static str, String)>,
}

//! What every handle of a database, its writer thread and its apply lanes share.
//! Its own file so that the writer and the lanes depend on this state, not on
//! [`super::Database`], which depends on them.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use needle_kernels::Backend;

use super::options::{BackendSelection, DatabaseOptions};
use crate::catalog::Catalog;
use crate::metrics::Metrics;
use crate::storage::Store;

pub(crate) struct Inner {
    pub store: Store,
    pub backend: Box<dyn Backend>,
    pub selection: BackendSelection,
    pub catalog: Catalog,
    /// The last op durable in the store. It is visible to searches too, unless a
    /// long search of its collection is holding it back (see `apply_lane.rs`).
    pub applied_seq: AtomicU64,
    /// Sequence number of the oldest retained log entry (`applied_seq + 1` when the
    /// log is empty).
    pub log_start: AtomicU64,
    pub log_retention: u64,
    pub metrics: Arc<Metrics>,
    /// The data directory.
    pub path: PathBuf,
    /// The RocksDB store inside it (see `generations.rs`).
    pub store_path: PathBuf,
    pub options: DatabaseOptions,
    /// Follows `applied_seq`, so log readers (replication) wait for new entries
    /// instead of polling.
    pub applied_watch: tokio::sync::watch::Sender<u64>,
    /// When recent operations were committed (for replication lag).
    pub commit_times: crate::commit_times::CommitTimes,
}

//! needle's search kernels: exact top-k nearest-neighbour search over vector shards.
//!
//! A [`Shard`] holds one collection's vectors in a backend's memory (host RAM for the CPU
//! backend; device memory for the GPU backends of later work) and answers a batch of
//! queries with the `k` closest rows per query, optionally restricted by a [`RowMask`].
//! Rows are dense indices assigned by the shard; mapping them to user ids is the
//! caller's business, so this crate never sees strings, JSON or storage.
//!
//! ```
//! use needle_kernels::{open_backend, BackendKind, Metric};
//! let backend = open_backend(BackendKind::Auto).unwrap();
//! let mut shard = backend.new_shard(2, Metric::Euclidean).unwrap();
//! shard.append(&[0.0, 0.0]).unwrap();
//! shard.append(&[3.0, 4.0]).unwrap();
//! let hits = shard.search_batch(&[3.0, 3.0], 1, None).unwrap();
//! assert_eq!(hits[0][0].row, 1);
//! assert_eq!(hits[0][0].distance, 1.0);
//! ```

mod backend;
pub mod cpu;
pub mod cuda;
mod error;
mod mask;
mod metric;
pub mod reference;
mod rerank;
mod shard;
mod storage;
mod topk;
pub mod wgsl;

pub use backend::{open_backend, select_backend, Backend, BackendKind, Selection};
pub use error::KernelError;
pub use mask::RowMask;
pub use metric::Metric;
pub use shard::{Compaction, Row, Shard};
pub use storage::{F32Math, OnDeviceFull, Storage};
pub use topk::{Hit, TopK};

/// The largest `k` a search may ask for; bounds per-query memory.
pub const MAX_K: usize = 10_000;

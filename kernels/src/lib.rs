//! needle's search kernels: exact top-k nearest-neighbour search over vector shards.
//!
//! A [`Shard`] holds one collection's vectors in a backend's memory (host RAM for the CPU
//! backend; device memory for the GPU backends of later work) and answers a batch of
//! queries with the `k` closest rows per query, optionally restricted by a [`RowMask`].
//! Rows are dense indices assigned by the shard; mapping them to user ids is the
//! caller's business, so this crate never sees strings, JSON or storage.

mod backend;
pub mod cpu;
mod error;
mod mask;
mod metric;
pub mod reference;
mod shard;
mod topk;

pub use backend::{available_backends, open_backend, Backend, BackendKind};
pub use error::KernelError;
pub use mask::RowMask;
pub use metric::Metric;
pub use shard::{Compaction, Row, Shard};
pub use topk::{Hit, TopK};

/// The largest `k` a search may ask for; bounds per-query memory.
pub const MAX_K: usize = 10_000;

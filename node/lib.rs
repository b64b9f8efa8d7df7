//! needle: a vector search node.
//!
//! The library opens a RocksDB directory as a [`Database`], keeps every collection in
//! a search engine from `needle-kernels`, and routes every change through one ordered,
//! durable operation log. The `needle` binary serves it over HTTP.
//!
//! ```no_run
//! use needle::{Database, CollectionConfig, Distance, VectorRecord};
//! # fn main() -> needle::Result<()> {
//! let db = Database::open("primary.needle")?;
//! let docs = db.create_collection(CollectionConfig::new("docs", 3, Distance::Cosine))?;
//! docs.insert(VectorRecord::new("a", vec![1.0, 0.0, 0.0]))?;
//! let hits = docs.search(&[1.0, 0.1, 0.0], 10, None)?;
//! assert_eq!(hits[0].id, "a");
//! # Ok(()) }
//! ```

mod apply_lane;
mod cancel;
mod catalog;
pub mod clock;
pub mod coalesce;
mod collection;
mod commit_times;
mod database;
mod durable;
mod error;
pub mod filter;
mod filter_masks;
mod generations;
mod gpu_metrics;
pub mod health;
mod injected_faults;
pub mod meta_keys;
mod model;
mod op;
mod search;
pub mod served;
pub mod snapshot;
mod storage;
mod write_checks;
mod writer;

pub mod cli;
pub mod config;
pub mod http;
pub mod import;
pub mod metrics;
pub mod replication;

pub use cancel::{CancelOnDrop, CancelToken};
pub use collection::Collection;
pub use database::{
    BackendSelection, CollectionInfo, Database, DatabaseOptions, DEFAULT_LOG_RETENTION,
};
pub use error::{Error, ErrorKind, Result};
pub use filter::Filter;
pub use model::{
    CollectionConfig, Distance, Metadata, VectorRecord, VectorStorage, MAX_COMPONENT_MAGNITUDE,
    MAX_DIMENSIONS, MAX_ID_BYTES, MAX_METADATA_BYTES, MAX_NAME_LEN,
};
pub use needle_kernels::{BackendKind, MAX_K};
pub use op::{Applied, Op, Precondition};
pub use search::{AnswerBudget, SearchHit, MAX_RESULTS_PER_SEARCH};
pub use storage::CollectionChecksum;
pub use writer::SyncMode;

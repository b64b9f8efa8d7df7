//! Sharding's placement model: which shard a point belongs to, which hash range
//! each shard covers, and which members hold each shard's replicas. Plain data
//! and pure functions, so every rule here is tested without a cluster; the
//! sharded mode (many Raft groups, one per shard) builds on it.
//!
//! - [`id_hash`]: the stable 64-bit hash of a point id. It is part of the data
//!   format: changing it would move every point of every sharded collection.
//! - [`shard_map`]: a sharded collection's map (contiguous hash ranges, each
//!   shard's members and Raft group, an epoch), validated wherever it is decoded.
//! - [`placement`]: spreading a new collection's replicas and first leaders evenly
//!   over the members.

pub mod error;
pub mod id_hash;
pub mod placement;
pub mod shard_map;
pub mod sharded_collection;

pub use error::ShardingError;
pub use id_hash::id_hash;
pub use shard_map::{HashRange, ShardMap, ShardPlacement, FIRST_EPOCH, MAX_SHARDS};
pub use sharded_collection::ShardedCollection;

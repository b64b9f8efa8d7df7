//! What creating or reading a shard map can fail with. Each is a client's or a
//! stored map's mistake, with a stable code for the HTTP edge.

use thiserror::Error;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ShardingError {
    #[error("shards must be between 1 and {max}, not {given}")]
    InvalidShardCount { given: u64, max: u32 },
    #[error(
        "replication_factor must be between 1 and the number of members ({members}), not {given}"
    )]
    InvalidReplicationFactor { given: u64, members: usize },
    /// A map that breaks an invariant: decoded from a peer or from disk, it is
    /// refused rather than routed by.
    #[error("invalid shard map: {0}")]
    InvalidMap(String),
}

impl ShardingError {
    pub fn code(&self) -> &'static str {
        match self {
            ShardingError::InvalidShardCount { .. } => "INVALID_SHARD_COUNT",
            ShardingError::InvalidReplicationFactor { .. } => "INVALID_REPLICATION_FACTOR",
            ShardingError::InvalidMap(_) => "INVALID_SHARD_MAP",
        }
    }
}

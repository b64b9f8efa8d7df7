use thiserror::Error;

/// What this crate can fail with, apart from the `io::Error`s openraft's storage
/// traits require.
#[derive(Debug, Error)]
pub enum ConsensusError {
    #[error("raft log storage: {0}")]
    Storage(String),
    #[error("malformed raft message: {0}")]
    Malformed(String),
    #[error("transport: {0}")]
    Transport(#[from] needle_transport::TransportError),
    #[error("snapshot file: {0}")]
    Snapshot(String),
    #[error("the heartbeat clock cannot start: {0}")]
    HeartbeatClock(String),
}

impl From<rocksdb::Error> for ConsensusError {
    fn from(e: rocksdb::Error) -> Self {
        ConsensusError::Storage(e.to_string())
    }
}

impl From<ConsensusError> for std::io::Error {
    fn from(e: ConsensusError) -> Self {
        std::io::Error::other(e.to_string())
    }
}

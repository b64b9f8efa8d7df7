//! What replication fails with, apart from what the core fails with: the errors a
//! mode (primary–replica, Raft) adds on top of [`crate::Error`], each with its own
//! stable code, so callers branch on variants and clients on codes.

use std::net::SocketAddr;

use thiserror::Error;

use super::consistency::WriteConcern;
use crate::error::ErrorKind;

#[derive(Debug, Error, Clone)]
pub enum ReplicationError {
    /// The core refused or failed (a bad write, a full queue, a storage error).
    #[error(transparent)]
    Core(#[from] crate::Error),
    /// This node takes no writes: `primary` does (HTTP 421 NOT_PRIMARY).
    #[error("this node is not the primary; send writes to {primary}")]
    NotPrimary { primary: SocketAddr },
    /// The cluster could not be reached or answered nonsense (REPLICATION_ERROR).
    #[error("replication: {0}")]
    Unavailable(String),
    /// A role change that does not fit the node's state now (ROLE_CONFLICT).
    #[error("{0}")]
    RoleConflict(String),
    #[error("write {seq} is applied on the primary but did not reach write concern {concern:?} within {waited_ms} ms; it may still replicate")]
    WriteConcernTimeout {
        seq: u64,
        concern: WriteConcern,
        waited_ms: u64,
    },
    /// An `Idempotency-Key` on a node whose log keeps no request records.
    #[error("Idempotency-Key is honoured by Raft members only (serve --raft)")]
    IdempotencyUnsupported,
    /// Raft: this node cannot order the write and knows no leader to forward it to,
    /// or the leader could not be reached.
    #[error("no raft leader: {0}")]
    NoLeader(String),
    /// An error another node of the cluster answered with (a Raft leader applying a
    /// forwarded write), kept with its original code and class.
    #[error("{message}")]
    Remote {
        code: String,
        message: String,
        kind: ErrorKind,
    },
}

impl ReplicationError {
    /// Stable machine-readable code, e.g. `NO_LEADER`.
    pub fn code(&self) -> &str {
        match self {
            ReplicationError::Core(e) => e.code(),
            ReplicationError::NotPrimary { .. } => "NOT_PRIMARY",
            ReplicationError::Unavailable(_) => "REPLICATION_ERROR",
            ReplicationError::RoleConflict(_) => "ROLE_CONFLICT",
            ReplicationError::WriteConcernTimeout { .. } => "WRITE_CONCERN_TIMEOUT",
            ReplicationError::NoLeader(_) => "NO_LEADER",
            ReplicationError::IdempotencyUnsupported => "INVALID_REQUEST",
            ReplicationError::Remote { code, .. } => code,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            ReplicationError::Core(e) => e.kind(),
            // HTTP answers it with 421 and the primary's address (`ApiError`).
            ReplicationError::NotPrimary { .. } => ErrorKind::Conflict,
            ReplicationError::Unavailable(_) | ReplicationError::NoLeader(_) => {
                ErrorKind::Unavailable
            }
            ReplicationError::RoleConflict(_) => ErrorKind::Conflict,
            ReplicationError::IdempotencyUnsupported => ErrorKind::BadRequest,
            ReplicationError::WriteConcernTimeout { .. } => ErrorKind::Timeout,
            ReplicationError::Remote { kind, .. } => *kind,
        }
    }

    /// No leader ordered the write, as this node or the member that answered saw it
    /// (a remote error keeps its code only): safe to retry elsewhere.
    pub fn is_no_leader(&self) -> bool {
        match self {
            ReplicationError::NoLeader(_) => true,
            ReplicationError::Remote { code, .. } => code == "NO_LEADER",
            _ => false,
        }
    }

    /// For a write of one record: the record's own error rather than
    /// `"vectors[0]: ..."`.
    pub fn single_item(self) -> ReplicationError {
        match self {
            ReplicationError::Core(e) => ReplicationError::Core(e.single_item()),
            other => other,
        }
    }
}

pub type Result<T, E = ReplicationError> = std::result::Result<T, E>;

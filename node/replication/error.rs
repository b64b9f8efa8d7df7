//! What replication fails with, apart from what the core fails with: the errors a
//! mode (primary–replica, Raft) adds on top of [`crate::Error`], each with its own
//! stable code, so callers branch on variants and clients on codes.

use std::net::SocketAddr;

use needle_transport::TransportError;
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
    /// The mode's machinery (`what`: "replication", "the raft node") is not running.
    #[error("{what} is not started")]
    NotStarted { what: &'static str },
    /// This node's own transport failed (binding, its address, registering a region).
    #[error("cluster transport: {0}")]
    Transport(TransportError),
    /// Reaching `peer` failed while `doing` something (connecting, a request).
    #[error("{doing} {peer}: {source}")]
    Peer {
        doing: &'static str,
        peer: SocketAddr,
        source: TransportError,
    },
    /// `peer` answered a request with the answer to another one.
    #[error("{peer} answered a different request")]
    UnexpectedAnswer { peer: String },
    /// A cluster message that could not be encoded or decoded.
    #[error("{what}: {detail}")]
    Codec { what: &'static str, detail: String },
    /// `by` (a member, the leader) refused or failed the request and said why.
    #[error("{by} failed the request: {message}")]
    Refused { by: String, message: String },
    /// Raft's own machinery failed while `doing` something (starting, a membership
    /// change, a leadership transfer).
    #[error("{doing}: {detail}")]
    Raft { doing: String, detail: String },
    /// An HTTP member of a load-balanced set failed; the last one tried is named.
    #[error("{node}: {detail}")]
    Http { node: String, detail: String },
    /// The node's role does not allow the action (`needs` says what would).
    #[error("this node is {role}; {needs}")]
    WrongRole { role: String, needs: &'static str },
    /// `peer` is in an older epoch than this node: a deposed primary.
    #[error("{peer} is in epoch {theirs}, older than this node's {mine}: it is a deposed primary")]
    OlderEpoch {
        peer: SocketAddr,
        theirs: u64,
        mine: u64,
    },
    /// This node promised `epoch` to `primary`'s promotion, so it takes nothing from
    /// an older primary and no promise to anyone else.
    #[error("this node promised epoch {epoch} to the promotion of {primary}: nothing from another primary until it is re-pointed")]
    Promised { primary: SocketAddr, epoch: u64 },
    /// A promotion fencing an epoch this node has already passed.
    #[error("a promotion to epoch {offered} is stale: this node is in epoch {current}")]
    StalePromotion { offered: u64, current: u64 },
    /// Catching up is only from a replica of the same primary, in the same epoch.
    #[error("{peer} is in epoch {theirs}, this node in {mine}: catch up only from replicas of the same primary")]
    EpochMismatch {
        peer: SocketAddr,
        theirs: u64,
        mine: u64,
    },
    /// `peer` no longer keeps the entry this node needs next.
    #[error("{peer} no longer has entry {needed} (its log starts at {log_start})")]
    LogPurged {
        peer: SocketAddr,
        needed: u64,
        log_start: u64,
    },
    /// A promotion that heard from too few nodes to be sure it loses nothing.
    #[error("promotion must hear from {needed} of the {cluster} nodes (itself included) so that no write a majority acknowledged is lost; it reached {reached}. Bring a replica back, name reachable peers, or force it")]
    NoQuorum {
        needed: usize,
        cluster: usize,
        reached: usize,
    },
    /// The primary lost its role before `concern` was met: the write may be gone.
    #[error("write {seq} was applied while this node was the primary of epoch {epoch}, which it stopped being before write concern {concern:?} was met: the write may have been discarded")]
    ConcernLost {
        seq: u64,
        epoch: u64,
        concern: WriteConcern,
    },
    /// A role change that does not fit the node's state now (ROLE_CONFLICT): the
    /// reason it could not be made.
    #[error("{0}")]
    RoleConflict(Box<ReplicationError>),
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
    /// A sharded collection's settings or shard map that cannot be (too many
    /// shards, a replication factor above the member count, a broken map).
    #[error(transparent)]
    Sharding(#[from] crate::replication::sharding::ShardingError),
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
    /// The [`ReplicationError::Peer`] a failed exchange with `peer` maps to, for
    /// `map_err`.
    pub(crate) fn peer(
        doing: &'static str,
        peer: SocketAddr,
    ) -> impl FnOnce(TransportError) -> ReplicationError {
        move |source| ReplicationError::Peer {
            doing,
            peer,
            source,
        }
    }

    /// The [`ReplicationError::Raft`] an openraft failure while `doing` maps to.
    pub(crate) fn raft(
        doing: impl Into<String>,
        detail: impl std::fmt::Display,
    ) -> ReplicationError {
        ReplicationError::Raft {
            doing: doing.into(),
            detail: detail.to_string(),
        }
    }

    /// Stable machine-readable code, e.g. `NO_LEADER`.
    pub fn code(&self) -> &str {
        match self {
            ReplicationError::Core(e) => e.code(),
            ReplicationError::NotPrimary { .. } => "NOT_PRIMARY",
            ReplicationError::RoleConflict(_) => "ROLE_CONFLICT",
            ReplicationError::WriteConcernTimeout { .. } => "WRITE_CONCERN_TIMEOUT",
            ReplicationError::NoLeader(_) => "NO_LEADER",
            ReplicationError::IdempotencyUnsupported => "INVALID_REQUEST",
            ReplicationError::Remote { code, .. } => code,
            ReplicationError::Sharding(e) => e.code(),
            _ => "REPLICATION_ERROR",
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            ReplicationError::Core(e) => e.kind(),
            // HTTP answers it with 421 and the primary's address (`ApiError`).
            ReplicationError::NotPrimary { .. } => ErrorKind::Conflict,
            ReplicationError::RoleConflict(_) => ErrorKind::Conflict,
            ReplicationError::IdempotencyUnsupported => ErrorKind::BadRequest,
            ReplicationError::WriteConcernTimeout { .. } => ErrorKind::Timeout,
            ReplicationError::Remote { kind, .. } => *kind,
            ReplicationError::Sharding(_) => ErrorKind::BadRequest,
            _ => ErrorKind::Unavailable,
        }
    }

    /// The cluster failed this node (a peer, the transport, the protocol, fencing),
    /// as opposed to the core, a client's request, or a missing leader.
    fn is_cluster_failure(&self) -> bool {
        !matches!(
            self,
            ReplicationError::Core(_)
                | ReplicationError::NotPrimary { .. }
                | ReplicationError::RoleConflict(_)
                | ReplicationError::WriteConcernTimeout { .. }
                | ReplicationError::IdempotencyUnsupported
                | ReplicationError::NoLeader(_)
                | ReplicationError::Remote { .. }
                | ReplicationError::Sharding(_)
        )
    }

    /// For a role change (promote, demote, re-point): a cluster failure means the
    /// change cannot be made now, a conflict with the node's state (ROLE_CONFLICT).
    pub fn as_role_conflict(self) -> ReplicationError {
        if self.is_cluster_failure() {
            ReplicationError::RoleConflict(Box::new(self))
        } else {
            self
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

//! The Raft type configuration: what a log entry carries, what applying one returns
//! and how a node is addressed. Commands are opaque bytes so that this crate does
//! not know collections; the node encodes its operations into them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Who sent a write and which of its writes this is. A retried write carries the same
/// id, so the state machine can answer it from its record instead of applying twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestId {
    /// Random per client process.
    pub client: u64,
    /// Increases with each new write of that client.
    pub serial: u64,
}

/// One replicated write: the node's encoded operation and, for exactly-once
/// retries, its request id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub request_id: Option<RequestId>,
    pub payload: Vec<u8>,
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "command({} bytes", self.payload.len())?;
        if let Some(id) = self.request_id {
            write!(f, ", request {}:{}", id.client, id.serial)?;
        }
        write!(f, ")")
    }
}

/// What applying a [`Command`] produced, encoded by the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutcome(pub Vec<u8>);

impl fmt::Display for CommandOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "outcome({} bytes)", self.0.len())
    }
}

/// How to reach a member: its Raft (QUIC) address and its HTTP address, so that any
/// node can tell a client where the leader answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNode {
    pub raft_addr: String,
    pub http_addr: String,
}

impl fmt::Display for ClusterNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft {} http {}", self.raft_addr, self.http_addr)
    }
}

/// A member's id in the cluster (`--node-id`).
pub type NodeId = u64;

/// Which Raft group a log, an RPC or a state machine belongs to. A member runs the
/// cluster-wide group and one more group for each shard replica it holds; all of
/// them share its one transport endpoint and its one log database.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct GroupId(pub u64);

impl GroupId {
    /// The cluster-wide group: it holds unsharded collections and the shard map,
    /// and its log and wire form are those of a cluster from before sharding, so
    /// an existing data directory and an existing member keep working unchanged.
    pub const CLUSTER: GroupId = GroupId(0);

    pub fn is_cluster(self) -> bool {
        self == GroupId::CLUSTER
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_cluster() {
            write!(f, "the cluster group")
        } else {
            write!(f, "group {}", self.0)
        }
    }
}

openraft::declare_raft_types!(
    /// needle's Raft types: everything else is openraft's default.
    pub TypeConfig:
        D = Command,
        R = CommandOutcome,
        NodeId = NodeId,
        Node = ClusterNode,
);

pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub type Membership = openraft::Membership<NodeId, ClusterNode>;

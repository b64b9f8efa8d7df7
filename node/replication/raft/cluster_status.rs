//! The cluster as one member sees it (`GET /cluster/status`): plain data, shared by
//! the member that builds it (`status.rs`), the wire (`app_rpc.rs`) and the native
//! client.

use needle_consensus::NodeId;
use serde::{Deserialize, Serialize};

/// The cluster as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub node_id: NodeId,
    pub state: String,
    pub leader_id: Option<NodeId>,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    /// The last log index in this node's latest snapshot, and the last index purged
    /// from its log (a member needing entries at or below it gets a snapshot).
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub peers: Vec<PeerStatus>,
}

/// One member. `lag` (entries the member's log is behind the leader's) is known
/// only on the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub id: NodeId,
    pub state: String,
    pub raft_addr: String,
    pub http_addr: String,
    pub lag: Option<u64>,
}

/// One shard group as the member holding a replica of it sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStatus {
    pub collection: String,
    pub shard: u32,
    /// The Raft group (`needle_raft_*{group}` in the metrics).
    pub group: u64,
    /// The shard's hash range, `[lo, hi]` inclusive.
    pub range: [u64; 2],
    /// This member's role in the group.
    pub state: String,
    pub leader: Option<NodeId>,
    pub members: Vec<NodeId>,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    /// Points in this member's replica.
    pub count: u64,
}

/// `GET /cluster/status`: the cluster-wide group, and every shard group this
/// member holds a replica of. Not on the wire between members (whose format is
/// [`ClusterStatus`]'s).
#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    #[serde(flatten)]
    pub cluster: ClusterStatus,
    pub groups: Vec<GroupStatus>,
}

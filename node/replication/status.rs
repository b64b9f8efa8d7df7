//! One status shape for every mode: the part they all have (role, applied sequence
//! number, how far behind each replica or member is), and the mode's own part. The
//! replication lag gauges are set from it, the same way in every mode.

use serde::Serialize;

use super::primary_replica::status::PrimaryReplicaStatus;
use super::raft::ClusterStatus;
use crate::metrics::Metrics;

/// Where a node stands (`GET /replication/status`).
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// `standalone`, `primary`, `replica`, `fenced` or `raft`.
    pub role: String,
    /// The last operation applied here.
    pub applied_seq: u64,
    /// The nodes this one orders writes for, and how far behind each is: a
    /// primary's replicas, a Raft leader's members; empty elsewhere.
    pub lag: Vec<ReplicaLag>,
    #[serde(flatten)]
    pub detail: ModeStatus,
}

/// The mode's own part of [`NodeStatus`], flattened into it.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ModeStatus {
    Standalone {},
    PrimaryReplica(PrimaryReplicaStatus),
    Raft { cluster: ClusterStatus },
}

/// How far one replica (or Raft member) is behind the node that orders writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicaLag {
    /// Its name: a certificate's node name or a cluster address (primary–replica),
    /// its node id (Raft).
    pub replica: String,
    pub operations: u64,
    /// How long it has been behind: the age of the oldest operation it lacks
    /// (primary–replica) or the time since it last had everything (Raft); `None`
    /// when that is not known (nothing recent enough is remembered).
    pub seconds: Option<f64>,
}

/// Sets `needle_replication_lag_operations{replica}` and
/// `needle_replication_lag_seconds{replica}` to exactly `lag` (replicas no longer
/// listed lose their series).
pub fn publish_lag(metrics: &Metrics, lag: &[ReplicaLag]) {
    metrics.replication_lag_operations.reset();
    metrics.replication_lag_seconds.reset();
    for replica in lag {
        metrics
            .replication_lag_operations
            .with_label_values(&[replica.replica.as_str()])
            .set(replica.operations as i64);
        if let Some(seconds) = replica.seconds {
            metrics
                .replication_lag_seconds
                .with_label_values(&[replica.replica.as_str()])
                .set(seconds);
        }
    }
}

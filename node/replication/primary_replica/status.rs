//! Primary–replica's part of the node status (`GET /replication/status`), and the
//! lag every replica has, as the one status shape ([`NodeStatus`]) carries it.

use serde::Serialize;

use super::epoch::EpochStore;
use super::primary::log_server::{now_ms, MAX_SILENCE_MS};
use super::role::Role;
use super::running::{ReplicaStatus, Replication};
use crate::replication::status::{detail_of, NodeStatus, ReplicaLag};

/// What a primary–replica node adds to [`NodeStatus`].
#[derive(Debug, Clone, Serialize)]
pub struct PrimaryReplicaStatus {
    pub epoch: Option<u64>,
    pub cluster_addr: String,
    /// The primary this node follows (replica) or that fenced it (fenced).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// A replica's stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<ReplicaStatus>,
    /// A primary's replicas.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<Vec<ReplicaState>>,
    /// Every replica `majority` counts, heard from lately or not (primary).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_replicas: Option<Vec<String>>,
}

/// One replica, as its primary sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaState {
    pub cluster_addr: Option<String>,
    pub replica: String,
    pub applied_seq: u64,
    pub lag_operations: u64,
    /// As write concerns count it: heard from within the last 15 s.
    pub connected: bool,
    pub last_seen_ms_ago: Option<u64>,
}

impl Replication {
    /// Where this node stands, in the one status shape.
    pub fn node_status(&self) -> NodeStatus {
        let db = self.served.current();
        let applied = db.applied_seq();
        let role = self.role();
        let mut detail = PrimaryReplicaStatus {
            epoch: db.epoch_history().map(|h| h.current()).ok(),
            cluster_addr: self.cluster_addr.to_string(),
            // From the same reading of the role as everything below.
            primary: match role {
                Role::Replica { primary } | Role::Fenced { primary } => Some(primary.to_string()),
                Role::Primary | Role::Standalone => None,
            },
            stream: None,
            replicas: None,
            known_replicas: None,
        };
        let mut lag = Vec::new();
        match role {
            Role::Replica { .. } => {
                let stream = self.replica.lock().clone();
                lag.push(ReplicaLag {
                    replica: self.cluster_addr.to_string(),
                    operations: stream.lag.operations,
                    seconds: Some(stream.lag.time_ms as f64 / 1000.0),
                });
                detail.stream = Some(stream);
            }
            Role::Primary => {
                // Commit times are on the database's clock; when a replica was
                // last heard from is on the transport's (the system clock).
                let (now, heard_now) = (db.now_ms(), now_ms());
                let addresses = self.acks.addresses();
                let tracker = self.acks.tracker.lock();
                let mut replicas = Vec::new();
                for (name, acked) in tracker.acknowledged() {
                    let silent_ms = tracker
                        .last_seen_ms(&name)
                        .map(|at| heard_now.saturating_sub(at));
                    let behind = applied.saturating_sub(acked);
                    // The age of the oldest operation the replica lacks, while its
                    // commit time is remembered (see `commit_times.rs`).
                    let seconds = if behind == 0 {
                        Some(0.0)
                    } else {
                        db.committed_ms(acked + 1)
                            .map(|at| now.saturating_sub(at) as f64 / 1000.0)
                    };
                    lag.push(ReplicaLag {
                        replica: name.clone(),
                        operations: behind,
                        seconds,
                    });
                    replicas.push(ReplicaState {
                        cluster_addr: addresses.get(&name).map(|a| a.to_string()),
                        replica: name,
                        applied_seq: acked,
                        lag_operations: behind,
                        connected: silent_ms.is_some_and(|ms| ms <= MAX_SILENCE_MS),
                        last_seen_ms_ago: silent_ms,
                    });
                }
                drop(tracker);
                detail.replicas = Some(replicas);
                detail.known_replicas = Some(self.known_replicas());
            }
            Role::Fenced { .. } | Role::Standalone => {}
        }
        NodeStatus {
            role: role.name().to_string(),
            applied_seq: applied,
            lag,
            detail: detail_of(&detail),
        }
    }
}

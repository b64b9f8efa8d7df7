//! What a Raft node tells about its cluster: `cluster_status` (`GET
//! /cluster/status`), the Prometheus gauges, and leadership hand-over
//! (`step_down`).

use std::time::{Duration, Instant};

use needle_consensus::openraft::async_runtime::WatchReceiver;
use needle_consensus::openraft::ServerState;
use needle_consensus::NodeId;
use prometheus::{IntGauge, IntGaugeVec, Opts};

use super::cluster_status::{ClusterStatus, PeerStatus};
use super::leader_changes::LeaderChanges;
use super::node::RaftNode;
use crate::replication::error::{ReplicationError, Result};
use crate::replication::status::{LagSeries, ReplicaLag};
use crate::Error;

pub(super) fn state_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

impl RaftNode {
    pub async fn cluster_status(&self) -> Result<ClusterStatus> {
        let metrics = self.raft()?.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let last_index = metrics.last_log_index.unwrap_or(0);
        let peers = membership
            .nodes()
            .map(|(id, node)| {
                let state = if *id == metrics.id {
                    state_name(metrics.state)
                } else if Some(*id) == metrics.current_leader {
                    "leader"
                } else if voters.contains(id) {
                    "follower"
                } else {
                    "learner"
                };
                let lag =
                    metrics
                        .replication
                        .as_ref()
                        .map(|replication| match replication.get(id) {
                            Some(Some(matched)) => last_index.saturating_sub(matched.index),
                            _ => last_index,
                        });
                PeerStatus {
                    id: *id,
                    state: state.to_string(),
                    raft_addr: node.raft_addr.clone(),
                    http_addr: node.http_addr.clone(),
                    lag: if *id == metrics.id && metrics.state == ServerState::Leader {
                        Some(0)
                    } else {
                        lag
                    },
                }
            })
            .collect();
        Ok(ClusterStatus {
            node_id: metrics.id,
            state: state_name(metrics.state).to_string(),
            leader_id: metrics.current_leader,
            term: metrics.current_term,
            commit_index: metrics.local_committed.map_or(0, |l| l.index),
            applied_index: metrics.last_applied.map_or(0, |l| l.index),
            snapshot_index: metrics.snapshot.map(|l| l.index),
            purged_index: metrics.purged.map(|l| l.index),
            peers,
        })
    }

    /// Hands leadership to `to`, or to the most up-to-date voter, and returns the new
    /// leader's id once this node sees it lead.
    pub async fn step_down(&self, to: Option<NodeId>) -> Result<NodeId> {
        let raft = self.raft()?;
        let metrics = raft.metrics().borrow_watched().clone();
        if metrics.state != ServerState::Leader {
            return Err(ReplicationError::NoLeader(format!(
                "node {} is not the leader (leader: {:?})",
                metrics.id, metrics.current_leader
            )));
        }
        let voters: Vec<NodeId> = metrics.membership_config.membership().voter_ids().collect();
        let replication = metrics.replication.clone().unwrap_or_default();
        let target = match to {
            Some(to) if to == metrics.id || !voters.contains(&to) => {
                return Err(Error::InvalidRequest(format!(
                    "node {to} is not another voter of this cluster (voters: {voters:?})"
                ))
                .into())
            }
            Some(to) => to,
            None => voters
                .iter()
                .filter(|id| **id != metrics.id)
                .max_by_key(|id| {
                    (
                        replication.get(id).cloned().flatten().map(|l| l.index),
                        std::cmp::Reverse(**id),
                    )
                })
                .copied()
                .ok_or_else(|| {
                    Error::InvalidRequest("no other voter to hand leadership to".into())
                })?,
        };
        raft.trigger()
            .transfer_leader(target)
            .await
            .map_err(|e| ReplicationError::raft("leader transfer", e))?;
        let wait = Duration::from_millis(self.inner.config.write_timeout_ms.max(1000));
        let deadline = Instant::now() + wait;
        loop {
            let now = raft.metrics().borrow_watched().clone();
            // Asked for `to`: only `to` leading answers (another winner is reported
            // as the error below, once the wait is over).
            let led = now
                .current_leader
                .filter(|l| *l != metrics.id && to.is_none_or(|to| *l == to));
            if let Some(leader) = led {
                tracing::info!(from = metrics.id, to = leader, "stepped down");
                return Ok(leader);
            }
            if Instant::now() >= deadline {
                return Err(ReplicationError::NoLeader(format!(
                    "node {target} did not take over within {} ms of the hand-over (leader now: {:?})",
                    wait.as_millis(),
                    now.current_leader
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// needle_raft_* gauges, kept from the Raft metrics as they change.
struct RaftGauges {
    term: IntGauge,
    leader: IntGaugeVec,
    commit_index: IntGauge,
    applied_index: IntGauge,
}

impl RaftGauges {
    fn register(registry: &prometheus::Registry) -> Option<RaftGauges> {
        let gauges = RaftGauges {
            term: IntGauge::new("needle_raft_term", "The Raft term this node is in").ok()?,
            leader: IntGaugeVec::new(
                Opts::new(
                    "needle_raft_leader",
                    "1 on the node that is the Raft leader, 0 elsewhere",
                ),
                &["node_id"],
            )
            .ok()?,
            commit_index: IntGauge::new(
                "needle_raft_commit_index",
                "The highest Raft log index known committed",
            )
            .ok()?,
            applied_index: IntGauge::new(
                "needle_raft_applied_index",
                "The highest Raft log index this node's state machine applied",
            )
            .ok()?,
        };
        registry.register(Box::new(gauges.term.clone())).ok()?;
        registry.register(Box::new(gauges.leader.clone())).ok()?;
        registry
            .register(Box::new(gauges.commit_index.clone()))
            .ok()?;
        registry
            .register(Box::new(gauges.applied_index.clone()))
            .ok()?;
        Some(gauges)
    }
}

/// Follows the Raft metrics into Prometheus, and the replicas' lag on the leader.
pub(crate) fn spawn_metrics(node: RaftNode) {
    let db = node.database();
    let node_metrics = db.metrics();
    let Ok(raft) = node.raft().cloned() else {
        return;
    };
    match super::batch_sizes::BatchSizes::register(node_metrics.registry()) {
        Some(sizes) => {
            let raft = raft.clone();
            tokio::spawn(async move {
                let _ = raft.set_metrics_recorder(Some(sizes)).await;
            });
        }
        None => tracing::warn!("raft batch-size metrics could not be registered"),
    }
    let Some(gauges) = RaftGauges::register(node_metrics.registry()) else {
        tracing::warn!("raft metrics could not be registered");
        return;
    };
    // Weak: this loop must not keep a dropped node alive.
    let inner = std::sync::Arc::downgrade(&node.inner);
    tokio::spawn(async move {
        let mut watch = raft.metrics();
        let mut last_applied = 0u64;
        // This loop is the only writer of the lag gauges on a Raft node.
        let mut series = LagSeries::default();
        let mut caught_up: std::collections::HashMap<NodeId, std::time::Instant> =
            Default::default();
        let mut changes = LeaderChanges::new();
        loop {
            let m = watch.borrow_watched().clone();
            changes.observe(m.current_leader, m.state, m.current_term);
            gauges.term.set(m.current_term as i64);
            gauges
                .leader
                .with_label_values(&[&m.id.to_string()])
                .set(i64::from(m.state == ServerState::Leader));
            gauges
                .commit_index
                .set(m.local_committed.map_or(0, |l| l.index) as i64);
            let applied = m.last_applied.map_or(0, |l| l.index);
            gauges.applied_index.set(applied as i64);
            node_metrics
                .replication_operations
                .with_label_values(&["raft_applied"])
                .inc_by(applied.saturating_sub(last_applied));
            last_applied = applied;
            // Only the leader knows how far behind each member is; a new term as
            // leader starts every member's clock afresh.
            let mut lag = Vec::new();
            match &m.replication {
                Some(replication) => caught_up.retain(|peer, _| replication.contains_key(peer)),
                None => caught_up.clear(),
            }
            if let Some(replication) = &m.replication {
                let last = m.last_log_index.unwrap_or(0);
                let now = std::time::Instant::now();
                for (peer, matched) in replication {
                    let behind = last.saturating_sub(matched.as_ref().map_or(0, |l| l.index));
                    // Seconds since the member last had everything the leader had.
                    let since = if behind == 0 {
                        *caught_up.entry(*peer).or_insert(now) = now;
                        now
                    } else {
                        *caught_up.entry(*peer).or_insert(now)
                    };
                    lag.push(ReplicaLag {
                        replica: peer.to_string(),
                        operations: behind,
                        seconds: Some(now.duration_since(since).as_secs_f64()),
                    });
                }
            }
            series.publish(&node_metrics, &lag);
            match inner.upgrade() {
                Some(inner) => *inner.lag.lock() = lag,
                // The node is gone: nobody reads these any more.
                None => return,
            }
            // Woken by every change, and each second so a stalled member's lag grows.
            tokio::select! {
                changed = watch.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
}

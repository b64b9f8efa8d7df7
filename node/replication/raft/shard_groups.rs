//! The shard groups a member runs: one Raft group for each shard replica the
//! cluster's shard maps place on it, started when a map is applied (and at
//! start-up for maps applied before), over a database of the replica's own at
//! `DIR/shards/<group>/` and the member's one log database, transport and
//! heartbeat clock.
//!
//! A group's first members all start with the map's membership: the shard's
//! preferred first leader (the first member the map lists, spread by placement)
//! initialises its fresh log at once and campaigns, so first leaderships are
//! spread as placement planned; every other first member initialises its own
//! fresh log with the same membership only if it still heard nothing after a
//! while, so that a shard whose preferred leader is down when it is created
//! still starts. Calling `initialize` on several members with the same
//! membership is safe (openraft's cluster-formation rules): the vote decides.
//! A member that holds a replica later (a move, not built yet) never
//! initialises: it joins as a learner.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use needle_consensus::openraft::async_runtime::WatchReceiver;
use needle_consensus::openraft::Raft;
use needle_consensus::{ClusterNode, GroupId, NodeId};

use super::cluster_status::GroupStatus;
use super::node::{NeedleRaft, RaftNode};
use super::shard_replicas::ShardReplica;
use super::state_machine::{StateMachine, StateScope};
use crate::replication::error::{ReplicationError, Result};
use crate::replication::sharding::{ShardPlacement, ShardedCollection, FIRST_EPOCH};
use crate::served::ServedDatabase;
use crate::{Database, Error};

/// How often the groups are checked against the maps when no map changed: what
/// failed to start (a database still held, a member address not known yet) is
/// tried again this often.
const RECHECK: Duration = Duration::from_secs(1);

impl RaftNode {
    /// Every shard replica this member runs, by group.
    pub(crate) fn shard_replicas(&self) -> Vec<(GroupId, Arc<ShardReplica>)> {
        self.inner.shard_groups.all()
    }

    /// The shard groups this member runs a replica of, as it sees them.
    pub fn shard_group_statuses(&self) -> Vec<GroupStatus> {
        self.shard_replicas()
            .into_iter()
            .map(|(group, replica)| {
                let metrics = replica.raft.metrics().borrow_watched().clone();
                let count = replica
                    .served
                    .current()
                    .collection_info(&replica.collection)
                    .map_or(0, |info| info.count as u64);
                GroupStatus {
                    collection: replica.collection.clone(),
                    shard: replica.shard,
                    group: group.0,
                    range: [replica.range.lo, replica.range.hi],
                    state: super::status::state_name(metrics.state).to_string(),
                    leader: metrics.current_leader,
                    members: metrics.membership_config.membership().voter_ids().collect(),
                    term: metrics.current_term,
                    commit_index: metrics.local_committed.map_or(0, |l| l.index),
                    applied_index: metrics.last_applied.map_or(0, |l| l.index),
                    count,
                }
            })
            .collect()
    }

    /// Where the replica of `group` keeps its database and snapshots.
    fn shard_dir(&self, group: GroupId) -> PathBuf {
        self.inner
            .served
            .current()
            .path()
            .join("shards")
            .join(format!("{:016x}", group.0))
    }

    /// Keeps this member's shard replicas in step with the maps it applied: at
    /// once, after every map change, and every [`RECHECK`]. Holds the node only
    /// while it checks, so dropping the node ends it.
    pub(super) fn supervise_shard_groups(&self, maps_changed: Arc<tokio::sync::Notify>) {
        let node = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let Some(inner) = node.upgrade() else { return };
                let node = RaftNode { inner };
                if node.inner.shard_groups.is_stopping() {
                    return;
                }
                node.start_missing_shard_groups().await;
                drop(node);
                let _ = tokio::time::timeout(RECHECK, maps_changed.notified()).await;
            }
        });
    }

    /// Starts every replica the maps place on this member that does not run yet;
    /// one that fails to start is logged and tried again at the next check.
    pub(crate) async fn start_missing_shard_groups(&self) {
        let groups = &self.inner.shard_groups;
        let _one_at_a_time = groups.checking.lock().await;
        let records = match self.sharded_collections() {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the shard maps");
                return;
            }
        };
        for record in &records {
            for shard in record.map.held_by(self.node_id()) {
                if groups.is_stopping() {
                    return;
                }
                if groups.get(shard.group).is_some() {
                    continue;
                }
                match self.start_shard_replica(record, shard).await {
                    Ok(replica) => {
                        tracing::info!(collection = %record.config.name, shard = shard.id, group = %shard.group, "started a shard replica");
                        groups
                            .replicas
                            .write()
                            .insert(shard.group, Arc::new(replica));
                    }
                    Err(e) => {
                        tracing::warn!(collection = %record.config.name, shard = shard.id, group = %shard.group, error = %e, "a shard replica did not start; trying again shortly")
                    }
                }
            }
        }
    }

    async fn start_shard_replica(
        &self,
        record: &ShardedCollection,
        shard: &ShardPlacement,
    ) -> Result<ShardReplica> {
        let running = self.running()?;
        let dir = self.shard_dir(shard.group);
        let options = self.database().options();
        let data = dir.join("data");
        let db = tokio::task::spawn_blocking(move || Database::open_with(data, options))
            .await
            .map_err(|_| Error::Closed)??;
        let served = ServedDatabase::new(db);
        let scope = StateScope::Shard {
            group: shard.group,
            collection: record.config.clone(),
            range: shard.range,
        };
        let state_machine =
            StateMachine::open(served.clone(), &dir.join("snapshots"), scope).await?;
        let consensus = |e| ReplicationError::raft("opening a shard group's log", e);
        let log_store = self.log_store()?.group(shard.group).map_err(consensus)?;
        let fresh = log_store.is_fresh().map_err(consensus)?;
        // The members' addresses are the cluster's: a map places replicas only on
        // its voters, so every one is in the membership.
        let members = self.shard_members(shard)?;
        let raft = Raft::new(
            self.node_id(),
            running.raft_config.clone(),
            running.network.for_group(shard.group),
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| ReplicationError::raft("starting a shard group", e))?;
        if let Some(replaced) = running.service.add_group(shard.group, raft.clone()) {
            let _ = replaced.shutdown().await;
        }
        // Only a replica placed when the map was made forms the group; the map's
        // epoch moves with every change of it.
        if fresh && record.map.epoch == FIRST_EPOCH {
            let preferred = shard.members.first() == Some(&self.node_id());
            tokio::spawn(form_group(
                raft.clone(),
                members,
                preferred,
                self.form_fallback_delay(),
            ));
        }
        Ok(ShardReplica {
            collection: record.config.name.clone(),
            shard: shard.id,
            served,
            range: shard.range,
            raft,
        })
    }

    /// The shard's members with their cluster addresses.
    fn shard_members(&self, shard: &ShardPlacement) -> Result<BTreeMap<NodeId, ClusterNode>> {
        let metrics = self.raft()?.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership();
        shard
            .members
            .iter()
            .map(|&id| {
                membership
                    .get_node(&id)
                    .map(|node| (id, node.clone()))
                    .ok_or_else(|| {
                        ReplicationError::from(Error::InvalidRequest(format!(
                            "node {id} holds a replica of shard {} but is not a cluster member",
                            shard.id
                        )))
                    })
            })
            .collect()
    }

    /// How long a first member other than the preferred leader waits for it
    /// before forming the group itself: several election rounds.
    fn form_fallback_delay(&self) -> Duration {
        let election_max = self.inner.config.election_timeout_ms.end;
        Duration::from_millis(election_max.saturating_mul(4).max(2000))
    }

    /// Stops every shard replica; none starts afterwards.
    pub(super) async fn stop_shard_groups(&self) {
        let groups = &self.inner.shard_groups;
        groups
            .stopping
            .store(true, std::sync::atomic::Ordering::Release);
        // A check that is starting a replica finishes first, so none is left running.
        let _one_at_a_time = groups.checking.lock().await;
        let replicas: Vec<_> = std::mem::take(&mut *groups.replicas.write())
            .into_iter()
            .collect();
        for (group, replica) in replicas {
            if let Ok(running) = self.running() {
                let _ = running.service.remove_group(group);
            }
            let _ = replica.raft.shutdown().await;
        }
    }
}

/// Forms a fresh shard group with `members`: at once, campaigning, on the
/// preferred first leader; after `fallback` on another first member, only if it
/// still heard from none.
async fn form_group(
    raft: NeedleRaft,
    members: BTreeMap<NodeId, ClusterNode>,
    preferred: bool,
    fallback: Duration,
) {
    if !preferred {
        tokio::time::sleep(fallback).await;
        if raft.is_initialized().await.unwrap_or(true) {
            return;
        }
    }
    match raft.initialize(members).await {
        Ok(()) => tracing::debug!(preferred, "formed a shard group"),
        // Another first member's log reached this one first: nothing to do.
        Err(e) => tracing::debug!(error = %e, "shard group not formed by this member"),
    }
}

//! Membership changes without downtime: a new member first joins as a learner and
//! receives the log (or a snapshot) while the cluster keeps serving; only once it
//! has caught up does it become a voter. Removal is one joint-consensus change.
//! Either request may reach any member: it is carried to the leader.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use needle_consensus::openraft::async_runtime::WatchReceiver;
use needle_consensus::openraft::error::{ClientWriteError, RaftError};
use needle_consensus::openraft::ChangeMembers;
use needle_consensus::{ClusterNode, NodeId, TypeConfig};

use super::app_rpc::{AppRequest, AppResponse};
use super::node::RaftNode;
use crate::replication::error::{ReplicationError, Result};
use crate::replication::retry::{until_deadline, Spacing};
use crate::Error;

/// A learner may need a whole snapshot before it is caught up.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(600);

/// How long a membership change waits for a leader that cannot take it yet. A
/// leader that has not heard from a quorum within its lease (150 ms by default; a
/// loaded machine) refuses every change with "forward to nobody" until the next
/// acknowledgement: that is worth waiting out, not an answer.
const LEASE_WAIT: Duration = Duration::from_secs(10);

/// Between two tries of a refused change.
const LEASE_RETRY: Duration = Duration::from_millis(50);

type ChangeResult<T> = std::result::Result<T, RaftError<TypeConfig, ClientWriteError<TypeConfig>>>;

impl RaftNode {
    /// Runs `change` again while this node still leads but refuses it for want of a
    /// quorum's recent acknowledgement.
    async fn once_the_lease_holds<T, Fut>(&self, mut change: impl FnMut() -> Fut) -> ChangeResult<T>
    where
        Fut: Future<Output = ChangeResult<T>>,
    {
        let deadline = Instant::now() + LEASE_WAIT;
        let tried = until_deadline(deadline, Spacing::every(LEASE_RETRY), || {
            let tried = change();
            async move {
                match tried.await {
                    Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))
                        if f.leader_id.is_none_or(|l| l == self.node_id()) && self.is_leader() =>
                    {
                        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))
                    }
                    outcome => Ok(outcome),
                }
            }
        })
        .await;
        tried.unwrap_or_else(Err)
    }

    /// Adds the member listening on `addr` (started with `--raft` and this cluster
    /// among its `--peers`) as a voter; returns its id.
    pub async fn add_member(&self, addr: SocketAddr) -> Result<NodeId> {
        if !self.is_leader() {
            return self
                .at_leader(AppRequest::AddMember(addr.to_string()))
                .await;
        }
        let hello = match self
            .ask(addr, &AppRequest::Hello, Duration::from_secs(5))
            .await?
        {
            AppResponse::Hello(hello) => hello,
            _ => {
                return Err(ReplicationError::UnexpectedAnswer {
                    peer: addr.to_string(),
                })
            }
        };
        let id = hello.node_id;
        let raft = self.raft()?;
        // A node with Raft state of its own that is not a member (one removed earlier,
        // or from another cluster) would hold a vote and a log this cluster never
        // gave it: it rejects the leader's higher-term-less appends and campaigns on
        // its own, and the add never finishes. Such a node must start afresh.
        let known = raft
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .get_node(&id)
            .is_some();
        if !hello.fresh && !known {
            return Err(Error::InvalidRequest(format!(
                "node {id} at {addr} has Raft state from an earlier membership: stop it, \
                 delete its data directory's raft/ folder and start it again before adding it"
            ))
            .into());
        }
        let node = ClusterNode {
            raft_addr: addr.to_string(),
            http_addr: hello.http_addr,
        };
        tracing::info!(id, %addr, "adding a member: learner first");
        self.once_the_lease_holds(|| raft.add_learner(id, node.clone(), true))
            .await
            .map_err(|e| ReplicationError::raft(format!("adding node {id} as a learner"), e))?;
        self.once_the_lease_holds(|| {
            raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
        })
        .await
        .map_err(|e| ReplicationError::raft(format!("making node {id} a voter"), e))?;
        tracing::info!(id, "member added as a voter");
        Ok(id)
    }

    /// Removes member `id` from the cluster (a leader removing itself steps down once
    /// the change commits).
    pub async fn remove_member(&self, id: NodeId) -> Result<()> {
        if !self.is_leader() {
            return self
                .at_leader(AppRequest::RemoveMember(id))
                .await
                .map(|_| ());
        }
        let raft = self.raft()?;
        let metrics = raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership();
        if membership.get_node(&id).is_none() {
            return Err(Error::InvalidRequest(format!("node {id} is not a member")).into());
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let change = if voters.contains(&id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.once_the_lease_holds(|| raft.change_membership(change.clone(), false))
            .await
            .map_err(|e| ReplicationError::raft(format!("removing node {id}"), e))?;
        tracing::info!(id, "member removed");
        Ok(())
    }

    /// Sends a membership request to the leader.
    async fn at_leader(&self, request: AppRequest) -> Result<NodeId> {
        let leader = self
            .current_leader()
            .and_then(|id| self.member_addr(id))
            .ok_or_else(|| {
                ReplicationError::NoLeader("no leader to change the membership".into())
            })?;
        match self.ask(leader, &request, CHANGE_TIMEOUT).await? {
            AppResponse::Member(Ok(id)) => Ok(id),
            AppResponse::Member(Err(message)) => Err(ReplicationError::Refused {
                by: "the leader".into(),
                message,
            }),
            _ => Err(ReplicationError::UnexpectedAnswer {
                peer: "the leader".into(),
            }),
        }
    }
}

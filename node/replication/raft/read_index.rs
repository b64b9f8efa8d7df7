//! Linearizable reads on a Raft node: a read asks the leader for a read index
//! (ReadIndex: the leader confirms its leadership with a quorum first, so a
//! deposed leader cannot give one) and waits until this node has applied up to it
//! and the writes up to it are visible.

use std::time::Instant;

use needle_consensus::openraft::async_runtime::WatchReceiver;
use needle_consensus::openraft::ReadPolicy;
use needle_consensus::NodeId;

use super::app_rpc::{AppRequest, AppResponse};
use super::node::RaftNode;
use super::planted_bugs;
use super::write::{ATTEMPT, RETRY_PAUSE};
use crate::replication::consistency::ReadConsistency;
use crate::replication::error::{ReplicationError, Result};
use crate::replication::retry::{until_deadline, Spacing};

impl RaftNode {
    /// The leader's read index: the log index a linearizable read must see. Fails
    /// unless a quorum confirms this node is still the leader.
    pub(crate) async fn leader_read_index(&self) -> Result<u64> {
        let raft = self.raft()?;
        let (read, _) = raft
            .get_read_log_id(ReadPolicy::ReadIndex)
            .await
            .map_err(|e| ReplicationError::NoLeader(format!("not a confirmed leader: {e}")))?;
        Ok(read.index())
    }

    /// Waits until a read of `collection` here would be `consistency`-consistent.
    pub async fn read_barrier(&self, consistency: ReadConsistency, collection: &str) -> Result<()> {
        if consistency == ReadConsistency::Eventual
            || planted_bugs::serves_linearizable_reads_locally()
        {
            return Ok(());
        }
        let deadline = Instant::now() + self.write_timeout();
        let index = until_deadline(deadline, Spacing::every(RETRY_PAUSE), || {
            self.try_read_index(deadline)
        })
        .await
        .map_err(|failure| {
            failure.unwrap_or_else(|| {
                ReplicationError::NoLeader("no leader to confirm a linearizable read".into())
            })
        })?;
        self.await_applied(index, deadline).await?;
        // Applied means durable here; the read must also see it in memory.
        let db = self.database();
        let visible = db.await_visible(collection);
        tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), visible)
            .await
            .map_err(|_| {
                ReplicationError::NoLeader(format!(
                    "writes to {collection} up to log index {index} did not become visible in time"
                ))
            })
    }

    /// One try at the leader's read index: here on the leader, else asked of the
    /// leader this node knows (`Err(None)`: none is known).
    async fn try_read_index(
        &self,
        deadline: Instant,
    ) -> std::result::Result<u64, Option<ReplicationError>> {
        if self.is_leader() {
            return self.leader_read_index().await.map_err(Some);
        }
        let Some(addr) = self.current_leader().and_then(|id| self.member_addr(id)) else {
            return Err(None);
        };
        let remaining = deadline
            .saturating_duration_since(Instant::now())
            .min(ATTEMPT);
        let leader = self.current_leader().unwrap_or_default();
        let asked = tokio::select! {
            reply = self.ask(addr, &AppRequest::ReadIndex, remaining) => reply,
            () = self.leader_moves_from(leader) => Err(ReplicationError::NoLeader("the leader changed".into())),
        };
        match asked {
            Ok(AppResponse::ReadIndex(Ok(index))) => Ok(index),
            Ok(AppResponse::ReadIndex(Err(message))) => {
                Err(Some(ReplicationError::NoLeader(message)))
            }
            Ok(_) => Err(Some(ReplicationError::UnexpectedAnswer {
                peer: "the leader".into(),
            })),
            Err(e) => Err(Some(e)),
        }
    }

    /// Resolves once this node no longer sees `leader` as the leader (a dead leader is
    /// noticed after an election timeout, long before a request to it times out).
    pub(super) async fn leader_moves_from(&self, leader: NodeId) {
        let Ok(raft) = self.raft() else { return };
        let mut metrics = raft.metrics();
        let _ = metrics
            .wait_until(|m| m.current_leader != Some(leader))
            .await;
    }

    /// Waits until this node's state machine has applied log index `index`.
    pub(crate) async fn await_applied(&self, index: u64, deadline: Instant) -> Result<()> {
        let mut applied = self.raft()?.metrics();
        let wait =
            applied.wait_until(|m| m.last_applied.as_ref().is_some_and(|l| l.index >= index));
        match tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), wait).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ReplicationError::NoLeader(format!(
                "this node did not apply up to log index {index} in time"
            ))),
        }
    }
}

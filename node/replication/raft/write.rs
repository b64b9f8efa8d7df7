//! Writes and linearizable reads on a Raft node.
//!
//! A write is ordered by the leader: on the leader it is proposed directly; on a
//! follower it is forwarded over the transport to the leader it knows. It is
//! retried until the write timeout: at once at a new leader when the leader
//! changed (after an election's winner is known), after a pause otherwise. A retry
//! whose first try may have been proposed is safe: it carries the same request id,
//! and the state machine answers it from the first one's record. The write
//! concern is then checked where the client waits.
//! Linearizable reads: `read_index.rs`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use needle_consensus::openraft::async_runtime::WatchReceiver;
use needle_consensus::openraft::error::{ClientWriteError, RaftError};
use needle_consensus::{Command, CommandOutcome, NodeId, RequestId};

use super::app_rpc::{AppRequest, AppResponse, NewRows, WriteReply};
use super::command;
use super::node::RaftNode;
use super::planted_bugs;
use crate::op::{Applied, Op, Precondition};
use crate::replication::error::{ReplicationError, Result};
use crate::replication::retry::{until_deadline, Spacing};
use crate::replication::WriteConcern;
use crate::Error;

/// How long one try at the leader may take (plus 1 ms per 10 kB of write). A healthy
/// leader answers a small write in milliseconds; a connection to a leader that died
/// and came back on the same address answers nothing (QUIC only notices at its idle
/// timeout), and the retry on a fresh connection is safe (same request id).
pub(super) const ATTEMPT: Duration = Duration::from_millis(400);

/// How long one forwarded write may take (plus 1 ms per 10 kB). Longer than
/// [`ATTEMPT`]: a forward also ends as soon as this member sees the leader change,
/// and a restarted leader's stateless reset closes the connection at once, so
/// the bound only has to catch what neither shows. A busy leader (a queue of
/// large batches) can take seconds to commit a write; a try abandoned then is
/// proposed again in full, and under load those duplicates were what kept the
/// leader from catching up.
const FORWARD_ATTEMPT: Duration = Duration::from_secs(2);

/// Between tries that found no leader able to take the write.
pub(super) const RETRY_PAUSE: Duration = Duration::from_millis(50);

impl RaftNode {
    pub(super) fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.inner.config.write_timeout_ms.max(1))
    }

    /// Orders `op` through the cluster's leader and returns once it is committed and
    /// applied on the leader, and `concern` is met.
    pub async fn write(
        &self,
        op: Op,
        precondition: Precondition,
        concern: WriteConcern,
        request_id: Option<RequestId>,
    ) -> Result<Applied> {
        // Bad writes are refused before they take a log slot. A collection this
        // member has not seen yet may exist on the leader: the log decides that one.
        match self.database().precheck(&op) {
            Err(Error::CollectionNotFound(_)) | Ok(()) => {}
            Err(e) => return Err(e.into()),
        }
        // The leader orders it, so the leader checks its device's room (a follower
        // forwarding the write has the leader check it: `apply_forwarded`).
        if self.is_leader() {
            match self.database().check_room(&op) {
                Err(Error::CollectionNotFound(_)) | Ok(()) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let request_id = request_id.unwrap_or_else(|| self.next_request_id());
        let command = command::encode(&op, precondition, Some(request_id))?;
        let collection = op.collection().to_string();
        let deadline = Instant::now() + self.write_timeout();
        let concern = if planted_bugs::acknowledges_before_commit() {
            WriteConcern::Primary
        } else {
            concern
        };
        if concern == WriteConcern::Primary {
            let affected = match &op {
                Op::Upsert { records, .. } => records.len(),
                Op::Delete { .. } => 0,
                // The ids that exist are known only once it is applied.
                Op::PatchMetadata { ids, .. } => ids.len(),
                Op::CreateCollection(_) | Op::DropCollection { .. } => 1,
            };
            return self.write_primary(command, affected, deadline).await;
        }
        let new_rows = match &op {
            Op::Upsert {
                collection,
                records,
            } => Some(NewRows {
                collection: collection.clone(),
                rows: records.len(),
            }),
            _ => None,
        };
        let (index, applied) = self.order(command, new_rows, deadline).await?;
        if concern == WriteConcern::All {
            self.await_all_applied(index, applied.seq, &collection, deadline)
                .await?;
        }
        // Read-your-writes on the node that answered: a follower that forwarded the
        // write answers once it has applied it too, and its searches see it. The
        // write is committed either way, so running out of time here is not an error.
        if self.await_applied(index, deadline).await.is_ok() {
            let db = self.database();
            let visible = db.await_visible(&collection);
            let _ =
                tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), visible)
                    .await;
        }
        Ok(applied)
    }

    /// `primary`: acknowledged once the entry is fsynced in the leader's own log,
    /// before a majority has it. Nothing is applied yet, so the answer cannot say what
    /// the write did: `seq` is 0, `affected` counts the records sent, and a write the
    /// database will reject (an insert of an existing id) is acknowledged too. What
    /// can be lost: a write the leader had not replicated to a majority when it died
    /// or was cut off is discarded by the next leader.
    async fn write_primary(
        &self,
        command: Command,
        affected: usize,
        deadline: Instant,
    ) -> Result<Applied> {
        let acknowledged = Applied {
            seq: 0,
            affected,
            deleted: Vec::new(),
        };
        let id = command
            .request_id
            .ok_or_else(|| Error::InvalidRequest("a primary write needs a request id".into()))?;
        let tried = until_deadline(deadline, Spacing::every(RETRY_PAUSE), || {
            self.try_write_primary(&command, id, &acknowledged, deadline)
        })
        .await;
        tried.unwrap_or_else(|last_failure| {
            Err(ReplicationError::NoLeader(format!(
                "the write was not acknowledged within {} ms and may or may not be applied ({last_failure})",
                self.inner.config.write_timeout_ms
            )))
        })
    }

    /// One try of [`RaftNode::write_primary`]: its answer, or why there was none.
    async fn try_write_primary(
        &self,
        command: &Command,
        id: RequestId,
        acknowledged: &Applied,
        deadline: Instant,
    ) -> std::result::Result<Result<Applied>, String> {
        if self.is_leader() {
            let log = match self.log_store() {
                Ok(log) => log,
                Err(e) => return Ok(Err(e)),
            };
            let flushed = log.notify_when_flushed(id);
            let raft = match self.raft() {
                Ok(raft) => raft.clone(),
                Err(e) => return Ok(Err(e)),
            };
            let proposal = {
                let command = command.clone();
                // Goes on to commit after the acknowledgement.
                tokio::spawn(async move { raft.client_write(command).await })
            };
            let outcome = tokio::select! {
                Ok(_) = flushed => return Ok(Ok(acknowledged.clone())),
                joined = proposal => joined,
            };
            log.forget(id);
            match outcome {
                Ok(Ok(response)) => Ok(command::read_outcome(&response.data)),
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                    Err("leadership moved".into())
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        } else if let Some(addr) = self.current_leader().and_then(|l| self.member_addr(l)) {
            let request = AppRequest::ClientWrite {
                command: command.clone(),
                concern: WriteConcern::Primary,
            };
            let remaining = deadline
                .saturating_duration_since(Instant::now())
                .min(ATTEMPT);
            match self.ask(addr, &request, remaining).await {
                Ok(AppResponse::ClientWrite(outcome)) => match command::read_outcome(&outcome) {
                    Err(e) if e.is_no_leader() => Err(e.to_string()),
                    result => Ok(result),
                },
                Ok(_) => Err("the leader answered a different request".into()),
                Err(e) => Err(e.to_string()),
            }
        } else {
            Err("no leader was known".into())
        }
    }

    /// Proposes `command` here or at the leader, until it is applied or `deadline`.
    /// Every command carries a request id, so a try whose fate is unknown (the
    /// leader died or changed while it was in flight) is simply tried again: if the
    /// first try did commit, the state machine answers the retry from its record.
    pub(super) async fn order(
        &self,
        command: Command,
        new_rows: Option<NewRows>,
        deadline: Instant,
    ) -> Result<(u64, Applied)> {
        // Every member stops at a committed entry it cannot read: a shard map is
        // proposed only once it decodes and keeps its rules.
        if let Some(record) = command::decode_sharded_collection(&command) {
            record?.validate()?;
        }
        let tried = until_deadline(deadline, Spacing::every(RETRY_PAUSE), || {
            self.try_order(&command, new_rows.as_ref(), deadline)
        })
        .await;
        match tried {
            Ok((index, outcome)) => Ok((index, command::read_outcome(&outcome)?)),
            Err(last_failure) => Err(ReplicationError::NoLeader(format!(
                "the write was not acknowledged within {} ms and may or may not be applied; \
                 retry it with the same request id to apply it at most once ({last_failure})",
                self.inner.config.write_timeout_ms
            ))),
        }
    }

    /// One try of [`RaftNode::order`]: an outcome (rejection included, it is the
    /// state machine's final answer), or why there was none. While an election is
    /// on, the try waits for its winner and goes to it at once, rather than at the
    /// next retry pause: after a leader's death, the election is all a client
    /// should wait for.
    async fn try_order(
        &self,
        command: &Command,
        new_rows: Option<&NewRows>,
        deadline: Instant,
    ) -> std::result::Result<(u64, CommandOutcome), String> {
        loop {
            // What this member's metrics name now: a retry skips the pause only
            // when they name someone else afterwards. openraft's answer may name a
            // leader the metrics do not (a leader handing over names its successor
            // while still naming itself), and that alone is no reason to hurry.
            let known = self.current_leader();
            match self.propose(command.clone()).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(Some(id))) => match self.forward(id, command, new_rows, deadline).await {
                    Ok(Some(answer)) => return Ok(answer),
                    // The leader changed while the write was on its way: nothing was
                    // proposed, or its fate is unknown and the same request id makes
                    // the retry safe.
                    Ok(None) | Err(_)
                        if self.current_leader() != known && Instant::now() < deadline => {}
                    Ok(None) => return Err(format!("node {id} was not the leader")),
                    Err(e) => return Err(e.to_string()),
                },
                // No leader known: wait for the election's winner. A leader that
                // refuses for want of a quorum's recent acknowledgement (its lease
                // lapsed under load) also answers "no leader" while its metrics
                // still name it: that one is retried after the pause, not at once.
                Ok(Err(None)) => {
                    if self.current_leader().is_some() {
                        return Err("the leader could not take the write yet".into());
                    }
                    if !self.await_a_leader(deadline).await {
                        return Err("no leader was known".into());
                    }
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Waits until this node knows a leader; `false` if none by `deadline`.
    async fn await_a_leader(&self, deadline: Instant) -> bool {
        let Ok(raft) = self.raft() else { return false };
        let mut metrics = raft.metrics();
        let known = metrics.wait_until(|m| m.current_leader.is_some());
        let left = deadline.saturating_duration_since(Instant::now());
        matches!(tokio::time::timeout(left, known).await, Ok(Ok(_)))
    }

    /// Sends `command` to the leader `id`. `Ok(None)`: it was not the leader (nothing
    /// proposed); `Err`: unknown whether it was proposed.
    async fn forward(
        &self,
        id: NodeId,
        command: &Command,
        new_rows: Option<&NewRows>,
        deadline: Instant,
    ) -> Result<Option<(u64, CommandOutcome)>> {
        let addr = self.member_addr(id).ok_or_else(|| {
            ReplicationError::NoLeader(format!("no address known for the leader, node {id}"))
        })?;
        // Bounded per try: a connection to a leader that died unnoticed answers
        // nothing, and the retry (same request id) is safe. Larger writes get longer.
        let per_try =
            FORWARD_ATTEMPT + Duration::from_millis(command.payload.len() as u64 / 10_000);
        let remaining = deadline
            .saturating_duration_since(Instant::now())
            .min(per_try);
        let request = AppRequest::Write {
            command: command.clone(),
            new_rows: new_rows.cloned(),
        };
        let forwarded = tokio::select! {
            reply = self.ask(addr, &request, remaining) => reply,
            () = self.leader_moves_from(id) => Err(ReplicationError::NoLeader(format!(
                "node {id} stopped being the leader while the write was forwarded to it"
            ))),
        };
        match forwarded? {
            AppResponse::Write(WriteReply::Applied { index, outcome }) => {
                Ok(Some((index, outcome)))
            }
            AppResponse::Write(WriteReply::NotLeader { .. }) => Ok(None),
            AppResponse::Write(WriteReply::Failed(message)) => Err(ReplicationError::Refused {
                by: format!("the leader (node {id})"),
                message,
            }),
            _ => Err(ReplicationError::UnexpectedAnswer {
                peer: format!("node {id}"),
            }),
        }
    }

    /// Proposes on this node. `Ok(Err(leader))` when this node is not the leader:
    /// nothing was proposed.
    async fn propose(
        &self,
        command: Command,
    ) -> Result<std::result::Result<(u64, CommandOutcome), Option<NodeId>>> {
        match self.raft()?.client_write(command).await {
            Ok(response) => Ok(Ok((response.log_id.index, response.data))),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Ok(Err(f.leader_id)),
            Err(e) => Err(ReplicationError::NoLeader(format!(
                "the write may or may not be applied: {e}"
            ))),
        }
    }

    /// A request id for a write that came without one (HTTP): unique to this
    /// process, so this node's own retries of it apply it at most once.
    pub(super) fn next_request_id(&self) -> RequestId {
        RequestId {
            client: self.inner.client_id,
            serial: self
                .inner
                .next_serial
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// The leader's side of a forwarded write: it orders the write, so it checks
    /// its own device's room first (a refusal is the write's answer). The
    /// command goes to the log as the follower encoded it.
    pub(crate) async fn apply_forwarded(
        &self,
        command: Command,
        new_rows: Option<NewRows>,
    ) -> WriteReply {
        let raft = match self.raft() {
            Ok(raft) => raft,
            Err(e) => return WriteReply::Failed(e.to_string()),
        };
        // A shard map adds no rows, but is never proposed unless it decodes and
        // keeps its rules: every member stops at a committed entry it cannot read.
        if let Some(record) = command::decode_sharded_collection(&command) {
            let sound = record
                .map_err(ReplicationError::from)
                .and_then(|r| r.validate().map_err(ReplicationError::from));
            if let Err(e) = sound {
                return WriteReply::Applied {
                    index: 0,
                    outcome: command::replicated_outcome(&Err(e)),
                };
            }
        } else if self.is_leader() {
            // Every member stops at a committed entry it cannot decode, so nothing
            // undecodable (a newer member's op, a damaged message) is proposed.
            let decoded = match command::decode(&command) {
                Ok((op, _)) => op,
                Err(e) => {
                    return WriteReply::Applied {
                        index: 0,
                        outcome: command::outcome(&Err(e)),
                    }
                }
            };
            // A write that says what it adds is checked from that.
            let room = match new_rows {
                Some(new) => self.database().check_room_for(&new.collection, new.rows),
                None => self.database().check_room(&decoded),
            };
            if let Err(e @ Error::Kernel(_)) = room {
                return WriteReply::Applied {
                    index: 0,
                    outcome: command::outcome(&Err(e)),
                };
            }
        }
        match raft.client_write(command).await {
            Ok(response) => WriteReply::Applied {
                index: response.log_id.index,
                outcome: response.data,
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                WriteReply::NotLeader {
                    leader: f.leader_id,
                }
            }
            Err(e) => WriteReply::Failed(e.to_string()),
        }
    }

    /// The cluster address of member `id`, from the membership this node knows.
    pub(crate) fn member_addr(&self, id: NodeId) -> Option<SocketAddr> {
        let raft = self.raft().ok()?;
        let metrics = raft.metrics().borrow_watched().clone();
        let node = metrics
            .membership_config
            .membership()
            .get_node(&id)?
            .clone();
        node.raft_addr.parse().ok()
    }

    /// `all`: every voter has applied log index `index`, and its searches of
    /// `collection` see it.
    async fn await_all_applied(
        &self,
        index: u64,
        seq: u64,
        collection: &str,
        deadline: Instant,
    ) -> Result<()> {
        let voters: Vec<NodeId> = {
            let metrics = self.raft()?.metrics().borrow_watched().clone();
            metrics.membership_config.membership().voter_ids().collect()
        };
        for voter in voters {
            let shown = || async move {
                let applied = self.voter_applied(voter, index, collection, deadline).await;
                if applied >= index {
                    Ok(())
                } else {
                    Err(())
                }
            };
            // Asked twice as often as other retries, but given up on as they are.
            let spacing = Spacing {
                pause: RETRY_PAUSE / 2,
                margin: RETRY_PAUSE,
            };
            until_deadline(deadline, spacing, shown)
                .await
                .map_err(|()| ReplicationError::WriteConcernTimeout {
                    seq,
                    concern: WriteConcern::All,
                    waited_ms: self.inner.config.write_timeout_ms,
                })?;
        }
        Ok(())
    }

    /// How far `voter` has applied (and shows `collection`), as far as it tells
    /// within a try (0 when it does not answer).
    async fn voter_applied(
        &self,
        voter: NodeId,
        index: u64,
        collection: &str,
        deadline: Instant,
    ) -> u64 {
        if voter == self.node_id() {
            // The leader answers its client only once the write is visible.
            return self.applied_index();
        }
        let Some(addr) = self.member_addr(voter) else {
            return 0;
        };
        // The member answers as soon as it has applied it.
        let remaining = deadline.saturating_duration_since(Instant::now());
        let request = AppRequest::AppliedVisible {
            index,
            collection: collection.to_string(),
        };
        match self.ask(addr, &request, remaining.min(ATTEMPT * 2)).await {
            Ok(AppResponse::Applied(i)) => i,
            _ => 0,
        }
    }
}

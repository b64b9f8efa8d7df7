//! The wire form of Raft's RPCs on the transport: one request frame, one response
//! frame, postcard-encoded. The first byte tells Raft traffic from the node's own
//! requests, which share the same QUIC endpoint, and says which group a request is
//! for: [`RAFT_TAG`] alone is the cluster-wide group (the form members spoke
//! before there were other groups), [`GROUP_TAG`] is followed by the group's id as
//! 8 big-endian bytes. Answers need no group: each goes back on its request's
//! stream.

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ConsensusError;
use crate::heartbeat_batch::HeartbeatBatch;
use crate::types::{GroupId, SnapshotMeta, TypeConfig, Vote};

/// First byte of a Raft request body for the cluster-wide group.
pub const RAFT_TAG: u8 = 0xA0;
/// First byte of a Raft request body for any other group; the group id follows.
pub const GROUP_TAG: u8 = 0xA1;

/// A Raft RPC as sent to a peer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum RaftRequest {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<TypeConfig>),
    PreVote(VoteRequest<TypeConfig>),
    TransferLeader(TransferLeaderRequest<TypeConfig>),
    /// A whole snapshot, waiting in the sender's transport region `region`: the
    /// receiver reads it from there (bulk transfer, checksummed) and installs it.
    Snapshot {
        vote: Vote,
        meta: SnapshotMeta,
        region: u64,
        len: u64,
        checksum: u64,
    },
    /// Heartbeats (entry-less AppendEntries) of several shard groups to this
    /// member, in one request ([`crate::heartbeat_batch`]); sent in the cluster
    /// group's form, whatever groups it carries.
    Heartbeats(HeartbeatBatch),
}

/// The answers: to Append, the votes, TransferLeader and Snapshot as those
/// requests' variants, the answer to an AppendEntries sent on a replication
/// stream, and then the answers to a heartbeat batch. An `Err` is a failure of the
/// remote Raft node (it is shutting down), as text.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum RaftResponse {
    Append(AppendEntriesResponse<TypeConfig>),
    Vote(VoteResponse<TypeConfig>),
    TransferLeader(TransferLeaderResponse<TypeConfig>),
    Snapshot(SnapshotResponse<TypeConfig>),
    /// How far the follower's log matches after one AppendEntries of a stream, or
    /// why it refused it (which ends the stream).
    StreamAppend(StreamAppendResult<TypeConfig>),
    /// Each heartbeat's answer with its group, in the order of the request's, or
    /// why its group could not take it (it does not run here, it is shutting
    /// down, or it did not answer in time).
    Heartbeats(Vec<(GroupId, Result<AppendEntriesResponse<TypeConfig>, String>)>),
}

impl RaftRequest {
    /// This request for the cluster-wide group.
    pub fn encode(&self) -> Result<Vec<u8>, ConsensusError> {
        self.encode_for(GroupId::CLUSTER)
    }

    /// This request for `group`.
    pub fn encode_for(&self, group: GroupId) -> Result<Vec<u8>, ConsensusError> {
        let mut out = if group.is_cluster() {
            vec![RAFT_TAG]
        } else {
            let mut out = vec![GROUP_TAG];
            out.extend_from_slice(&group.0.to_be_bytes());
            out
        };
        postcard::to_io(self, &mut out)
            .map_err(|e| ConsensusError::Malformed(format!("encoding a raft request: {e}")))?;
        Ok(out)
    }

    /// The group a request is for and the request; `None` when the body is not
    /// Raft traffic at all.
    pub fn decode(body: &[u8]) -> Option<Result<(GroupId, RaftRequest), ConsensusError>> {
        match body.split_first() {
            Some((&RAFT_TAG, rest)) => {
                Some(decode(rest, "raft request").map(|r| (GroupId::CLUSTER, r)))
            }
            Some((&GROUP_TAG, rest)) => Some(match rest.split_first_chunk::<8>() {
                // One form per group: the cluster group's is the untagged one.
                Some((id, _)) if u64::from_be_bytes(*id) == 0 => Err(ConsensusError::Malformed(
                    "the cluster group addressed by id".into(),
                )),
                Some((id, rest)) => {
                    decode(rest, "raft request").map(|r| (GroupId(u64::from_be_bytes(*id)), r))
                }
                None => Err(ConsensusError::Malformed(
                    "a group-addressed raft request without its group id".into(),
                )),
            }),
            _ => None,
        }
    }
}

impl RaftResponse {
    pub fn encode(result: &Result<RaftResponse, String>) -> Result<Vec<u8>, ConsensusError> {
        postcard::to_stdvec(result)
            .map_err(|e| ConsensusError::Malformed(format!("encoding a raft response: {e}")))
    }

    pub fn decode(body: &[u8]) -> Result<Result<RaftResponse, String>, ConsensusError> {
        decode(body, "raft response")
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ConsensusError> {
    postcard::from_bytes(bytes).map_err(|e| ConsensusError::Malformed(format!("{what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::impls::leader_id_adv::LeaderId;
    use openraft::vote::RaftLeaderId;
    use openraft::LogId;

    #[test]
    fn a_vote_request_round_trips() {
        let vote = Vote::new(3, 2);
        let last = LogId::new(LeaderId::new(2, 1).to_committed(), 17);
        let request = RaftRequest::Vote(VoteRequest::new(vote, Some(last)));
        let bytes = request.encode().unwrap_or_default();
        let Some(Ok((GroupId::CLUSTER, RaftRequest::Vote(decoded)))) = RaftRequest::decode(&bytes)
        else {
            panic!("decoding failed");
        };
        assert_eq!(decoded.vote, vote);
        assert_eq!(decoded.last_log_id.map(|l| l.index), Some(17));
    }

    #[test]
    fn a_request_names_its_group_and_the_cluster_group_keeps_the_old_form() {
        let request = RaftRequest::PreVote(VoteRequest::new(Vote::new(4, 1), None));
        let old_form = request.encode().unwrap_or_default();
        assert_eq!(old_form.first(), Some(&RAFT_TAG));
        assert_eq!(
            request.encode_for(GroupId::CLUSTER).unwrap_or_default(),
            old_form
        );
        let bytes = request.encode_for(GroupId(7)).unwrap_or_default();
        assert_eq!(bytes.first(), Some(&GROUP_TAG));
        assert_eq!(&bytes[9..], &old_form[1..]);
        let Some(Ok((group, RaftRequest::PreVote(decoded)))) = RaftRequest::decode(&bytes) else {
            panic!("decoding failed");
        };
        assert_eq!((group, decoded.vote), (GroupId(7), Vote::new(4, 1)));
        // A group tag cut short is Raft traffic, and malformed; so is the cluster
        // group addressed by id, which has one form only.
        assert!(matches!(
            RaftRequest::decode(&[GROUP_TAG, 0, 0, 7]),
            Some(Err(ConsensusError::Malformed(_)))
        ));
        let mut by_id = vec![GROUP_TAG, 0, 0, 0, 0, 0, 0, 0, 0];
        by_id.extend_from_slice(&old_form[1..]);
        assert!(matches!(
            RaftRequest::decode(&by_id),
            Some(Err(ConsensusError::Malformed(_)))
        ));
    }

    #[test]
    fn foreign_and_garbage_bodies_are_told_apart() {
        assert!(RaftRequest::decode(b"\x01hello").is_none());
        assert!(matches!(
            RaftRequest::decode(&[RAFT_TAG, 0xff, 0xff]),
            Some(Err(ConsensusError::Malformed(_)))
        ));
        assert!(RaftResponse::decode(&[0xff, 0xff, 0xff]).is_err());
    }
}

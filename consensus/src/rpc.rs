//! The wire form of Raft's RPCs on the transport: one request frame, one response
//! frame, postcard-encoded. The first byte tells Raft traffic from the node's own
//! requests, which share the same QUIC endpoint.

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ConsensusError;
use crate::types::{SnapshotMeta, TypeConfig, Vote};

/// First byte of every Raft request body.
pub const RAFT_TAG: u8 = 0xA0;

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
}

/// The answers, in the same order as [`RaftRequest`]'s variants, then the answer
/// to an AppendEntries sent on a replication stream. An `Err` is a failure of the
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
}

impl RaftRequest {
    pub fn encode(&self) -> Result<Vec<u8>, ConsensusError> {
        let mut out = vec![RAFT_TAG];
        postcard::to_io(self, &mut out)
            .map_err(|e| ConsensusError::Malformed(format!("encoding a raft request: {e}")))?;
        Ok(out)
    }

    /// `None` when the body is not Raft traffic at all.
    pub fn decode(body: &[u8]) -> Option<Result<RaftRequest, ConsensusError>> {
        match body.split_first() {
            Some((&RAFT_TAG, rest)) => Some(decode(rest, "raft request")),
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
        let Some(Ok(RaftRequest::Vote(decoded))) = RaftRequest::decode(&bytes) else {
            panic!("decoding failed");
        };
        assert_eq!(decoded.vote, vote);
        assert_eq!(decoded.last_log_id.map(|l| l.index), Some(17));
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

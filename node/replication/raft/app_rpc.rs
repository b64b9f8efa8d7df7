//! The node's own requests between Raft members, on the same transport as Raft's
//! RPCs: who are you (bootstrap), apply this write (a follower forwarding to the
//! leader), what must I apply before a linearizable read (ReadIndex for a
//! follower), and how far have you applied (`all` write concern).

use needle_consensus::{Command, CommandOutcome, NodeId};
use serde::{Deserialize, Serialize};

use super::cluster_status::ClusterStatus;
use super::command::RejectedWire;
use crate::replication::consistency::ReadConsistency;
use crate::replication::error::{ReplicationError, Result};
use crate::replication::WriteConcern;

/// First byte of every request body of this protocol (Raft's own are 0xA0 and
/// 0xA1).
pub(crate) const APP_TAG: u8 = 0xB0;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum AppRequest {
    Hello,
    /// A write a follower validated and encoded, for the leader to propose as is.
    Write {
        command: Command,
        /// The rows it adds, when it adds any: what the leader checks its
        /// device's room against without decoding the command again.
        new_rows: Option<NewRows>,
    },
    ReadIndex,
    /// Answers once the member has applied this log index (or after a second).
    AppliedAtLeast(u64),
    /// Membership changes, sent to the leader by whichever member was asked.
    AddMember(String),
    RemoveMember(NodeId),
    /// From a [`super::RaftClient`]: a write this member orders (or forwards).
    ClientWrite {
        command: Command,
        concern: WriteConcern,
    },
    /// From a [`super::RaftClient`]: a search on this member.
    ClientSearch(SearchRequest),
    Status,
    /// Answers once the member has applied this log index and `collection`'s writes
    /// are visible (or after a second), with the applied index: the `all` concern.
    /// (Last, so the variants before keep their wire numbers.)
    AppliedVisible {
        index: u64,
        collection: String,
    },
    /// What this member's version can apply ([`FEATURES`]). A member from before
    /// it cannot decode the request, and answers with an error: it has none.
    Features,
}

/// Bits of [`AppRequest::Features`]' answer: what a member's version can apply.
/// A leader proposes an entry of a newer kind only once every voter has its
/// bit, since a member stops at a committed entry it cannot decode.
pub(crate) const SHARDED_COLLECTIONS: u32 = 1;
/// This version's features.
pub(crate) const FEATURES: u32 = SHARDED_COLLECTIONS;

/// Rows an upsert adds to a collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NewRows {
    pub collection: String,
    pub rows: usize,
}

/// A search as a client sends it; the filter is JSON text.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SearchRequest {
    pub collection: String,
    pub query: Vec<f32>,
    pub k: usize,
    pub filter: Option<String>,
    pub consistency: ReadConsistency,
}

/// One search result; metadata is JSON text.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct HitWire {
    pub id: String,
    pub distance: f32,
    pub metadata: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum AppResponse {
    Hello(Hello),
    Write(WriteReply),
    /// The log index a linearizable read must wait for, or why there is none.
    ReadIndex(std::result::Result<u64, String>),
    Applied(u64),
    Member(std::result::Result<NodeId, String>),
    ClientWrite(CommandOutcome),
    ClientSearch(std::result::Result<Vec<HitWire>, RejectedWire>),
    Status(std::result::Result<ClusterStatus, String>),
    /// (Last, so the variants before keep their wire numbers.)
    Features(u32),
}

/// Who a member is, for bootstrapping from a list of addresses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub node_id: NodeId,
    pub http_addr: String,
    /// Whether it has never been part of a cluster (no vote, no log).
    pub fresh: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum WriteReply {
    /// Committed and applied at `index`; the outcome is the state machine's.
    Applied { index: u64, outcome: CommandOutcome },
    /// Not proposed: the receiver is not the leader. Safe to retry elsewhere.
    NotLeader { leader: Option<NodeId> },
    /// Proposed or not, unknown (the leader failed meanwhile).
    Failed(String),
}

impl AppRequest {
    /// What a client certificate may ask: its own writes and searches, and where the
    /// leader is. Everything else (forwarded writes, read indexes, membership) is
    /// between members.
    pub fn is_for_clients(&self) -> bool {
        matches!(
            self,
            AppRequest::ClientWrite { .. } | AppRequest::ClientSearch(_) | AppRequest::Status
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            AppRequest::Hello => "hello",
            AppRequest::Write { .. } => "a forwarded write",
            AppRequest::ReadIndex => "a read index",
            AppRequest::AppliedAtLeast(_) => "an applied-index wait",
            AppRequest::AddMember(_) => "adding a member",
            AppRequest::RemoveMember(_) => "removing a member",
            AppRequest::ClientWrite { .. } => "a client write",
            AppRequest::ClientSearch(_) => "a client search",
            AppRequest::Status => "status",
            AppRequest::AppliedVisible { .. } => "an applied-and-visible wait",
            AppRequest::Features => "features",
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = vec![APP_TAG];
        postcard::to_io(self, &mut out).map_err(|e| codec("encoding a cluster request", e))?;
        Ok(out)
    }

    pub fn decode(body: &[u8]) -> Result<AppRequest> {
        match body.split_first() {
            Some((&APP_TAG, rest)) => {
                postcard::from_bytes(rest).map_err(|e| codec("malformed cluster request", e))
            }
            _ => Err(ReplicationError::Codec {
                what: "not a cluster request",
                detail: format!("{} bytes", body.len()),
            }),
        }
    }
}

impl AppResponse {
    pub fn encode(&self) -> Result<Vec<u8>> {
        postcard::to_stdvec(self).map_err(|e| codec("encoding a cluster response", e))
    }

    pub fn decode(body: &[u8]) -> Result<AppResponse> {
        postcard::from_bytes(body).map_err(|e| codec("malformed cluster response", e))
    }
}

fn codec(what: &'static str, e: postcard::Error) -> ReplicationError {
    ReplicationError::Codec {
        what,
        detail: e.to_string(),
    }
}

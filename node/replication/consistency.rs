//! The vocabulary of the seam: what a client asks of a write (how many copies before
//! it is acknowledged) and of a read (whether it must see every acknowledged write).
//! Every mode gives both their meaning; a standalone node meets them all at once.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How many copies a write needs before it is acknowledged. Each mode says what a
/// copy is; a standalone node, the only copy, meets every concern once the write is
/// applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteConcern {
    /// Durable where the write is ordered: the primary's store; on Raft, the
    /// leader's log, before a majority has it (a failover may lose it).
    Primary,
    /// Durable on a majority: of the primary and every replica it knows of; on
    /// Raft, committed (a majority of voters have it in their logs).
    #[default]
    Majority,
    /// On every copy: the primary and every connected replica, and never fewer
    /// than a majority; on Raft, applied and visible on every voter.
    All,
}

impl WriteConcern {
    pub fn parse(text: &str) -> Result<WriteConcern> {
        match text {
            "primary" => Ok(WriteConcern::Primary),
            "majority" => Ok(WriteConcern::Majority),
            "all" => Ok(WriteConcern::All),
            other => Err(Error::InvalidRequest(format!(
                "unknown write_concern {other:?}: expected primary, majority or all"
            ))),
        }
    }

    /// Nodes (the primary included) that must hold a write, with `replicas`
    /// replicas connected.
    pub fn copies_needed(self, replicas: usize) -> usize {
        match self {
            WriteConcern::Primary => 1,
            WriteConcern::Majority => replicas.div_ceil(2) + 1,
            WriteConcern::All => replicas + 1,
        }
    }
}

/// How a search must see the cluster's writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadConsistency {
    /// Sees every write acknowledged before the search began, wherever it runs.
    Linearizable,
    /// This node's state as it is: fastest, possibly behind the leader.
    #[default]
    Eventual,
}

impl ReadConsistency {
    pub fn parse(text: &str) -> Result<ReadConsistency> {
        match text {
            "linearizable" => Ok(ReadConsistency::Linearizable),
            "eventual" => Ok(ReadConsistency::Eventual),
            other => Err(Error::InvalidRequest(format!(
                "unknown consistency {other:?}: expected linearizable or eventual"
            ))),
        }
    }
}

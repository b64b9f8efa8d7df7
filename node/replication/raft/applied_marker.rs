//! What a Raft group's state machine has applied, as it keeps it in its database:
//! written in the same batch as the data of every entry it applies, and read back
//! from snapshots, so data and marker never disagree.

use needle_consensus::types::{LogId, StoredMembership};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct AppliedMarker {
    pub log_id: Option<LogId>,
    pub membership: StoredMembership,
}

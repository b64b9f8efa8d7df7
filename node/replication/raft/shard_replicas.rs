//! The shard replicas a member runs, by group: plain state, apart from the code
//! that starts and stops them (`shard_groups.rs`) so that the node can hold it
//! without depending on that code.

use std::collections::BTreeMap;
use std::sync::Arc;

use needle_consensus::openraft::Raft;
use needle_consensus::{GroupId, TypeConfig};

use super::state_machine::StateMachine;
use crate::replication::sharding::HashRange;
use crate::served::ServedDatabase;

/// A shard replica this member runs.
pub(crate) struct ShardReplica {
    pub collection: String,
    pub shard: u32,
    /// The replica's database (swapped for a new one when it installs a
    /// snapshot).
    pub served: ServedDatabase,
    pub range: HashRange,
    pub raft: Raft<TypeConfig, StateMachine>,
}

/// The shard replicas running on this member, by group.
#[derive(Default)]
pub(crate) struct ShardGroups {
    pub(super) replicas: parking_lot::RwLock<BTreeMap<GroupId, Arc<ShardReplica>>>,
    /// One check against the maps at a time: two at once could open one
    /// replica's database twice.
    pub(super) checking: tokio::sync::Mutex<()>,
    /// Set by shutdown: no replica starts after it.
    pub(super) stopping: std::sync::atomic::AtomicBool,
}

impl ShardGroups {
    pub fn get(&self, group: GroupId) -> Option<Arc<ShardReplica>> {
        self.replicas.read().get(&group).cloned()
    }

    pub fn all(&self) -> Vec<(GroupId, Arc<ShardReplica>)> {
        self.replicas
            .read()
            .iter()
            .map(|(g, r)| (*g, r.clone()))
            .collect()
    }

    pub(super) fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Acquire)
    }
}

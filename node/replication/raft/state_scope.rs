//! Which Raft group a state machine applies for. The cluster-wide group applies
//! every write to the member's database, as it always did. A shard group applies
//! into a database of its own (one per shard replica on a member), which holds
//! only its shard: so its snapshots are that database's, as the cluster group's
//! are the member's, a snapshot of one group never touches another's data, and
//! two shards of one collection on one member never share keys.

use needle_consensus::GroupId;
use serde::{Deserialize, Serialize};

use crate::model::CollectionConfig;
use crate::op::Op;
use crate::replication::sharding::{id_hash, HashRange};
use crate::Error;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StateScope {
    /// The cluster-wide group: every collection that is not sharded.
    Cluster,
    /// A shard group: the writes to its shard of a sharded collection.
    Shard {
        group: GroupId,
        /// The shard's collection, created with this config on every replica
        /// (from the shard map).
        collection: CollectionConfig,
        /// The routing hashes of the points it holds.
        range: HashRange,
    },
}

impl StateScope {
    /// Why the group does not apply `op`, if it does not. A shard group applies
    /// only writes to its own collection's points in its own range: creating and
    /// dropping the collection are the cluster group's (the shard map's), and a
    /// point outside the range is another shard's. Every replica refuses the same
    /// entries, so they agree.
    pub fn refuses(&self, op: &Op) -> Option<Error> {
        let StateScope::Shard {
            group,
            collection,
            range,
        } = self
        else {
            return None;
        };
        let ids: Vec<&str> = match op {
            Op::CreateCollection(_) | Op::DropCollection { .. } => {
                return Some(Error::InvalidRequest(format!(
                    "{group} holds one shard; collections are created and dropped by the cluster group"
                )))
            }
            other if other.collection() != collection.name => {
                return Some(Error::InvalidRequest(format!(
                    "{group} holds a shard of collection {:?}, not of {:?}",
                    collection.name,
                    other.collection()
                )))
            }
            Op::Upsert { records, .. } => records.iter().map(|r| r.id.as_str()).collect(),
            Op::Delete { ids, .. } | Op::PatchMetadata { ids, .. } => {
                ids.iter().map(String::as_str).collect()
            }
        };
        let outside = ids.into_iter().find(|id| !range.contains(id_hash(id)))?;
        Some(Error::InvalidRequest(format!(
            "point {outside:?} belongs to another shard than {group}'s (hashes {:#018x}..={:#018x})",
            range.lo, range.hi
        )))
    }

    /// The collection a shard group's database must hold, if this is one.
    pub fn shard_collection(&self) -> Option<&CollectionConfig> {
        match self {
            StateScope::Cluster => None,
            StateScope::Shard { collection, .. } => Some(collection),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Distance, VectorRecord};

    fn shard(range: HashRange) -> StateScope {
        StateScope::Shard {
            group: GroupId(7),
            collection: CollectionConfig::new("docs", 3, Distance::Dot),
            range,
        }
    }

    #[test]
    fn a_shard_group_applies_writes_to_its_own_points_only() {
        let [low, high] = HashRange::even(2)[..] else {
            unreachable!()
        };
        let (ours, theirs) = (0..100)
            .map(|i| format!("p{i}"))
            .partition::<Vec<String>, _>(|id| low.contains(id_hash(id)));
        assert!(!ours.is_empty() && !theirs.is_empty());
        let scope = shard(low);
        let delete = |c: &str, id: &str| Op::Delete {
            collection: c.into(),
            ids: vec![id.into()],
        };
        let upsert = |ids: &[&String]| Op::Upsert {
            collection: "docs".into(),
            records: ids
                .iter()
                .map(|id| VectorRecord {
                    id: id.to_string(),
                    vector: vec![0.0; 3],
                    metadata: None,
                })
                .collect(),
        };
        assert!(scope.refuses(&delete("docs", &ours[0])).is_none());
        assert!(scope.refuses(&upsert(&[&ours[0], &ours[1]])).is_none());
        // One point of another shard refuses the whole entry.
        let refused = scope.refuses(&upsert(&[&ours[0], &theirs[0]])).unwrap();
        assert!(refused.to_string().contains(&theirs[0]), "{refused}");
        assert!(shard(high).refuses(&upsert(&[&theirs[0]])).is_none());
        assert!(scope.refuses(&delete("images", &ours[0])).is_some());
        assert!(scope
            .refuses(&Op::DropCollection {
                name: "docs".into()
            })
            .is_some());
        assert!(scope
            .refuses(&Op::CreateCollection(CollectionConfig::new(
                "docs",
                3,
                Distance::Dot
            )))
            .is_some());
        assert!(StateScope::Cluster
            .refuses(&delete("images", "x"))
            .is_none());
    }
}

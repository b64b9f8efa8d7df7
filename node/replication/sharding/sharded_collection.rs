//! A sharded collection as the cluster-wide Raft group commits it: its settings
//! and its shard map, in one entry of that group's log, so that every member
//! learns the same map at the same point of the cluster's history. Kept in the
//! member database's `meta` under [`SHARD_MAP_PREFIX`] and the collection's name,
//! written with the group's applied marker in one batch.

use needle_consensus::{GroupId, RequestId};
use serde::{Deserialize, Serialize};

use super::error::ShardingError;
use super::shard_map::ShardMap;
use crate::meta_keys::SHARD_MAP_PREFIX;
use crate::model::CollectionConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardedCollection {
    pub config: CollectionConfig,
    pub map: ShardMap,
    /// The request that created it: its retry is answered as applied, another
    /// creation of the same name is refused even with the same settings.
    #[serde(default)]
    pub created_by: Option<RequestId>,
}

impl ShardedCollection {
    /// Where the cluster's record of collection `name` is kept.
    pub fn key(name: &str) -> String {
        format!("{SHARD_MAP_PREFIX}{name}")
    }

    /// Whether its settings and map may be committed.
    pub fn validate(&self) -> Result<(), ShardingError> {
        self.config
            .validate()
            .map_err(|e| ShardingError::InvalidMap(e.to_string()))?;
        self.map.validate()
    }

    /// The groups of its shards.
    pub fn groups(&self) -> impl Iterator<Item = GroupId> + '_ {
        self.map.shards.iter().map(|s| s.group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Distance;
    use crate::replication::sharding::placement::plan;

    #[test]
    fn a_record_names_its_groups_and_is_kept_under_its_name() {
        let record = ShardedCollection {
            config: CollectionConfig::new("docs", 8, Distance::Cosine),
            map: plan(4, None, &[1, 2, 3], GroupId(5)).unwrap(),
            created_by: None,
        };
        record.validate().unwrap();
        let groups: Vec<u64> = record.groups().map(|g| g.0).collect();
        assert_eq!(groups, vec![5, 6, 7, 8]);
        assert_eq!(ShardedCollection::key("docs"), "shard_map/docs");
        let bad = ShardedCollection {
            config: CollectionConfig::new("no spaces", 8, Distance::Cosine),
            ..record
        };
        assert!(bad.validate().is_err());
    }
}

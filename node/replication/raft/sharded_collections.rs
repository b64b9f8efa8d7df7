//! Sharded collections in the cluster-wide group: creating one commits its
//! settings and shard map there (placed over the cluster's voters), and every
//! member reads the maps back from its own database. Starting the shard groups
//! the maps name, and routing writes and searches to them, are not built yet.

use needle_consensus::openraft::async_runtime::WatchReceiver;
use needle_consensus::{GroupId, NodeId};
use std::time::Instant;

use super::command;
use super::node::RaftNode;
use crate::meta_keys::SHARD_MAP_PREFIX;
use crate::model::CollectionConfig;
use crate::replication::error::Result;
use crate::replication::sharding::{placement, ShardedCollection};

impl RaftNode {
    /// Creates collection `config` with `shards` shards of `replication_factor`
    /// replicas each (default `min(3, voters)`), placed over the cluster's voters,
    /// its groups numbered after every group an earlier sharded collection uses;
    /// returns what was committed. A name any collection holds is refused
    /// (`COLLECTION_EXISTS`), as are a shard count outside `1..=1024`
    /// (`INVALID_SHARD_COUNT`) and a replication factor above the number of voters
    /// (`INVALID_REPLICATION_FACTOR`).
    pub async fn create_sharded_collection(
        &self,
        config: CollectionConfig,
        shards: u32,
        replication_factor: Option<u64>,
    ) -> Result<ShardedCollection> {
        config.validate()?;
        let voters: Vec<NodeId> = self
            .raft()?
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        let first_group = self
            .sharded_collections()?
            .iter()
            .flat_map(|held| held.groups())
            .max()
            .map_or(GroupId(1), |last| GroupId(last.0.saturating_add(1)));
        let record = ShardedCollection {
            map: placement::plan(shards, replication_factor, &voters, first_group)?,
            config,
        };
        record.validate()?;
        // Two creations racing for the same groups are told apart on apply: the
        // later one is refused there, on every member alike.
        let command = command::encode_sharded_collection(&record, Some(self.next_request_id()))?;
        let deadline = Instant::now() + self.write_timeout();
        self.order(command, None, deadline).await?;
        Ok(record)
    }

    /// Every sharded collection this member's database holds, by name.
    pub fn sharded_collections(&self) -> Result<Vec<ShardedCollection>> {
        Ok(self
            .database()
            .meta_json_with_prefix::<ShardedCollection>(SHARD_MAP_PREFIX)?
            .into_iter()
            .map(|(_, held)| held)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::Distance;
    use crate::op::{Op, Precondition};
    use crate::replication::consistency::WriteConcern;
    use crate::replication::raft::RaftConfig;

    fn config() -> RaftConfig {
        RaftConfig {
            cluster_addr: "127.0.0.1:0".parse().unwrap(),
            ..RaftConfig::default()
        }
    }

    async fn started(path: &std::path::Path) -> RaftNode {
        // A stopped node's database may take a moment to be let go of.
        let deadline = Instant::now() + Duration::from_secs(20);
        let node = loop {
            match RaftNode::new(path, config()) {
                Ok(node) => break node,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "waiting for the database");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{e}"),
            }
        };
        node.start().await.unwrap();
        let elected = tokio::time::timeout(Duration::from_secs(20), async {
            while !node.is_leader() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(elected.is_ok(), "a one-member cluster never elected itself");
        node
    }

    fn collection(name: &str) -> CollectionConfig {
        CollectionConfig::new(name, 4, Distance::Dot)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sharded_collection_is_committed_once_under_its_name_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let node = started(&path).await;

        let docs = node
            .create_sharded_collection(collection("docs"), 4, None)
            .await
            .unwrap();
        assert_eq!(docs.map.shards.len(), 4);
        assert_eq!(docs.map.replication_factor, 1, "min(3, one voter)");
        let groups: Vec<u64> = docs.groups().map(|g| g.0).collect();
        assert_eq!(groups, vec![1, 2, 3, 4]);
        assert!(docs.map.shards.iter().all(|s| s.members == vec![1]));
        assert_eq!(node.sharded_collections().unwrap(), vec![docs.clone()]);
        // A retry of the same creation (its answer was lost) is answered as applied.
        let retry =
            command::encode_sharded_collection(&docs, Some(node.next_request_id())).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let (_, applied) = node.order(retry, None, deadline).await.unwrap();
        assert_eq!(applied.affected, 4);
        assert_eq!(node.sharded_collections().unwrap(), vec![docs.clone()]);

        // Its name is taken, sharded or not; a second one gets groups of its own.
        let again = node
            .create_sharded_collection(collection("docs"), 2, None)
            .await
            .unwrap_err();
        assert_eq!(again.code(), "COLLECTION_EXISTS");
        let plain = node
            .write(
                Op::CreateCollection(collection("docs")),
                Precondition::None,
                WriteConcern::Majority,
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(plain.code(), "COLLECTION_EXISTS");
        assert!(node.database().collection_info("docs").is_err());
        let images = node
            .create_sharded_collection(collection("images"), 2, None)
            .await
            .unwrap();
        let groups: Vec<u64> = images.groups().map(|g| g.0).collect();
        assert_eq!(groups, vec![5, 6]);
        // An unsharded collection's name is taken too.
        node.write(
            Op::CreateCollection(collection("notes")),
            Precondition::None,
            WriteConcern::Majority,
            None,
        )
        .await
        .unwrap();
        let taken = node
            .create_sharded_collection(collection("notes"), 2, None)
            .await
            .unwrap_err();
        assert_eq!(taken.code(), "COLLECTION_EXISTS");

        // What a caller gets wrong is said before anything is proposed.
        let too_many = node
            .create_sharded_collection(collection("big"), 1025, None)
            .await
            .unwrap_err();
        assert_eq!(too_many.code(), "INVALID_SHARD_COUNT");
        let too_wide = node
            .create_sharded_collection(collection("wide"), 2, Some(2))
            .await
            .unwrap_err();
        assert_eq!(too_wide.code(), "INVALID_REPLICATION_FACTOR");
        let bad_name = node
            .create_sharded_collection(collection("bad name"), 2, None)
            .await
            .unwrap_err();
        assert_eq!(bad_name.code(), "INVALID_COLLECTION_NAME");

        // Kept in the member's database: a restart reads the same maps.
        node.shutdown().await;
        drop(node);
        let node = started(&path).await;
        let mut held = node.sharded_collections().unwrap();
        held.sort_by(|a, b| a.config.name.cmp(&b.config.name));
        assert_eq!(held, vec![docs, images]);
        node.shutdown().await;
    }
}

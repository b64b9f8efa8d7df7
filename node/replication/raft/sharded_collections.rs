//! Sharded collections in the cluster-wide group: creating one commits its
//! settings and shard map there (placed over the cluster's voters), and every
//! member reads the maps back from its own database. Starting the shard groups
//! the maps name is `shard_groups.rs`'s; routing writes and searches to them is
//! not built yet.

use std::time::{Duration, Instant};

use needle_consensus::openraft::async_runtime::WatchReceiver;
use needle_consensus::{GroupId, NodeId, RequestId};

use super::app_rpc::{AppRequest, AppResponse, SHARDED_COLLECTIONS};
use super::command;
use super::node::RaftNode;
use super::state_machine::GROUPS_TAKEN;
use crate::meta_keys::SHARD_MAP_PREFIX;
use crate::model::CollectionConfig;
use crate::replication::consistency::ReadConsistency;
use crate::replication::error::{ReplicationError, Result};
use crate::replication::sharding::{placement, ShardedCollection};

impl RaftNode {
    /// Creates collection `config` with `shards` shards of `replication_factor`
    /// replicas each (default `min(3, voters)`), placed over the cluster's voters,
    /// its groups numbered after every group an earlier sharded collection uses;
    /// returns what was committed. A name any collection holds is refused
    /// (`COLLECTION_EXISTS`), as are a shard count outside `1..=1024`
    /// (`INVALID_SHARD_COUNT`), a replication factor above the number of voters
    /// (`INVALID_REPLICATION_FACTOR`), and a cluster with a member whose version
    /// cannot apply sharded collections (it would stop at the entry).
    ///
    /// `request_id` makes a caller's retry safe: a creation with the id of one
    /// that committed is answered with what that one committed (without an id,
    /// this node makes one, and only its own retries are covered).
    pub async fn create_sharded_collection(
        &self,
        config: CollectionConfig,
        shards: u32,
        replication_factor: Option<u64>,
        request_id: Option<RequestId>,
    ) -> Result<ShardedCollection> {
        config.validate()?;
        let request = Some(request_id.unwrap_or_else(|| self.next_request_id()));
        let deadline = Instant::now() + self.write_timeout();
        let mut tries = 0;
        loop {
            tries += 1;
            // What this member knows of the maps is the cluster's up to now, so
            // the groups it numbers are free unless a creation races this one.
            self.read_barrier(ReadConsistency::Linearizable, &config.name)
                .await?;
            // This request committed before (its answer was lost): that is the
            // answer.
            if let Some(committed) = self
                .sharded_collections()?
                .into_iter()
                .find(|held| held.config.name == config.name && held.created_by == request)
            {
                return Ok(committed);
            }
            let (voters, members): (Vec<NodeId>, Vec<NodeId>) = {
                let metrics = self.raft()?.metrics().borrow_watched().clone();
                let membership = metrics.membership_config.membership();
                (
                    membership.voter_ids().collect(),
                    membership.nodes().map(|(id, _)| *id).collect(),
                )
            };
            // Learners apply the log too: every member must be able to read it.
            self.every_member_has(&members, SHARDED_COLLECTIONS, "sharded collections")
                .await?;
            let first_group = self
                .sharded_collections()?
                .iter()
                .flat_map(|held| held.groups())
                .max()
                .map_or(GroupId(1), |last| GroupId(last.0.saturating_add(1)));
            let record = ShardedCollection {
                map: placement::plan(shards, replication_factor, &voters, first_group)?,
                config: config.clone(),
                created_by: request,
            };
            record.validate()?;
            let command = command::encode_sharded_collection(&record, request)?;
            match self.order(command, None, deadline).await {
                Ok(_) => return Ok(record),
                // Another creation took these groups first (the state machine
                // refuses the later one on every member alike): number again.
                Err(e) if tries < 3 && e.to_string().contains(GROUPS_TAKEN) => {}
                Err(e) => return Err(e),
            }
        }
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

    /// Whether every one of `members` says its version has `feature`; an error
    /// naming the first that does not (or cannot be asked) otherwise.
    async fn every_member_has(&self, members: &[NodeId], feature: u32, what: &str) -> Result<()> {
        for &member in members {
            if member == self.node_id() {
                continue;
            }
            let has = match self.member_addr(member) {
                Some(addr) => matches!(
                    self.ask(addr, &AppRequest::Features, Duration::from_secs(2)).await,
                    Ok(AppResponse::Features(bits)) if bits & feature != 0
                ),
                None => false,
            };
            if !has {
                return Err(ReplicationError::Refused {
                    by: format!("node {member}"),
                    message: format!(
                        "it did not confirm that its version can apply {what}: upgrade every member, and have every member reachable, first"
                    ),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
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
            .create_sharded_collection(collection("docs"), 4, None, None)
            .await
            .unwrap();
        assert_eq!(docs.map.shards.len(), 4);
        assert_eq!(docs.map.replication_factor, 1, "min(3, one voter)");
        let groups: Vec<u64> = docs.groups().map(|g| g.0).collect();
        assert_eq!(groups, vec![1, 2, 3, 4]);
        assert!(docs.map.shards.iter().all(|s| s.members == vec![1]));
        assert_eq!(node.sharded_collections().unwrap(), vec![docs.clone()]);
        // A retry of the same creation (its answer was lost) is answered as
        // applied; the same settings from another request are another creation.
        let deadline = Instant::now() + Duration::from_secs(5);
        let retry = command::encode_sharded_collection(&docs, docs.created_by).unwrap();
        let (_, applied) = node.order(retry, None, deadline).await.unwrap();
        assert_eq!(applied.affected, 4);
        let other =
            command::encode_sharded_collection(&docs, Some(node.next_request_id())).unwrap();
        let refused = node.order(other, None, deadline).await.unwrap_err();
        assert_eq!(refused.code(), "COLLECTION_EXISTS");
        assert_eq!(node.sharded_collections().unwrap(), vec![docs.clone()]);

        // Its name is taken, sharded or not; a second one gets groups of its own.
        let again = node
            .create_sharded_collection(collection("docs"), 2, None, None)
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
            .create_sharded_collection(collection("images"), 2, None, None)
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
            .create_sharded_collection(collection("notes"), 2, None, None)
            .await
            .unwrap_err();
        assert_eq!(taken.code(), "COLLECTION_EXISTS");

        // What a caller gets wrong is said before anything is proposed.
        let too_many = node
            .create_sharded_collection(collection("big"), 1025, None, None)
            .await
            .unwrap_err();
        assert_eq!(too_many.code(), "INVALID_SHARD_COUNT");
        let too_wide = node
            .create_sharded_collection(collection("wide"), 2, Some(2), None)
            .await
            .unwrap_err();
        assert_eq!(too_wide.code(), "INVALID_REPLICATION_FACTOR");
        let bad_name = node
            .create_sharded_collection(collection("bad name"), 2, None, None)
            .await
            .unwrap_err();
        assert_eq!(bad_name.code(), "INVALID_COLLECTION_NAME");

        // A caller's retry with the id of a creation that committed gets what
        // that one committed, whatever it asks this time.
        let id = node.next_request_id();
        let logs = node
            .create_sharded_collection(collection("logs"), 2, None, Some(id))
            .await
            .unwrap();
        let retried = node
            .create_sharded_collection(collection("logs"), 5, None, Some(id))
            .await
            .unwrap();
        assert_eq!(retried, logs);

        // Kept in the member's database: a restart reads the same maps.
        node.shutdown().await;
        drop(node);
        let node = started(&path).await;
        let mut held = node.sharded_collections().unwrap();
        held.sort_by(|a, b| a.config.name.cmp(&b.config.name));
        assert_eq!(held, vec![docs, images, logs]);
        node.shutdown().await;
    }

    /// Two ports free now (held together while picked, so they differ).
    fn free_ports() -> [std::net::SocketAddr; 2] {
        let sockets = [(); 2].map(|()| std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
        sockets.map(|s| s.local_addr().unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_follower_creates_through_the_leader_and_an_unreadable_map_is_never_proposed() {
        let dir = tempfile::tempdir().unwrap();
        let addrs = free_ports();
        let nodes: Vec<RaftNode> = (0..2)
            .map(|i| {
                RaftNode::new(
                    dir.path().join(format!("node-{i}")),
                    RaftConfig {
                        node_id: i as u64 + 1,
                        cluster_addr: addrs[i],
                        peers: vec![addrs[1 - i]],
                        ..RaftConfig::default()
                    },
                )
                .unwrap()
            })
            .collect();
        for node in &nodes {
            node.start().await.unwrap();
        }
        let elected = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Some(leader) = nodes.iter().position(|n| n.is_leader()) {
                    let follower = 1 - leader;
                    if nodes[follower].current_leader().is_some() {
                        return (leader, follower);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let Ok((leader, follower)) = elected else {
            panic!("two members never elected a leader");
        };
        // Asked of the follower: every voter confirms it can apply the entry,
        // and the leader orders it.
        let docs = nodes[follower]
            .create_sharded_collection(collection("docs"), 3, None, None)
            .await
            .unwrap();
        assert_eq!(docs.map.replication_factor, 2);
        assert!(docs.map.shards.iter().all(|s| s.members.len() == 2));
        let applied_everywhere = tokio::time::timeout(Duration::from_secs(10), async {
            while nodes
                .iter()
                .any(|n| n.sharded_collections().unwrap() != vec![docs.clone()])
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(applied_everywhere.is_ok(), "a member never applied the map");

        // A map no member could read, forwarded to the leader: refused there,
        // never proposed (every member would stop at it), and the cluster goes on.
        let damaged = needle_consensus::Command {
            request_id: Some(nodes[follower].next_request_id()),
            payload: vec![2, b'{'],
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        assert!(nodes[follower]
            .order(damaged.clone(), None, deadline)
            .await
            .is_err());
        // Sent to the leader as a forwarded write (a damaged frame, another
        // version's peer): answered with a refusal, not proposed.
        let forwarded = nodes[follower]
            .ask(
                addrs[leader],
                &AppRequest::Write {
                    command: damaged,
                    new_rows: None,
                },
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        let AppResponse::Write(super::super::app_rpc::WriteReply::Applied { index, outcome }) =
            forwarded
        else {
            panic!("the leader answered a forwarded map with {forwarded:?}");
        };
        assert_eq!(index, 0, "the damaged map took a log slot");
        assert!(command::read_outcome(&outcome).is_err());
        nodes[leader]
            .write(
                Op::CreateCollection(collection("after")),
                Precondition::None,
                WriteConcern::Majority,
                None,
            )
            .await
            .unwrap();
        for node in &nodes {
            node.shutdown().await;
        }
    }
}

//! Members start the shard groups their maps name: three real Raft members in
//! one process. What a user would notice: once a sharded collection is created,
//! every member runs exactly the replicas placed on it, every shard has one
//! leader (the one placement preferred), and a shard's write lands on its
//! replicas only. (A member restarted in the same process cannot bind its port
//! again: its transport and Raft service hold each other until the process
//! exits, so a restart is for the end-to-end tests.)

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use needle_consensus::RequestId;

use super::command;
use super::node::{RaftConfig, RaftNode};
use crate::model::{CollectionConfig, Distance, VectorRecord};
use crate::op::{Op, Precondition};
use crate::replication::sharding::ShardedCollection;

fn free_ports() -> [SocketAddr; 3] {
    // Held together while picked, so they differ.
    let sockets = [(); 3].map(|()| std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
    sockets.map(|s| s.local_addr().unwrap())
}

fn config(i: usize, addrs: &[SocketAddr; 3]) -> RaftConfig {
    RaftConfig {
        node_id: i as u64 + 1,
        cluster_addr: addrs[i],
        peers: (0..3).filter(|&j| j != i).map(|j| addrs[j]).collect(),
        ..RaftConfig::default()
    }
}

/// Opens member `i`, waiting for a stopped one's database and port to be let
/// go of.
async fn open(root: &std::path::Path, i: usize, addrs: &[SocketAddr; 3]) -> RaftNode {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let started = match RaftNode::new(root.join(format!("node-{i}")), config(i, addrs)) {
            Ok(node) => node.start().await.map(|()| node),
            Err(e) => Err(e),
        };
        match started {
            Ok(node) => return node,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "waiting for the database");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(done) = check() {
            return done;
        }
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Every member runs the replicas `record` places on it and no other, and every
/// shard's replicas name one leader; the leaders, by shard.
async fn groups_running(nodes: &[Option<RaftNode>], record: &ShardedCollection) -> Vec<u64> {
    eventually("every member runs its replicas under one leader", || {
        let mut leaders = Vec::new();
        for shard in &record.map.shards {
            let mut seen = Vec::new();
            for node in nodes.iter().flatten() {
                let statuses = node.shard_group_statuses();
                let held = statuses.iter().find(|g| g.group == shard.group.0);
                if shard.members.contains(&node.node_id()) != held.is_some() {
                    return None;
                }
                if let Some(held) = held {
                    assert_eq!((held.collection.as_str(), held.shard), ("docs", shard.id));
                    assert_eq!(held.range, [shard.range.lo, shard.range.hi]);
                    seen.push(held.leader?);
                }
            }
            seen.dedup();
            if seen.len() != 1 {
                return None;
            }
            leaders.push(seen[0]);
        }
        Some(leaders)
    })
    .await
}

fn count_on(node: &RaftNode, group: u64) -> Option<u64> {
    node.shard_group_statuses()
        .into_iter()
        .find(|g| g.group == group)
        .map(|g| g.count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_run_the_shard_groups_their_maps_name_under_the_leaders_placement_chose() {
    let root = tempfile::tempdir().unwrap();
    let addrs = free_ports();
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(Some(open(root.path(), i, &addrs).await));
    }
    let leader = eventually("the cluster elects a leader", || {
        nodes.iter().flatten().position(|n| n.is_leader())
    })
    .await;
    // Asked of a member that is not the leader: forwarded there.
    let asked = nodes[(leader + 1) % 3].as_ref().unwrap();
    let config = CollectionConfig::new("docs", 3, Distance::Euclidean);
    let record = asked
        .create_sharded_collection(config.clone(), 3, Some(2), None)
        .await
        .unwrap();
    let leaders = groups_running(&nodes, &record).await;
    let preferred: Vec<u64> = record.map.shards.iter().map(|s| s.members[0]).collect();
    assert_eq!(
        leaders, preferred,
        "first leaders are the ones placement spread"
    );

    // A write ordered in shard 0's group lands on its two replicas, nowhere else.
    let shard = &record.map.shards[0];
    let ids: Vec<String> = (0..)
        .map(|i| format!("p{i}"))
        .filter(|id| {
            shard
                .range
                .contains(crate::replication::sharding::id_hash(id))
        })
        .take(5)
        .collect();
    let op = Op::Upsert {
        collection: "docs".into(),
        records: ids
            .iter()
            .enumerate()
            .map(|(i, id)| VectorRecord {
                id: id.clone(),
                vector: vec![i as f32, 0.5, -1.0],
                metadata: None,
            })
            .collect(),
    };
    let request = Some(RequestId {
        client: 9,
        serial: 1,
    });
    let cmd = command::encode(&op, Precondition::None, request).unwrap();
    let shard_leader = nodes[(shard.members[0] - 1) as usize].as_ref().unwrap();
    let (_, replica) = shard_leader
        .shard_replicas()
        .into_iter()
        .find(|(g, _)| *g == shard.group)
        .unwrap();
    let answer = replica.raft.client_write(cmd).await.unwrap();
    assert_eq!(command::read_outcome(&answer.data).unwrap().affected, 5);
    eventually("both replicas hold the write", || {
        nodes
            .iter()
            .flatten()
            .filter(|n| shard.members.contains(&n.node_id()))
            .all(|n| count_on(n, shard.group.0) == Some(5))
            .then_some(())
    })
    .await;
    for node in nodes.iter().flatten() {
        assert!(
            node.database().collection_info("docs").is_err(),
            "a member's own database took a shard's write"
        );
        for other in &record.map.shards[1..] {
            assert!(matches!(count_on(node, other.group.0), None | Some(0)));
        }
    }

    // Every member's status lists the replicas it runs, and no other.
    for node in nodes.iter().flatten() {
        let held: Vec<u64> = node
            .shard_group_statuses()
            .iter()
            .map(|g| g.group)
            .collect();
        let placed: Vec<u64> = record
            .map
            .held_by(node.node_id())
            .map(|s| s.group.0)
            .collect();
        assert_eq!(held, placed);
    }

    for node in nodes.iter().flatten() {
        node.shutdown().await;
    }
}

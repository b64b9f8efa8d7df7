//! A shard group's state machine on real Raft groups: three members, each with its
//! own database, a database for its replica of the shard, one log database (shared
//! by its groups) and one transport. What a user of a sharded collection would
//! notice: the shard's writes land on every replica alike, a write for another
//! collection or another shard's points is refused on all of them, a retry is
//! answered from its record, a new replica catches up from a snapshot of the shard
//! without its member's own data moving, and a replica restarts from what it
//! applied.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use needle_consensus::openraft::async_runtime::WatchReceiver;
use needle_consensus::openraft::storage::RaftLogStorage;
use needle_consensus::openraft::{self, Raft, SnapshotPolicy};
use needle_consensus::{
    ClusterNode, GroupId, LogStore, Network, RaftService, RequestId, SnapshotInbox, TypeConfig,
};
use needle_transport::{BoxFuture, Handler, PeerInfo, Security, Transport, TransportConfig};

use super::command;
use super::state_machine::{StateMachine, StateScope};
use crate::model::{CollectionConfig, Distance, VectorRecord};
use crate::op::{Op, Precondition};
use crate::replication::sharding::{id_hash, HashRange};
use crate::served::ServedDatabase;
use crate::Database;

const GROUP: GroupId = GroupId(7);

struct NoApp;

impl Handler for NoApp {
    fn request(&self, _: PeerInfo, _: Vec<u8>) -> BoxFuture<Result<Vec<u8>, String>> {
        Box::pin(async { Err("no application requests here".to_string()) })
    }
}

struct Member {
    id: u64,
    /// The member's own database: no group here writes to it.
    db: Database,
    /// Its replica of the shard (swapped for a new one when it installs a
    /// snapshot).
    shard: Option<ServedDatabase>,
    transport: Transport,
    network: Network,
    log: LogStore,
    service: Arc<RaftService<StateMachine>>,
    raft: Option<Raft<TypeConfig, StateMachine>>,
    dir: std::path::PathBuf,
}

fn docs() -> CollectionConfig {
    CollectionConfig::new("docs", 3, Distance::Euclidean)
}

impl Member {
    fn start(id: u64, root: &Path) -> Member {
        let dir = root.join(format!("member-{id}"));
        let db = Database::open(dir.join("data")).unwrap();
        let log = LogStore::open(&dir.join("log")).unwrap();
        let inbox = SnapshotInbox::open(&dir.join("inbox")).unwrap();
        let service = RaftService::<StateMachine>::new(Arc::new(NoApp), inbox);
        let transport = Transport::bind(
            "127.0.0.1:0".parse().unwrap(),
            TransportConfig::new(Security::InsecureDev),
            service.clone(),
        )
        .unwrap();
        service.set_transport(transport.clone());
        Member {
            id,
            db,
            shard: None,
            network: Network::new(transport.clone()),
            transport,
            log,
            service,
            raft: None,
            dir,
        }
    }

    fn node(&self) -> ClusterNode {
        ClusterNode {
            raft_addr: self.transport.local_addr().unwrap().to_string(),
            http_addr: String::new(),
        }
    }

    async fn run_shard(&mut self) {
        let scope = StateScope::Shard {
            group: GROUP,
            collection: docs(),
            range: range(),
        };
        let shard = open_when_released(&self.dir.join("shard-7").join("data")).await;
        let served = ServedDatabase::new(shard);
        self.shard = Some(served.clone());
        let sm = StateMachine::open(served, &self.dir.join("shard-7").join("snapshots"), scope)
            .await
            .unwrap();
        let config = openraft::Config {
            cluster_name: "shard-test".into(),
            heartbeat_interval: 50,
            election_timeout_min: 300,
            election_timeout_max: 600,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(8),
            max_in_snapshot_log_to_keep: 0,
            purge_batch_size: 1,
            ..Default::default()
        }
        .validate()
        .unwrap();
        let raft = Raft::new(
            self.id,
            Arc::new(config),
            self.network.for_group(GROUP),
            self.log.group(GROUP).unwrap(),
            sm,
        )
        .await
        .unwrap();
        assert!(self.service.add_group(GROUP, raft.clone()).is_none());
        self.raft = Some(raft);
    }

    fn raft(&self) -> &Raft<TypeConfig, StateMachine> {
        self.raft.as_ref().unwrap()
    }

    /// Stops the member's replica of the shard, as a process exit would.
    async fn stop_shard(&mut self) {
        let raft = self.raft.take().unwrap();
        raft.shutdown().await.unwrap();
        let _ = self.service.remove_group(GROUP);
        drop(raft);
        self.shard = None;
    }

    fn shard_checksum(&self) -> (u64, u64) {
        let c = self
            .shard
            .as_ref()
            .unwrap()
            .current()
            .collection_checksum("docs")
            .unwrap();
        (c.vectors, c.checksum)
    }

    fn own_checksum(&self, name: &str) -> (u64, u64) {
        let c = self.db.collection_checksum(name).unwrap();
        (c.vectors, c.checksum)
    }
}

/// Opens the database at `path`, waiting for a stopped replica's tasks to let
/// go of it (as a restarted process waits for the old one to exit).
async fn open_when_released(path: &Path) -> Database {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match Database::open(path) {
            Ok(db) => return db,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "waiting for the database to be released");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{}: {e}", path.display()),
        }
    }
}

/// The shard's range: the lower half of the hash space.
fn range() -> HashRange {
    HashRange::even(2)[0]
}

/// The `n`th point id whose hash is (`ours`) or is not in the shard's range.
fn point(n: usize, ours: bool) -> String {
    (0..)
        .map(|i| format!("p{i}"))
        .filter(|id| range().contains(id_hash(id)) == ours)
        .nth(n)
        .unwrap()
}

fn upsert(collection: &str, id: &str, x: f32) -> Op {
    Op::Upsert {
        collection: collection.into(),
        records: vec![VectorRecord {
            id: id.into(),
            vector: vec![x, 1.0, -x],
            metadata: None,
        }],
    }
}

/// Writes `op` through whoever leads the group now, retrying across a leader change.
async fn write(
    members: &[Member],
    op: &Op,
    serial: u64,
) -> crate::replication::error::Result<crate::op::Applied> {
    let request = Some(RequestId { client: 1, serial });
    let cmd = command::encode(op, Precondition::None, request).unwrap();
    for _ in 0..100 {
        for m in members.iter().filter(|m| m.raft.is_some()) {
            if let Ok(answer) = m.raft().client_write(cmd.clone()).await {
                return command::read_outcome(&answer.data);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no leader took the write");
}

async fn converged(members: &[Member]) -> (u64, u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let sums: Vec<_> = members.iter().map(|m| m.shard_checksum()).collect();
        if sums.windows(2).all(|w| w[0] == w[1]) {
            return sums[0];
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "replicas never agreed: {sums:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shard_group_applies_its_own_writes_and_a_new_replica_catches_up_from_the_shard_alone() {
    let root = tempfile::tempdir().unwrap();
    let mut members: Vec<Member> = (1..=3).map(|id| Member::start(id, root.path())).collect();
    // Member 3's own database holds a collection named like the shard's: the
    // shard's snapshot must leave it as it is.
    members[2]
        .db
        .create_collection(CollectionConfig::new("docs", 2, Distance::Dot))
        .unwrap()
        .upsert(vec![VectorRecord {
            id: "mine".into(),
            vector: vec![1.0, 2.0],
            metadata: None,
        }])
        .unwrap();
    let own_before = members[2].own_checksum("docs");

    members[0].run_shard().await;
    members[1].run_shard().await;
    let voters: std::collections::BTreeMap<u64, ClusterNode> =
        members[..2].iter().map(|m| (m.id, m.node())).collect();
    members[0].raft().initialize(voters).await.unwrap();
    let mut first = None;
    for i in 0..30 {
        let applied = write(
            &members[..2],
            &upsert("docs", &point(i, true), i as f32),
            i as u64 + 1,
        )
        .await
        .unwrap();
        first.get_or_insert(applied.seq);
    }
    // Not this group's: another collection, another shard's point. Refused by
    // every replica alike, and nothing of them applied.
    let refused = write(&members[..2], &upsert("images", &point(0, true), 0.0), 1000)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("not of \"images\""),
        "{refused}"
    );
    let refused = write(&members[..2], &upsert("docs", &point(0, false), 0.0), 1001)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("belongs to another shard"),
        "{refused}"
    );
    // A retry of an applied write is answered from its record, not applied again.
    let retried = write(&members[..2], &upsert("docs", &point(0, true), 0.0), 1)
        .await
        .unwrap();
    assert_eq!(Some(retried.seq), first, "the retry was applied again");
    let (count, _) = converged(&members[..2]).await;
    assert_eq!(count, 30);

    // Snapshots every 8 entries and the log purged behind them: member 3 can
    // only catch up from a snapshot of the shard.
    // Both replicas purged their logs behind a snapshot: an empty replica can
    // only catch up from one.
    // (Snapshots and purges run in the background: waited for.)
    let purged = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let mut purged = Vec::new();
            for m in &members[..2] {
                let mut log = m.log.group(GROUP).unwrap();
                let state = log.get_log_state().await.unwrap();
                purged.push(state.last_purged_log_id.map(|l| l.index));
            }
            if purged.iter().all(|p| p.is_some_and(|i| i >= 8)) {
                return purged;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        purged.is_ok(),
        "the logs were never purged behind a snapshot"
    );
    members[2].run_shard().await;
    let node = members[2].node();
    let joined = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            for m in &members[..2] {
                let raft = m.raft();
                if raft.add_learner(3, node.clone(), true).await.is_ok()
                    && raft.change_membership([1, 2, 3], false).await.is_ok()
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(joined.is_ok(), "member 3 never joined the shard's group");
    write(&members, &upsert("docs", &point(30, true), 30.0), 31)
        .await
        .unwrap();
    let (count, _) = converged(&members).await;
    assert_eq!(count, 31);
    // It keeps a snapshot of its own now (the one installed, or a later one).
    assert!(members[2]
        .dir
        .join("shard-7")
        .join("snapshots")
        .join("current.json")
        .exists());
    assert_eq!(members[2].own_checksum("docs"), own_before);

    // Member 3's replica restarts from what it applied, and goes on; its
    // database is never opened as another shard's.
    let applied_before = members[2].raft().metrics().borrow_watched().last_applied;
    members[2].stop_shard().await;
    let data = members[2].dir.join("shard-7").join("data");
    let reopened = ServedDatabase::new(open_when_released(&data).await);
    // What it applied is in its database, marker and data together: the restart
    // goes on from there.
    let marker = reopened
        .current()
        .meta_json::<serde_json::Value>(crate::meta_keys::ORDER_MARKER)
        .unwrap()
        .expect("no applied marker in the shard's database");
    let applied_index = applied_before.map(|l| l.index);
    assert_eq!(marker["log_id"]["index"].as_u64(), applied_index);
    let other_half = StateScope::Shard {
        group: GROUP,
        collection: docs(),
        range: HashRange::even(2)[1],
    };
    let refused = StateMachine::open(reopened, &root.path().join("elsewhere"), other_half)
        .await
        .err()
        .expect("a shard's database opened as another shard's");
    assert!(refused.to_string().contains("not of"), "{refused}");
    write(&members[..2], &upsert("docs", &point(31, true), 31.0), 32)
        .await
        .unwrap();
    members[2].run_shard().await;
    write(&members, &upsert("docs", &point(32, true), 32.0), 33)
        .await
        .unwrap();
    let (count, _) = converged(&members).await;
    assert_eq!(count, 33);
    assert_eq!(members[2].own_checksum("docs"), own_before);

    for m in &members {
        m.raft().shutdown().await.unwrap();
        m.transport.close();
    }
}

//! Many Raft groups on one set of members: each member runs one transport
//! endpoint, one log database and one `RaftService`, and every group (the
//! cluster-wide one and a group per shard) runs on them side by side. What a user
//! of the groups would notice: each group elects, commits and applies only its own
//! entries, a member that does not run a group refuses its traffic, and a new
//! replica of a group catches up from that group's snapshot alone.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use needle_consensus::openraft::async_runtime::WatchReceiver;
use needle_consensus::openraft::entry::RaftEntry;
use needle_consensus::openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use needle_consensus::openraft::{
    self, EntryPayload, OptionalSend, Raft, RaftLogReader, SnapshotPolicy,
};
use needle_consensus::rpc::{RaftRequest, RaftResponse};
use needle_consensus::types::{LogId, SnapshotMeta, StoredMembership, Vote};
use needle_consensus::{
    ClusterNode, Command, CommandOutcome, GroupId, LogStore, Network, NodeId, RaftService,
    SnapshotFile, SnapshotInbox, TypeConfig,
};
use needle_transport::{BoxFuture, Handler, PeerInfo, Security, Transport, TransportConfig};
use parking_lot::Mutex;

type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>;

const WAIT: Option<Duration> = Some(Duration::from_secs(30));

/// What a group's state machine has applied: the payloads, in log order.
#[derive(Default)]
struct Applied {
    log_id: Option<LogId>,
    membership: StoredMembership,
    payloads: Vec<Vec<u8>>,
}

/// An in-memory state machine whose snapshots are files, as the node's are.
#[derive(Clone)]
struct Memory {
    applied: Arc<Mutex<Applied>>,
    current: Arc<Mutex<Option<Snapshot>>>,
    /// Snapshots installed from a leader.
    installed: Arc<AtomicUsize>,
    dir: PathBuf,
}

impl Memory {
    fn new(dir: PathBuf) -> Memory {
        std::fs::create_dir_all(&dir).unwrap();
        Memory {
            applied: Arc::default(),
            current: Arc::default(),
            installed: Arc::default(),
            dir,
        }
    }

    fn payloads(&self) -> Vec<Vec<u8>> {
        self.applied.lock().payloads.clone()
    }
}

impl RaftSnapshotBuilder<TypeConfig> for Memory {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        let (meta, bytes) = {
            let applied = self.applied.lock();
            let meta = SnapshotMeta {
                last_log_id: applied.log_id,
                last_membership: applied.membership.clone(),
            };
            (meta, postcard::to_stdvec(&applied.payloads).unwrap())
        };
        let index = meta.last_log_id.map_or(0, |l| l.index);
        let path = self.dir.join(format!("snapshot-{index}"));
        std::fs::write(&path, bytes)?;
        let snapshot = Snapshot {
            meta,
            snapshot: SnapshotFile { path },
        };
        *self.current.lock() = Some(snapshot.clone());
        Ok(snapshot)
    }
}

impl RaftStateMachine<TypeConfig> for Memory {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = Memory;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        let applied = self.applied.lock();
        Ok((applied.log_id, applied.membership.clone()))
    }

    async fn apply<S>(&mut self, mut entries: S) -> io::Result<()>
    where
        S: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + OptionalSend,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let log_id = entry.log_id();
            {
                let mut applied = self.applied.lock();
                applied.log_id = Some(log_id);
                match entry.payload {
                    EntryPayload::Normal(command) => applied.payloads.push(command.payload),
                    EntryPayload::Membership(m) => {
                        applied.membership = StoredMembership::new(Some(log_id), m)
                    }
                    EntryPayload::Blank => {}
                }
            }
            if let Some(responder) = responder {
                responder.send(CommandOutcome(Vec::new()));
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Memory {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotFile,
    ) -> io::Result<()> {
        let payloads: Vec<Vec<u8>> =
            postcard::from_bytes(&std::fs::read(&snapshot.path)?).map_err(io::Error::other)?;
        *self.applied.lock() = Applied {
            log_id: meta.last_log_id,
            membership: meta.last_membership.clone(),
            payloads,
        };
        *self.current.lock() = Some(Snapshot {
            meta: meta.clone(),
            snapshot,
        });
        self.installed.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        Ok(self.current.lock().clone())
    }
}

/// The node's own requests: none in this test.
struct NoApp;

impl Handler for NoApp {
    fn request(&self, _: PeerInfo, _: Vec<u8>) -> BoxFuture<Result<Vec<u8>, String>> {
        Box::pin(async { Err("no application requests here".to_string()) })
    }
}

/// One member: its endpoint, its log database and its groups.
struct Member {
    id: NodeId,
    transport: Transport,
    network: Network,
    log: LogStore,
    service: Arc<RaftService<Memory>>,
    groups: BTreeMap<GroupId, (Raft<TypeConfig, Memory>, Memory)>,
    dir: PathBuf,
}

impl Member {
    fn start(id: NodeId, root: &std::path::Path) -> Member {
        let dir = root.join(format!("member-{id}"));
        let log = LogStore::open(&dir.join("log")).unwrap();
        let inbox = SnapshotInbox::open(&dir.join("inbox")).unwrap();
        let service = RaftService::<Memory>::new(Arc::new(NoApp), inbox);
        let transport = Transport::bind(
            "127.0.0.1:0".parse().unwrap(),
            TransportConfig::new(Security::InsecureDev),
            service.clone(),
        )
        .unwrap();
        service.set_transport(transport.clone());
        Member {
            id,
            network: Network::new(transport.clone()),
            transport,
            log,
            service,
            groups: BTreeMap::new(),
            dir,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.transport.local_addr().unwrap()
    }

    fn node(&self) -> ClusterNode {
        ClusterNode {
            raft_addr: self.addr().to_string(),
            http_addr: String::new(),
        }
    }

    async fn run_group(&mut self, group: GroupId) {
        let config = openraft::Config {
            cluster_name: "groups-test".into(),
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
        let memory = Memory::new(self.dir.join(format!("sm-{}", group.0)));
        let raft = Raft::new(
            self.id,
            Arc::new(config),
            self.network.for_group(group),
            self.log.group(group),
            memory.clone(),
        )
        .await
        .unwrap();
        self.service.add_group(group, raft.clone());
        self.groups.insert(group, (raft, memory));
    }

    fn raft(&self, group: GroupId) -> &Raft<TypeConfig, Memory> {
        &self.groups[&group].0
    }

    fn memory(&self, group: GroupId) -> &Memory {
        &self.groups[&group].1
    }
}

async fn leader_of(members: &[Member], group: GroupId) -> usize {
    let any = members
        .iter()
        .find(|m| m.groups.contains_key(&group))
        .unwrap();
    let metrics = any
        .raft(group)
        .wait(WAIT)
        .metrics(|m| m.current_leader.is_some(), "a leader")
        .await
        .unwrap();
    let leader = metrics.current_leader.unwrap();
    members.iter().position(|m| m.id == leader).unwrap()
}

async fn write(members: &[Member], group: GroupId, payload: &str) {
    for _ in 0..50 {
        let leader = leader_of(members, group).await;
        let command = Command {
            request_id: None,
            payload: payload.as_bytes().to_vec(),
        };
        if members[leader]
            .raft(group)
            .client_write(command)
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{group}: no write of {payload} committed");
}

/// What every member of `group` applied, once they all agree (a member's metrics
/// may lag what it applied, so the test compares what was applied, until equal).
async fn applied_everywhere(members: &[Member], group: GroupId) -> Vec<Vec<u8>> {
    let holders: Vec<&Member> = members
        .iter()
        .filter(|m| m.groups.contains_key(&group))
        .collect();
    let deadline = tokio::time::Instant::now() + WAIT.unwrap();
    loop {
        let applied: Vec<Vec<Vec<u8>>> =
            holders.iter().map(|m| m.memory(group).payloads()).collect();
        if applied.windows(2).all(|w| w[0] == w[1]) {
            return applied.into_iter().next().unwrap();
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{group} differs between its members: {applied:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn texts(payloads: &[Vec<u8>]) -> Vec<String> {
    payloads
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn groups_on_shared_members_keep_apart_and_a_new_replica_catches_up_from_its_group_alone() {
    let root = tempfile::tempdir().unwrap();
    let mut members: Vec<Member> = (1..=3).map(|id| Member::start(id, root.path())).collect();
    let (docs, images) = (GroupId(7), GroupId(9));
    // The cluster group and `docs` on all three members; `images` on 1 and 2 only.
    let placement = [
        (GroupId::CLUSTER, vec![0, 1, 2]),
        (docs, vec![0, 1, 2]),
        (images, vec![0, 1]),
    ];
    for (group, on) in &placement {
        for &i in on {
            members[i].run_group(*group).await;
        }
        let voters: BTreeMap<NodeId, ClusterNode> = on
            .iter()
            .map(|&i| (members[i].id, members[i].node()))
            .collect();
        members[on[0]]
            .raft(*group)
            .initialize(voters)
            .await
            .unwrap();
    }

    for i in 0..20 {
        write(&members, docs, &format!("doc-{i}")).await;
        write(&members, images, &format!("image-{i}")).await;
        if i % 5 == 0 {
            write(&members, GroupId::CLUSTER, &format!("map-{i}")).await;
        }
    }

    // Each group applied its own entries, in order, on each of its members.
    let expected = |prefix: &str, n: usize, step: usize| -> Vec<String> {
        (0..n)
            .step_by(step)
            .map(|i| format!("{prefix}-{i}"))
            .collect()
    };
    assert_eq!(
        texts(&applied_everywhere(&members, docs).await),
        expected("doc", 20, 1)
    );
    assert_eq!(
        texts(&applied_everywhere(&members, images).await),
        expected("image", 20, 1)
    );
    assert_eq!(
        texts(&applied_everywhere(&members, GroupId::CLUSTER).await),
        expected("map", 20, 5)
    );

    // The logs keep apart in the one database: `docs`' log holds only docs'
    // entries, and the member that does not run `images` stored nothing of it.
    let mut docs_log = members[2].log.group(docs);
    let entries = docs_log.try_get_log_entries(0..u64::MAX).await.unwrap();
    assert!(entries.iter().all(|e| match &e.payload {
        EntryPayload::Normal(c) => c.payload.starts_with(b"doc-"),
        _ => true,
    }));
    assert_eq!(members[2].log.stored_groups().unwrap(), vec![docs]);
    assert_eq!(members[0].log.stored_groups().unwrap(), vec![docs, images]);
    assert_eq!(
        members[0].service.groups(),
        vec![GroupId::CLUSTER, docs, images]
    );

    // A member that does not run a group refuses its RPCs, as a member that is
    // starting would, instead of handing them to another group.
    let peer = members[0]
        .transport
        .connect(members[2].addr())
        .await
        .unwrap();
    let vote = RaftRequest::Vote(openraft::raft::VoteRequest::new(Vote::new(99, 1), None));
    let answer = peer
        .request(&vote.encode_for(images).unwrap())
        .await
        .unwrap();
    let refused = RaftResponse::decode(&answer).unwrap().unwrap_err();
    assert!(refused.contains("does not run on this member"), "{refused}");

    // Snapshots were taken every 8 entries and the log purged behind them, so a
    // new replica of `images` on member 3 can only catch up from its group's
    // snapshot, sent through the shared endpoint.
    let leader = leader_of(&members, images).await;
    members[2].run_group(images).await;
    let node = members[2].node();
    let raft = members[leader].raft(images).clone();
    raft.add_learner(3, node, true).await.unwrap();
    raft.change_membership([1, 2, 3], false).await.unwrap();
    write(&members, images, "image-after").await;
    let mut all = expected("image", 20, 1);
    all.push("image-after".into());
    assert_eq!(texts(&applied_everywhere(&members, images).await), all);
    assert!(
        members[2].memory(images).installed.load(Ordering::SeqCst) >= 1,
        "member 3 caught up without a snapshot: the test no longer shows one"
    );
    // `docs` on member 3 is untouched by `images`' snapshot.
    assert_eq!(
        texts(&members[2].memory(docs).payloads()),
        expected("doc", 20, 1)
    );

    for member in &members {
        for (raft, _) in member.groups.values() {
            raft.shutdown().await.unwrap();
        }
        member.transport.close();
    }
}

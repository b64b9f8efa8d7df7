//! In-process members for running many Raft groups: each member has one
//! transport endpoint, one log database and one `RaftService`, and runs any
//! number of groups on them, each with an in-memory state machine.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use needle_consensus::openraft::{self, Raft, SnapshotPolicy};
use needle_consensus::{
    ClusterNode, Command, GroupId, LogStore, Network, NodeId, RaftService, SnapshotInbox,
    TypeConfig,
};
use needle_transport::{Security, Transport, TransportConfig};

use super::memory::{Memory, NoApp};

pub const WAIT: Option<Duration> = Some(Duration::from_secs(30));

/// One member: its endpoint, its log database and its groups.
pub struct Member {
    pub id: NodeId,
    pub transport: Transport,
    pub network: Network,
    pub log: LogStore,
    pub service: Arc<RaftService<Memory>>,
    pub groups: BTreeMap<GroupId, (Raft<TypeConfig, Memory>, Memory)>,
    dir: PathBuf,
}

impl Member {
    pub fn start(id: NodeId, root: &std::path::Path) -> Member {
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

    pub fn addr(&self) -> SocketAddr {
        self.transport.local_addr().unwrap()
    }

    pub fn node(&self) -> ClusterNode {
        ClusterNode {
            raft_addr: self.addr().to_string(),
            http_addr: String::new(),
        }
    }

    pub async fn run_group(&mut self, group: GroupId) {
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
            self.log.group(group).unwrap(),
            memory.clone(),
        )
        .await
        .unwrap();
        let replaced = self.service.add_group(group, raft.clone());
        assert!(
            replaced.is_none(),
            "{group} already ran on member {}",
            self.id
        );
        self.groups.insert(group, (raft, memory));
    }

    pub fn raft(&self, group: GroupId) -> &Raft<TypeConfig, Memory> {
        &self.groups[&group].0
    }

    pub fn memory(&self, group: GroupId) -> &Memory {
        &self.groups[&group].1
    }
}

pub async fn leader_of(members: &[Member], group: GroupId) -> usize {
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

pub async fn write(members: &[Member], group: GroupId, payload: &str) {
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

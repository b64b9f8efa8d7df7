//! [`RaftNode`]: a needle node as a member of a Raft cluster. It owns the Raft
//! instance, its log store and state machine, and the transport both Raft and the
//! node's own cluster requests travel on.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use needle_consensus::openraft::async_runtime::WatchReceiver;
use needle_consensus::openraft::Raft;
use needle_consensus::{ClusterNode, LogStore, Network, NodeId, RaftService, TypeConfig};
use needle_transport::faults::FaultInjector;
use needle_transport::{Answer, Handler, PeerInfo, Transport};

use super::app_rpc::{AppRequest, AppResponse, Hello};
use super::connections::Connections;
use super::state_machine::StateMachine;
use crate::replication::error::{ReplicationError, Result};
use crate::replication::TlsConfig;
use crate::served::ServedDatabase;
use crate::Error;
use crate::{Database, DatabaseOptions};

pub(crate) type NeedleRaft = Raft<TypeConfig, StateMachine>;

/// How a Raft node runs. `Default` gives a single loopback node with the guide's
/// timings; set at least `node_id`, `cluster_addr` and `peers`.
#[derive(Clone)]
pub struct RaftConfig {
    pub node_id: NodeId,
    /// Where this node's transport (Raft RPCs) listens.
    pub cluster_addr: SocketAddr,
    /// The HTTP address clients use for this node, told to other members so they
    /// can name the leader.
    pub http_addr: String,
    /// The other members' cluster addresses. A fresh cluster is initialised by the
    /// member with the lowest id once every one of them answers; restarts never
    /// initialise again.
    pub peers: Vec<SocketAddr>,
    /// Ids the peers must answer with (`--peers ID=ADDR`); a mismatch stops the
    /// bootstrap rather than build a cluster of the wrong members.
    pub expected_peer_ids: BTreeMap<SocketAddr, NodeId>,
    /// A follower that heard nothing from a leader for a random time in this
    /// window starts an election (see `election_timing` for how openraft is set so).
    pub election_timeout_ms: Range<u64>,
    pub heartbeat_interval_ms: u64,
    /// How long a write waits for its write concern (and for a leader).
    pub write_timeout_ms: u64,
    /// A snapshot is taken after this many log entries, and the log before it purged
    /// (keeping up to 1000 entries behind it).
    pub snapshot_every: u64,
    /// `None`: unauthenticated transport, for development only.
    pub tls: Option<TlsConfig>,
    /// Test clusters only: the transport's fault injector.
    pub faults: Option<Arc<FaultInjector>>,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            node_id: 1,
            cluster_addr: SocketAddr::from(([127, 0, 0, 1], 5000)),
            http_addr: String::new(),
            peers: Vec::new(),
            expected_peer_ids: BTreeMap::new(),
            election_timeout_ms: 150..300,
            heartbeat_interval_ms: 50,
            write_timeout_ms: 5000,
            snapshot_every: 10_000,
            tls: None,
            faults: None,
        }
    }
}

/// A needle node in a Raft cluster. Cheap to clone.
#[derive(Clone)]
pub struct RaftNode {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: RaftConfig,
    pub served: ServedDatabase,
    /// Set by `start` once the log is open, before the transport answers anyone.
    pub(super) opened: OnceLock<Opened>,
    /// Set by `start` once Raft runs.
    pub(super) running: OnceLock<Running>,
    /// This process's client id for the request ids of the writes it orders.
    pub client_id: u64,
    pub next_serial: std::sync::atomic::AtomicU64,
    /// How far behind each member is, as the leader last saw it (see `status.rs`).
    pub lag: parking_lot::Mutex<Vec<crate::replication::status::ReplicaLag>>,
    /// The shard replicas this member runs (see `shard_groups`).
    pub shard_groups: super::shard_replicas::ShardGroups,
}

/// The Raft log, opened.
pub(crate) struct Opened {
    /// For the `primary` write concern (durable in the leader's log).
    pub log_store: LogStore,
    /// Whether the log store was empty at start (a member never part of a cluster).
    pub fresh: bool,
}

/// Raft and what it talks over.
pub(crate) struct Running {
    pub raft: NeedleRaft,
    pub transport: Transport,
    /// Connections for the node's own requests.
    pub connections: Connections,
    /// Answers every group's RPCs; shard groups are added to it as they start.
    pub service: Arc<RaftService<StateMachine>>,
    /// The cluster group's network; shard groups' share its connections.
    pub network: Network,
    /// The Raft settings every group of this member runs with.
    pub raft_config: Arc<needle_consensus::openraft::Config>,
}

/// Answers the node's own cluster requests (see `app_rpc`).
pub(super) struct AppHandler {
    pub inner: std::sync::Weak<Inner>,
}

/// The largest search answer a native client gets: well inside one transport frame.
const MAX_CLIENT_ANSWER_BYTES: usize = 48 << 20;

impl Handler for AppHandler {
    fn request(&self, from: PeerInfo, body: Vec<u8>) -> Answer {
        let inner = self.inner.clone();
        Box::pin(async move {
            let node = RaftNode {
                inner: inner.upgrade().ok_or("node is shutting down")?,
            };
            let request = AppRequest::decode(&body).map_err(|e| e.to_string())?;
            if !from.role.is_member() && !request.is_for_clients() {
                return Err(format!(
                    "{} is for cluster members; a client certificate may only write, search and ask for status",
                    request.name()
                ));
            }
            let response = node.answer(request).await;
            response.encode().map_err(|e| e.to_string())
        })
    }
}

impl std::fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode")
            .field("node_id", &self.inner.config.node_id)
            .field("cluster_addr", &self.inner.config.cluster_addr)
            .finish()
    }
}

impl RaftNode {
    /// A node over the database at `path` (opened here); nothing runs until
    /// [`RaftNode::start`].
    pub fn new(path: impl AsRef<Path>, config: RaftConfig) -> Result<RaftNode> {
        let db = Database::open_with(path, DatabaseOptions::default())?;
        Ok(RaftNode::with_database(ServedDatabase::new(db), config))
    }

    /// A node serving `served` (how `needle serve --raft` builds it).
    pub fn with_database(served: ServedDatabase, config: RaftConfig) -> RaftNode {
        RaftNode {
            inner: Arc::new(Inner {
                config,
                served,
                opened: OnceLock::new(),
                running: OnceLock::new(),
                client_id: random_client_id(),
                next_serial: std::sync::atomic::AtomicU64::new(0),
                lag: parking_lot::Mutex::new(Vec::new()),
                shard_groups: Default::default(),
            }),
        }
    }

    pub(super) fn running(&self) -> Result<&Running> {
        self.inner
            .running
            .get()
            .ok_or(ReplicationError::NotStarted {
                what: "the raft node",
            })
    }

    pub(crate) fn raft(&self) -> Result<&NeedleRaft> {
        Ok(&self.running()?.raft)
    }

    /// The Raft log, once `start` opened it.
    pub(crate) fn log_store(&self) -> Result<&LogStore> {
        self.inner
            .opened
            .get()
            .map(|opened| &opened.log_store)
            .ok_or(ReplicationError::NotStarted {
                what: "the raft node",
            })
    }

    /// The database this node serves.
    pub fn database(&self) -> Database {
        self.inner.served.current()
    }

    pub fn node_id(&self) -> NodeId {
        self.inner.config.node_id
    }

    /// The address the transport listens on (the port, when 0 was asked for).
    pub fn cluster_addr(&self) -> Result<SocketAddr> {
        self.running()?
            .transport
            .local_addr()
            .map_err(ReplicationError::Transport)
    }

    /// Whether this node is the leader, as far as it knows (a paused, deposed leader
    /// may still think so: writes and linearizable reads check with a quorum).
    pub fn is_leader(&self) -> bool {
        self.raft().is_ok_and(|r| r.is_leader())
    }

    /// The leader this node currently follows, if any.
    pub fn current_leader(&self) -> Option<NodeId> {
        self.raft().ok()?.metrics().borrow_watched().current_leader
    }

    /// Sends one of the node's own requests to the member at `addr`.
    pub(crate) async fn ask(
        &self,
        addr: SocketAddr,
        request: &AppRequest,
        timeout: Duration,
    ) -> Result<AppResponse> {
        self.running()?
            .connections
            .ask(addr, request, timeout)
            .await
    }

    async fn answer(&self, request: AppRequest) -> AppResponse {
        match request {
            AppRequest::Features => AppResponse::Features(super::app_rpc::FEATURES),
            AppRequest::Hello => AppResponse::Hello(Hello {
                node_id: self.node_id(),
                http_addr: self.inner.config.http_addr.clone(),
                fresh: self.inner.opened.get().is_some_and(|opened| opened.fresh)
                    && self.raft().map_or(true, |r| {
                        r.metrics()
                            .borrow_watched()
                            .membership_config
                            .membership()
                            .voter_ids()
                            .next()
                            .is_none()
                    }),
            }),
            AppRequest::Write { command, new_rows } => {
                AppResponse::Write(self.apply_forwarded(command, new_rows).await)
            }
            AppRequest::ReadIndex => {
                AppResponse::ReadIndex(self.leader_read_index().await.map_err(|e| e.to_string()))
            }
            AppRequest::AppliedAtLeast(index) => {
                let deadline = std::time::Instant::now() + Duration::from_secs(1);
                let _ = self.await_applied(index, deadline).await;
                AppResponse::Applied(self.applied_index())
            }
            AppRequest::AppliedVisible { index, collection } => {
                let deadline = std::time::Instant::now() + Duration::from_secs(1);
                if self.await_applied(index, deadline).await.is_ok() {
                    // `all` promises every member shows the write, not only stores it.
                    let db = self.database();
                    let visible = db.await_visible(&collection);
                    let remaining = deadline.saturating_duration_since(std::time::Instant::now());
                    if tokio::time::timeout(remaining, visible).await.is_err() {
                        return AppResponse::Applied(index.saturating_sub(1));
                    }
                }
                AppResponse::Applied(self.applied_index())
            }
            AppRequest::AddMember(addr) => AppResponse::Member(match addr.parse() {
                Ok(addr) => self.add_member(addr).await.map_err(|e| e.to_string()),
                Err(e) => Err(format!("{addr:?} is not a cluster address: {e}")),
            }),
            AppRequest::ClientWrite { command, concern } => {
                let result = match super::command::decode(&command) {
                    Ok((op, precondition)) => {
                        self.write(op, precondition, concern, command.request_id)
                            .await
                    }
                    Err(e) => Err(e.into()),
                };
                AppResponse::ClientWrite(super::command::replicated_outcome(&result))
            }
            AppRequest::ClientSearch(request) => AppResponse::ClientSearch(
                self.client_search(request)
                    .await
                    .map_err(|e| super::command::RejectedWire::from_replication_error(&e)),
            ),
            AppRequest::Status => {
                AppResponse::Status(self.cluster_status().await.map_err(|e| e.to_string()))
            }
            AppRequest::RemoveMember(id) => AppResponse::Member(
                self.remove_member(id)
                    .await
                    .map(|()| id)
                    .map_err(|e| e.to_string()),
            ),
        }
    }

    /// A client's search, at the consistency it asked for.
    async fn client_search(
        &self,
        request: super::app_rpc::SearchRequest,
    ) -> Result<Vec<super::app_rpc::HitWire>> {
        self.read_barrier(request.consistency, &request.collection)
            .await?;
        let filter = match &request.filter {
            Some(text) => {
                let value: serde_json::Value = serde_json::from_str(text)
                    .map_err(|e| Error::InvalidFilter(format!("filter is not JSON: {e}")))?;
                Some(crate::Filter::parse(&value).map_err(Error::InvalidFilter)?)
            }
            None => None,
        };
        let collection = self.database().collection(&request.collection)?;
        let hits = tokio::task::spawn_blocking(move || {
            collection.search(&request.query, request.k, filter.as_ref())
        })
        .await
        .map_err(|_| Error::Closed)??;
        // The answer travels as one transport frame: refuse one that would not fit,
        // rather than fail to send it.
        let mut bytes = 0usize;
        let mut out = Vec::with_capacity(hits.len());
        for h in hits {
            let metadata = h.metadata.and_then(|m| serde_json::to_string(&*m).ok());
            bytes += 32 + h.id.len() + metadata.as_ref().map_or(0, String::len);
            if bytes > MAX_CLIENT_ANSWER_BYTES {
                return Err(Error::ResponseTooLarge {
                    bytes: bytes as u64,
                    max: MAX_CLIENT_ANSWER_BYTES as u64,
                }
                .into());
            }
            out.push(super::app_rpc::HitWire {
                id: h.id,
                distance: h.distance,
                metadata,
            });
        }
        Ok(out)
    }

    /// The last log index this node's state machine applied.
    pub(crate) fn applied_index(&self) -> u64 {
        self.raft()
            .ok()
            .and_then(|r| r.metrics().borrow_watched().last_applied.map(|l| l.index))
            .unwrap_or(0)
    }

    /// A fresh cluster: wait until every peer answers, then the member with the
    /// lowest id initialises it with all of them as voters. If any peer has been in
    /// a cluster already, nobody initialises: this node waits to be added.
    pub(super) async fn bootstrap(self) {
        let peers = self.inner.config.peers.clone();
        loop {
            let Ok(raft) = self.raft() else { return };
            if raft.is_initialized().await.unwrap_or(true) {
                return;
            }
            let mut members = BTreeMap::new();
            members.insert(
                self.node_id(),
                ClusterNode {
                    raft_addr: self
                        .cluster_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_default(),
                    http_addr: self.inner.config.http_addr.clone(),
                },
            );
            let mut all_fresh = true;
            for &addr in &peers {
                match self
                    .ask(addr, &AppRequest::Hello, Duration::from_millis(500))
                    .await
                {
                    Ok(AppResponse::Hello(hello)) => {
                        if let Some(&expected) = self.inner.config.expected_peer_ids.get(&addr) {
                            if expected != hello.node_id {
                                tracing::error!(%addr, expected, answered = hello.node_id, "a peer has another id than --peers says: not bootstrapping");
                                return;
                            }
                        }
                        all_fresh &= hello.fresh;
                        members.insert(
                            hello.node_id,
                            ClusterNode {
                                raft_addr: addr.to_string(),
                                http_addr: hello.http_addr,
                            },
                        );
                    }
                    _ => break,
                }
            }
            if members.len() == peers.len() + 1 {
                if !all_fresh {
                    tracing::info!(
                        "a peer is already in a cluster: waiting to be added, not initialising"
                    );
                    return;
                }
                if members.keys().next() != Some(&self.node_id()) {
                    return; // the lowest id initialises
                }
                match raft.initialize(members.clone()).await {
                    Ok(()) => {
                        tracing::info!(members = ?members.keys().collect::<Vec<_>>(), "initialised the raft cluster")
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "raft cluster not initialised by this node")
                    }
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops Raft, shard groups first; the transport closes when the node is
    /// dropped.
    pub async fn shutdown(&self) {
        self.stop_shard_groups().await;
        if let Ok(raft) = self.raft() {
            let _ = raft.shutdown().await;
        }
    }
}

/// A client id unlikely to be any other process's: time, process id and a
/// per-process hash seed, mixed.
pub(crate) fn random_client_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    hasher.finish()
}

//! Raft's outgoing RPCs over the QUIC transport: one [`PeerNetwork`] per target,
//! connected lazily and reconnected after a failure. Mutual TLS, fault injection
//! and metrics are the transport's.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use needle_transport::{Transport, TransportError};
use openraft::base::{BoxFuture, BoxStream};
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendError,
    StreamAppendResult, TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RaftNetworkV2};

pub use crate::append_bounds::{bounded_append, MAX_APPEND_BYTES};
use crate::append_bounds::{plausible, APPEND_TIMEOUT};
use crate::append_pipeline;
use crate::heartbeat_batch::{HeartbeatBatcher, HeartbeatStats};
use crate::rpc::{RaftRequest, RaftResponse};
use crate::shared_connections::{forget, OpenConnections, SharedPeer};
use crate::snapshot_file::SnapshotFile;
use crate::types::{ClusterNode, GroupId, NodeId, TypeConfig, Vote};

type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>;

/// How long connecting to a peer may take before the peer counts as unreachable:
/// short, because a leader retries on its heartbeat anyway.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// A snapshot reply waits for the receiver to read and install the whole file.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(600);

/// Makes a [`PeerNetwork`] for each peer one Raft group talks to. The groups of a
/// member share its connections ([`Network::for_group`]): a pair of members holding
/// replicas of many groups keeps one replication and one heartbeat connection, each
/// group's traffic on streams of its own.
#[derive(Clone)]
pub struct Network {
    transport: Transport,
    group: GroupId,
    /// Replication and votes.
    connections: OpenConnections,
    /// Heartbeats, apart: on the replication connection a heartbeat would queue
    /// behind megabytes of entries, and a late heartbeat is a lapsed lease.
    heartbeats: OpenConnections,
    /// Shard groups' heartbeats to each member, coalesced while one is in flight
    /// ([`crate::heartbeat_batch`]); shared by every group.
    batcher: Arc<HeartbeatBatcher>,
    /// Off: every heartbeat goes alone (for comparison).
    batch_heartbeats: bool,
}

/// How a client sends a stream of AppendEntries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lane {
    /// Replication: pipelined on one ordered stream ([`append_pipeline`]).
    Replication,
    /// Heartbeats: one at a time; a shard group's are coalesced with other shard
    /// groups' to the same member.
    Heartbeat,
    /// Snapshots: one at a time.
    OneByOne,
}

/// What a heartbeat client batches with.
#[derive(Clone)]
struct Batching {
    batcher: Arc<HeartbeatBatcher>,
    on: bool,
}

impl Network {
    /// The cluster-wide group's network.
    pub fn new(transport: Transport) -> Network {
        Network {
            transport,
            group: GroupId::CLUSTER,
            connections: Arc::default(),
            heartbeats: Arc::default(),
            batcher: Arc::default(),
            batch_heartbeats: true,
        }
    }

    /// `group`'s network, on the same connections (and heartbeat batches) as
    /// this one.
    pub fn for_group(&self, group: GroupId) -> Network {
        Network {
            group,
            ..self.clone()
        }
    }

    /// Whether shard groups' heartbeats to one member are coalesced (the
    /// default) or each sent alone; for the networks made from this one
    /// afterwards, too.
    pub fn with_heartbeat_batching(mut self, on: bool) -> Network {
        self.batch_heartbeats = on;
        self
    }

    /// Heartbeats sent by every group on these connections, and the requests
    /// that carried them.
    pub fn heartbeat_stats(&self) -> &HeartbeatStats {
        self.batcher.stats()
    }

    fn client(
        &self,
        shared: &OpenConnections,
        lane: Lane,
        target: NodeId,
        node: &ClusterNode,
    ) -> PeerNetwork {
        let addr: Option<SocketAddr> = node.raft_addr.parse().ok();
        let peer = addr.and_then(|a| shared.lock().get(&a).filter(|p| p.usable()).cloned());
        let batching = (lane == Lane::Heartbeat).then(|| Batching {
            batcher: self.batcher.clone(),
            on: self.batch_heartbeats,
        });
        PeerNetwork {
            transport: self.transport.clone(),
            group: self.group,
            batching,
            connections: shared.clone(),
            target,
            addr,
            raw_addr: node.raft_addr.clone(),
            peer,
            lane,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &ClusterNode) -> PeerNetwork {
        self.client(&self.connections, Lane::Replication, target, node)
    }

    async fn new_heartbeat_client(&mut self, target: NodeId, node: &ClusterNode) -> PeerNetwork {
        self.client(&self.heartbeats, Lane::Heartbeat, target, node)
    }

    /// A connection of its own, as before connections were shared: a snapshot's
    /// megabytes must not hold up replication either.
    async fn new_snapshot_client(&mut self, target: NodeId, node: &ClusterNode) -> PeerNetwork {
        self.client(&OpenConnections::default(), Lane::OneByOne, target, node)
    }
}

/// The connection to one peer, for one group.
#[derive(Clone)]
pub struct PeerNetwork {
    transport: Transport,
    group: GroupId,
    /// On the heartbeat lane only.
    batching: Option<Batching>,
    connections: OpenConnections,
    target: NodeId,
    addr: Option<SocketAddr>,
    raw_addr: String,
    peer: Option<Arc<SharedPeer>>,
    lane: Lane,
}

/// Why an exchange failed: the peer could not be reached, or it answered badly.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    Unreachable(String),
    Network(String),
}

impl Failure {
    fn into_rpc(self) -> RPCError<TypeConfig> {
        match self {
            Failure::Unreachable(m) => RPCError::Unreachable(Unreachable::from_string(m)),
            Failure::Network(m) => RPCError::Network(NetworkError::from_string(m)),
        }
    }

    fn into_streaming(self) -> StreamingError<TypeConfig> {
        match self {
            Failure::Unreachable(m) => StreamingError::Unreachable(Unreachable::from_string(m)),
            Failure::Network(m) => StreamingError::Network(NetworkError::from_string(m)),
        }
    }
}

impl PeerNetwork {
    /// A client for a heartbeat batch to the same member: batches go in the
    /// cluster group's form (their heartbeats name their groups) and are never
    /// batched again.
    pub(crate) fn for_batch(&self) -> PeerNetwork {
        PeerNetwork {
            group: GroupId::CLUSTER,
            batching: None,
            ..self.clone()
        }
    }

    /// The same client, for `group`'s requests.
    pub(crate) fn for_group(&self, group: GroupId) -> PeerNetwork {
        PeerNetwork {
            group,
            ..self.clone()
        }
    }

    pub(crate) fn target(&self) -> NodeId {
        self.target
    }

    async fn peer(&mut self) -> Result<Arc<SharedPeer>, Failure> {
        // A connection reset by a process that restarted on the peer's address is
        // closed at once (the transport keeps its reset key across restarts).
        if let Some(peer) = self.peer.as_ref().filter(|p| p.usable()) {
            return Ok(peer.clone());
        }
        let addr = self.addr.ok_or_else(|| {
            Failure::Unreachable(format!(
                "node {} has no valid address ({:?})",
                self.target, self.raw_addr
            ))
        })?;
        // Another client may have connected afresh already.
        let shared = self
            .connections
            .lock()
            .get(&addr)
            .filter(|p| p.usable())
            .cloned();
        if let Some(peer) = shared {
            self.peer = Some(peer.clone());
            return Ok(peer);
        }
        let peer = tokio::time::timeout(CONNECT_TIMEOUT, self.transport.connect(addr))
            .await
            .map_err(|_| {
                Failure::Unreachable(format!("connecting to node {} timed out", self.target))
            })?
            .map_err(|e| Failure::Unreachable(e.to_string()))?;
        let peer = Arc::new(SharedPeer::new(peer));
        self.connections.lock().insert(addr, peer.clone());
        self.peer = Some(peer.clone());
        Ok(peer)
    }

    /// Drops the current connection, here and for every client that shares it.
    fn forget_connection(&mut self) {
        if let (Some(peer), Some(addr)) = (self.peer.take(), self.addr) {
            forget(&self.connections, addr, &peer);
        }
    }

    /// Opens this client's replication stream: the connection first if need be.
    async fn open_pipeline(
        &mut self,
    ) -> Result<
        (
            needle_transport::RequestSender,
            needle_transport::AnswerReceiver,
            append_pipeline::PeerLink,
        ),
        Failure,
    > {
        let peer = self.peer().await?;
        let addr = self
            .addr
            .ok_or_else(|| Failure::Unreachable("no address".into()))?;
        let opened = tokio::time::timeout(CONNECT_TIMEOUT, peer.peer.open_request_stream()).await;
        match opened {
            Ok(Ok((sender, answers))) => Ok((
                sender,
                answers,
                append_pipeline::PeerLink {
                    peer,
                    shared: self.connections.clone(),
                    addr,
                    target: self.target,
                    group: self.group,
                },
            )),
            Ok(Err(e)) => {
                self.forget_connection();
                Err(Failure::Unreachable(e.to_string()))
            }
            Err(_) => {
                self.forget_connection();
                Err(Failure::Unreachable(format!(
                    "opening a replication stream to node {} timed out",
                    self.target
                )))
            }
        }
    }

    pub(crate) async fn call(
        &mut self,
        request: &RaftRequest,
        timeout: Duration,
    ) -> Result<RaftResponse, Failure> {
        let body = request
            .encode_for(self.group)
            .map_err(|e| Failure::Network(e.to_string()))?;
        let peer = self.peer().await?;
        let reply = match peer.peer.request_within(&body, timeout).await {
            Ok(reply) => {
                peer.give_up_after(None);
                reply
            }
            Err(e) => {
                if peer.give_up_after(Some(&e)) {
                    self.forget_connection();
                }
                return Err(match e {
                    TransportError::Timeout(_) => Failure::Unreachable(e.to_string()),
                    _ => Failure::Network(e.to_string()),
                });
            }
        };
        RaftResponse::decode(&reply)
            .map_err(|e| Failure::Network(e.to_string()))?
            .map_err(|remote| Failure::Network(format!("node {}: {remote}", self.target)))
    }
}

fn vote_response(response: RaftResponse) -> Option<VoteResponse<TypeConfig>> {
    match response {
        RaftResponse::Vote(r) => Some(r),
        _ => None,
    }
}

impl PeerNetwork {
    /// One request, one answer of the kind `pick` accepts; anything else is a
    /// network error.
    async fn rpc<T>(
        &mut self,
        request: RaftRequest,
        option: RPCOption,
        pick: impl FnOnce(RaftResponse) -> Option<T>,
    ) -> Result<T, RPCError<TypeConfig>> {
        match self.call(&request, option.hard_ttl()).await {
            Ok(response) => pick(response).ok_or_else(|| unexpected(self.target).into_rpc()),
            Err(f) => Err(f.into_rpc()),
        }
    }
}

fn implausible(target: NodeId) -> Failure {
    Failure::Network(format!(
        "node {target} answered an append with a log position it was not sent"
    ))
}

fn unexpected(target: NodeId) -> Failure {
    Failure::Network(format!("node {target} answered a different RPC"))
}

impl RaftNetworkV2<TypeConfig> for PeerNetwork {
    type SnapshotData = SnapshotFile;

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<
            BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>,
            RPCError<TypeConfig>,
        >,
    >
    where
        S: futures_util::Stream<Item = AppendEntriesRequest<TypeConfig>>
            + OptionalSend
            + Unpin
            + 'static,
    {
        if self.lane != Lane::Replication {
            return openraft::network::stream_append_sequential(self, input, option);
        }
        Box::pin(async move {
            let (sender, answers, link) = self.open_pipeline().await.map_err(Failure::into_rpc)?;
            let answers: BoxStream<'s, _> =
                Box::pin(append_pipeline::run(sender, answers, input, link));
            Ok(answers)
        })
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let (rpc, last_sent) = bounded_append(rpc, MAX_APPEND_BYTES);
        // openraft's TTL is the heartbeat interval (50 ms): right for a heartbeat, far
        // too short for megabytes the follower must also fsync, which would then time
        // out and be resent forever.
        let timeout = if rpc.entries.is_empty() {
            option.hard_ttl()
        } else {
            option.hard_ttl().max(APPEND_TIMEOUT)
        };
        let prev = rpc.prev_log_id;
        let last = rpc.entries.last().map(|e| e.log_id).or(prev);
        let vote = rpc.vote;
        let sent = match (self.batching.clone(), self.addr) {
            // A shard group's heartbeat: with the others to the same member.
            (Some(b), Some(addr)) if b.on && rpc.entries.is_empty() && !self.group.is_cluster() => {
                b.batcher
                    .send(self, addr, self.group, rpc, timeout)
                    .await
                    .map(RaftResponse::Append)
            }
            (Some(b), _) if rpc.entries.is_empty() => {
                let sent = self.call(&RaftRequest::Append(rpc), timeout).await;
                let answered = matches!(sent, Ok(RaftResponse::Append(_)));
                b.batcher.stats().count(1, usize::from(answered));
                sent
            }
            _ => self.call(&RaftRequest::Append(rpc), timeout).await,
        };
        let answer = match sent {
            // Only a prefix went: say how far, and openraft sends the rest next.
            Ok(RaftResponse::Append(AppendEntriesResponse::Success)) if last_sent.is_some() => {
                AppendEntriesResponse::PartialSuccess(last_sent)
            }
            Ok(RaftResponse::Append(r)) => r,
            Ok(_) => return Err(unexpected(self.target).into_rpc()),
            Err(f) => return Err(f.into_rpc()),
        };
        let as_stream = match &answer {
            AppendEntriesResponse::Success => Ok(last),
            AppendEntriesResponse::PartialSuccess(matched) => Ok(*matched),
            AppendEntriesResponse::Conflict => match prev {
                Some(at) => Err(StreamAppendError::Conflict(at)),
                None => return Err(implausible(self.target).into_rpc()),
            },
            AppendEntriesResponse::HigherVote(v) => Err(StreamAppendError::HigherVote(*v)),
        };
        if !plausible(&as_stream, prev.as_ref(), last.as_ref(), &vote) {
            return Err(implausible(self.target).into_rpc());
        }
        Ok(answer)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc(RaftRequest::Vote(rpc), option, vote_response)
            .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc(RaftRequest::PreVote(rpc), option, vote_response)
            .await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        let pick = |r| match r {
            RaftResponse::TransferLeader(r) => Some(r),
            _ => None,
        };
        self.rpc(RaftRequest::TransferLeader(req), option, pick)
            .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        // The file is served from disk chunk by chunk as the receiver reads it: a
        // snapshot of any size costs this member no memory.
        let path = snapshot.snapshot.path.clone();
        let summed =
            tokio::task::spawn_blocking(move || needle_transport::region::file_checksum(&path))
                .await
                .map_err(|e| Failure::Network(e.to_string()).into_streaming())?
                .map_err(|e| {
                    Failure::Network(format!("reading {}: {e}", snapshot.snapshot.path.display()))
                        .into_streaming()
                })?;
        let (region, len) = self
            .transport
            .register_file_region(&snapshot.snapshot.path)
            .map_err(|e| Failure::Network(e.to_string()).into_streaming())?;
        let (summed_len, checksum) = summed;
        if summed_len != len {
            let _ = self.transport.remove_region(region);
            return Err(
                Failure::Network("the snapshot file changed while it was offered".into())
                    .into_streaming(),
            );
        }
        let request = RaftRequest::Snapshot {
            vote,
            meta: snapshot.meta,
            region: region.0,
            len,
            checksum,
        };
        tracing::info!(target = self.target, bytes = len, "sending a snapshot");
        let result = tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            reply = self.call(&request, SNAPSHOT_TIMEOUT) => match reply {
                Ok(RaftResponse::Snapshot(r)) => Ok(r),
                Ok(_) => Err(unexpected(self.target).into_streaming()),
                Err(f) => Err(f.into_streaming()),
            },
        };
        // The receiver has read it (or given up): free the region either way.
        let _ = self.transport.remove_region(region);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_group_of_a_member_uses_its_connections() {
        let transport = Transport::bind(
            "127.0.0.1:0".parse().unwrap(),
            needle_transport::TransportConfig::new(needle_transport::Security::InsecureDev),
            Arc::new(NoRequests),
        )
        .unwrap();
        let cluster = Network::new(transport.clone());
        let shard = cluster.for_group(GroupId(3));
        assert_eq!((cluster.group, shard.group), (GroupId::CLUSTER, GroupId(3)));
        assert!(Arc::ptr_eq(&cluster.connections, &shard.connections));
        assert!(Arc::ptr_eq(&cluster.heartbeats, &shard.heartbeats));
        let node = ClusterNode {
            raft_addr: "127.0.0.1:9".into(),
            http_addr: String::new(),
        };
        let client = shard.client(&shard.heartbeats, Lane::OneByOne, 2, &node);
        assert_eq!(client.group, GroupId(3));
        transport.close();
    }

    struct NoRequests;

    impl needle_transport::Handler for NoRequests {
        fn request(
            &self,
            _: needle_transport::PeerInfo,
            _: Vec<u8>,
        ) -> needle_transport::BoxFuture<Result<Vec<u8>, String>> {
            Box::pin(async { Err("none".to_string()) })
        }
    }
}

//! [`RaftClient`]: the native client of a Raft cluster, over the same QUIC transport
//! (and mutual TLS) the members use between themselves.
//!
//! Writes go to the leader it last saw, or to any member, which forwards them; each
//! carries a request id, so the client retries after a timeout or a leader change
//! and the write is still applied at most once. Searches go where the read
//! preference says, at the consistency asked for.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use needle_consensus::{NodeId, RequestId};
use needle_transport::{BoxFuture, Handler, PeerInfo, Transport, TransportConfig};
use parking_lot::Mutex;

use super::app_rpc::{AppRequest, AppResponse, HitWire, SearchRequest};
use super::cluster_status::ClusterStatus;
use super::command;
use super::connections::Connections;
use crate::model::{CollectionConfig, Metadata, VectorRecord};
use crate::op::{Applied, Op, Precondition};
use crate::replication::consistency::ReadConsistency;
use crate::replication::error::{ReplicationError, Result};
use crate::replication::{TlsConfig, WriteConcern};
use crate::Error;

/// Which member serves a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadPreference {
    /// The leader.
    #[default]
    Primary,
    /// A follower, in turn (the leader when there is none).
    Secondary,
    /// The member with the lowest measured round-trip time.
    Nearest,
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchResult {
    pub id: String,
    /// Smaller is closer (as in the HTTP API).
    pub distance: f32,
    pub metadata: Option<Metadata>,
}

/// A client of a Raft cluster. Create it inside a tokio runtime.
pub struct RaftClient {
    members: Vec<SocketAddr>,
    connections: Connections,
    leader: Mutex<Option<SocketAddr>>,
    client_id: u64,
    serial: AtomicU64,
    next_secondary: AtomicUsize,
    /// How long one operation may take, retries included.
    pub timeout: Duration,
    /// How long a write waits on one member before the next member is tried
    /// alongside (a dead member's connection does not fail fast); for searches, how
    /// long one try may take.
    pub attempt_timeout: Duration,
}

/// The client answers nothing: it only asks.
struct NoRequests;

impl Handler for NoRequests {
    fn request(
        &self,
        _from: PeerInfo,
        _body: Vec<u8>,
    ) -> BoxFuture<std::result::Result<Vec<u8>, String>> {
        Box::pin(async { Err("a client serves no requests".to_string()) })
    }
}

impl RaftClient {
    /// A client of the members at `addrs` (their cluster addresses) without TLS: for
    /// clusters started with `--insecure-dev`.
    pub fn new<A: AsRef<str>>(addrs: Vec<A>) -> Result<RaftClient> {
        RaftClient::connect(addrs, None)
    }

    /// A client with its own certificate from the cluster CA (mutual TLS).
    pub fn with_tls<A: AsRef<str>>(addrs: Vec<A>, tls: TlsConfig) -> Result<RaftClient> {
        RaftClient::connect(addrs, Some(tls))
    }

    fn connect<A: AsRef<str>>(addrs: Vec<A>, tls: Option<TlsConfig>) -> Result<RaftClient> {
        let mut members = Vec::new();
        for addr in &addrs {
            let addr = addr.as_ref();
            let resolved = addr
                .to_socket_addrs()
                .map_err(|e| Error::InvalidRequest(format!("member {addr}: {e}")))?
                .next()
                .ok_or_else(|| {
                    Error::InvalidRequest(format!("member {addr} resolves to no address"))
                })?;
            members.push(resolved);
        }
        if members.is_empty() {
            return Err(
                Error::InvalidRequest("a client needs at least one member address".into()).into(),
            );
        }
        let security = TlsConfig::security(tls.as_ref())?;
        let local: SocketAddr = if members[0].is_ipv6() {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        }
        .parse()
        .map_err(|_| Error::InvalidRequest("local address".into()))?;
        let transport =
            Transport::bind(local, TransportConfig::new(security), Arc::new(NoRequests))
                .map_err(ReplicationError::Transport)?;
        Ok(RaftClient {
            members,
            connections: Connections::new(transport, Duration::from_secs(2)),
            leader: Mutex::new(None),
            client_id: super::node::random_client_id(),
            serial: AtomicU64::new(0),
            next_secondary: AtomicUsize::new(0),
            timeout: Duration::from_secs(10),
            attempt_timeout: Duration::from_millis(700),
        })
    }

    async fn ask(
        &self,
        addr: SocketAddr,
        request: &AppRequest,
        timeout: Duration,
    ) -> Result<AppResponse> {
        self.connections.ask(addr, request, timeout).await
    }

    /// Members to try, the known leader first.
    fn candidates(&self) -> Vec<SocketAddr> {
        let mut order = self.members.clone();
        if let Some(leader) = *self.leader.lock() {
            order.retain(|a| *a != leader);
            order.insert(0, leader);
        }
        order
    }

    /// The cluster as the first member that answers sees it; remembers the leader.
    pub async fn cluster_status(&self) -> Result<ClusterStatus> {
        let mut last = ReplicationError::NoLeader("no member answered".into());
        for addr in self.candidates() {
            match self
                .ask(addr, &AppRequest::Status, self.attempt_timeout)
                .await
            {
                Ok(AppResponse::Status(Ok(status))) => {
                    self.remember_leader(&status);
                    return Ok(status);
                }
                Ok(AppResponse::Status(Err(message))) => {
                    last = ReplicationError::Refused {
                        by: addr.to_string(),
                        message,
                    }
                }
                Ok(_) => {
                    last = ReplicationError::UnexpectedAnswer {
                        peer: addr.to_string(),
                    }
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn remember_leader(&self, status: &ClusterStatus) {
        let leader = status.leader_id.and_then(|id| address_of(status, id));
        if leader.is_some() {
            *self.leader.lock() = leader;
        }
    }

    /// Sends a write with a fresh request id to the leader (or any member), retrying
    /// with the same id until it is answered or the timeout passes.
    async fn write(
        &self,
        op: Op,
        precondition: Precondition,
        concern: WriteConcern,
    ) -> Result<Applied> {
        let id = RequestId {
            client: self.client_id,
            serial: self.serial.fetch_add(1, Ordering::Relaxed),
        };
        let request = AppRequest::ClientWrite {
            command: command::encode(&op, precondition, Some(id))?,
            concern,
        };
        let deadline = Instant::now() + self.timeout;
        let mut last = ReplicationError::NoLeader("no member answered".into());
        while Instant::now() < deadline {
            // Hedged tries: a try that has not answered within `attempt_timeout` is not
            // abandoned (a big write may just be slow) but joined by one at the next
            // member (the first may be stuck on a dead member's connection). The same
            // request id makes every extra try harmless; the first answer wins.
            let candidates = self.candidates();
            let attempt = |addr: SocketAddr| {
                let request = &request;
                async move { (addr, self.ask(addr, request, self.timeout).await) }
            };
            let mut tries = FuturesUnordered::new();
            let mut next = 0;
            loop {
                if tries.is_empty() {
                    let Some(&addr) = candidates.get(next) else {
                        break;
                    };
                    tries.push(attempt(addr));
                    next += 1;
                }
                tokio::select! {
                    Some((addr, answer)) = tries.next() => match answer {
                        Ok(AppResponse::ClientWrite(outcome)) => match command::read_outcome(&outcome) {
                            // No leader, or its loss mid-write: the same id again is safe.
                            Err(e) if e.is_no_leader() => last = e,
                            result => return result,
                        },
                        Ok(_) => last = ReplicationError::UnexpectedAnswer { peer: addr.to_string() },
                        Err(e) => last = e,
                    },
                    () = tokio::time::sleep(self.attempt_timeout), if next < candidates.len() => {
                        tries.push(attempt(candidates[next]));
                        next += 1;
                    }
                    () = tokio::time::sleep_until(deadline.into()) => return Err(last),
                }
            }
            *self.leader.lock() = None;
            let _ = self.cluster_status().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(last)
    }

    pub async fn create_collection(&self, config: CollectionConfig) -> Result<Applied> {
        self.write(
            Op::CreateCollection(config),
            Precondition::None,
            WriteConcern::Majority,
        )
        .await
    }

    /// Inserts one vector; `VECTOR_EXISTS` if the id is taken.
    pub async fn insert(
        &self,
        collection: &str,
        id: &str,
        vector: &[f32],
        metadata: Option<Metadata>,
    ) -> Result<Applied> {
        self.insert_with_concern(collection, id, vector, metadata, WriteConcern::Majority)
            .await
    }

    pub async fn insert_with_concern(
        &self,
        collection: &str,
        id: &str,
        vector: &[f32],
        metadata: Option<Metadata>,
        concern: WriteConcern,
    ) -> Result<Applied> {
        let records = vec![VectorRecord {
            id: id.to_string(),
            vector: vector.to_vec(),
            metadata,
        }];
        let op = Op::Upsert {
            collection: collection.to_string(),
            records,
        };
        self.write(op, Precondition::IdsAbsent, concern).await
    }

    /// Inserts or replaces every record, as one write.
    pub async fn upsert(
        &self,
        collection: &str,
        records: Vec<VectorRecord>,
        concern: WriteConcern,
    ) -> Result<Applied> {
        let op = Op::Upsert {
            collection: collection.to_string(),
            records,
        };
        self.write(op, Precondition::None, concern).await
    }

    pub async fn delete(
        &self,
        collection: &str,
        ids: Vec<String>,
        concern: WriteConcern,
    ) -> Result<Applied> {
        let op = Op::Delete {
            collection: collection.to_string(),
            ids,
        };
        self.write(op, Precondition::None, concern).await
    }

    /// `k` nearest neighbours on the leader, eventual consistency.
    pub async fn search(
        &self,
        collection: &str,
        query: &[f32],
        k: usize,
        filter: Option<&serde_json::Value>,
    ) -> Result<Vec<SearchResult>> {
        self.search_with(
            collection,
            query,
            k,
            filter,
            ReadConsistency::Eventual,
            ReadPreference::Primary,
        )
        .await
    }

    pub async fn search_with_consistency(
        &self,
        collection: &str,
        query: &[f32],
        k: usize,
        filter: Option<&serde_json::Value>,
        consistency: ReadConsistency,
    ) -> Result<Vec<SearchResult>> {
        self.search_with(
            collection,
            query,
            k,
            filter,
            consistency,
            ReadPreference::Primary,
        )
        .await
    }

    pub async fn search_with_preference(
        &self,
        collection: &str,
        query: &[f32],
        k: usize,
        filter: Option<&serde_json::Value>,
        preference: ReadPreference,
    ) -> Result<Vec<SearchResult>> {
        self.search_with(
            collection,
            query,
            k,
            filter,
            ReadConsistency::Eventual,
            preference,
        )
        .await
    }

    /// A search at `consistency` on the member `preference` picks, falling back to
    /// the others if it does not answer.
    pub async fn search_with(
        &self,
        collection: &str,
        query: &[f32],
        k: usize,
        filter: Option<&serde_json::Value>,
        consistency: ReadConsistency,
        preference: ReadPreference,
    ) -> Result<Vec<SearchResult>> {
        let request = AppRequest::ClientSearch(SearchRequest {
            collection: collection.to_string(),
            query: query.to_vec(),
            k,
            filter: filter.map(|f| f.to_string()),
            consistency,
        });
        let mut order = self.search_order(preference).await;
        for addr in self.members.iter() {
            if !order.contains(addr) {
                order.push(*addr);
            }
        }
        let mut last = ReplicationError::NoLeader("no member answered".into());
        for addr in order {
            match self.ask(addr, &request, self.attempt_timeout).await {
                Ok(AppResponse::ClientSearch(Ok(hits))) => {
                    return Ok(hits.into_iter().map(result_of).collect())
                }
                Ok(AppResponse::ClientSearch(Err(rejected))) => {
                    let e = rejected.into_error();
                    if !e.is_no_leader() {
                        return Err(e);
                    }
                    last = e;
                }
                Ok(_) => {
                    last = ReplicationError::UnexpectedAnswer {
                        peer: addr.to_string(),
                    }
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Members in the order `preference` wants them tried.
    async fn search_order(&self, preference: ReadPreference) -> Vec<SocketAddr> {
        match preference {
            ReadPreference::Primary => {
                if self.leader.lock().is_none() {
                    let _ = self.cluster_status().await;
                }
                self.candidates()
            }
            ReadPreference::Secondary => {
                let status = self.cluster_status().await.ok();
                let followers: Vec<SocketAddr> = status
                    .iter()
                    .flat_map(|s| s.peers.iter().filter(|p| Some(p.id) != s.leader_id))
                    .filter_map(|p| p.raft_addr.parse().ok())
                    .collect();
                if followers.is_empty() {
                    return self.candidates();
                }
                let first = self.next_secondary.fetch_add(1, Ordering::Relaxed) % followers.len();
                followers
                    .iter()
                    .cycle()
                    .skip(first)
                    .take(followers.len())
                    .copied()
                    .collect()
            }
            ReadPreference::Nearest => {
                let mut measured = Vec::new();
                for addr in &self.members {
                    if let Ok(peer) = self.connections.peer(*addr).await {
                        measured.push((peer.rtt(), *addr));
                    }
                }
                measured.sort();
                measured.into_iter().map(|(_, a)| a).collect()
            }
        }
    }
}

fn address_of(status: &ClusterStatus, id: NodeId) -> Option<SocketAddr> {
    status
        .peers
        .iter()
        .find(|p| p.id == id)
        .and_then(|p| p.raft_addr.parse().ok())
}

fn result_of(hit: HitWire) -> SearchResult {
    SearchResult {
        id: hit.id,
        distance: hit.distance,
        metadata: hit.metadata.and_then(|m| serde_json::from_str(&m).ok()),
    }
}

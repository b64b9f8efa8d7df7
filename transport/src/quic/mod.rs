//! The async shell: a QUIC endpoint (`quinn` on tokio) that carries the core's
//! frames. Requests and responses use bidirectional streams, pushes and region
//! writes unidirectional ones; each stream is independent, so a slow or broken one
//! holds up nothing else, and a bad frame closes only its own stream.

mod connection_ids;
mod endpoint_config;
mod peer;
mod request_stream;
mod serve;
mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

pub use crate::region::RegionData;
pub use peer::Peer;
pub use request_stream::{AnswerReceiver, RequestSender};

use crate::faults::FaultInjector;
use crate::frame::DEFAULT_MAX_BODY;
use crate::region::{AlignedBuf, Completion, RegionKey, RegionTable};
use crate::tls::{configs, Security};
use crate::TransportError;

/// A boxed future, for [`Handler`]'s methods.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a [`Handler`] answers a request with: the response body, or an error
/// message for an error response.
pub type Answer = BoxFuture<Result<Vec<u8>, String>>;

/// A boxed stream, for [`Handler::request_stream`].
pub type BoxStream<T> = Pin<Box<dyn futures_util::Stream<Item = T> + Send + 'static>>;

/// Who sent a request or push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub addr: SocketAddr,
    /// DNS names in the peer's certificate (`needle`, `node-2`, `localhost`, …),
    /// already verified against the cluster CA; empty under `--insecure-dev`.
    pub names: Arc<[String]>,
    /// What the certificate lets it do.
    pub role: PeerRole,
}

/// What a connection's certificate makes of it. The cluster CA issues both kinds:
/// node certificates name [`crate::certs::CLUSTER_SERVER_NAME`] (they can serve as
/// members), client certificates name [`crate::certs::CLIENT_NAME`] instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    /// A member of the cluster: replication, Raft, bulk regions, everything.
    Peer,
    /// A client (`RaftClient`): its own reads and writes, nothing that moves a
    /// member's state.
    Client,
    /// `--insecure-dev`: nothing was authenticated, so nothing can be told apart;
    /// treated as a peer (development only).
    Unauthenticated,
}

impl PeerRole {
    /// Whether it may take part in replication (Raft RPCs, log pulls, regions).
    pub fn is_member(self) -> bool {
        matches!(self, PeerRole::Peer | PeerRole::Unauthenticated)
    }

    /// The role a connection's verified certificate names give it. Under mutual TLS
    /// anything that does not name the cluster (a client certificate, or one from an
    /// outside PKI with no DNS names at all) is a client; nothing is a member by
    /// default.
    fn of(security: &Security, names: &[String]) -> PeerRole {
        match security {
            Security::InsecureDev => PeerRole::Unauthenticated,
            Security::Mutual(_) if names.iter().any(|n| n == crate::certs::CLUSTER_SERVER_NAME) => {
                PeerRole::Peer
            }
            Security::Mutual(_) => PeerRole::Client,
        }
    }
}

impl PeerInfo {
    /// The peer's node name: its first certificate name other than the shared
    /// cluster and client names and `localhost` (`node-N` for `needle certs
    /// generate` files).
    pub fn node_name(&self) -> Option<&str> {
        crate::certs::node_name(&self.names)
    }
}

/// The DNS names of a connection's verified peer certificate.
fn certificate_names(conn: &quinn::Connection) -> Arc<[String]> {
    let Some(identity) = conn.peer_identity() else {
        return Arc::from(Vec::new());
    };
    let Ok(chain) = identity.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>() else {
        return Arc::from(Vec::new());
    };
    let names: Vec<String> = chain
        .first()
        .and_then(|leaf| {
            webpki::EndEntityCert::try_from(leaf)
                .ok()
                .map(|cert| cert.valid_dns_names().map(str::to_string).collect())
        })
        .unwrap_or_default();
    Arc::from(names)
}

/// What the layer above does with incoming messages. Bodies are opaque bytes.
pub trait Handler: Send + Sync + 'static {
    /// Answers a request: `Ok` becomes a response, `Err` an error response with that
    /// message. The future is dropped if the requester cancels or times out.
    fn request(&self, from: PeerInfo, body: Vec<u8>) -> Answer;
    /// Takes a one-way message; `compressed` is the frame's flag. Most handlers
    /// take none: they drop it.
    fn push(&self, _from: PeerInfo, _body: Vec<u8>, _compressed: bool) -> BoxFuture<()> {
        Box::pin(async {})
    }
    /// Answers the requests of one ordered stream ([`Peer::open_request_stream`]),
    /// one answer per request and in their order; the answers end when the
    /// requests do (or earlier, and then the requester hears no more). Requests
    /// arrive while earlier ones are still being answered: that is the point.
    /// Most handlers take none: the default answers with one error.
    fn request_stream(
        &self,
        _from: PeerInfo,
        _requests: BoxStream<Vec<u8>>,
    ) -> BoxStream<Result<Vec<u8>, String>> {
        Box::pin(futures_util::stream::once(async {
            Err("this endpoint takes no request streams".to_string())
        }))
    }
}

/// Settings of one transport endpoint.
#[derive(Clone)]
pub struct TransportConfig {
    pub security: Security,
    /// Largest frame body sent or accepted.
    pub max_body: u32,
    /// How long a request waits for its answer by default.
    pub request_timeout: Duration,
    /// Largest region a peer may have registered or read here.
    pub max_region: u64,
    /// Test-only fault injection (`--fault-injection`); `None` in production.
    pub faults: Option<Arc<FaultInjector>>,
    /// Where traffic is counted; `None` counts nothing.
    pub metrics: Option<Arc<crate::metrics::TransportMetrics>>,
}

impl TransportConfig {
    pub fn new(security: Security) -> TransportConfig {
        TransportConfig {
            security,
            max_body: DEFAULT_MAX_BODY,
            request_timeout: Duration::from_secs(10),
            max_region: 16 << 30,
            faults: None,
            metrics: None,
        }
    }
}

pub(crate) struct Shared {
    pub config: TransportConfig,
    pub handler: Arc<dyn Handler>,
    pub regions: Mutex<RegionTable>,
    /// Woken on every committed region write, so a completion request can wait
    /// for writes still in flight on other streams.
    pub region_progress: Notify,
}

impl Shared {
    /// Whether a partition configured here cuts traffic with `peer`.
    pub fn is_cut(&self, peer: SocketAddr) -> bool {
        self.config
            .faults
            .as_ref()
            .is_some_and(|f| f.is_partitioned(peer))
    }
}

/// One node's endpoint: it accepts peers and connects to them. Clones share the
/// endpoint, its regions and its handler.
#[derive(Clone)]
pub struct Transport {
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    client: quinn::ClientConfig,
}

impl Transport {
    /// Listens on `addr` (port 0 picks one) and serves incoming streams with
    /// `handler`. Must be called inside a tokio runtime.
    pub fn bind(
        addr: SocketAddr,
        config: TransportConfig,
        handler: Arc<dyn Handler>,
    ) -> Result<Transport, TransportError> {
        let (server, client) = configs(&config.security)?;
        let binding = |detail: String| TransportError::Connect {
            addr: addr.to_string(),
            detail: format!("binding: {detail}"),
        };
        let endpoint_config = endpoint_config::endpoint_config(&config.security, addr)?;
        let socket = std::net::UdpSocket::bind(addr).map_err(|e| binding(e.to_string()))?;
        let runtime = quinn::default_runtime().ok_or_else(|| binding("no async runtime".into()))?;
        let endpoint = quinn::Endpoint::new(endpoint_config, Some(server), socket, runtime)
            .map_err(|e| binding(e.to_string()))?;
        if let Some(faults) = &config.faults {
            faults.set_local(endpoint.local_addr().map_err(wire::stream_error)?);
            tracing::warn!("fault injection is enabled on this transport");
        }
        let shared = Arc::new(Shared {
            regions: Mutex::new(RegionTable::new(config.max_region)),
            config,
            handler,
            region_progress: Notify::new(),
        });
        tokio::spawn(serve::accept_loop(endpoint.clone(), shared.clone()));
        Ok(Transport {
            endpoint,
            shared,
            client,
        })
    }

    /// The fault injector, when the transport was built with one.
    pub fn faults(&self) -> Option<&Arc<FaultInjector>> {
        self.shared.config.faults.as_ref()
    }

    pub fn local_addr(&self) -> Result<SocketAddr, TransportError> {
        self.endpoint.local_addr().map_err(wire::stream_error)
    }

    /// A connection to the node at `addr`, authenticated as configured.
    pub async fn connect(&self, addr: SocketAddr) -> Result<Peer, TransportError> {
        let connect_error = |detail: String| TransportError::Connect {
            addr: addr.to_string(),
            detail,
        };
        let connecting = self
            .endpoint
            .connect_with(self.client.clone(), addr, crate::certs::CLUSTER_SERVER_NAME)
            .map_err(|e| connect_error(e.to_string()))?;
        let conn = tokio::time::timeout(self.shared.config.request_timeout, connecting)
            .await
            .map_err(|_| connect_error("handshake timed out".into()))?
            .map_err(|e| connect_error(e.to_string()))?;
        Ok(Peer::new(conn, &self.shared.config))
    }

    /// A zeroed region of `len` bytes for peers to write into.
    pub fn register_region(&self, len: u64) -> Result<RegionKey, TransportError> {
        self.shared.regions.lock().register(len)
    }

    /// A region with `buf` as contents, for peers to read.
    pub fn register_filled_region(&self, buf: AlignedBuf) -> Result<RegionKey, TransportError> {
        self.shared.regions.lock().register_filled(buf)
    }

    /// A region whose contents are the file at `path`, for peers to read in chunks:
    /// nothing of it is held in memory beyond the chunk being served.
    pub fn register_file_region(
        &self,
        path: &std::path::Path,
    ) -> Result<(RegionKey, u64), TransportError> {
        self.shared.regions.lock().register_file(path)
    }

    /// The completion of a fully written region, or what is missing.
    pub fn region_completion(&self, key: RegionKey) -> Result<Completion, TransportError> {
        self.shared.regions.lock().complete(key)
    }

    /// Removes a region and returns its buffer.
    pub fn take_region(&self, key: RegionKey) -> Result<AlignedBuf, TransportError> {
        self.shared.regions.lock().take(key)
    }

    /// Forgets a region of either kind (a file region's file stays on disk).
    pub fn remove_region(&self, key: RegionKey) -> bool {
        self.shared.regions.lock().remove(key)
    }

    /// Closes every connection and stops accepting.
    pub fn close(&self) {
        self.endpoint.close(quinn::VarInt::from_u32(0), b"closing");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_certificate_naming_the_cluster_is_a_member() {
        let mutual = Security::Mutual(crate::TlsFiles {
            cert_path: "c".into(),
            key_path: "k".into(),
            ca_path: "ca".into(),
        });
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            PeerRole::of(&mutual, &names(&["needle", "node-2"])),
            PeerRole::Peer
        );
        assert_eq!(
            PeerRole::of(&mutual, &names(&["needle-client", "client-1"])),
            PeerRole::Client
        );
        // A certificate from an outside PKI with no DNS names at all: a client.
        assert_eq!(PeerRole::of(&mutual, &[]), PeerRole::Client);
        assert_eq!(
            PeerRole::of(&Security::InsecureDev, &[]),
            PeerRole::Unauthenticated
        );
        assert!(!PeerRole::Client.is_member());
        assert!(PeerRole::Unauthenticated.is_member());
    }
}

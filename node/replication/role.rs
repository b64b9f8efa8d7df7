//! A node's replication role at run time: the QUIC transport it runs and, for a
//! replica, the loop that follows the primary's log.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use needle_transport::faults::FaultInjector;
use needle_transport::metrics::TransportMetrics;
use needle_transport::{
    BoxFuture, DeltaCodec, Handler, PeerInfo, Security, Transport, TransportConfig,
};
use parking_lot::Mutex;

use super::concern::WriteConcern;
use super::follower::{Follower, Lag};
use super::install::install_snapshot;
use super::ship::{now_ms, pull_once, LogServer, Pulled, SharedAcks};
use crate::error::{Error, Result};
use crate::served::ServedDatabase;

/// How a node takes part in replication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// No replication: the only copy, no transport.
    Standalone,
    /// Takes writes and serves its log on `cluster_addr`.
    Primary,
    /// Follows `primary`; refuses writes (NOT_PRIMARY).
    Replica { primary: SocketAddr },
}

/// What a node needs to take part in a cluster.
#[derive(Clone)]
pub struct ClusterConfig {
    pub role: Role,
    /// Where this node's transport listens.
    pub cluster_addr: SocketAddr,
    pub security: Security,
    /// Shared with `/debug/faults` when the node runs with `--fault-injection`.
    pub faults: Option<Arc<FaultInjector>>,
    /// Entries per pulled batch.
    pub batch_size: u32,
    /// How long a pull waits on the primary for new entries.
    pub sync_interval: Duration,
    /// How long a write waits for its write concern before WRITE_CONCERN_TIMEOUT.
    pub write_timeout: Duration,
}

/// A replica's view of its stream, for `/replication/status`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReplicaStatus {
    pub connected: bool,
    pub applied_seq: u64,
    pub lag: Lag,
    pub last_error: Option<String>,
    /// Snapshots installed because the primary's log no longer held what was needed.
    pub snapshots_installed: u64,
}

/// The running role: its transport and shared state.
pub struct Replication {
    pub role: Role,
    pub cluster_addr: SocketAddr,
    transport: Transport,
    /// Primary: what each replica has acknowledged.
    pub acks: Arc<SharedAcks>,
    /// How long a write waits for its write concern.
    pub write_timeout: Duration,
    /// Replica: the state of the stream it follows.
    pub replica: Arc<Mutex<ReplicaStatus>>,
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replication")
            .field("role", &self.role)
            .field("cluster_addr", &self.cluster_addr)
            .finish()
    }
}

/// A replica answers no requests yet: its transport exists for when it is promoted.
struct ReplicaHandler;

impl Handler for ReplicaHandler {
    fn request(
        &self,
        _from: PeerInfo,
        _body: Vec<u8>,
    ) -> BoxFuture<std::result::Result<Vec<u8>, String>> {
        Box::pin(async { Err("this node is a replica: pull from the primary".to_string()) })
    }

    fn push(&self, _from: PeerInfo, _body: Vec<u8>, _compressed: bool) -> BoxFuture<()> {
        Box::pin(async {})
    }
}

impl Replication {
    /// Starts the transport and, on a replica, the follow loop. Inside a tokio runtime.
    pub fn start(served: &ServedDatabase, config: ClusterConfig) -> Result<Arc<Replication>> {
        let acks = Arc::new(SharedAcks::default());
        let bound = Arc::new(std::sync::OnceLock::new());
        let handler: Arc<dyn Handler> = match config.role {
            Role::Standalone => {
                return Err(Error::Replication(
                    "a standalone node runs no transport".into(),
                ))
            }
            Role::Primary => Arc::new(LogServer::new(
                served.clone(),
                DeltaCodec::default(),
                acks.clone(),
                bound.clone(),
            )),
            Role::Replica { .. } => Arc::new(ReplicaHandler),
        };
        let metrics = TransportMetrics::register(served.current().metrics().registry())
            .map_err(|e| Error::Metrics(e.to_string()))?;
        let mut transport_config = TransportConfig::new(config.security.clone());
        transport_config.faults = config.faults.clone();
        transport_config.metrics = Some(Arc::new(metrics));
        let transport = Transport::bind(config.cluster_addr, transport_config, handler)
            .map_err(|e| Error::Replication(e.to_string()))?;
        let cluster_addr = transport
            .local_addr()
            .map_err(|e| Error::Replication(e.to_string()))?;
        let _ = bound.set(transport.clone());
        let replication = Arc::new(Replication {
            role: config.role.clone(),
            cluster_addr,
            transport,
            acks,
            write_timeout: config.write_timeout,
            replica: Arc::new(Mutex::new(ReplicaStatus::default())),
        });
        if let Role::Replica { primary } = config.role {
            tokio::spawn(follow(
                replication.clone(),
                served.clone(),
                primary,
                config.batch_size,
                config.sync_interval,
            ));
        }
        Ok(replication)
    }

    /// The primary's cluster address when this node is a replica.
    pub fn primary(&self) -> Option<SocketAddr> {
        match self.role {
            Role::Replica { primary } => Some(primary),
            _ => None,
        }
    }

    /// Sets the lag gauges: a primary's per replica from their acknowledgements, a
    /// replica's own from its stream.
    pub fn refresh_metrics(&self, metrics: &crate::metrics::Metrics, applied: u64) {
        metrics.replication_lag_operations.reset();
        metrics.replication_lag_seconds.reset();
        if self.primary().is_some() {
            let status = self.replica.lock();
            let me = [self.cluster_addr.to_string()];
            let me = [me[0].as_str()];
            metrics
                .replication_lag_operations
                .with_label_values(&me)
                .set(status.lag.operations as i64);
            metrics
                .replication_lag_seconds
                .with_label_values(&me)
                .set(status.lag.time_ms as f64 / 1000.0);
        } else {
            for (replica, acked) in self.acks.tracker.lock().acknowledged() {
                metrics
                    .replication_lag_operations
                    .with_label_values(&[replica.as_str()])
                    .set(applied.saturating_sub(acked) as i64);
            }
        }
    }

    /// Waits until the write at `seq` meets `concern` (primary only; a standalone
    /// node or a primary with no replicas meets every concern at once).
    pub async fn await_concern(&self, seq: u64, concern: WriteConcern) -> Result<()> {
        if self.role != Role::Primary || concern == WriteConcern::Primary {
            return Ok(());
        }
        self.acks.wait(seq, concern, self.write_timeout).await
    }

    pub fn close(&self) {
        self.transport.close();
    }
}

/// Follows the primary for as long as the node runs: connect, pull and apply, and
/// on any failure wait a second and start again from what is durable here.
async fn follow(
    replication: Arc<Replication>,
    served: ServedDatabase,
    primary: SocketAddr,
    batch: u32,
    wait: Duration,
) {
    let codec = DeltaCodec::default();
    let applied_ops = served
        .current()
        .metrics()
        .replication_operations
        .with_label_values(&["replica"]);
    loop {
        match replication.transport.connect(primary).await {
            Ok(peer) => {
                tracing::info!(%primary, "following the primary");
                let mut follower = Follower::new(served.current().applied_seq());
                loop {
                    let before = follower.applied();
                    let db = served.current();
                    let mut pulled =
                        pull_once(&db, &peer, &mut follower, &codec, batch, wait).await;
                    drop(db);
                    if let Ok(Pulled::NeedsSnapshot { log_start }) = pulled {
                        tracing::warn!(%primary, needed = follower.next_needed(), log_start, "behind the primary's retained log: installing a snapshot");
                        pulled = install_snapshot(&served, &peer).await.map(|applied| {
                            follower = Follower::new(applied);
                            replication.replica.lock().snapshots_installed += 1;
                            Pulled::Applied(applied)
                        });
                    }
                    applied_ops.inc_by(follower.applied().saturating_sub(before));
                    let mut status = replication.replica.lock();
                    status.applied_seq = follower.applied();
                    status.lag = follower.lag(now_ms());
                    match pulled {
                        Ok(_) => {
                            status.connected = true;
                            status.last_error = None;
                        }
                        Err(e) => {
                            tracing::warn!(%primary, error = %e, "replication stream broke");
                            status.connected = false;
                            status.last_error = Some(e.to_string());
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(%primary, error = %e, "cannot reach the primary");
                let mut status = replication.replica.lock();
                status.connected = false;
                status.last_error = Some(e.to_string());
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

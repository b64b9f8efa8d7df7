//! A node's replication role at run time: the role itself, the QUIC transport it
//! runs and the state shared with the follow loop (`follow.rs`) and manual failover
//! (`failover.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use needle_transport::faults::FaultInjector;
use needle_transport::metrics::TransportMetrics;
use needle_transport::{DeltaCodec, Handler, Security, Transport, TransportConfig};
use parking_lot::Mutex;

use super::concern::WriteConcern;
use super::epoch::Fence;
use super::follow::Following;
use super::follower::Lag;
use super::ship::{LogServer, SharedAcks};
use crate::error::{Error, Result};
use crate::served::ServedDatabase;
use crate::Database;

/// How a node takes part in replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// No replication: the only copy, no transport.
    Standalone,
    /// Takes writes and serves its log on `cluster_addr`.
    Primary,
    /// Follows `primary`; refuses writes (NOT_PRIMARY).
    Replica { primary: SocketAddr },
    /// Was the primary until a newer one (`primary`, in a higher epoch) announced
    /// itself: refuses writes until it is demoted.
    Fenced { primary: SocketAddr },
}

impl Role {
    pub fn name(&self) -> &'static str {
        match self {
            Role::Standalone => "standalone",
            Role::Primary => "primary",
            Role::Replica { .. } => "replica",
            Role::Fenced { .. } => "fenced",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Role::Replica { primary } => format!("a replica of {primary}"),
            Role::Fenced { primary } => {
                format!("a fenced former primary; the primary is {primary}")
            }
            other => other.name().to_string(),
        }
    }
}

/// The role, shared by the transport's handler and the rest of the node.
#[derive(Debug)]
pub struct RoleCell(Mutex<Role>);

impl RoleCell {
    pub fn new(role: Role) -> RoleCell {
        RoleCell(Mutex::new(role))
    }

    pub fn get(&self) -> Role {
        *self.0.lock()
    }

    pub(super) fn set(&self, role: Role) {
        *self.0.lock() = role;
    }

    /// A newer primary announced itself. A primary in an older epoch stops taking
    /// writes, durably (it stays fenced after a restart). Returns whether it fenced.
    pub fn fence(&self, db: &Database, fence: Fence) -> Result<bool> {
        let mut role = self.0.lock();
        if *role != Role::Primary || fence.epoch <= db.epoch_history()?.current() {
            return Ok(false);
        }
        db.set_fenced_by(Some(&fence))?;
        *role = Role::Fenced {
            primary: fence.primary,
        };
        tracing::warn!(epoch = fence.epoch, primary = %fence.primary, "a newer primary exists: this node takes no more writes");
        Ok(true)
    }
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
    /// zstd-compress log batches where it pays (a primary's choice).
    pub compression: bool,
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
    pub(super) role: Arc<RoleCell>,
    pub cluster_addr: SocketAddr,
    pub(super) transport: Transport,
    pub(super) served: ServedDatabase,
    /// Primary: what each replica has acknowledged.
    pub acks: Arc<SharedAcks>,
    /// How long a write waits for its write concern.
    pub write_timeout: Duration,
    /// Replica: the state of the stream it follows.
    pub replica: Arc<Mutex<ReplicaStatus>>,
    pub(super) batch_size: u32,
    pub(super) sync_interval: Duration,
    pub(super) following: tokio::sync::Mutex<Option<Following>>,
    /// Replica: the cluster addresses of the replicas its primary last said it hears
    /// from (itself included), for promotion's quorum.
    pub(super) members: Mutex<Vec<SocketAddr>>,
    /// One promotion or demotion at a time.
    pub(super) changing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replication")
            .field("role", &self.role.get())
            .field("cluster_addr", &self.cluster_addr)
            .finish()
    }
}

impl Replication {
    /// Starts the transport and, on a replica, the follow loop. Inside a tokio runtime.
    /// A primary that was fenced before a restart starts fenced.
    pub fn start(served: &ServedDatabase, config: ClusterConfig) -> Result<Arc<Replication>> {
        let db = served.current();
        let mut role = config.role;
        match role {
            Role::Standalone => {
                return Err(Error::Replication(
                    "a standalone node runs no transport".into(),
                ))
            }
            Role::Primary => {
                if let Some(fence) = db.fenced_by()? {
                    if fence.epoch > db.epoch_history()?.current() {
                        tracing::warn!(primary = %fence.primary, epoch = fence.epoch, "this node was fenced by a newer primary: it takes no writes until demoted");
                        role = Role::Fenced {
                            primary: fence.primary,
                        };
                    }
                }
            }
            Role::Replica { .. } | Role::Fenced { .. } => {}
        }
        let role = Arc::new(RoleCell::new(role));
        let acks = Arc::new(SharedAcks::default());
        let bound = Arc::new(std::sync::OnceLock::new());
        // Every node serves the same handler: what it answers depends on its role at
        // the time, which promotion and demotion change.
        let codec = if config.compression {
            DeltaCodec::default()
        } else {
            DeltaCodec::uncompressed()
        };
        let handler: Arc<dyn Handler> = Arc::new(LogServer::new(
            served.clone(),
            codec,
            acks.clone(),
            bound.clone(),
            role.clone(),
        ));
        let metrics = TransportMetrics::register(db.metrics().registry())
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
        db.metrics()
            .replication_epoch
            .set(db.epoch_history()?.current() as i64);
        let replication = Arc::new(Replication {
            role,
            cluster_addr,
            transport,
            served: served.clone(),
            acks,
            write_timeout: config.write_timeout,
            replica: Arc::new(Mutex::new(ReplicaStatus::default())),
            batch_size: config.batch_size,
            sync_interval: config.sync_interval,
            following: tokio::sync::Mutex::new(None),
            members: Mutex::new(Vec::new()),
            changing: tokio::sync::Mutex::new(()),
        });
        if let Role::Replica { primary } = replication.role() {
            let following = replication.spawn_follow(primary);
            if let Ok(mut slot) = replication.following.try_lock() {
                *slot = Some(following);
            }
        }
        Ok(replication)
    }

    pub fn role(&self) -> Role {
        self.role.get()
    }

    /// Where writes should go when this node takes none: the primary it follows, or
    /// the one that fenced it.
    pub fn primary(&self) -> Option<SocketAddr> {
        match self.role() {
            Role::Replica { primary } | Role::Fenced { primary } => Some(primary),
            Role::Primary | Role::Standalone => None,
        }
    }

    /// The epoch this node is in.
    pub fn epoch(&self) -> Result<u64> {
        Ok(self.served.current().epoch_history()?.current())
    }

    /// Sets the lag gauges: a primary's per replica from their acknowledgements, a
    /// replica's own from its stream.
    pub fn refresh_metrics(&self, metrics: &crate::metrics::Metrics, applied: u64) {
        metrics.replication_lag_operations.reset();
        metrics.replication_lag_seconds.reset();
        if let Ok(epoch) = self.epoch() {
            metrics.replication_epoch.set(epoch as i64);
        }
        match self.role() {
            Role::Replica { .. } => {
                let status = self.replica.lock();
                let me = self.cluster_addr.to_string();
                metrics
                    .replication_lag_operations
                    .with_label_values(&[me.as_str()])
                    .set(status.lag.operations as i64);
                metrics
                    .replication_lag_seconds
                    .with_label_values(&[me.as_str()])
                    .set(status.lag.time_ms as f64 / 1000.0);
            }
            Role::Primary => {
                let shipped = metrics.replication_bytes_shipped.get();
                if shipped > 0 {
                    metrics
                        .replication_compression_ratio
                        .set(metrics.replication_bytes_raw.get() as f64 / shipped as f64);
                }
                for (replica, acked) in self.acks.tracker.lock().acknowledged() {
                    metrics
                        .replication_lag_operations
                        .with_label_values(&[replica.as_str()])
                        .set(applied.saturating_sub(acked) as i64);
                }
            }
            Role::Fenced { .. } | Role::Standalone => {}
        }
    }

    /// Waits until the write at `seq` meets `concern` (primary only; a primary with
    /// no replicas meets every concern at once).
    pub async fn await_concern(&self, seq: u64, concern: WriteConcern) -> Result<()> {
        if self.role() != Role::Primary || concern == WriteConcern::Primary {
            return Ok(());
        }
        self.acks.wait(seq, concern, self.write_timeout).await
    }

    pub fn close(&self) {
        self.transport.close();
    }
}

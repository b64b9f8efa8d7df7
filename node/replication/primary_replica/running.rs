//! [`Replication`]: primary–replica as it runs on a node — its transport, the state
//! the follow loop (`replica/follow.rs`) and failover (`failover.rs`) share, and
//! start-up.

use crate::replication::primary_replica::epoch::EpochStore;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use needle_transport::faults::FaultInjector;
use needle_transport::{DeltaCodec, Handler, Security, Transport};
use parking_lot::Mutex;

use crate::replication::consistency::WriteConcern;
use crate::replication::error::{ReplicationError, Result};
use crate::replication::primary_replica::members::KnownMembers;
use crate::replication::primary_replica::primary::log_server::{LogServer, SharedAcks};
use crate::replication::primary_replica::replica::stream::Lag;
use crate::replication::primary_replica::role::{Role, RoleCell};
use crate::replication::status::LagSeries;
use crate::served::ServedDatabase;

/// The follow loop while this node is a replica.
pub(in crate::replication) struct Following {
    pub stop: tokio::sync::watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<()>,
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
    pub(in crate::replication) role: Arc<RoleCell>,
    pub cluster_addr: SocketAddr,
    pub(in crate::replication) transport: Transport,
    pub(in crate::replication) served: ServedDatabase,
    /// Primary: what each replica has acknowledged.
    pub acks: Arc<SharedAcks>,
    /// How long a write waits for its write concern.
    pub write_timeout: Duration,
    /// Replica: the state of the stream it follows.
    pub replica: Arc<Mutex<ReplicaStatus>>,
    pub(in crate::replication) batch_size: u32,
    pub(in crate::replication) sync_interval: Duration,
    pub(in crate::replication) following: tokio::sync::Mutex<Option<Following>>,
    /// Replica: every node it has known in the cluster, by name: the primaries it
    /// followed and the replicas they said they hear from (itself included), for
    /// promotion's quorum. Kept in the store (`members.rs`) so a restart does not
    /// forget part of the cluster; shrinks only by `forget`.
    pub(in crate::replication) members: Mutex<KnownMembers>,
    /// One promotion or demotion at a time.
    pub(in crate::replication) changing: tokio::sync::Mutex<()>,
    /// Held (shared) by a primary's write from its role check until it is applied,
    /// and (exclusive) by a demotion before the role changes: a demotion then reads
    /// an applied sequence number that includes every write it let through, so
    /// what it discards is what the new primary never had.
    pub(in crate::replication) writes: tokio::sync::RwLock<()>,
    /// The lag gauges as last set. Locked while they are set from a fresh status,
    /// so two scrapes at once cannot leave the older reading published.
    pub(in crate::replication) lag_series: Mutex<LagSeries>,
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
        if config.cluster_addr.ip().is_unspecified() {
            // Nodes know each other by the address they listen on: a node on
            // 0.0.0.0 is seen by its primary at another address, comes back in the
            // member list as a stranger, and a promotion would count it (itself)
            // twice towards its quorum.
            return Err(crate::Error::InvalidRequest(format!(
                "cluster address {} is unspecified: primary–replica nodes know each other by the address they listen on; give this node's own IP",
                config.cluster_addr
            ))
            .into());
        }
        let db = served.current();
        let mut role = config.role;
        match role {
            Role::Standalone => {
                return Err(ReplicationError::WrongRole {
                    role: Role::Standalone.describe(),
                    needs: "only a primary or a replica runs a transport",
                })
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
        crate::replication::primary_replica::primary::log_server::reset_outgoing(&db)?;
        let acks = Arc::new(SharedAcks::default());
        let members = KnownMembers::load(&db)?;
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
        let transport = crate::replication::transport::start(
            &db,
            config.cluster_addr,
            config.security.clone(),
            config.faults.clone(),
            handler,
        )?;
        let cluster_addr = transport
            .local_addr()
            .map_err(ReplicationError::Transport)?;
        let _ = bound.set(transport.clone());
        acks.load_known(members.clone(), cluster_addr);
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
            members: Mutex::new(members),
            changing: tokio::sync::Mutex::new(()),
            lag_series: Mutex::default(),
            writes: tokio::sync::RwLock::new(()),
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

    /// Waits until the write at `seq`, applied while this node was the primary of
    /// `epoch`, meets `concern` (a primary with no replicas meets every concern at
    /// once). A node that stopped being that primary meanwhile (fenced, demoted,
    /// perhaps promoted again) cannot vouch for the write: it may have been discarded.
    pub async fn await_concern(&self, seq: u64, concern: WriteConcern, epoch: u64) -> Result<()> {
        if concern == WriteConcern::Primary || self.role() == Role::Standalone {
            return Ok(());
        }
        let stopped = || ReplicationError::ConcernLost {
            seq,
            epoch,
            concern,
        };
        if self.role() != Role::Primary || self.epoch()? != epoch {
            return Err(stopped());
        }
        self.acks.wait(seq, concern, self.write_timeout).await?;
        // Acknowledgements count sequence numbers: after a demotion (which discards
        // entries) and a new promotion, replicas acknowledging the new epoch's entry
        // at `seq` say nothing about this write.
        if self.role() != Role::Primary || self.epoch()? != epoch {
            return Err(stopped());
        }
        Ok(())
    }

    /// Forgets the node `name` (a retired or re-addressed replica): it no longer
    /// counts for `majority` nor for a promotion's quorum, until it pulls again.
    /// Whether this node knew it.
    pub fn forget(&self, name: &str) -> Result<bool> {
        let db = self.served.current();
        let (as_primary, known) = self.acks.forget(name);
        let mut members = self.members.lock();
        let as_member = members.forget(name);
        // One store for both views: the primary's replicas and the cluster a replica
        // has known are the same set of nodes.
        let mut merged = known;
        for m in members.members() {
            merged.insert(&m.name, m.addr);
        }
        if as_primary || as_member {
            merged.forget(name);
            *members = merged.clone();
            merged.store(&db)?;
            tracing::warn!(
                node = name,
                "forgot a replica: it no longer counts for majority or quorums"
            );
        }
        Ok(as_primary || as_member)
    }

    /// The replicas this node counts, by name: a primary's for `majority`, a
    /// replica's for a promotion (this node and the primary excluded).
    pub fn known_replicas(&self) -> Vec<String> {
        match self.role() {
            Role::Primary => self.acks.known_replicas(),
            _ => self
                .members
                .lock()
                .others(&[self.cluster_addr])
                .into_iter()
                .filter(|m| Some(m.addr) != self.primary())
                .map(|m| m.name)
                .collect(),
        }
    }

    pub fn close(&self) {
        self.transport.close();
    }
}

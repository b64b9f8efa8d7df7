//! A node's replication role at run time: the role itself, the QUIC transport it
//! runs and the state shared with the follow loop (`follow.rs`) and manual failover
//! (`failover.rs`).

use crate::replication::primary_replica::epoch::EpochStore;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use needle_transport::faults::FaultInjector;
use needle_transport::{DeltaCodec, Handler, Security, Transport};
use parking_lot::Mutex;

use crate::replication::error::{ReplicationError, Result};
use crate::replication::primary_replica::epoch::Fence;
use crate::replication::primary_replica::members::KnownMembers;
use crate::replication::primary_replica::primary::concern_tracker::WriteConcern;
use crate::replication::primary_replica::primary::log_server::{LogServer, SharedAcks};
use crate::replication::primary_replica::replica::follow::Following;
use crate::replication::primary_replica::replica::stream::Lag;
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
pub struct RoleCell {
    role: Mutex<Role>,
    /// Held by a replica while it applies what its primary sent, and while it makes
    /// a promise to a promotion: a promise never lands in the middle of an apply.
    applying: tokio::sync::Mutex<()>,
}

impl RoleCell {
    pub fn new(role: Role) -> RoleCell {
        RoleCell {
            role: Mutex::new(role),
            applying: tokio::sync::Mutex::new(()),
        }
    }

    pub fn get(&self) -> Role {
        *self.role.lock()
    }

    pub(in crate::replication) fn set(&self, role: Role) {
        *self.role.lock() = role;
    }

    /// Held while a replica applies a batch from its primary (see
    /// [`RoleCell::promise`]).
    pub(in crate::replication) async fn applying(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.applying.lock().await
    }

    /// A replica promises the promotion `fence` names, before that promotion reads
    /// its log: from now on (durably) it applies nothing from a primary of an older
    /// epoch. So every entry it acknowledged to the old primary is in what the
    /// promotion reads, and a write a majority acknowledged cannot be lost to it. One
    /// promise per epoch: a second promotion to the same epoch is refused.
    pub(in crate::replication) async fn promise(&self, db: &Database, fence: Fence) -> Result<()> {
        let _applying = self.applying.lock().await;
        if !matches!(self.get(), Role::Replica { .. }) {
            return Err(ReplicationError::Unavailable(format!(
                "only a replica can be caught up from; this node is {}",
                self.get().describe()
            )));
        }
        let current = db.epoch_history()?.current();
        if fence.epoch <= current {
            return Err(ReplicationError::Unavailable(format!(
                "a promotion to epoch {} is stale: this node is in epoch {current}",
                fence.epoch
            )));
        }
        if let Some(promised) = db.fenced_by()? {
            if promised != fence && promised.epoch >= fence.epoch {
                return Err(ReplicationError::Unavailable(format!(
                    "this node already promised epoch {} to {}",
                    promised.epoch, promised.primary
                )));
            }
        }
        if db.fenced_by()? != Some(fence) {
            db.set_fenced_by(Some(&fence))?;
            tracing::warn!(epoch = fence.epoch, primary = %fence.primary, "a promotion is catching up from this replica: nothing more from an older primary");
        }
        Ok(())
    }

    /// Releases the promise made to `fence` (its promotion failed). Returns whether
    /// there was one.
    pub(in crate::replication) async fn release(
        &self,
        db: &Database,
        fence: Fence,
    ) -> Result<bool> {
        let _applying = self.applying.lock().await;
        if db.fenced_by()? == Some(fence) && matches!(self.get(), Role::Replica { .. }) {
            db.set_fenced_by(None)?;
            tracing::info!(epoch = fence.epoch, "promotion failed: promise released");
            return Ok(true);
        }
        Ok(false)
    }

    /// A newer primary announced itself. A primary in an older epoch stops taking
    /// writes, durably (it stays fenced after a restart). Returns whether it fenced.
    pub fn fence(&self, db: &Database, fence: Fence) -> Result<bool> {
        let mut role = self.role.lock();
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
                return Err(ReplicationError::Unavailable(
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
            .map_err(|e| ReplicationError::Unavailable(e.to_string()))?;
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
        let stopped = || {
            ReplicationError::Unavailable(format!(
                "write {seq} was applied while this node was the primary of epoch {epoch}, which it stopped being before write concern {concern:?} was met: the write may have been discarded"
            ))
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

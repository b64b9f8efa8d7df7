//! A node's replication role at run time: the QUIC transport it runs, the loop that
//! follows the primary's log while it is a replica, and the role changes of manual
//! failover (promotion, demotion, fencing).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use needle_transport::faults::FaultInjector;
use needle_transport::metrics::TransportMetrics;
use needle_transport::{DeltaCodec, Handler, Peer, Security, Transport, TransportConfig};
use parking_lot::Mutex;
use tokio::sync::watch;

use super::concern::WriteConcern;
use super::epoch::Fence;
use super::follower::{Follower, Lag};
use super::install::install_snapshot;
use super::pull::{apply, fetch, fetch_from_peer, Fetched};
use super::ship::{now_ms, LogServer, SharedAcks};
use super::wire::{decode_epochs, Request};
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

    fn set(&self, role: Role) {
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

/// The result of a promotion.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Promoted {
    pub epoch: u64,
    pub applied_seq: u64,
    /// Entries taken from peers before the new epoch began.
    pub caught_up: u64,
}

/// The result of a demotion.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Demoted {
    pub epoch: u64,
    /// Operations this node had that the new primary never received, now gone.
    pub discarded: u64,
    pub applied_seq: u64,
}

/// How often a replica asks its primary who the other replicas are.
const MEMBERS_REFRESH: Duration = Duration::from_secs(2);

/// The follow loop while this node is a replica.
struct Following {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// The running role: its transport and shared state.
pub struct Replication {
    role: Arc<RoleCell>,
    pub cluster_addr: SocketAddr,
    transport: Transport,
    served: ServedDatabase,
    /// Primary: what each replica has acknowledged.
    pub acks: Arc<SharedAcks>,
    /// How long a write waits for its write concern.
    pub write_timeout: Duration,
    /// Replica: the state of the stream it follows.
    pub replica: Arc<Mutex<ReplicaStatus>>,
    batch_size: u32,
    sync_interval: Duration,
    following: tokio::sync::Mutex<Option<Following>>,
    /// Replica: the cluster addresses of the replicas its primary last said it hears
    /// from (itself included), for promotion's quorum.
    members: Mutex<Vec<SocketAddr>>,
    /// One promotion or demotion at a time.
    changing: tokio::sync::Mutex<()>,
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

    /// Makes this replica (or fenced former primary) the primary of a new epoch. It
    /// stops following first, so no entry from the old primary lands after its own
    /// first write; takes from each of `peers` (other replicas of the same primary)
    /// the entries they received and it did not, so a write a majority acknowledged
    /// survives even when the promoted replica was not among that majority; then
    /// tells the old primary, until it hears it, to stop taking writes. If a peer
    /// cannot be caught up from, nothing changes and the node follows on.
    ///
    /// With no `peers` named, the replicas the old primary last reported are used.
    /// Unless `force`, the promotion needs to hear from enough nodes (itself and
    /// peers it caught up from) that every majority of the last known cluster
    /// includes one of them: then no write a majority acknowledged can be missing.
    pub async fn promote(self: &Arc<Self>, peers: &[SocketAddr], force: bool) -> Result<Promoted> {
        let _one = self.changing.lock().await;
        let old_primary = match self.role() {
            Role::Replica { primary } | Role::Fenced { primary } => primary,
            Role::Primary => {
                return Err(Error::Replication(
                    "this node is already the primary".into(),
                ))
            }
            Role::Standalone => {
                return Err(Error::Replication(
                    "a standalone node has no replication role".into(),
                ))
            }
        };
        self.stop_following().await;
        let known: Vec<SocketAddr> = self.members.lock().clone();
        let named = !peers.is_empty();
        let candidates: Vec<SocketAddr> = if named {
            peers.to_vec()
        } else {
            known
                .iter()
                .copied()
                .filter(|&a| a != self.cluster_addr)
                .collect()
        };
        // The old primary, this node and every other replica known.
        let cluster = 1
            + known
                .iter()
                .filter(|&&a| a != self.cluster_addr)
                .count()
                .max(candidates.len())
            + 1;
        let needed = cluster - cluster / 2;
        let mut reached = 1;
        let mut caught_up = 0;
        let mut failure = None;
        for &peer in &candidates {
            match self.catch_up_from(peer).await {
                Ok(taken) => {
                    caught_up += taken;
                    reached += 1;
                }
                Err(e) if named => {
                    failure = Some(e);
                    break;
                }
                Err(e) => tracing::warn!(%peer, error = %e, "peer not reached for promotion"),
            }
        }
        if failure.is_none() && reached < needed && !force {
            failure = Some(Error::Replication(format!(
                "promotion must hear from {needed} of the {cluster} nodes (itself included) so that no write a majority acknowledged is lost; it reached {reached}. Bring a replica back, name reachable peers, or force it"
            )));
        }
        if let Some(e) = failure {
            if matches!(self.role(), Role::Replica { .. }) {
                *self.following.lock().await = Some(self.spawn_follow(old_primary));
            }
            return Err(e);
        }
        let db = self.served.current();
        let mut history = db.epoch_history()?;
        let seen = db.fenced_by()?.map_or(0, |f| f.epoch);
        let epoch = history.current().max(seen) + 1;
        let applied = db.applied_seq();
        history.begin(epoch, applied + 1);
        db.set_epoch_history(&history)?;
        db.set_fenced_by(None)?;
        db.metrics().replication_epoch.set(epoch as i64);
        self.role.set(Role::Primary);
        tracing::warn!(epoch, applied_seq = applied, %old_primary, "promoted to primary");
        self.spawn_fence_notice(
            old_primary,
            Fence {
                epoch,
                primary: self.cluster_addr,
            },
        );
        Ok(Promoted {
            epoch,
            applied_seq: applied,
            caught_up,
        })
    }

    /// Applies the entries `addr` (a replica of the same primary, in the same epoch)
    /// has past this node's; returns how many.
    async fn catch_up_from(&self, addr: SocketAddr) -> Result<u64> {
        let peer = self
            .transport
            .connect(addr)
            .await
            .map_err(|e| Error::Replication(format!("catching up from {addr}: {e}")))?;
        let db = self.served.current();
        let epoch = db.epoch_history()?.current();
        let codec = DeltaCodec::default();
        let mut follower = Follower::new(db.applied_seq());
        let before = follower.applied();
        loop {
            match fetch_from_peer(&peer, &follower, &codec, self.batch_size).await? {
                Fetched::NeedsSnapshot { log_start } => {
                    return Err(Error::Replication(format!(
                        "{addr} no longer has entry {} (its log starts at {log_start})",
                        follower.next_needed()
                    )))
                }
                Fetched::Batch { epoch: theirs, .. } if theirs != epoch => {
                    return Err(Error::Replication(format!(
                        "{addr} is in epoch {theirs}, this node in {epoch}: catch up only from replicas of the same primary"
                    )))
                }
                Fetched::Batch { entries, .. } if entries.is_empty() => break,
                Fetched::Batch { info, entries, .. } => {
                    apply(&db, &mut follower, info, entries).await?;
                }
            }
        }
        let taken = follower.applied() - before;
        if taken > 0 {
            tracing::warn!(%addr, entries = taken, "took entries a peer had and this node lacked before promotion");
        }
        Ok(taken)
    }

    /// Makes this node a replica of `primary`, which must be in a newer or the same
    /// epoch. Operations this node has that `primary` never received (a former
    /// primary's unreplicated tail) are discarded, counted and logged, and the node
    /// resyncs from a snapshot of `primary`; otherwise it just streams on.
    pub async fn demote(self: &Arc<Self>, primary: SocketAddr) -> Result<Demoted> {
        let _one = self.changing.lock().await;
        if primary == self.cluster_addr {
            return Err(Error::InvalidRequest("a node cannot follow itself".into()));
        }
        let before = self.role();
        if before == Role::Standalone {
            return Err(Error::Replication(
                "a standalone node has no replication role".into(),
            ));
        }
        self.stop_following().await;
        // No more writes from here on, whatever happens next.
        self.role.set(Role::Replica { primary });
        let outcome = self.resync_from(primary).await;
        if let Err(e) = &outcome {
            tracing::warn!(%primary, error = %e, "demotion failed; still refusing writes and following it");
        }
        *self.following.lock().await = Some(self.spawn_follow(primary));
        outcome
    }

    async fn resync_from(&self, primary: SocketAddr) -> Result<Demoted> {
        let peer = self
            .transport
            .connect(primary)
            .await
            .map_err(|e| Error::Replication(format!("connecting to {primary}: {e}")))?;
        let theirs =
            decode_epochs(&peer.request(&Request::Epochs.encode()).await.map_err(|e| {
                Error::Replication(format!("asking {primary} for its epochs: {e}"))
            })?)?;
        let db = self.served.current();
        let mine = db.epoch_history()?;
        if theirs.current() < mine.current() {
            return Err(Error::Replication(format!(
                "{primary} is in epoch {}, older than this node's {}: it is not a newer primary",
                theirs.current(),
                mine.current()
            )));
        }
        let applied = db.applied_seq();
        let shared = mine.shared_prefix(&theirs, applied);
        let discarded = applied - shared;
        if discarded > 0 {
            tracing::warn!(
                first = shared + 1,
                last = applied,
                count = discarded,
                new_primary = %primary,
                "discarding operations the new primary never received"
            );
            db.metrics()
                .replication_discarded_operations
                .inc_by(discarded);
            install_snapshot(&self.served, &peer).await?;
            self.replica.lock().snapshots_installed += 1;
        } else {
            db.set_epoch_history(&theirs)?;
        }
        let db = self.served.current();
        db.set_fenced_by(None)?;
        db.metrics().replication_epoch.set(theirs.current() as i64);
        Ok(Demoted {
            epoch: theirs.current(),
            discarded,
            applied_seq: db.applied_seq(),
        })
    }

    /// Tells `old_primary` about `fence` every second until it answers (it may be
    /// down or cut off), or until this node is no longer the primary of that epoch.
    fn spawn_fence_notice(self: &Arc<Self>, old_primary: SocketAddr, fence: Fence) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            while me.role() == Role::Primary && me.epoch().is_ok_and(|e| e == fence.epoch) {
                let told = match me.transport.connect(old_primary).await {
                    Ok(peer) => peer.request(&Request::Fence(fence).encode()).await,
                    Err(e) => Err(e),
                };
                match told {
                    Ok(_) => {
                        tracing::info!(%old_primary, epoch = fence.epoch, "the old primary knows of the new epoch");
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(%old_primary, error = %e, "old primary not reached; retrying")
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    fn spawn_follow(self: &Arc<Self>, primary: SocketAddr) -> Following {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(follow(Arc::clone(self), primary, stopped));
        Following { stop, task }
    }

    /// Stops the follow loop and waits for it: an apply in progress finishes first.
    async fn stop_following(&self) {
        if let Some(following) = self.following.lock().await.take() {
            let _ = following.stop.send(true);
            let _ = following.task.await;
        }
        self.replica.lock().connected = false;
    }

    pub fn close(&self) {
        self.transport.close();
    }
}

/// Follows `primary` until told to stop: connect, pull and apply, installing a
/// snapshot when the primary's log no longer reaches back far enough; on any
/// failure wait a second and start again from what is durable here.
async fn follow(
    replication: Arc<Replication>,
    primary: SocketAddr,
    mut stopped: watch::Receiver<bool>,
) {
    let codec = DeltaCodec::default();
    let served = replication.served.clone();
    let applied_ops = served
        .current()
        .metrics()
        .replication_operations
        .with_label_values(&["replica"]);
    while !*stopped.borrow() {
        let connected = tokio::select! {
            _ = stopped.changed() => return,
            connected = replication.transport.connect(primary) => connected,
        };
        match connected {
            Ok(peer) => {
                tracing::info!(%primary, "following the primary");
                let mut follower = Follower::new(served.current().applied_seq());
                let mut members_asked = std::time::Instant::now() - MEMBERS_REFRESH;
                loop {
                    let before = follower.applied();
                    let result = tokio::select! {
                        _ = stopped.changed() => return,
                        fetched = fetch(&peer, &follower, &codec, replication.batch_size, replication.sync_interval) => fetched,
                    };
                    // From here to the next fetch nothing is cancelled: an apply that
                    // has started always finishes, so a promotion never races it.
                    let result = match result {
                        Ok(fetched) => {
                            step(&replication, &peer, primary, &mut follower, fetched).await
                        }
                        Err(e) => Err(e),
                    };
                    if result.is_ok() && members_asked.elapsed() >= MEMBERS_REFRESH {
                        members_asked = std::time::Instant::now();
                        if let Ok(reply) = peer.request(&Request::Members.encode()).await {
                            if let Ok(members) = serde_json::from_slice::<Vec<SocketAddr>>(&reply) {
                                *replication.members.lock() = members;
                            }
                        }
                    }
                    applied_ops.inc_by(follower.applied().saturating_sub(before));
                    let mut status = replication.replica.lock();
                    status.applied_seq = follower.applied();
                    status.lag = follower.lag(now_ms());
                    match result {
                        Ok(()) => {
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
        tokio::select! {
            _ = stopped.changed() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Applies what one fetch brought: a batch (after checking the primary's epoch) or a
/// snapshot install.
async fn step(
    replication: &Replication,
    peer: &Peer,
    primary: SocketAddr,
    follower: &mut Follower,
    fetched: Fetched,
) -> Result<()> {
    match fetched {
        Fetched::NeedsSnapshot { log_start } => {
            tracing::warn!(%primary, needed = follower.next_needed(), log_start, "behind the primary's retained log: installing a snapshot");
            let applied = install_snapshot(&replication.served, peer).await?;
            *follower = Follower::new(applied);
            replication.replica.lock().snapshots_installed += 1;
            Ok(())
        }
        Fetched::Batch {
            info,
            entries,
            epoch,
        } => {
            let db = replication.served.current();
            let mine = db.epoch_history()?;
            if epoch < mine.current() {
                return Err(Error::Replication(format!(
                    "{primary} is in epoch {epoch}, older than this node's {}: not following a deposed primary",
                    mine.current()
                )));
            }
            if epoch > mine.current() {
                // The primary moved to a new epoch (it was promoted while this node
                // followed it): take its history, so a later demotion compares right.
                let theirs = decode_epochs(
                    &peer
                        .request(&Request::Epochs.encode())
                        .await
                        .map_err(|e| Error::Replication(format!("asking for epochs: {e}")))?,
                )?;
                db.set_epoch_history(&theirs)?;
            }
            apply(&db, follower, info, entries).await?;
            Ok(())
        }
    }
}

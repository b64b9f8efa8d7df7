//! Raft's incoming RPCs: the transport handler of a member. Raft traffic goes to
//! the local `Raft` of the group it names; everything else (the node's own
//! requests: forwarded writes, read-index questions) goes to the node's handler, so
//! one QUIC endpoint and one mutual-TLS identity carry every group and the node.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use needle_transport::{BoxFuture, BoxStream, Handler, PeerInfo, RegionKey, Transport};
use openraft::storage::RaftStateMachine;
use openraft::Raft;
use parking_lot::{Mutex, RwLock};

use crate::error::ConsensusError;
use crate::heartbeat_batch::{HeartbeatBatch, MAX_BATCH};
use crate::rpc::{RaftRequest, RaftResponse};
use crate::snapshot_file::{SnapshotFile, SnapshotInbox};
use crate::types::{GroupId, TypeConfig};

/// The least time a batched heartbeat is given to be answered.
const LEAST_BOUND: Duration = Duration::from_millis(5);
/// The most: far above any heartbeat interval.
const MOST_BOUND: Duration = Duration::from_secs(10);

/// Bytes per region read while fetching a snapshot.
const SNAPSHOT_CHUNK: u64 = 4 << 20;

/// Whether the member's shard groups beat from one clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clock {
    NotStarted,
    Ticking(Duration),
    /// Its task died: every group is back on its own timer.
    Failed,
}

const MEMBERS_ONLY: &str =
    "raft RPCs are for cluster members; a client certificate cannot send them";

/// The transport handler of a member. Built before the transport and the Raft
/// instances exist (both need it); [`RaftService::attach`] gives it the transport
/// and the cluster-wide group, [`RaftService::add_group`] every other group.
pub struct RaftService<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    state: Arc<ServiceState<SM>>,
}

struct ServiceState<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    transport: OnceLock<Transport>,
    groups: RwLock<HashMap<GroupId, Raft<TypeConfig, SM>>>,
    /// The member's heartbeat clock ([`RaftService::start_heartbeat_clock`]).
    /// Read and changed only under `groups`' write lock, so a group added while
    /// the clock starts is set up for it either way.
    clock: Mutex<Clock>,
    app: Arc<dyn Handler>,
    inbox: SnapshotInbox,
}

impl<SM> RaftService<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    pub fn new(app: Arc<dyn Handler>, inbox: SnapshotInbox) -> Arc<RaftService<SM>> {
        Arc::new(RaftService {
            state: Arc::new(ServiceState {
                transport: OnceLock::new(),
                groups: RwLock::default(),
                clock: Mutex::new(Clock::NotStarted),
                app,
                inbox,
            }),
        })
    }

    /// Starts answering the cluster-wide group's RPCs; until then they fail and
    /// the sender retries.
    pub fn attach(&self, raft: Raft<TypeConfig, SM>, transport: Transport) {
        self.set_transport(transport);
        if let Some(_earlier) = self.add_group(GroupId::CLUSTER, raft) {
            tracing::warn!(
                "the cluster group was attached twice; the earlier instance no longer answers"
            );
        }
    }

    /// The transport snapshots are fetched back through. Set once; later calls
    /// are ignored.
    pub fn set_transport(&self, transport: Transport) {
        let _ = self.state.transport.set(transport);
    }

    /// Starts answering `group`'s RPCs with `raft`. An earlier instance of the
    /// group is handed back, to be shut down by the caller.
    #[must_use = "an instance replaced here must be shut down"]
    pub fn add_group(
        &self,
        group: GroupId,
        raft: Raft<TypeConfig, SM>,
    ) -> Option<Raft<TypeConfig, SM>> {
        let mut groups = self.state.groups.write();
        if !group.is_cluster() {
            self.state.clock_takes_over(group, &raft);
        }
        let replaced = groups.insert(group, raft)?;
        // Off this member's clock: should it keep running, it beats on its own.
        replaced.runtime_config().heartbeat(true);
        Some(replaced)
    }

    /// Drives the heartbeats of every shard group on this member from one clock
    /// ticking every `interval` (their heartbeat interval): each group's own
    /// timer is turned off, and at every tick each group asked to beat at once,
    /// so that all of a member's heartbeats to one follower leave together and
    /// travel in one batch (`heartbeat_batch`) instead of one request per group.
    /// A group that is not leading ignores the call. A group whose own heartbeat
    /// interval is shorter than `interval` keeps its timer (the clock would beat
    /// it too seldom). The cluster-wide group keeps its own timer: the shard
    /// map's liveness never depends on this clock. Should the clock's task die,
    /// every group goes back to its own timer.
    ///
    /// Runs until the service is dropped; a later call with the same interval
    /// does nothing, one with another interval fails, and so does any once the
    /// clock's task died. Must be called inside a tokio runtime, with an interval
    /// above zero. (A clock whose runtime is dropped while the service lives
    /// stops, and its groups stay off their own timers.)
    pub fn start_heartbeat_clock(&self, interval: Duration) -> Result<(), ConsensusError> {
        if interval.is_zero() {
            return Err(ConsensusError::HeartbeatClock(
                "its interval must be above zero".into(),
            ));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            ConsensusError::HeartbeatClock("it needs a tokio runtime to run on".into())
        })?;
        let groups = self.state.groups.write();
        {
            let mut clock = self.state.clock.lock();
            match *clock {
                Clock::NotStarted => *clock = Clock::Ticking(interval),
                Clock::Ticking(running) if running == interval => return Ok(()),
                Clock::Ticking(running) => {
                    return Err(ConsensusError::HeartbeatClock(format!(
                        "it ticks every {} ms already",
                        running.as_millis()
                    )))
                }
                // Said, not hidden: the caller believes the groups beat together.
                Clock::Failed => {
                    return Err(ConsensusError::HeartbeatClock(
                        "it ran on this service before and its task died".into(),
                    ))
                }
            }
        }
        for (&group, raft) in groups.iter().filter(|(g, _)| !g.is_cluster()) {
            self.state.clock_takes_over(group, raft);
        }
        drop(groups);
        let ticking = runtime.spawn(tick_heartbeats(Arc::downgrade(&self.state), interval));
        let state = Arc::downgrade(&self.state);
        runtime.spawn(async move {
            let Err(died) = ticking.await else { return };
            if let Some(state) = state.upgrade() {
                tracing::error!(error = %died, "the heartbeat clock died; shard groups beat on their own timers again");
                state.clock_failed();
            }
        });
        Ok(())
    }

    /// Stops answering `group`'s RPCs (its replica moved away or its collection
    /// was dropped) and hands its instance back, to be shut down by the caller.
    pub fn remove_group(&self, group: GroupId) -> Option<Raft<TypeConfig, SM>> {
        let raft = self.state.groups.write().remove(&group)?;
        // Off this member's clock: should it keep running, it beats on its own.
        raft.runtime_config().heartbeat(true);
        Some(raft)
    }

    /// The groups this member answers for, in order.
    pub fn groups(&self) -> Vec<GroupId> {
        let mut groups: Vec<GroupId> = self.state.groups.read().keys().copied().collect();
        groups.sort_unstable();
        groups
    }
}

/// The member's heartbeat clock: every tick, each shard group is asked to beat.
async fn tick_heartbeats<SM>(state: std::sync::Weak<ServiceState<SM>>, interval: Duration)
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    let mut tick = tokio::time::interval(interval);
    // A late tick is not made up for with a burst: the next one is a full
    // interval later, as openraft's own timer would be.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(state) = state.upgrade() else {
            return;
        };
        let rafts = state.shard_groups();
        drop(state);
        // All at once, each bounded: a group whose core does not take the call
        // (its request channel full) must not hold back the others' heartbeats,
        // which would let their followers' election timers run out. A call fails
        // only for a group shutting down, which beats no more.
        let triggers = rafts.iter().map(|raft| async move {
            let _ = tokio::time::timeout(interval, raft.trigger().heartbeat()).await;
        });
        futures_util::future::join_all(triggers).await;
    }
}

impl<SM> ServiceState<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    /// Turns `raft`'s own heartbeat timer off if the clock ticks for it. Called
    /// under `groups`' write lock.
    fn clock_takes_over(&self, group: GroupId, raft: &Raft<TypeConfig, SM>) {
        let Clock::Ticking(interval) = *self.clock.lock() else {
            return;
        };
        let own = Duration::from_millis(raft.config().heartbeat_interval);
        if own < interval {
            tracing::warn!(%group, own_ms = own.as_millis() as u64, clock_ms = interval.as_millis() as u64,
                "a group beats more often than the member's heartbeat clock; it keeps its own timer");
            return;
        }
        raft.runtime_config().heartbeat(false);
    }

    /// The clock's task died: every shard group back on its own timer.
    fn clock_failed(&self) {
        let groups = self.groups.write();
        *self.clock.lock() = Clock::Failed;
        for (_, raft) in groups.iter().filter(|(g, _)| !g.is_cluster()) {
            raft.runtime_config().heartbeat(true);
        }
    }

    fn shard_groups(&self) -> Vec<Raft<TypeConfig, SM>> {
        self.groups
            .read()
            .iter()
            .filter(|(group, _)| !group.is_cluster())
            .map(|(_, raft)| raft.clone())
            .collect()
    }

    /// `group`'s instance. A group this member does not run is an error answer
    /// (the sender retries, as for any failed RPC): it may be starting here, or
    /// have moved away.
    fn raft(&self, group: GroupId) -> Result<Raft<TypeConfig, SM>, String> {
        match self.groups.read().get(&group) {
            Some(raft) => Ok(raft.clone()),
            None if group.is_cluster() => Err("raft is starting".to_string()),
            None => Err(format!("{group} does not run on this member")),
        }
    }

    async fn answer(
        self: Arc<Self>,
        from: PeerInfo,
        group: GroupId,
        request: RaftRequest,
    ) -> Result<RaftResponse, String> {
        let request = match request {
            RaftRequest::Heartbeats(heartbeats) => return self.heartbeats(heartbeats).await,
            other => other,
        };
        let raft = self.raft(group)?;
        let fatal = |e: openraft::error::RaftError<TypeConfig>| e.to_string();
        match request {
            RaftRequest::Append(rpc) => raft
                .append_entries(rpc)
                .await
                .map(RaftResponse::Append)
                .map_err(fatal),
            RaftRequest::Vote(rpc) => raft.vote(rpc).await.map(RaftResponse::Vote).map_err(fatal),
            RaftRequest::PreVote(rpc) => raft
                .pre_vote(rpc)
                .await
                .map(RaftResponse::Vote)
                .map_err(fatal),
            RaftRequest::TransferLeader(rpc) => raft
                .handle_transfer_leader(rpc)
                .await
                .map(RaftResponse::TransferLeader)
                .map_err(|e| e.to_string()),
            RaftRequest::Heartbeats(_) => Err("a heartbeat batch inside a group's request".into()),
            RaftRequest::Snapshot {
                vote,
                meta,
                region,
                len,
                checksum,
            } => {
                let transport = self
                    .transport
                    .get()
                    .ok_or_else(|| "this member's transport is not set yet".to_string())?;
                let peer = transport
                    .connect(from.addr)
                    .await
                    .map_err(|e| format!("connecting back to the snapshot's sender: {e}"))?;
                // Straight to a file, a chunk at a time: any size, no memory.
                let file = self.inbox.next_file();
                peer.read_region_to_file(
                    RegionKey(region),
                    len,
                    checksum,
                    SNAPSHOT_CHUNK,
                    &file.path,
                )
                .await
                .map_err(|e| format!("reading the snapshot: {e}"))?;
                tracing::info!(bytes = len, path = %file.path.display(), %group, "installing a snapshot from the leader");
                raft.install_full_snapshot(
                    vote,
                    openraft::alias::SnapshotOf::<TypeConfig, SnapshotFile> {
                        meta,
                        snapshot: file,
                    },
                )
                .await
                .map(RaftResponse::Snapshot)
                .map_err(|e| e.to_string())
            }
        }
    }

    /// Each heartbeat of a batch to its group, all at once; each answer with its
    /// group, or why its group could not take it, in the batch's order. Each is
    /// bounded by most of the sender's wait (the batch's, which is its latest
    /// heartbeat's), and the answer goes once all are in. So one stalled group
    /// (its core busy, its log slow) turns its own answer into an error and
    /// cannot make the batch miss the sender's wait, but it does delay the other
    /// groups' answers up to that bound (40 ms of a 50 ms heartbeat), and a
    /// heartbeat in the batch with less time left than the batch's latest may
    /// miss its own. Answering each as it comes would need a streamed answer;
    /// not built.
    async fn heartbeats(&self, batch: HeartbeatBatch) -> Result<RaftResponse, String> {
        if batch.heartbeats.len() > MAX_BATCH {
            return Err(format!(
                "{} heartbeats in one batch; at most {MAX_BATCH}",
                batch.heartbeats.len()
            ));
        }
        // The sender's wait, capped: no member's batch holds this one's tasks
        // longer than a heartbeat could matter.
        let bound =
            Duration::from_millis(u64::from(batch.wait_ms) * 4 / 5).clamp(LEAST_BOUND, MOST_BOUND);
        let answers = batch.heartbeats.into_iter().map(|(group, rpc)| {
            let raft = self.raft(group);
            async move {
                // Only heartbeats travel this way: entries take the group's
                // replication stream, whose bounds and order they need.
                if !rpc.entries.is_empty() {
                    return (group, Err("a heartbeat batch carried entries".to_string()));
                }
                // The cluster group's heartbeats never join a batch (the shard
                // map's liveness must not depend on one).
                if group.is_cluster() {
                    return (
                        group,
                        Err("a heartbeat batch carried the cluster group's".into()),
                    );
                }
                let answer = match raft {
                    Err(e) => Err(e),
                    Ok(raft) => match tokio::time::timeout(bound, raft.append_entries(rpc)).await {
                        Ok(answer) => answer.map_err(|e| e.to_string()),
                        Err(_) => Err(format!(
                            "{group} did not answer within {} ms",
                            bound.as_millis()
                        )),
                    },
                };
                (group, answer)
            }
        });
        Ok(RaftResponse::Heartbeats(
            futures_util::future::join_all(answers).await,
        ))
    }

    /// Hands a replication stream to its group's pipeline. The stream's first
    /// request names the group; every later one must name the same group.
    fn stream_appends(
        &self,
        peer: std::net::SocketAddr,
        first: Vec<u8>,
        rest: BoxStream<Vec<u8>>,
    ) -> BoxStream<Result<Vec<u8>, String>> {
        let group = match RaftRequest::decode(&first) {
            Some(Ok((group, RaftRequest::Append(_)))) => group,
            _ => return refuse("a replication stream must open with an AppendEntries"),
        };
        let raft = match self.raft(group) {
            Ok(raft) => raft,
            Err(message) => return refuse(&message),
        };
        let appends = futures_util::stream::once(std::future::ready(first))
            .chain(rest)
            .map(move |body| match RaftRequest::decode(&body) {
                Some(Ok((to, RaftRequest::Append(rpc)))) if to == group => Some(rpc),
                other => {
                    let what = match other {
                        Some(Err(e)) => e.to_string(),
                        Some(Ok((to, _))) if to != group => {
                            format!("an AppendEntries for {to} on a stream of {group}")
                        }
                        Some(Ok(_)) => "an RPC other than AppendEntries".to_string(),
                        None => "not Raft traffic".to_string(),
                    };
                    tracing::warn!(%peer, what, "ending a replication stream");
                    None
                }
            })
            .take_while(|rpc| std::future::ready(rpc.is_some()))
            .filter_map(std::future::ready);
        let answers = raft.stream_append(appends).map(|answer| {
            let answer = answer
                .map(RaftResponse::StreamAppend)
                .map_err(|fatal| fatal.to_string());
            RaftResponse::encode(&answer).map_err(|e| e.to_string())
        });
        Box::pin(answers)
    }
}

fn refuse(message: &str) -> BoxStream<Result<Vec<u8>, String>> {
    let message = message.to_string();
    Box::pin(futures_util::stream::once(async move { Err(message) }))
}

impl<SM> Handler for RaftService<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    fn request(&self, from: PeerInfo, body: Vec<u8>) -> BoxFuture<Result<Vec<u8>, String>> {
        match RaftRequest::decode(&body) {
            None => self.state.app.request(from, body),
            // Votes, appends and snapshots move a member's state: members only.
            Some(_) if !from.role.is_member() => Box::pin(async { Err(MEMBERS_ONLY.to_string()) }),
            Some(Err(e)) => Box::pin(async move { Err(e.to_string()) }),
            Some(Ok((group, request))) => {
                let this = self.state.clone();
                Box::pin(async move {
                    let result = this.answer(from, group, request).await;
                    RaftResponse::encode(&result).map_err(|e| e.to_string())
                })
            }
        }
    }

    fn push(&self, from: PeerInfo, body: Vec<u8>, compressed: bool) -> BoxFuture<()> {
        self.state.app.push(from, body, compressed)
    }

    /// A leader's replication stream ([`crate::network`]): AppendEntries in the
    /// order sent, handed to the group's own openraft pipeline, which takes the
    /// next one while the log still syncs the previous ones. Anything but an
    /// AppendEntries of the stream's group ends the stream.
    fn request_stream(
        &self,
        from: PeerInfo,
        mut requests: BoxStream<Vec<u8>>,
    ) -> BoxStream<Result<Vec<u8>, String>> {
        if !from.role.is_member() {
            return refuse(MEMBERS_ONLY);
        }
        let state = self.state.clone();
        // Which group's pipeline takes the stream is known from its first request.
        let opened = async move {
            match requests.next().await {
                Some(first) => state.stream_appends(from.addr, first, requests),
                None => Box::pin(futures_util::stream::empty()) as BoxStream<_>,
            }
        };
        Box::pin(futures_util::stream::once(opened).flatten())
    }
}

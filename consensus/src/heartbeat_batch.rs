//! Heartbeats of many shard groups to one member, coalesced while one is in
//! flight.
//!
//! Every group a member leads sends its own heartbeat to each of its followers
//! every heartbeat interval: a member leading a hundred groups whose followers
//! are the same few members would make a hundred round trips per interval to
//! each of them. Here, per follower address, one lane: a heartbeat that finds
//! the lane idle goes at once, alone (in the ordinary group-addressed form);
//! those that come while a request is in flight queue, and go together as one
//! [`RaftRequest::Heartbeats`] as soon as it is answered (or, if it is slow, once
//! the lane stops waiting for it: below). No heartbeat waits for a fixed window;
//! the busier the pair, the more each request carries.
//!
//! A follower that stalls must not hold back what queued behind its request: the
//! lane waits for an answer at most a quarter of the request's time
//! ([`hold_for`]), then sends what queued anyway, while the earlier request still
//! waits for its answer in a task of its own. At most [`MAX_IN_FLIGHT`] requests
//! to one follower are unanswered at once, so an unreachable one is not sent a
//! new connection attempt every few milliseconds. A queued heartbeat is sent even if
//! its sender stopped waiting (it still resets its follower's election timer),
//! and a group's newer heartbeat replaces its older one still queued, so a queue
//! never holds more than one per group.
//!
//! The receiver hands each heartbeat to its group's Raft as an ordinary
//! AppendEntries and bounds each by most of the sender's wait, so a stalled
//! group cannot make the batch's answer miss it; the answer goes back once every
//! group answered or ran out of that bound (so a stalled group does delay the
//! others' answers, up to that bound: see `RaftService`'s batch receiver).
//!
//! With the member's heartbeat clock on (`RaftService::start_heartbeat_clock`),
//! all shard groups beat at the same instant, so all but the first heartbeat to
//! each follower queue, and one batch carries them.
//!
//! The cluster-wide group's heartbeats never join: the shard map's availability
//! must not depend on any shard group's, and a member from before groups (which
//! runs only the cluster group) never receives a batch.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use parking_lot::Mutex;
use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use tokio::sync::{oneshot, Semaphore};
use tokio::time::Instant;

use crate::network::{Failure, PeerNetwork};
use crate::rpc::{RaftRequest, RaftResponse};
use crate::types::{GroupId, TypeConfig};

/// The most heartbeats one batch carries, and the most a receiver decodes from
/// one: far above any real member's group count, far below what a body can hold.
pub const MAX_BATCH: usize = 4096;

/// Heartbeat requests to one follower unanswered at once, at most.
pub const MAX_IN_FLIGHT: usize = 2;

/// The least time a batch is given: a heartbeat that queued behind a slow one
/// still reaches its follower (whose election timer it resets) even when its
/// sender stopped waiting for the answer. One heartbeat interval, so that such a
/// late batch does not time out at once and count against the connection
/// (two timeouts in a row give it up).
const LEAST_TIMEOUT: Duration = Duration::from_millis(50);

/// A batch as it travels: how long the sender waits for the answer (the receiver
/// answers each heartbeat within most of it), and the heartbeats.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct HeartbeatBatch {
    pub wait_ms: u32,
    #[serde(deserialize_with = "at_most_max_batch")]
    pub heartbeats: Vec<(GroupId, AppendEntriesRequest<TypeConfig>)>,
}

/// Decodes the list, refusing it past [`MAX_BATCH`] items before it allocates
/// them: a body of tiny heartbeats could otherwise decode to gigabytes.
fn at_most_max_batch<'de, D>(
    deserializer: D,
) -> Result<Vec<(GroupId, AppendEntriesRequest<TypeConfig>)>, D::Error>
where
    D: Deserializer<'de>,
{
    struct Bounded;

    impl<'de> Visitor<'de> for Bounded {
        type Value = Vec<(GroupId, AppendEntriesRequest<TypeConfig>)>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "at most {MAX_BATCH} heartbeats")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_BATCH));
            while let Some(item) = seq.next_element()? {
                if out.len() == MAX_BATCH {
                    return Err(serde::de::Error::custom(format!(
                        "more than {MAX_BATCH} heartbeats in one batch"
                    )));
                }
                out.push(item);
            }
            Ok(out)
        }
    }

    deserializer.deserialize_seq(Bounded)
}

type Answer = Result<AppendEntriesResponse<TypeConfig>, Failure>;

struct Queued {
    group: GroupId,
    rpc: AppendEntriesRequest<TypeConfig>,
    deadline: Instant,
    answer: oneshot::Sender<Answer>,
}

/// The heartbeat lanes of a member's networks, shared by every group: per
/// follower address whose lane is busy, what queued on it. An address is here
/// only while its lane's task runs, so the map holds only busy followers.
#[derive(Default)]
pub(crate) struct HeartbeatBatcher {
    lanes: Mutex<HashMap<SocketAddr, Vec<Queued>>>,
    /// Per follower address, the requests that may be unanswered at once
    /// ([`MAX_IN_FLIGHT`]); kept across lanes, one entry per member address.
    in_flight: Mutex<HashMap<SocketAddr, Arc<Semaphore>>>,
    stats: HeartbeatStats,
}

/// What a member's heartbeats cost, since its network was made.
#[derive(Debug, Default)]
pub struct HeartbeatStats {
    /// Heartbeats sent, of every group.
    pub heartbeats: AtomicU64,
    /// Requests that carried them.
    pub requests: AtomicU64,
    /// Heartbeats their group answered (of any content; not those the
    /// follower's member could only answer with an error).
    pub answered: AtomicU64,
}

impl HeartbeatStats {
    /// Counts one request carrying `heartbeats`, of which `answered` were
    /// answered by their groups.
    pub(crate) fn count(&self, heartbeats: usize, answered: usize) {
        self.heartbeats
            .fetch_add(heartbeats as u64, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.answered.fetch_add(answered as u64, Ordering::Relaxed);
    }
}

impl HeartbeatBatcher {
    pub fn stats(&self) -> &HeartbeatStats {
        &self.stats
    }

    /// Sends `group`'s heartbeat `rpc` to the member at `addr` through `via` (a
    /// client to it), with the other groups' heartbeats that queue while a
    /// request to it is in flight, and waits at most `ttl` for its answer.
    pub async fn send(
        self: &Arc<Self>,
        via: &PeerNetwork,
        addr: SocketAddr,
        group: GroupId,
        rpc: AppendEntriesRequest<TypeConfig>,
        ttl: Duration,
    ) -> Answer {
        let (tx, rx) = oneshot::channel();
        let deadline = Instant::now() + ttl;
        let queued = Queued {
            group,
            rpc,
            deadline,
            answer: tx,
        };
        let first = {
            let mut lanes = self.lanes.lock();
            match lanes.get_mut(&addr) {
                Some(waiting) => {
                    // A newer heartbeat of the group carries all an older one
                    // would: the older one goes no more.
                    if let Some(older) = waiting.iter().position(|q| q.group == group) {
                        let older = waiting.swap_remove(older);
                        let _ = older.answer.send(Err(Failure::Unreachable(format!(
                            "{group}'s heartbeat was replaced by a newer one"
                        ))));
                    }
                    waiting.push(queued);
                    None
                }
                None => {
                    lanes.insert(addr, Vec::new());
                    Some(queued)
                }
            }
        };
        if let Some(first) = first {
            // A task of its own: openraft drops a heartbeat that outlives its
            // interval, and whatever queues behind this one must still go. The
            // guard is made before the task, so a task that never runs (its
            // runtime shutting down) still closes the lane.
            let lane = LaneOpen {
                batcher: self.clone(),
                addr,
                open: true,
            };
            tokio::spawn(self.clone().run_lane(lane, via.for_batch(), vec![first]));
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(Failure::Network("the heartbeat batch was dropped".into())),
            Err(_) => Err(Failure::Unreachable(format!(
                "no heartbeat answer within {} ms",
                ttl.as_millis()
            ))),
        }
    }

    /// Sends `batch`, then whatever queued meanwhile, until nothing is queued.
    async fn run_lane(
        self: Arc<Self>,
        mut lane: LaneOpen,
        via: PeerNetwork,
        mut batch: Vec<Queued>,
    ) {
        let addr = lane.addr;
        let slots = self
            .in_flight
            .lock()
            .entry(addr)
            .or_insert_with(|| Arc::new(Semaphore::new(MAX_IN_FLIGHT)))
            .clone();
        // Never closed, so acquiring only waits: for one of the requests still
        // unanswered to be answered or to time out.
        let Ok(mut slot) = slots.clone().acquire_owned().await else {
            return;
        };
        loop {
            let hold = hold_for(&batch, Instant::now());
            let sending = self.clone().send_batch(via.clone(), batch);
            let mut sending = tokio::spawn(async move {
                sending.await;
                drop(slot);
            });
            // Whatever the batch's fate past `hold`, it answers its own waiters.
            let _ = tokio::time::timeout(hold, &mut sending).await;
            // The next batch is taken once it may go, so that it carries each
            // group's newest heartbeat, not one that went stale waiting.
            let Ok(next) = slots.clone().acquire_owned().await else {
                return;
            };
            slot = next;
            let mut lanes = self.lanes.lock();
            let Some(waiting) = lanes.get_mut(&addr) else {
                lane.open = false;
                return;
            };
            if waiting.is_empty() {
                lanes.remove(&addr);
                lane.open = false;
                return;
            }
            let rest = waiting.split_off(waiting.len().min(MAX_BATCH));
            batch = std::mem::replace(waiting, rest);
        }
    }

    async fn send_batch(self: Arc<Self>, mut via: PeerNetwork, mut batch: Vec<Queued>) {
        let via = &mut via;
        let timeout = batch_timeout(&batch, Instant::now());
        let count = batch.len();
        if count == 1 {
            // Alone: the ordinary form, as if there were no batching.
            let Some(q) = batch.pop() else { return };
            let reply = via
                .for_group(q.group)
                .call(&RaftRequest::Append(q.rpc), timeout)
                .await;
            let answered = matches!(reply, Ok(RaftResponse::Append(_)));
            self.stats.count(1, usize::from(answered));
            let _ = q.answer.send(match reply {
                Ok(RaftResponse::Append(r)) => Ok(r),
                Ok(_) => Err(answered_otherwise(via)),
                Err(failure) => Err(failure),
            });
            return;
        }
        let (heartbeats, waiters): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|q| ((q.group, q.rpc), (q.group, q.answer)))
            .unzip();
        let request = RaftRequest::Heartbeats(HeartbeatBatch {
            wait_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
            heartbeats,
        });
        match via.call(&request, timeout).await {
            Ok(RaftResponse::Heartbeats(answers)) if answers.len() == waiters.len() => {
                let answered = answers
                    .iter()
                    .zip(&waiters)
                    .filter(|((answered_for, answer), (group, _))| {
                        answered_for == group && answer.is_ok()
                    })
                    .count();
                self.stats.count(count, answered);
                for ((group, waiter), (answered_for, answer)) in waiters.into_iter().zip(answers) {
                    // Each answer names its group: a member that mixed them up
                    // would otherwise hand one group's answer to another.
                    let answer = match answer {
                        _ if answered_for != group => Err(answered_otherwise(via)),
                        Ok(r) => Ok(r),
                        Err(remote) => {
                            Err(Failure::Network(format!("node {}: {remote}", via.target())))
                        }
                    };
                    let _ = waiter.send(answer);
                }
            }
            Ok(_) => {
                self.stats.count(count, 0);
                for (_, waiter) in waiters {
                    let _ = waiter.send(Err(answered_otherwise(via)));
                }
            }
            Err(failure) => {
                self.stats.count(count, 0);
                for (_, waiter) in waiters {
                    let _ = waiter.send(Err(failure.clone()));
                }
            }
        }
    }
}

/// How long a batch waits for its answer: as long as its latest heartbeat may.
fn batch_timeout(batch: &[Queued], now: Instant) -> Duration {
    batch
        .iter()
        .map(|q| q.deadline.saturating_duration_since(now))
        .max()
        .unwrap_or_default()
        .max(LEAST_TIMEOUT)
}

/// How long a lane waits for a batch's answer before it sends what queued
/// behind it: a quarter of the time its most pressing heartbeat has left (at
/// least 1 ms). An answer within it (the usual case, a round trip) keeps one
/// request in flight per follower; a follower that stalls gets a new request
/// about every quarter of a heartbeat's time, each carrying at most one heartbeat
/// per group, and never more than [`MAX_IN_FLIGHT`] unanswered.
fn hold_for(batch: &[Queued], now: Instant) -> Duration {
    let earliest = batch
        .iter()
        .map(|q| q.deadline.saturating_duration_since(now))
        .min()
        .unwrap_or_default();
    (earliest / 4).max(Duration::from_millis(1))
}

/// Closes its lane if the lane's task ends without doing so (it panicked, or
/// its runtime shut down): the lane would otherwise stay busy for good, and
/// every later heartbeat to that follower queue forever.
struct LaneOpen {
    batcher: Arc<HeartbeatBatcher>,
    addr: SocketAddr,
    open: bool,
}

impl Drop for LaneOpen {
    fn drop(&mut self) {
        if self.open {
            // Those queued learn it from their dropped answer channel.
            self.batcher.lanes.lock().remove(&self.addr);
        }
    }
}

fn answered_otherwise(via: &PeerNetwork) -> Failure {
    Failure::Network(format!(
        "node {} answered heartbeats with something else",
        via.target()
    ))
}

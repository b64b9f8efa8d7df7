//! Heartbeats of many shard groups to one member, coalesced while one is in
//! flight.
//!
//! Every group a member leads sends its own heartbeat to each of its followers
//! every heartbeat interval, each group on its own timer: a member leading a
//! hundred groups whose followers are the same few members would make a hundred
//! round trips per interval to each of them. Here, per follower address, at most
//! one heartbeat request is in flight: a heartbeat that finds none goes at once,
//! alone (in the ordinary group-addressed form); those that come while one is in
//! flight queue, and go together as one [`RaftRequest::Heartbeats`] as soon as it
//! is answered. No heartbeat waits for a timer, and none waits longer than one
//! round trip behind another; the busier the pair, the more each request carries.
//! The receiver hands each to its group's Raft as an ordinary AppendEntries, and
//! answers each within a bound of its own, so one stalled group cannot hold the
//! others' answers past their time.
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
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::network::{Failure, PeerNetwork};
use crate::rpc::{RaftRequest, RaftResponse};
use crate::types::{GroupId, TypeConfig};

/// The most heartbeats one batch carries, and the most a receiver decodes from
/// one: far above any real member's group count, far below what a body can hold.
pub const MAX_BATCH: usize = 4096;

/// The least time a batch is given: a heartbeat that queued behind a slow one
/// still reaches its follower (whose election timer it resets) even when its
/// sender stopped waiting for the answer.
const LEAST_TIMEOUT: Duration = Duration::from_millis(10);

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

/// Per follower address: whether a heartbeat request is in flight, and what
/// queued behind it.
#[derive(Default)]
struct Lane {
    in_flight: bool,
    queued: Vec<Queued>,
}

/// The heartbeat lanes of a member's networks, shared by every group.
#[derive(Default)]
pub(crate) struct HeartbeatBatcher {
    lanes: Mutex<HashMap<SocketAddr, Lane>>,
    stats: HeartbeatStats,
}

/// What a member's heartbeats cost, since its network was made.
#[derive(Debug, Default)]
pub struct HeartbeatStats {
    /// Heartbeats sent, of every group.
    pub heartbeats: AtomicU64,
    /// Requests that carried them.
    pub requests: AtomicU64,
    /// Heartbeats whose answer came back (of any content).
    pub answered: AtomicU64,
}

impl HeartbeatStats {
    /// Counts one request carrying `heartbeats`, of which `answered` came back.
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
            let lane = lanes.entry(addr).or_default();
            if lane.in_flight {
                lane.queued.push(queued);
                None
            } else {
                lane.in_flight = true;
                Some(queued)
            }
        };
        if let Some(first) = first {
            // A task of its own: openraft drops a heartbeat that outlives its
            // interval, and whatever queues behind this one must still go.
            let (batcher, via) = (self.clone(), via.for_batch());
            tokio::spawn(async move { batcher.run_lane(via, addr, vec![first]).await });
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
    async fn run_lane(&self, mut via: PeerNetwork, addr: SocketAddr, mut batch: Vec<Queued>) {
        loop {
            // A heartbeat whose sender gave up still resets its follower's
            // election timer: it goes, unless its group's worker is gone.
            batch.retain(|q| !q.answer.is_closed());
            if !batch.is_empty() {
                self.send_batch(&mut via, batch).await;
            }
            let mut lanes = self.lanes.lock();
            let Some(lane) = lanes.get_mut(&addr) else {
                return;
            };
            if lane.queued.is_empty() {
                lane.in_flight = false;
                return;
            }
            let rest = lane.queued.split_off(lane.queued.len().min(MAX_BATCH));
            batch = std::mem::replace(&mut lane.queued, rest);
        }
    }

    async fn send_batch(&self, via: &mut PeerNetwork, mut batch: Vec<Queued>) {
        let now = Instant::now();
        let timeout = batch
            .iter()
            .map(|q| q.deadline.saturating_duration_since(now))
            .max()
            .unwrap_or_default()
            .max(LEAST_TIMEOUT);
        let count = batch.len();
        if count == 1 {
            // Alone: the ordinary form, as if there were no batching.
            let Some(q) = batch.pop() else { return };
            let reply = via
                .for_group(q.group)
                .call(&RaftRequest::Append(q.rpc), timeout)
                .await;
            self.stats.count(1, usize::from(reply.is_ok()));
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
                self.stats.count(count, count);
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

fn answered_otherwise(via: &PeerNetwork) -> Failure {
    Failure::Network(format!(
        "node {} answered heartbeats with something else",
        via.target()
    ))
}

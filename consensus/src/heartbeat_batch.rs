//! Heartbeats of many groups to one member, sent as one request.
//!
//! Every group a member leads sends its own heartbeat to each of its followers
//! every heartbeat interval, each group on its own timer. A member leading a
//! hundred groups whose followers are the same few members would make a hundred
//! round trips per interval to each of them. Here a heartbeat for a member waits
//! up to [`DEFAULT_WINDOW`] for the heartbeats of other groups to the same member,
//! and all of them travel as one [`RaftRequest::Heartbeats`] whose answer carries
//! each group's answer: at most one round trip per window per pair of members,
//! whatever the number of groups. The receiver hands each one to its group's
//! Raft as an ordinary AppendEntries, so openraft sees no difference.
//!
//! A member that runs only the cluster-wide group (no shards) never batches:
//! there is nothing to batch with, and its heartbeats keep the wire form and the
//! timing they always had.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::network::{Failure, PeerNetwork};
use crate::rpc::{RaftRequest, RaftResponse};
use crate::types::{GroupId, TypeConfig};

/// How long a heartbeat waits for others to the same member: a tenth of needle's
/// default heartbeat interval (50 ms), far inside any election timeout.
pub const DEFAULT_WINDOW: Duration = Duration::from_millis(5);

/// The most heartbeats one batch carries, and the most a receiver accepts in one:
/// far above any real member's group count, far below the frame limit.
pub const MAX_BATCH: usize = 4096;

type Answer = Result<AppendEntriesResponse<TypeConfig>, Failure>;

struct Queued {
    group: GroupId,
    rpc: AppendEntriesRequest<TypeConfig>,
    deadline: Instant,
    answer: oneshot::Sender<Answer>,
}

/// The heartbeats waiting to go, per member address, and what was sent.
#[derive(Default)]
pub(crate) struct HeartbeatBatcher {
    queues: Mutex<HashMap<SocketAddr, Vec<Queued>>>,
    stats: HeartbeatStats,
}

/// Heartbeats sent and the requests that carried them, since the network was
/// made: the ratio is what batching saves.
#[derive(Debug, Default)]
pub struct HeartbeatStats {
    pub heartbeats: AtomicU64,
    pub requests: AtomicU64,
}

impl HeartbeatBatcher {
    pub fn stats(&self) -> &HeartbeatStats {
        &self.stats
    }

    /// Counts one heartbeat sent alone, not through a batch.
    pub fn count_alone(&self) {
        self.stats.heartbeats.fetch_add(1, Ordering::Relaxed);
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Sends `rpc`, `group`'s heartbeat, with the other heartbeats to the same
    /// member that come within `window`, through `via` (a client to that member),
    /// and waits at most `ttl` for its answer.
    pub async fn send(
        self: &Arc<Self>,
        via: &PeerNetwork,
        addr: SocketAddr,
        window: Duration,
        group: GroupId,
        rpc: AppendEntriesRequest<TypeConfig>,
        ttl: Duration,
    ) -> Answer {
        let (tx, rx) = oneshot::channel();
        let deadline = Instant::now() + ttl;
        let first = {
            let mut queues = self.queues.lock();
            let queue = queues.entry(addr).or_default();
            queue.push(Queued {
                group,
                rpc,
                deadline,
                answer: tx,
            });
            queue.len() == 1
        };
        if first {
            // Its own task: openraft drops a heartbeat that outlives its interval,
            // and the others queued behind this one must still go.
            let (batcher, via) = (self.clone(), via.for_batch());
            tokio::spawn(async move {
                tokio::time::sleep(window).await;
                batcher.flush(via, addr).await;
            });
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

    async fn flush(&self, mut via: PeerNetwork, addr: SocketAddr) {
        let mut queued = self.queues.lock().remove(&addr).unwrap_or_default();
        while !queued.is_empty() {
            let rest = queued.split_off(queued.len().min(MAX_BATCH));
            self.send_batch(&mut via, queued).await;
            queued = rest;
        }
    }

    async fn send_batch(&self, via: &mut PeerNetwork, batch: Vec<Queued>) {
        let deadline = batch.iter().map(|q| q.deadline).max();
        let timeout = deadline.map_or(Duration::ZERO, |d| {
            d.saturating_duration_since(Instant::now())
        });
        let count = batch.len() as u64;
        let (heartbeats, answers): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|q| ((q.group, q.rpc), q.answer))
            .unzip();
        self.stats.heartbeats.fetch_add(count, Ordering::Relaxed);
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let reply = via
            .call(&RaftRequest::Heartbeats(heartbeats), timeout)
            .await;
        match reply {
            Ok(RaftResponse::Heartbeats(results)) if results.len() == answers.len() => {
                for (answer, result) in answers.into_iter().zip(results) {
                    let _ = answer.send(result.map_err(|remote| {
                        Failure::Network(format!("node {}: {remote}", via.target()))
                    }));
                }
            }
            Ok(_) => {
                for answer in answers {
                    let _ = answer.send(Err(Failure::Network(format!(
                        "node {} answered a heartbeat batch with something else",
                        via.target()
                    ))));
                }
            }
            Err(failure) => {
                for answer in answers {
                    let _ = answer.send(Err(failure.clone()));
                }
            }
        }
    }
}

//! Each collection's lane from "durable" to "visible": how committed writes reach a
//! collection's in-memory index without the single writer ever waiting on one
//! collection's readers.
//!
//! The writer commits a group of ops to RocksDB, then hands each data op to its
//! collection's lane. When nothing is queued there and the index's write lock is
//! free, the lane applies the op at once, on the writer's thread — the common case
//! costs nothing extra. When a search (or a compaction) holds the index, the op is
//! queued and a drainer thread applies it (and everything queued behind it, in
//! order) once the readers are done; the writer goes on with the next group and the
//! other collections. A long search therefore delays only writes to the collection
//! it reads, and only their visibility: they are already durable.
//!
//! A client is answered once its write is visible. Replication and Raft move on as
//! soon as it is durable, and a linearizable read first waits for the lane to show
//! everything committed before it ([`ApplyLane::wait_visible`]).
//!
//! If applying to memory fails after the op is durable (a device error, a full
//! shard), memory would no longer match the store: the lane rebuilds the
//! collection's index from the store instead, and only if that fails too does the
//! node stop taking writes.

pub(crate) mod drain;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::error::Result;
use crate::op::{Applied, Op};

/// Bytes of ops one lane holds back before it slows their sources down: past it, an
/// op ordered elsewhere (a replica's stream, a Raft log) is reported durable only
/// once it is applied, so replication waits instead of piling whole vectors up in
/// memory behind a long search.
const LANE_BACKLOG_BYTES: usize = 256 << 20;

/// An op's durable answer, sent when the lane has room for it (or once applied).
pub(crate) type DurableReply = (oneshot::Sender<Result<Applied>>, Applied);

/// One durable op waiting to become visible.
pub(crate) struct Work {
    pub seq: u64,
    pub op: Op,
    /// What the op did, decided when it was checked: the client's answer.
    pub applied: Applied,
    pub reply: oneshot::Sender<Result<Applied>>,
    /// The durable answer, for ops ordered elsewhere.
    pub durable: Option<DurableReply>,
}

impl Work {
    fn rows(&self) -> usize {
        match &self.op {
            Op::Upsert { records, .. } => records.len(),
            _ => 0,
        }
    }

    fn bytes(&self) -> usize {
        match &self.op {
            Op::Upsert { records, .. } => records.iter().map(|r| 64 + 4 * r.vector.len()).sum(),
            Op::Delete { ids, .. } => ids.iter().map(|id| 32 + id.len()).sum(),
            _ => 0,
        }
    }
}

#[derive(Default)]
struct Queue {
    works: VecDeque<Work>,
    /// A drainer thread owns the queue until it finds it empty.
    draining: bool,
    /// The sequence number of the last op handed to this lane.
    committed: u64,
}

/// One collection's lane.
pub(crate) struct ApplyLane {
    queue: Mutex<Queue>,
    /// The sequence number of the last op of this collection applied to memory.
    visible: tokio::sync::watch::Sender<u64>,
    /// Rows and bytes handed to the lane and not yet applied (queued, or taken by a
    /// drainer that waits for the index). Atomics, so that room checks holding the
    /// index never need the queue's lock.
    pending_rows: AtomicUsize,
    pending_bytes: AtomicUsize,
    pending_ops: AtomicUsize,
}

impl Default for ApplyLane {
    fn default() -> Self {
        ApplyLane {
            queue: Mutex::default(),
            visible: tokio::sync::watch::Sender::new(0),
            pending_rows: AtomicUsize::new(0),
            pending_bytes: AtomicUsize::new(0),
            pending_ops: AtomicUsize::new(0),
        }
    }
}

impl ApplyLane {
    /// Rows handed to the lane and not yet in the index, for the room checks.
    pub fn pending_rows(&self) -> usize {
        self.pending_rows.load(Ordering::Acquire)
    }

    /// Whether every op handed to the lane is in the index: then the index is as
    /// exact as the store (the writer, the only one to hand ops on, asks).
    pub fn caught_up(&self) -> bool {
        self.pending_ops.load(Ordering::Acquire) == 0
    }

    /// Waits until every op committed to this lane before the call is visible.
    pub async fn wait_visible(&self) {
        let target = self.queue.lock().committed;
        let mut visible = self.visible.subscribe();
        let _ = visible.wait_for(|&v| v >= target).await;
    }

    fn applied(&self, works: &[Work]) {
        let (rows, bytes) = works
            .iter()
            .fold((0, 0), |(r, b), w| (r + w.rows(), b + w.bytes()));
        self.pending_rows.fetch_sub(rows, Ordering::AcqRel);
        self.pending_bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.pending_ops.fetch_sub(works.len(), Ordering::AcqRel);
    }
}

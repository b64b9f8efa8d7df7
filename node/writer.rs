//! The single writer: orders ops, makes them durable and applies them.
//!
//! All writes funnel through one thread. It takes whatever ops are waiting (a group),
//! checks each against the state left by the ops before it, gives the accepted ones
//! consecutive sequence numbers, writes them as one fsynced RocksDB batch, and only
//! then applies them in memory and answers their callers. Grouping is what lets many
//! concurrent writers share one fsync without weakening the guarantee that every
//! acknowledged write is on disk.

use crate::catalog::CollectionState;
use crate::database::Inner;
use crate::error::{Error, Result};
use crate::op::{Applied, Op, Precondition};
use crate::storage::StoredCollection;
use rocksdb::WriteBatch;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// When the write-ahead log is fsynced.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum SyncMode {
    /// Ops waiting together share one fsync (the default: the same durability as
    /// `PerWrite` — nothing is acknowledged before its fsync — with far higher
    /// throughput under concurrent writers).
    #[default]
    Group,
    /// Every op gets its own fsync, even when others are waiting.
    PerWrite,
}

/// At most this many ops share a batch, so one huge group cannot delay every caller.
const MAX_GROUP_OPS: usize = 512;

pub(crate) struct Pending {
    pub op: Op,
    pub precondition: Precondition,
    /// Set when the op was ordered elsewhere (a primary, a Raft log) and must land at
    /// exactly this sequence number; `None` when this node orders it.
    pub seq: Option<u64>,
    /// `meta` changes written in the same batch as the op, when it is accepted:
    /// Raft's applied log id and request records, so data and bookkeeping can never
    /// disagree.
    pub meta: Vec<MetaWrite>,
    pub reply: oneshot::Sender<Result<Applied>>,
}

/// A `meta` change that rides with an op (see [`Pending::meta`]).
#[derive(Debug, Clone)]
pub(crate) enum MetaWrite {
    Put(String, Vec<u8>),
    Delete(String),
    /// What the op did, under `key` (a Raft request id), so a retry of the same
    /// request is answered from here instead of applied again.
    Outcome {
        key: String,
        index: u64,
    },
}

/// The outcome of an accepted op, as [`MetaWrite::Outcome`] stores it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredOutcome {
    pub index: u64,
    pub seq: u64,
    pub affected: usize,
    pub deleted: Vec<bool>,
}

fn stage_meta_write(
    inner: &Inner,
    batch: &mut WriteBatch,
    write: &MetaWrite,
    seq: u64,
    op: &Op,
    deleted: &[bool],
) -> Result<()> {
    match write {
        MetaWrite::Put(key, value) => inner.store.stage_meta(batch, key, value),
        MetaWrite::Delete(key) => inner.store.stage_meta_delete(batch, key),
        MetaWrite::Outcome { key, index } => {
            // The same counts `apply_in_memory` reports for an accepted op.
            let affected = match op {
                Op::Upsert { records, .. } => records.len(),
                Op::Delete { .. } => deleted.iter().filter(|d| **d).count(),
                Op::CreateCollection(_) | Op::DropCollection { .. } => 1,
            };
            let outcome = StoredOutcome {
                index: *index,
                seq,
                affected,
                deleted: deleted.to_vec(),
            };
            let bytes = serde_json::to_vec(&outcome)
                .map_err(|e| Error::Corrupt(format!("request record: {e}")))?;
            inner.store.stage_meta(batch, key, &bytes)
        }
    }
}

/// Owns the writer thread. Dropping it closes the queue and waits for the thread to
/// finish the ops already queued.
pub(crate) struct WriterHandle {
    tx: Option<Sender<Pending>>,
    join: Option<JoinHandle<()>>,
}

impl WriterHandle {
    pub fn start(inner: Arc<Inner>, mode: SyncMode) -> Result<WriterHandle> {
        let (tx, rx) = std::sync::mpsc::channel();
        let join = std::thread::Builder::new()
            .name("needle-writer".into())
            .spawn(move || run(&inner, &rx, mode))
            .map_err(|e| Error::InvalidRequest(format!("cannot start writer thread: {e}")))?;
        Ok(WriterHandle {
            tx: Some(tx),
            join: Some(join),
        })
    }

    pub fn send(&self, pending: Pending) -> Result<()> {
        self.tx
            .as_ref()
            .ok_or(Error::Closed)?
            .send(pending)
            .map_err(|_| Error::Closed)
    }
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(join) = self.join.take() {
            let _ = join.join();
        }
    }
}

fn run(inner: &Inner, rx: &Receiver<Pending>, mode: SyncMode) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        if mode == SyncMode::Group {
            while group.len() < MAX_GROUP_OPS {
                match rx.try_recv() {
                    Ok(p) => group.push(p),
                    Err(_) => break,
                }
            }
        }
        // Collection creation and removal change what later ops are checked against,
        // so each commits alone; runs of data ops between them commit together.
        let mut run: Vec<Pending> = Vec::new();
        for p in group {
            let catalog_op = matches!(p.op, Op::CreateCollection(_) | Op::DropCollection { .. });
            if catalog_op || mode == SyncMode::PerWrite {
                commit(inner, std::mem::take(&mut run));
                commit(inner, vec![p]);
            } else {
                run.push(p);
            }
        }
        commit(inner, run);
    }
}

/// An op that passed its checks, waiting for the batch to be durable.
struct Accepted {
    pending: Pending,
    seq: u64,
    target: Target,
    deleted: Vec<bool>,
}

enum Target {
    Create(StoredCollection),
    Existing(Arc<CollectionState>),
}

/// Presence of ids as changed by earlier ops of the same run: (collection, id) → present.
type Overlay = HashMap<(String, String), bool>;

fn commit(inner: &Inner, run: Vec<Pending>) {
    if run.is_empty() {
        return;
    }
    let mut batch = WriteBatch::default();
    let mut seq = inner.applied_seq.load(Ordering::Acquire);
    let mut overlay = Overlay::new();
    let mut accepted = Vec::with_capacity(run.len());
    for pending in run {
        // Ops ordered elsewhere: already applied is a no-op (so retries and replays are
        // safe), and anything but the next sequence number is a gap.
        if let Some(want) = pending.seq {
            if want <= seq {
                let skipped = Applied {
                    seq: want,
                    affected: 0,
                    deleted: Vec::new(),
                };
                let _ = pending.reply.send(Ok(skipped));
                continue;
            }
            if want != seq + 1 {
                let _ = pending.reply.send(Err(Error::LogGap {
                    expected: seq + 1,
                    got: want,
                }));
                continue;
            }
        }
        let checked =
            check(inner, &pending, seq + 1, &mut overlay).and_then(|(target, deleted)| {
                let id = match &target {
                    Target::Create(s) => s.id,
                    Target::Existing(s) => s.stored.id,
                };
                inner.store.stage(&mut batch, seq + 1, &pending.op, id)?;
                for write in &pending.meta {
                    stage_meta_write(inner, &mut batch, write, seq + 1, &pending.op, &deleted)?;
                }
                Ok((target, deleted))
            });
        match checked {
            Ok((target, deleted)) => {
                seq += 1;
                accepted.push(Accepted {
                    pending,
                    seq,
                    target,
                    deleted,
                });
            }
            Err(e) => {
                let _ = pending.reply.send(Err(e));
            }
        }
    }
    if accepted.is_empty() {
        return;
    }
    let trim_below = match retention_cut(inner, seq) {
        Some(below) => match inner.store.stage_log_trim(
            &mut batch,
            inner.log_start.load(Ordering::Acquire),
            below,
        ) {
            Ok(()) => Some(below),
            Err(e) => {
                tracing::warn!(error = %e, "could not stage log trim");
                None
            }
        },
        None => None,
    };
    let started = std::time::Instant::now();
    let committed = inner.store.commit(batch);
    inner
        .metrics
        .write_commit_seconds
        .observe(started.elapsed().as_secs_f64());
    if let Err(e) = committed {
        tracing::error!(error = %e, ops = accepted.len(), "write batch failed; nothing applied");
        for a in accepted {
            let _ = a.pending.reply.send(Err(Error::Storage(e.clone())));
        }
        return;
    }
    if let Some(below) = trim_below {
        inner.log_start.store(below, Ordering::Release);
        inner.metrics.oplog_first_seq.set(below as i64);
    }
    inner.metrics.write_group_ops.observe(accepted.len() as f64);
    inner.metrics.applied_seq.set(seq as i64);
    inner
        .commit_times
        .record(seq, crate::replication::ship::now_ms());
    for a in accepted {
        inner
            .metrics
            .write_ops
            .with_label_values(&[a.pending.op.kind()])
            .inc();
        let affected = apply_in_memory(inner, &a.pending.op, a.target);
        inner.applied_seq.store(a.seq, Ordering::Release);
        inner.applied_watch.send_replace(a.seq);
        let affected = if matches!(a.pending.op, Op::Delete { .. }) {
            a.deleted.iter().filter(|d| **d).count()
        } else {
            affected
        };
        let _ = a.pending.reply.send(Ok(Applied {
            seq: a.seq,
            affected,
            deleted: a.deleted,
        }));
    }
}

/// Where to cut the log once `last_seq` is written, if it is due. Trimming waits for
/// an eighth of the retention to accumulate past it, so each trim is one range delete
/// covering many entries rather than one per op.
fn retention_cut(inner: &Inner, last_seq: u64) -> Option<u64> {
    let start = inner.log_start.load(Ordering::Acquire);
    let kept = (last_seq + 1).saturating_sub(start);
    let retention = inner.log_retention;
    (kept > retention + retention.div_ceil(8)).then(|| last_seq + 1 - retention)
}

/// State-dependent checks: the collection exists (or not, for create), vectors fit it,
/// and preconditions hold given every earlier op. Static checks (ids, finiteness,
/// metadata size) were done by the caller before queueing.
fn check(
    inner: &Inner,
    p: &Pending,
    seq: u64,
    overlay: &mut Overlay,
) -> Result<(Target, Vec<bool>)> {
    match &p.op {
        Op::CreateCollection(config) => {
            if inner.catalog.get(&config.name).is_some() {
                return Err(Error::CollectionExists(config.name.clone()));
            }
            Ok((
                Target::Create(StoredCollection {
                    config: config.clone(),
                    id: seq,
                }),
                Vec::new(),
            ))
        }
        Op::DropCollection { name } => {
            let state = inner
                .catalog
                .get(name)
                .ok_or_else(|| Error::CollectionNotFound(name.clone()))?;
            Ok((Target::Existing(state), Vec::new()))
        }
        Op::Upsert {
            collection,
            records,
        } => {
            let state = inner
                .catalog
                .get(collection)
                .ok_or_else(|| Error::CollectionNotFound(collection.clone()))?;
            let dims = state.stored.config.dimensions;
            if let Some((index, r)) = records
                .iter()
                .enumerate()
                .find(|(_, r)| r.vector.len() != dims)
            {
                let source = Box::new(Error::DimensionMismatch {
                    expected: dims,
                    got: r.vector.len(),
                });
                return Err(Error::InvalidBatchItem { index, source });
            }
            if p.precondition == Precondition::IdsAbsent {
                let index = state.index.read();
                for r in records {
                    let key = (collection.clone(), r.id.clone());
                    let present = overlay
                        .get(&key)
                        .copied()
                        .unwrap_or_else(|| index.contains(&r.id));
                    if present {
                        return Err(Error::VectorExists(r.id.clone()));
                    }
                }
            }
            // A GPU shard refuses rows it has no device memory for now, before the
            // commit, rather than failing after it. Counting every record (some may
            // be overwrites) errs on the side of refusing.
            state.index.read().shard.check_room(records.len())?;
            for r in records {
                overlay.insert((collection.clone(), r.id.clone()), true);
            }
            Ok((Target::Existing(state), Vec::new()))
        }
        Op::Delete { collection, ids } => {
            let state = inner
                .catalog
                .get(collection)
                .ok_or_else(|| Error::CollectionNotFound(collection.clone()))?;
            let index = state.index.read();
            let deleted = ids
                .iter()
                .map(|id| {
                    let key = (collection.clone(), id.clone());
                    let present = overlay
                        .get(&key)
                        .copied()
                        .unwrap_or_else(|| index.contains(id));
                    overlay.insert(key, false);
                    present
                })
                .collect();
            drop(index);
            Ok((Target::Existing(state), deleted))
        }
    }
}

/// Applies a durable op to the in-memory catalog and shards. Returns the number of
/// records it touched. Failures here cannot un-commit the op; they are logged, and a
/// restart rebuilds memory from the store.
fn apply_in_memory(inner: &Inner, op: &Op, target: Target) -> usize {
    let result = match (op, target) {
        (Op::CreateCollection(_), Target::Create(stored)) => {
            CollectionState::new(stored, inner.backend.as_ref()).map(|state| {
                inner.catalog.insert(state);
                1
            })
        }
        (Op::DropCollection { name }, _) => {
            inner.catalog.remove(name);
            Ok(1)
        }
        (Op::Upsert { records, .. }, Target::Existing(state)) => {
            let mut index = state.index.write();
            records
                .iter()
                .try_for_each(|r| index.upsert(r))
                .map(|_| records.len())
        }
        (Op::Delete { ids, .. }, Target::Existing(state)) => {
            let result = {
                let mut index = state.index.write();
                ids.iter()
                    .try_fold(0, |n, id| index.delete(id).map(|d| n + usize::from(d)))
            };
            state.maybe_compact();
            result
        }
        _ => Err(Error::Corrupt("op and target disagree".into())),
    };
    result.unwrap_or_else(|e| {
        tracing::error!(error = %e, collection = op.collection(), "applying a committed op in memory failed");
        0
    })
}

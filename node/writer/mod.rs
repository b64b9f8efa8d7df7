//! The single writer: orders ops, makes them durable and hands them to memory.
//!
//! All writes funnel through one thread. It takes whatever ops are waiting (a group),
//! checks each against the state left by the ops before it, gives the accepted ones
//! consecutive sequence numbers, writes them as one fsynced RocksDB batch, and only
//! then hands them to their collections' lanes (`apply_lane.rs`), which make them
//! visible and answer their callers. Grouping is what lets many concurrent writers
//! share one fsync without weakening the guarantee that every acknowledged write is
//! on disk.
//!
//! The queue of writes this node orders is bounded (`OVERLOADED` past it); ops
//! ordered elsewhere (a primary's log, a Raft log) are never refused for room, since
//! their sources already bound how many they send at once. A panic while committing
//! is caught: the node re-reads its state from the store and goes on.

mod check;
mod meta;
mod patch;
mod pending;
mod recovery;

pub(crate) use meta::{MetaWrite, StoredOutcome};

use crate::apply_lane::drain::submit as submit_to_lane;
use crate::apply_lane::{self, Work};
use crate::catalog::CollectionState;
pub use crate::database::options::{SyncMode, DEFAULT_WRITE_QUEUE};
use crate::database::shared::Inner;
use crate::error::{Error, Result};
use crate::op::{Applied, Op};
use check::{check, Overlay, Target};
pub(crate) use pending::{Pending, Replies};
use rocksdb::WriteBatch;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// At most this many ops share a batch, so one huge group cannot delay every caller.
const MAX_GROUP_OPS: usize = 512;

/// Owns the writer thread. Dropping it closes the queue and waits for the thread to
/// finish the ops already queued.
pub(crate) struct WriterHandle {
    tx: Option<Sender<Pending>>,
    join: Option<JoinHandle<()>>,
    /// Locally ordered ops queued and not yet taken by the writer.
    queued: Arc<AtomicUsize>,
    capacity: usize,
}

impl WriterHandle {
    pub fn start(inner: Arc<Inner>, mode: SyncMode, capacity: usize) -> Result<WriterHandle> {
        let (tx, rx) = std::sync::mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let taken = Arc::clone(&queued);
        let join = std::thread::Builder::new()
            .name("needle-writer".into())
            .spawn(move || run(&inner, &rx, mode, &taken))
            .map_err(|e| Error::InvalidRequest(format!("cannot start writer thread: {e}")))?;
        Ok(WriterHandle {
            tx: Some(tx),
            join: Some(join),
            queued,
            capacity: capacity.max(1),
        })
    }

    pub fn send(&self, pending: Pending) -> Result<()> {
        let tx = self.tx.as_ref().ok_or(Error::Closed)?;
        if !pending.ordered && self.queued.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::Overloaded("the write queue is full".into()));
        }
        let ordered = pending.ordered;
        tx.send(pending).map_err(|_| {
            if !ordered {
                self.queued.fetch_sub(1, Ordering::AcqRel);
            }
            Error::Closed
        })
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

fn run(inner: &Arc<Inner>, rx: &Receiver<Pending>, mode: SyncMode, queued: &AtomicUsize) {
    let take = |p: Pending| {
        if !p.ordered {
            queued.fetch_sub(1, Ordering::AcqRel);
        }
        p
    };
    while let Ok(first) = rx.recv() {
        let mut group = vec![take(first)];
        if mode == SyncMode::Group {
            while group.len() < MAX_GROUP_OPS {
                match rx.try_recv() {
                    Ok(p) => group.push(take(p)),
                    Err(_) => break,
                }
            }
        }
        // Collection creation and removal change what later ops are checked against,
        // so each commits alone; runs of data ops between them commit together.
        let mut pending_run: Vec<Pending> = Vec::new();
        for p in group {
            // A patch reads the records it changes from the store: everything ordered
            // before it must be committed first.
            let alone = matches!(
                p.op,
                Op::CreateCollection(_) | Op::DropCollection { .. } | Op::PatchMetadata { .. }
            );
            if alone || mode == SyncMode::PerWrite {
                commit_isolated(inner, std::mem::take(&mut pending_run));
                commit_isolated(inner, vec![p]);
            } else {
                pending_run.push(p);
            }
        }
        commit_isolated(inner, pending_run);
    }
}

/// [`commit`], with a panic caught: its callers hear that their writes were
/// interrupted (each may or may not be durable), and the node re-reads what is
/// durable before it takes the next group.
fn commit_isolated(inner: &Arc<Inner>, run: Vec<Pending>) {
    if run.is_empty() {
        return;
    }
    if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(|| commit(inner, run))) {
        inner
            .metrics
            .health
            .record_panic("writer", payload.as_ref());
        recovery::resync_from_store(inner);
    }
}

/// An op that passed its checks, waiting for the batch to be durable.
struct Accepted {
    pending: Pending,
    seq: u64,
    target: Target,
    deleted: Vec<bool>,
}

fn commit(inner: &Arc<Inner>, run: Vec<Pending>) {
    // A failed node takes no write. Checked for every run, so a failure in one run
    // of a group (see `refuse`) also stops the runs after it.
    if let Some(failure) = inner.metrics.health.failure() {
        for p in run {
            p.reply.refuse(Error::Failed(failure.message.clone()));
        }
        return;
    }
    crate::injected_faults::writer_commit();
    let mut batch = WriteBatch::default();
    let mut seq = inner.applied_seq.load(Ordering::Acquire);
    let mut overlay = Overlay::new();
    let mut accepted = Vec::with_capacity(run.len());
    for mut pending in run {
        // Ops ordered elsewhere: already applied is a no-op (so retries and replays are
        // safe), and anything but the next sequence number is a gap.
        if let Some(want) = pending.seq {
            if want <= seq {
                let skipped = Applied {
                    seq: want,
                    affected: 0,
                    deleted: Vec::new(),
                };
                answer_now(pending.reply, Ok(skipped));
                continue;
            }
            if want != seq + 1 {
                pending.reply.refuse(Error::LogGap {
                    expected: seq + 1,
                    got: want,
                });
                continue;
            }
        }
        if let Op::PatchMetadata { .. } = pending.op {
            match patch::resolve(inner, &pending.op) {
                Ok(upsert) => pending.op = upsert,
                Err(e) => {
                    refuse(inner, pending, e);
                    continue;
                }
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
                    meta::stage_meta_write(
                        inner,
                        &mut batch,
                        write,
                        seq + 1,
                        &pending.op,
                        &deleted,
                    )?;
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
            Err(e) => refuse(inner, pending, e),
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
    // One op that has no other durable copy makes the whole batch wait for the fsync.
    let fsync = accepted.iter().any(|a| a.pending.fsync);
    let started = std::time::Instant::now();
    let committed = if fsync {
        inner.store.commit(batch)
    } else {
        inner.store.commit_unsynced(batch)
    };
    inner
        .metrics
        .write_commit_seconds
        .observe(started.elapsed().as_secs_f64());
    if let Err(e) = committed {
        tracing::error!(error = %e, ops = accepted.len(), "write batch failed; nothing applied");
        for a in accepted {
            refuse(inner, a.pending, Error::Storage(e.clone()));
        }
        return;
    }
    if let Some(below) = trim_below {
        inner.log_start.store(below, Ordering::Release);
        inner.metrics.oplog_first_seq.set(below as i64);
    }
    inner.metrics.write_group_ops.observe(accepted.len() as f64);
    inner.metrics.applied_seq.set(seq as i64);
    inner.commit_times.record(seq, inner.options.clock.now_ms());
    for a in accepted {
        inner
            .metrics
            .write_ops
            .with_label_values(&[a.pending.op.kind()])
            .inc();
        // Durable from here on (fsynced, or held by an fsynced Raft log that
        // replays it): replication may ship it, and whoever hears about it sees
        // `applied_seq` at least this far.
        inner.applied_seq.store(a.seq, Ordering::Release);
        inner.applied_watch.send_replace(a.seq);
        hand_to_memory(inner, a);
    }
}

/// Whether `pending` is ordered by a log that numbers its own entries (Raft's: the
/// position rides in `meta`, not in `seq`). Such a log counts on this writer
/// applying its entries without a gap: its applied marker moves with each entry
/// committed, so one that failed here and a later one that committed would leave the
/// marker past the failed entry, and a restart would never replay it.
fn gapless(pending: &Pending) -> bool {
    pending.ordered && pending.seq.is_none()
}

/// Refuses `pending`. A local failure (the store, not the entry) of a gapless entry
/// also fails the node, so that no later write commits (`commit` checks first).
fn refuse(inner: &Inner, pending: Pending, e: Error) {
    if gapless(&pending) && matches!(e, Error::Storage(_) | Error::Failed(_)) {
        inner.metrics.health.fail(
            "writer",
            format!("an ordered entry failed on this member, which takes no later one: {e}"),
        );
    }
    pending.reply.refuse(e);
}

/// A durable op: catalog changes take effect at once (they need no lock a reader
/// holds); data ops go to their collection's lane.
fn hand_to_memory(inner: &Arc<Inner>, a: Accepted) {
    let applied = Applied {
        seq: a.seq,
        affected: meta::affected(&a.pending.op, &a.deleted),
        deleted: a.deleted,
    };
    let Pending { op, reply, .. } = a.pending;
    // Answered after the op is handed on: in the common case it is then already
    // visible too, so whoever waits only for durability also reads it. A lane with
    // a large backlog answers it only once the op is applied (`apply_lane.rs`).
    let mut durable = DurableAnswer(reply.durable.map(|tx| (tx, applied.clone())));
    match (op, a.target) {
        (Op::CreateCollection(_), Target::Create(stored)) => {
            let name = stored.config.name.clone();
            let created = CollectionState::new(stored.clone(), inner.backend.as_ref()).or_else(|e| {
                // The create is durable: a member whose device cannot make the shard
                // still holds the collection, on the host.
                tracing::error!(collection = %name, error = %e, "cannot create the shard on the device; serving from host memory");
                inner.metrics.health.record(
                    "apply",
                    format!("collection {name}: the device could not create its shard ({e}); serving it from host memory"),
                );
                CollectionState::new(stored, &needle_kernels::cpu::CpuBackend)
            });
            match created {
                Ok(state) => {
                    inner.catalog.insert(state);
                    let _ = reply.visible.send(Ok(applied));
                }
                Err(e) => {
                    inner.metrics.health.fail(
                        "apply",
                        format!(
                            "collection {name} is durable but no shard could be made for it: {e}"
                        ),
                    );
                    let _ = reply.visible.send(Err(Error::Failed(e.to_string())));
                }
            }
        }
        (Op::DropCollection { name }, _) => {
            inner.catalog.remove(&name);
            inner.metrics.forget_collection(&name);
            let _ = reply.visible.send(Ok(applied));
        }
        (op @ (Op::Upsert { .. } | Op::Delete { .. }), Target::Existing(state)) => {
            submit_to_lane(
                inner,
                &state,
                Work {
                    seq: a.seq,
                    op,
                    applied,
                    reply: reply.visible,
                    durable: durable.0.take(),
                },
            );
        }
        _ => {
            let _ = reply
                .visible
                .send(Err(Error::Corrupt("op and target disagree".into())));
        }
    }
}

/// Sends an op's durable answer when dropped, i.e. once the op was handed to memory.
struct DurableAnswer(Option<apply_lane::DurableReply>);

impl Drop for DurableAnswer {
    fn drop(&mut self) {
        if let Some((tx, applied)) = self.0.take() {
            let _ = tx.send(Ok(applied));
        }
    }
}

/// Answers both of an op's replies with the same result.
fn answer_now(reply: Replies, result: Result<Applied>) {
    match result {
        Ok(applied) => {
            if let Some(durable) = reply.durable {
                let _ = durable.send(Ok(applied.clone()));
            }
            let _ = reply.visible.send(Ok(applied));
        }
        Err(e) => reply.refuse(e),
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

#[cfg(test)]
mod tests {
    use crate::model::{CollectionConfig, Distance};
    use crate::op::{Op, Precondition};
    use crate::{Database, DatabaseOptions};

    fn create(name: &str) -> Op {
        Op::CreateCollection(CollectionConfig::new(name, 2, Distance::Dot))
    }

    #[test]
    fn a_full_write_queue_refuses_instead_of_growing() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_with(
            dir.path(),
            DatabaseOptions {
                write_queue: 2,
                ..Default::default()
            },
        )
        .unwrap();
        // The writer blocks on the catalog while the test holds it.
        let held = db.inner.catalog.hold();
        let mut waiting = Vec::new();
        let mut refused = None;
        for i in 0..6 {
            let db = db.clone();
            let (tx, rx) = std::sync::mpsc::channel();
            let t = std::thread::spawn(move || {
                let _ = tx.send(db.submit(create(&format!("c{i}")), Precondition::None));
            });
            match rx.recv_timeout(std::time::Duration::from_millis(300)) {
                Ok(Err(e)) => {
                    refused = Some(e);
                    break;
                }
                Ok(Ok(_)) => panic!("a write completed while the writer was held"),
                Err(_) => waiting.push((t, rx)),
            }
        }
        let refused = refused.expect("the queue never filled");
        assert_eq!(refused.code(), "OVERLOADED");
        assert!(
            waiting.len() <= 3,
            "one being written and at most two queued"
        );
        drop(held);
        for (t, rx) in waiting {
            t.join().unwrap();
            assert!(rx.recv().unwrap().is_ok());
        }
    }
}

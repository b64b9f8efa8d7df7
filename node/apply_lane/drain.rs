//! How a lane's ops reach the index: at once on the writer's thread when the index
//! is free, else on a drainer thread once its readers are done; and the rebuild
//! from the store when applying fails (see the lane's own docs, `mod.rs`).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{ApplyLane, Work, LANE_BACKLOG_BYTES};
use crate::catalog::{CollectionIndex, CollectionState};
use crate::database::shared::Inner;
use crate::error::{Error, Result};
use crate::op::Op;

/// Hands a durable op to `state`'s lane: applied now if the index is free and
/// nothing waits before it, else queued for a drainer thread. Only the writer thread
/// calls this, so no other submit can race it; a drainer only ever takes from the
/// queue.
pub(crate) fn submit(inner: &Arc<Inner>, state: &Arc<CollectionState>, mut work: Work) {
    let lane = &state.lane;
    lane.pending_ops.fetch_add(1, Ordering::AcqRel);
    lane.pending_rows.fetch_add(work.rows(), Ordering::AcqRel);
    let backlog = lane.pending_bytes.fetch_add(work.bytes(), Ordering::AcqRel) + work.bytes();
    let idle = {
        let mut queue = lane.queue.lock();
        queue.committed = work.seq;
        queue.works.is_empty() && !queue.draining
    };
    if idle {
        // No lane lock is held while applying: a room check holding the index may
        // look at the lane meanwhile.
        if let Some(mut index) = state.index.try_write() {
            apply_all(inner, state, &mut index, vec![work]);
            drop(index);
            state.maybe_compact();
            return;
        }
    }
    if backlog <= LANE_BACKLOG_BYTES {
        if let Some((tx, applied)) = work.durable.take() {
            let _ = tx.send(Ok(applied));
        }
    }
    let mut queue = lane.queue.lock();
    queue.works.push_back(work);
    if queue.draining {
        return;
    }
    queue.draining = true;
    drop(queue);
    let (inner_for_thread, state_for_thread) = (Arc::clone(inner), Arc::clone(state));
    let spawned = std::thread::Builder::new()
        .name("needle-apply".into())
        .spawn(move || drain(&inner_for_thread, &state_for_thread));
    if let Err(e) = spawned {
        // No thread to hand it to: wait for the readers here instead.
        tracing::warn!(error = %e, "cannot start an apply thread; applying on the writer");
        drain(inner, state);
    }
}

/// Resets the lane's `draining` flag however the drainer ends, so a later submit
/// starts a new one rather than queueing behind a thread that is gone.
struct Draining<'a>(&'a ApplyLane);

impl Drop for Draining<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.queue.lock().draining = false;
        }
    }
}

/// Applies the lane's queue until it is empty, taking the index's write lock (and
/// waiting for its readers) once per run of queued ops.
fn drain(inner: &Arc<Inner>, state: &Arc<CollectionState>) {
    let _draining = Draining(&state.lane);
    loop {
        let works: Vec<Work> = {
            let mut queue = state.lane.queue.lock();
            if queue.works.is_empty() {
                queue.draining = false;
                return;
            }
            queue.works.drain(..).collect()
        };
        {
            let mut index = state.index.write();
            apply_all(inner, state, &mut index, works);
        }
        state.maybe_compact();
    }
}

/// Applies `works` in order, then answers their clients. A failure or panic while
/// applying rebuilds the index from the store, which already holds every op
/// committed so far, so memory matches the store again either way; a rebuild that
/// fails (or panics) too stops the node taking writes.
fn apply_all(
    inner: &Arc<Inner>,
    state: &Arc<CollectionState>,
    index: &mut CollectionIndex,
    works: Vec<Work>,
) {
    let Some(last) = works.last().map(|w| w.seq) else {
        return;
    };
    let applied = std::panic::catch_unwind(AssertUnwindSafe(|| {
        works.iter().try_for_each(|w| apply_one(index, &w.op))
    }));
    let failure = match applied {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(payload) => {
            inner.metrics.health.record_panic("apply", payload.as_ref());
            Some(crate::health::panic_message(payload.as_ref()))
        }
    };
    let outcome = match failure {
        None => Ok(()),
        Some(why) => rebuild(inner, state, index, &why),
    };
    state.lane.applied(&works);
    state.lane.visible.send_replace(last);
    for w in works {
        let answer = match &outcome {
            Ok(()) => Ok(w.applied.clone()),
            Err(message) => Err(Error::Failed(format!(
                "write {} is durable but could not be made visible ({message}); restart the node",
                w.seq
            ))),
        };
        if let Some((tx, applied)) = w.durable {
            let _ = tx.send(Ok(applied));
        }
        let _ = w.reply.send(answer);
    }
}

/// Replaces `index` with the collection as the store holds it; `Err` (and the node
/// failed) when that is impossible.
fn rebuild(
    inner: &Arc<Inner>,
    state: &Arc<CollectionState>,
    index: &mut CollectionIndex,
    why: &str,
) -> std::result::Result<(), String> {
    let name = &state.stored.config.name;
    tracing::error!(collection = %name, error = %why, "applying durable writes in memory failed; rebuilding the collection from the store");
    let rebuilt = std::panic::catch_unwind(AssertUnwindSafe(|| {
        state.rebuild_index(&inner.store, inner.backend.as_ref())
    }));
    let failed = match rebuilt {
        Ok(Ok((fresh, on_host))) => {
            *index = fresh;
            let how = if on_host {
                " (now served from host memory)"
            } else {
                ""
            };
            inner.metrics.health.record(
                "apply",
                format!("collection {name}: applying in memory failed ({why}); rebuilt from the store{how}"),
            );
            return Ok(());
        }
        Ok(Err(e)) => e.to_string(),
        Err(payload) => crate::health::panic_message(payload.as_ref()),
    };
    let message = format!(
        "collection {name}: applying in memory failed ({why}) and rebuilding from the store failed too ({failed})"
    );
    inner.metrics.health.fail("apply", message.clone());
    Err(message)
}

fn apply_one(index: &mut CollectionIndex, op: &Op) -> Result<()> {
    if crate::injected_faults::apply_in_memory_fails() {
        return Err(Error::Corrupt("injected: apply-in-memory-fails".into()));
    }
    match op {
        Op::Upsert { records, .. } => records.iter().try_for_each(|r| index.upsert(r)),
        Op::Delete { ids, .. } => ids.iter().try_for_each(|id| index.delete(id).map(|_| ())),
        Op::CreateCollection(_) | Op::DropCollection { .. } => Ok(()),
        // Resolved into an upsert before it is committed (`writer/patch.rs`).
        Op::PatchMetadata { .. } => Err(Error::Corrupt(
            "an unresolved metadata patch reached a collection".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{CollectionConfig, Distance, VectorRecord};
    use crate::op::{Op, Precondition};
    use crate::Database;
    use std::time::Duration;

    fn upsert(collection: &str, id: &str) -> Op {
        Op::Upsert {
            collection: collection.into(),
            records: vec![VectorRecord::new(id, vec![1.0, 0.0])],
        }
    }

    /// A search holding one collection's index (here: its read lock, held by the
    /// test) delays only that collection's writes, and only their visibility.
    #[test]
    fn a_long_read_of_one_collection_does_not_block_writes_to_another() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path()).unwrap();
        for name in ["busy", "free"] {
            db.create_collection(CollectionConfig::new(name, 2, Distance::Dot))
                .unwrap();
        }
        let busy = db.state("busy").unwrap();
        let reader = busy.index.read();
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = {
            let db = db.clone();
            std::thread::spawn(move || {
                let r = db.submit(upsert("busy", "a"), Precondition::None);
                let _ = tx.send(());
                r
            })
        };
        // Durable, so the writer went on: a later write to the other collection is
        // committed and visible while "busy" is still read.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while db.applied_seq() < 3 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(db.applied_seq(), 3, "the write to busy was not committed");
        db.submit(upsert("free", "b"), Precondition::None).unwrap();
        assert_eq!(db.collection("free").unwrap().count().unwrap(), 1);
        // The busy collection's writer waits for visibility, behind the reader.
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        drop(reader);
        writer.join().unwrap().unwrap();
        assert_eq!(db.collection("busy").unwrap().count().unwrap(), 1);
        // Preconditions see the queued write, not the stale index.
        let reader = busy.index.read();
        let late = {
            let db = db.clone();
            std::thread::spawn(move || db.submit(upsert("busy", "c"), Precondition::None))
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while db.applied_seq() < 5 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let again = db.submit(upsert("busy", "c"), Precondition::IdsAbsent);
        drop(reader);
        assert_eq!(again.unwrap_err().code(), "VECTOR_EXISTS");
        late.join().unwrap().unwrap();
    }

    /// A linearizable read's last step waits for what is durable to be visible.
    #[test]
    fn waiting_for_visibility_ends_once_the_queued_writes_are_applied() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path()).unwrap();
        db.create_collection(CollectionConfig::new("c", 2, Distance::Dot))
            .unwrap();
        let state = db.state("c").unwrap();
        let reader = state.index.read();
        let writer = {
            let db = db.clone();
            std::thread::spawn(move || db.submit(upsert("c", "a"), Precondition::None))
        };
        while db.applied_seq() < 2 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let waited = runtime.block_on(async {
            tokio::time::timeout(Duration::from_millis(100), db.await_visible("c")).await
        });
        assert!(
            waited.is_err(),
            "the write is not visible while the reader holds the index"
        );
        drop(reader);
        writer.join().unwrap().unwrap();
        runtime.block_on(db.await_visible("c"));
        assert_eq!(db.collection("c").unwrap().count().unwrap(), 1);
    }
}

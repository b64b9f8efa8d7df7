//! After a panic in the middle of a commit, nothing in memory can be trusted: the
//! batch may or may not be on disk, and memory may hold part of it. The store is the
//! truth, so the writer re-reads from it the last durable sequence number and every
//! collection, and carries on from there.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::catalog::CollectionState;
use crate::database::shared::Inner;
use crate::error::Result;

pub(super) fn resync_from_store(inner: &Arc<Inner>) {
    match resync(inner) {
        Ok(collections) => {
            tracing::warn!(
                collections,
                applied_seq = inner.applied_seq.load(Ordering::Acquire),
                "memory re-read from the store after a panic"
            );
        }
        Err(e) => inner.metrics.health.fail(
            "writer",
            format!("after a panic, re-reading the store failed: {e}"),
        ),
    }
}

fn resync(inner: &Arc<Inner>) -> Result<usize> {
    let applied = inner.store.applied_seq()?;
    let stored = inner.store.load_collections()?;
    let names: HashSet<String> = stored.iter().map(|s| s.config.name.clone()).collect();
    for state in inner.catalog.all() {
        if !names.contains(&state.stored.config.name) {
            inner.catalog.remove(&state.stored.config.name);
        }
    }
    let count = stored.len();
    for collection in stored {
        match inner.catalog.get(&collection.config.name) {
            // The same collection: its index is rebuilt in place, so lanes and
            // handles stay valid.
            Some(state) if state.stored.id == collection.id => {
                let (index, _) = state.rebuild_index(&inner.store, inner.backend.as_ref())?;
                *state.index.write() = index;
            }
            _ => {
                let state =
                    CollectionState::load(collection, inner.backend.as_ref(), &inner.store)?;
                inner.catalog.insert(state);
            }
        }
    }
    inner.applied_seq.store(applied, Ordering::Release);
    inner.applied_watch.send_replace(applied);
    inner.metrics.applied_seq.set(applied as i64);
    Ok(count)
}

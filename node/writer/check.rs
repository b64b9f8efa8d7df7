//! The checks an op must pass against the state every earlier op left: the
//! collection exists (or not, for a create), vectors fit it, preconditions hold, and
//! (for an op this node orders) the device has room. Static checks (ids,
//! finiteness, metadata size) were done before the op was queued.
//!
//! Presence of ids comes from the overlay of earlier ops in the same group, then from
//! the in-memory index when its lane has applied everything (the common case), else
//! from the store, which holds every committed op: the index may lag behind the
//! store while a collection's readers hold it (see `apply_lane.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use super::pending::Pending;
use crate::catalog::CollectionState;
use crate::database::shared::Inner;
use crate::error::{Error, Result};
use crate::op::{Op, Precondition};
use crate::storage::StoredCollection;

/// Where an accepted op lands.
pub(super) enum Target {
    Create(StoredCollection),
    Existing(Arc<CollectionState>),
}

/// Presence of ids as changed by earlier ops of the same run: (collection, id) → present.
pub(super) type Overlay = HashMap<(String, String), bool>;

/// Checks `p` as op number `seq`; returns its target and, for a delete, which ids
/// existed.
pub(super) fn check(
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
                for r in records {
                    if present(inner, &state, overlay, collection, &r.id)? {
                        return Err(Error::VectorExists(r.id.clone()));
                    }
                }
            }
            room(inner, &state, records.len(), p.ordered)?;
            for r in records {
                overlay.insert((collection.clone(), r.id.clone()), true);
            }
            Ok((Target::Existing(state), Vec::new()))
        }
        Op::PatchMetadata { .. } => Err(Error::Corrupt(
            "an unresolved metadata patch reached the writer's checks".into(),
        )),
        Op::Delete { collection, ids } => {
            let state = inner
                .catalog
                .get(collection)
                .ok_or_else(|| Error::CollectionNotFound(collection.clone()))?;
            let mut deleted = Vec::with_capacity(ids.len());
            for id in ids {
                deleted.push(present(inner, &state, overlay, collection, id)?);
                overlay.insert((collection.clone(), id.clone()), false);
            }
            Ok((Target::Existing(state), deleted))
        }
    }
}

fn present(
    inner: &Inner,
    state: &CollectionState,
    overlay: &Overlay,
    collection: &str,
    id: &str,
) -> Result<bool> {
    if let Some(&present) = overlay.get(&(collection.to_string(), id.to_string())) {
        return Ok(present);
    }
    // Memory is exact once the lane has applied everything handed to it (the common
    // case); while a long search holds writes back, the store answers.
    if state.lane.caught_up() {
        if let Some(index) = state.index.try_read_recursive() {
            return Ok(index.contains(id));
        }
    }
    inner.store.vector_exists(state.stored.id, id)
}

/// A GPU shard refuses rows it has no device memory for before the commit, rather
/// than failing after it — but only for an op this node orders. An op ordered
/// elsewhere (a primary's log, a Raft log) is applied by every member, so one
/// member's full device must not refuse it: that collection is served from its host
/// copy instead, and `/health` says so. Counting every record (some may be
/// overwrites) errs on the side of refusing.
fn room(inner: &Inner, state: &CollectionState, rows: usize, ordered: bool) -> Result<()> {
    // `read_recursive`: a long search holding the index must not make the writer
    // queue behind the lane's drainer waiting for the write lock.
    let index = state.index.read_recursive();
    let needed = rows + state.lane.pending_rows();
    match crate::write_checks::room_on_device(index.shard.as_ref(), needed) {
        Ok(()) => Ok(()),
        Err(e) if ordered => {
            let name = &state.stored.config.name;
            if index.shard.on_device() != Some(false) {
                inner.metrics.health.record(
                    "apply",
                    format!("collection {name}: the device has no room for writes the cluster ordered ({e}); serving it from host memory"),
                );
            }
            index.shard.serve_from_host();
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

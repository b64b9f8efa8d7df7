//! The in-memory side of the database: each collection's search shard plus the maps
//! between user ids and shard rows, and each row's metadata for filter evaluation.
//! Rebuilt from RocksDB at start-up; changed only by `apply`.

use crate::error::{Error, Result};
use crate::filter_masks::FilterMasks;
use crate::model::{Metadata, VectorRecord};
use crate::storage::{Store, StoredCollection};
use needle_kernels::{Backend, Row, Shard};
use parking_lot::{RwLock, RwLockUpgradableReadGuard};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Compact once tombstones are this many and at least a quarter of the rows: small
/// enough to bound wasted scan work, large enough that compaction is rare.
const COMPACT_MIN_TOMBSTONES: usize = 1024;

pub(crate) struct CollectionState {
    pub stored: StoredCollection,
    pub index: RwLock<CollectionIndex>,
    /// How durable writes reach `index` (see `apply_lane.rs`).
    pub lane: crate::apply_lane::ApplyLane,
    compacting: AtomicBool,
}

pub(crate) struct CollectionIndex {
    pub shard: Box<dyn Shard>,
    rows: HashMap<Arc<str>, Row>,
    /// Indexed by row; `None` for tombstones.
    pub row_ids: Vec<Option<Arc<str>>>,
    /// Indexed by row; `None` for tombstones and vectors without metadata.
    pub metadata: Vec<Option<Arc<Metadata>>>,
    /// Allow-masks of recently used filters, updated by every write below.
    pub masks: FilterMasks,
}

impl CollectionIndex {
    fn new(shard: Box<dyn Shard>) -> Self {
        CollectionIndex {
            shard,
            rows: HashMap::new(),
            row_ids: Vec::new(),
            metadata: Vec::new(),
            masks: FilterMasks::default(),
        }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.rows.contains_key(id)
    }

    pub fn live(&self) -> usize {
        self.shard.live()
    }

    pub fn row_of(&self, id: &str) -> Option<Row> {
        self.rows.get(id).copied()
    }

    pub fn upsert(&mut self, record: &VectorRecord) -> Result<()> {
        let metadata = record.metadata.clone().map(Arc::new);
        let row = match self.rows.get(record.id.as_str()) {
            Some(&row) => {
                self.shard.overwrite(row, &record.vector)?;
                self.metadata[row as usize] = metadata;
                row
            }
            None => {
                let row = self.shard.append(&record.vector)?;
                let id: Arc<str> = Arc::from(record.id.as_str());
                self.rows.insert(id.clone(), row);
                self.row_ids.push(Some(id));
                self.metadata.push(metadata);
                debug_assert_eq!(self.row_ids.len(), row as usize + 1);
                row
            }
        };
        self.masks.set_row(
            row as usize,
            &record.id,
            self.metadata[row as usize].as_deref(),
        );
        Ok(())
    }

    /// Adds a stored vector at start-up: no metadata yet, no cached masks to update.
    fn load_row(&mut self, id: &str, vector: &[f32]) -> Result<()> {
        if self.rows.contains_key(id) {
            return Err(Error::Corrupt(format!("vector {id:?} stored twice")));
        }
        let row = self.shard.append(vector)?;
        let id: Arc<str> = Arc::from(id);
        self.rows.insert(id.clone(), row);
        self.row_ids.push(Some(id));
        self.metadata.push(None);
        Ok(())
    }

    pub fn delete(&mut self, id: &str) -> Result<bool> {
        let Some(row) = self.rows.remove(id) else {
            return Ok(false);
        };
        self.shard.delete(row)?;
        self.row_ids[row as usize] = None;
        self.metadata[row as usize] = None;
        self.masks.clear_row(row as usize);
        Ok(true)
    }

    pub fn tombstones(&self) -> usize {
        self.shard.rows() - self.shard.live()
    }

    fn needs_compaction(&self) -> bool {
        let dead = self.tombstones();
        dead >= COMPACT_MIN_TOMBSTONES && dead * 4 >= self.shard.rows()
    }

    /// This index without tombstones, built from a shared borrow: searches go on
    /// while the copy is made, and [`CollectionIndex::install`] swaps it in.
    fn compacted(&self) -> Compacted {
        let (shard, compaction) = self.shard.compacted();
        let live = shard.rows();
        let mut compacted = Compacted {
            shard,
            rows: HashMap::with_capacity(live),
            row_ids: Vec::with_capacity(live),
            metadata: Vec::with_capacity(live),
        };
        for (old, new) in compaction.remap.iter().enumerate() {
            if let Some(new) = new {
                debug_assert_eq!(*new as usize, compacted.row_ids.len());
                let id = self.row_ids[old].clone();
                if let Some(id) = &id {
                    compacted.rows.insert(Arc::clone(id), *new);
                }
                compacted.row_ids.push(id);
                compacted.metadata.push(self.metadata[old].clone());
            }
        }
        compacted
    }

    fn install(&mut self, compacted: Compacted) {
        self.shard = compacted.shard;
        self.rows = compacted.rows;
        self.row_ids = compacted.row_ids;
        self.metadata = compacted.metadata;
        self.masks.clear();
    }
}

/// A compacted replacement for a [`CollectionIndex`]'s rows.
struct Compacted {
    shard: Box<dyn Shard>,
    rows: HashMap<Arc<str>, Row>,
    row_ids: Vec<Option<Arc<str>>>,
    metadata: Vec<Option<Arc<Metadata>>>,
}

impl CollectionState {
    /// An empty collection with a fresh shard.
    pub fn new(stored: StoredCollection, backend: &dyn Backend) -> Result<Arc<Self>> {
        let index = empty_index(&stored, backend)?;
        Ok(Arc::new(CollectionState {
            stored,
            index: RwLock::new(index),
            lane: Default::default(),
            compacting: AtomicBool::new(false),
        }))
    }

    /// A collection with every vector and metadata object read back from the store.
    pub fn load(
        stored: StoredCollection,
        backend: &dyn Backend,
        store: &Store,
    ) -> Result<Arc<Self>> {
        let index = load_index(&stored, backend, store)?;
        Ok(Arc::new(CollectionState {
            stored,
            index: RwLock::new(index),
            lane: Default::default(),
            compacting: AtomicBool::new(false),
        }))
    }

    /// This collection's index as the store holds it now, for when memory may have
    /// drifted from the store (an in-memory apply failed after its write was
    /// durable). Built on `backend`, or on the CPU backend if that fails; the flag
    /// says whether it fell back to the host.
    pub fn rebuild_index(
        &self,
        store: &Store,
        backend: &dyn Backend,
    ) -> Result<(CollectionIndex, bool)> {
        if crate::injected_faults::rebuild_fails() {
            return Err(Error::Corrupt("injected: rebuild-fails".into()));
        }
        match load_index(&self.stored, backend, store) {
            Ok(index) => Ok((index, false)),
            Err(e) if backend.name() != "cpu" => {
                tracing::warn!(collection = %self.stored.config.name, error = %e, "rebuilding on the device failed; serving from host memory");
                Ok((
                    load_index(&self.stored, &needle_kernels::cpu::CpuBackend, store)?,
                    true,
                ))
            }
            Err(e) => Err(e),
        }
    }

    /// Compacts on a background thread when enough rows are tombstones. The copy is
    /// made under an upgradable read lock — searches continue, writes wait — and only
    /// the swap takes the write lock.
    pub fn maybe_compact(self: &Arc<Self>) {
        if !self.index.read().needs_compaction() || self.compacting.swap(true, Ordering::AcqRel) {
            return;
        }
        let state = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("needle-compact".into())
            .spawn(move || {
                {
                    let index = state.index.upgradable_read();
                    if index.needs_compaction() {
                        let before = index.shard.rows();
                        let compacted = index.compacted();
                        let mut index = RwLockUpgradableReadGuard::upgrade(index);
                        index.install(compacted);
                        tracing::debug!(
                            collection = %state.stored.config.name,
                            before,
                            after = index.shard.rows(),
                            "compacted shard"
                        );
                    }
                }
                state.compacting.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start compaction thread");
            self.compacting.store(false, Ordering::Release);
        }
    }
}

fn empty_index(stored: &StoredCollection, backend: &dyn Backend) -> Result<CollectionIndex> {
    let config = &stored.config;
    let shard = backend.new_shard_stored(
        config.dimensions,
        config.distance.metric(),
        config.storage.kernel(),
    )?;
    Ok(CollectionIndex::new(shard))
}

/// An index with every vector and metadata object of `stored` read from `store`.
fn load_index(
    stored: &StoredCollection,
    backend: &dyn Backend,
    store: &Store,
) -> Result<CollectionIndex> {
    let mut index = empty_index(stored, backend)?;
    let id = stored.id;
    store.for_each_vector(id, |vid, vector| index.load_row(vid, vector))?;
    store.for_each_metadata(id, |vid, metadata| {
        let row = index
            .row_of(vid)
            .ok_or_else(|| Error::Corrupt(format!("metadata for missing vector {vid:?}")))?;
        index.metadata[row as usize] = Some(Arc::new(metadata));
        Ok(())
    })?;
    // GPU backends: upload now, so the first search is not also the upload.
    if let Err(e) = index.shard.make_resident() {
        tracing::warn!(
            collection = %stored.config.name,
            error = %e,
            "could not upload the collection to the GPU at start-up; the first search retries (a full CUDA device is searched on the host)"
        );
    }
    Ok(index)
}

/// Every open collection by name.
#[derive(Default)]
pub(crate) struct Catalog {
    collections: RwLock<HashMap<String, Arc<CollectionState>>>,
}

impl Catalog {
    pub fn get(&self, name: &str) -> Option<Arc<CollectionState>> {
        self.collections.read().get(name).cloned()
    }

    pub fn insert(&self, state: Arc<CollectionState>) {
        self.collections
            .write()
            .insert(state.stored.config.name.clone(), state);
    }

    pub fn remove(&self, name: &str) -> Option<Arc<CollectionState>> {
        self.collections.write().remove(name)
    }

    /// Holds the catalog so nothing can look a collection up: tests use it to keep
    /// the writer busy.
    #[cfg(test)]
    pub fn hold(&self) -> parking_lot::RwLockWriteGuard<'_, HashMap<String, Arc<CollectionState>>> {
        self.collections.write()
    }

    /// All collections, sorted by name.
    pub fn all(&self) -> Vec<Arc<CollectionState>> {
        let mut all: Vec<_> = self.collections.read().values().cloned().collect();
        all.sort_by(|a, b| a.stored.config.name.cmp(&b.stored.config.name));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CollectionConfig, Distance};
    use needle_kernels::cpu::CpuBackend;

    #[test]
    fn compaction_keeps_ids_rows_and_metadata_aligned() {
        let stored = StoredCollection {
            config: CollectionConfig::new("c", 2, Distance::Dot),
            id: 1,
        };
        let state = CollectionState::new(stored, &CpuBackend).unwrap();
        let mut index = state.index.write();
        for i in 0..3000 {
            let mut m = Metadata::new();
            m.insert("i".into(), i.into());
            index
                .upsert(&VectorRecord::new(format!("v{i}"), vec![i as f32, 1.0]).with_metadata(m))
                .unwrap();
        }
        for i in (0..3000).filter(|i| i % 2 == 0) {
            assert!(index.delete(&format!("v{i}")).unwrap());
        }
        assert!(index.needs_compaction());
        let compacted = index.compacted();
        index.install(compacted);
        assert_eq!(index.shard.rows(), 1500);
        for i in (0..3000).filter(|i| i % 2 == 1) {
            let row = index.row_of(&format!("v{i}")).unwrap() as usize;
            assert_eq!(
                index.row_ids[row].as_deref(),
                Some(format!("v{i}").as_str())
            );
            assert_eq!(index.metadata[row].as_ref().unwrap()["i"], i);
        }
        // The largest dot product with (1, 0) is the largest surviving i.
        let hits = index.shard.search_batch(&[1.0, 0.0], 1, None).unwrap();
        assert_eq!(
            index.row_ids[hits[0][0].row as usize].as_deref(),
            Some("v2999")
        );
    }
}

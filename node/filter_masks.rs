//! Allow-masks for filters, cached per collection and kept in sync by apply.
//!
//! Evaluating a filter means walking every row's metadata — pointer-chasing through
//! JSON maps, ~300 ns a row, far slower than scoring the row. Applications tend to
//! repeat the same few filters (a tenant, a category), so each collection keeps the
//! masks of its most recently used filters. Every write updates the affected rows'
//! bits in every cached mask (one evaluation per cached filter per written row), so a
//! cached mask is always exact and a repeated filter costs a lookup, not a scan.

use crate::cancel::CancelToken;
use crate::error::Result;
use crate::filter::Filter;
use crate::model::Metadata;
use needle_kernels::RowMask;
use parking_lot::Mutex;
use rayon::prelude::*;
use std::sync::Arc;

/// Filters whose masks a collection keeps.
const CACHED_FILTERS: usize = 32;

struct Entry {
    filter: Filter,
    mask: Arc<RowMask>,
    last_used: u64,
}

#[derive(Default)]
pub(crate) struct FilterMasks {
    entries: Mutex<Vec<Entry>>,
    tick: std::sync::atomic::AtomicU64,
}

impl FilterMasks {
    /// The mask of `filter` over rows described by `row_ids` (None = tombstone) and
    /// `metadata`, from the cache or built and cached. Callers hold the collection's
    /// read lock, so rows cannot change while a mask is built. A build stops early
    /// (and caches nothing) once `cancel` is set.
    pub fn mask(
        &self,
        filter: &Filter,
        row_ids: &[Option<Arc<str>>],
        metadata: &[Option<Arc<Metadata>>],
        cancel: &CancelToken,
    ) -> Result<Arc<RowMask>> {
        let now = self.tick.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(e) = self.entries.lock().iter_mut().find(|e| &e.filter == filter) {
            e.last_used = now;
            return Ok(Arc::clone(&e.mask));
        }
        let mask = Arc::new(build_cancellable(filter, row_ids, metadata, cancel)?);
        let mut entries = self.entries.lock();
        if !entries.iter().any(|e| &e.filter == filter) {
            if entries.len() >= CACHED_FILTERS {
                if let Some(oldest) = (0..entries.len()).min_by_key(|&i| entries[i].last_used) {
                    entries.swap_remove(oldest);
                }
            }
            entries.push(Entry {
                filter: filter.clone(),
                mask: Arc::clone(&mask),
                last_used: now,
            });
        }
        Ok(mask)
    }

    /// A row was written (appended when `row` is past the end): re-evaluate it.
    pub fn set_row(&mut self, row: usize, id: &str, metadata: Option<&Metadata>) {
        for e in self.entries.get_mut().iter_mut() {
            let mask = Arc::make_mut(&mut e.mask);
            if row >= mask.rows() {
                mask.resize(row + 1, false);
            }
            if e.filter.matches_point(id, metadata) {
                mask.set(row);
            } else {
                mask.clear(row);
            }
        }
    }

    /// A row was deleted.
    pub fn clear_row(&mut self, row: usize) {
        for e in self.entries.get_mut().iter_mut() {
            Arc::make_mut(&mut e.mask).clear(row);
        }
    }

    /// Rows were renumbered (compaction): every cached mask is stale.
    pub fn clear(&mut self) {
        self.entries.get_mut().clear();
    }
}

/// Evaluates `filter` on every live row, 64 rows (one mask word) per task.
#[cfg(test)]
pub(crate) fn build(
    filter: &Filter,
    row_ids: &[Option<Arc<str>>],
    metadata: &[Option<Arc<Metadata>>],
) -> RowMask {
    let never = CancelToken::never();
    match build_cancellable(filter, row_ids, metadata, &never) {
        Ok(mask) => mask,
        Err(_) => unreachable!("a token that is never cancelled"),
    }
}

/// [`build`], checking `cancel` for every word: once it is set the remaining words
/// are skipped and the half-built mask is thrown away.
fn build_cancellable(
    filter: &Filter,
    row_ids: &[Option<Arc<str>>],
    metadata: &[Option<Arc<Metadata>>],
    cancel: &CancelToken,
) -> Result<RowMask> {
    let words: Vec<u64> = row_ids
        .par_chunks(64)
        .zip(metadata.par_chunks(64))
        .map(|(ids, metas)| {
            if cancel.is_cancelled() {
                return 0;
            }
            ids.iter()
                .zip(metas)
                .enumerate()
                .fold(0u64, |word, (bit, (id, meta))| {
                    if id
                        .as_deref()
                        .is_some_and(|id| filter.matches_point(id, meta.as_deref()))
                    {
                        word | (1 << bit)
                    } else {
                        word
                    }
                })
        })
        .collect();
    cancel.check()?;
    Ok(RowMask::from_words(words, row_ids.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(v: serde_json::Value) -> Option<Arc<Metadata>> {
        v.as_object().cloned().map(Arc::new)
    }

    #[test]
    fn cached_masks_follow_writes_and_deletes() {
        let mut ids: Vec<Option<Arc<str>>> = (0..100)
            .map(|i| Some(Arc::from(i.to_string().as_str())))
            .collect();
        let mut metas: Vec<Option<Arc<Metadata>>> = (0..100)
            .map(|i| meta(json!({"even": i % 2 == 0})))
            .collect();
        let mut masks = FilterMasks::default();
        let even = Filter::parse(&json!({"even": true})).unwrap();
        let never = CancelToken::never();
        assert_eq!(masks.mask(&even, &ids, &metas, &never).unwrap().count(), 50);
        // A write flips row 1 to even, a new row 100 is even, row 0 is deleted.
        metas[1] = meta(json!({"even": true}));
        masks.set_row(1, "1", metas[1].as_deref());
        ids.push(Some(Arc::from("100")));
        metas.push(meta(json!({"even": true})));
        masks.set_row(100, "100", metas[100].as_deref());
        ids[0] = None;
        metas[0] = None;
        masks.clear_row(0);
        let cached = masks.mask(&even, &ids, &metas, &never).unwrap();
        assert_eq!(
            *cached,
            build(&even, &ids, &metas),
            "cache equals a fresh evaluation"
        );
        assert_eq!(cached.count(), 51);
        assert!(cached.contains(1) && cached.contains(100) && !cached.contains(0));
    }

    #[test]
    fn least_recently_used_filters_are_evicted() {
        let ids: Vec<Option<Arc<str>>> = vec![Some(Arc::from("a"))];
        let metas = vec![meta(json!({"n": 1}))];
        let masks = FilterMasks::default();
        for n in 0..(CACHED_FILTERS + 5) {
            let f = Filter::parse(&json!({"n": n})).unwrap();
            let mask = masks.mask(&f, &ids, &metas, &CancelToken::never()).unwrap();
            assert_eq!(mask.count(), usize::from(n == 1));
        }
        assert_eq!(masks.entries.lock().len(), CACHED_FILTERS);
    }

    #[test]
    fn a_cancelled_build_fails_and_caches_nothing() {
        let ids: Vec<Option<Arc<str>>> = (0..1000)
            .map(|i| Some(Arc::from(i.to_string().as_str())))
            .collect();
        let metas: Vec<Option<Arc<Metadata>>> = (0..1000).map(|_| meta(json!({"n": 1}))).collect();
        let masks = FilterMasks::default();
        let f = Filter::parse(&json!({"n": 1})).unwrap();
        let cancelled = CancelToken::never();
        cancelled.cancel();
        let err = masks.mask(&f, &ids, &metas, &cancelled).unwrap_err();
        assert_eq!(err.code(), "CANCELLED");
        assert!(masks.entries.lock().is_empty());
        assert_eq!(
            masks
                .mask(&f, &ids, &metas, &CancelToken::never())
                .unwrap()
                .count(),
            1000
        );
    }
}

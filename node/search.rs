//! The read path: filter → allow-mask → one engine call for the whole batch → ids and
//! metadata joined from the in-memory rows.

use crate::catalog::CollectionState;
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::model::{validate_vector, Metadata};
use crate::storage::Store;
use needle_kernels::MAX_K;
use std::sync::Arc;

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub id: String,
    /// Smaller is closer: cosine = 1 − cos, euclidean = L2, dot = −(q·x).
    pub distance: f32,
    pub metadata: Option<Arc<Metadata>>,
    /// Present when the caller asked for vectors.
    pub vector: Option<Vec<f32>>,
}

/// The most hits one search may produce (queries × k): bounds a request's memory, so
/// a large batch with a large k is refused instead of exhausting the node.
pub const MAX_RESULTS_PER_SEARCH: usize = 1_000_000;

pub(crate) fn search(
    store: &Store,
    state: &CollectionState,
    queries: &[Vec<f32>],
    k: usize,
    filter: Option<&Filter>,
    include_vectors: bool,
) -> Result<Vec<Vec<SearchHit>>> {
    if k == 0 || k > MAX_K {
        return Err(Error::InvalidK { k, max: MAX_K });
    }
    if queries.len().saturating_mul(k) > MAX_RESULTS_PER_SEARCH {
        return Err(Error::TooManyResults {
            queries: queries.len(),
            k,
            max: MAX_RESULTS_PER_SEARCH,
        });
    }
    let dims = state.stored.config.dimensions;
    let mut flat = Vec::with_capacity(queries.len() * dims);
    for (index, q) in queries.iter().enumerate() {
        validate_vector(q, dims).map_err(|e| {
            if queries.len() == 1 {
                e
            } else {
                Error::InvalidBatchItem {
                    index,
                    source: Box::new(e),
                }
            }
        })?;
        flat.extend_from_slice(q);
    }
    let mut results = {
        let index = state.index.read();
        let mask = filter.map(|f| index.masks.mask(f, &index.row_ids, &index.metadata));
        let hits = index.shard.search_batch(&flat, k, mask.as_deref())?;
        hits.into_iter()
            .map(|per_query| {
                per_query
                    .into_iter()
                    .filter_map(|h| {
                        let row = h.row as usize;
                        let id = index.row_ids.get(row)?.as_ref()?;
                        Some(SearchHit {
                            id: id.to_string(),
                            distance: h.distance,
                            metadata: index.metadata[row].clone(),
                            vector: None,
                        })
                    })
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    if include_vectors {
        for hit in results.iter_mut().flatten() {
            hit.vector = store
                .get_vector(state.stored.id, &hit.id)?
                .map(|r| r.vector);
        }
    }
    Ok(results)
}

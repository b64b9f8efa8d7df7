//! The read path: filter → allow-mask → engine calls for the whole batch → ids and
//! metadata joined from the in-memory rows.

use crate::cancel::CancelToken;
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

/// Queries per engine call: a batch larger than this is run as several calls (under
/// one read lock, so it still sees one state), and a cancelled request stops
/// between them. 1,024 is also the most the coalescer puts in one call.
const QUERIES_PER_ENGINE_CALL: usize = 1024;

/// The checks of a search's shape that need no data: `k`, the result count, and
/// every query against the collection's dimensions. Done before anything is sized by
/// the request's counts, so a million empty vectors cost nothing but their parse.
pub(crate) fn validate_queries(queries: &[Vec<f32>], k: usize, dims: usize) -> Result<()> {
    validate_k(k, queries.len())?;
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
    }
    Ok(())
}

/// `1 ≤ k ≤ MAX_K` and at most [`MAX_RESULTS_PER_SEARCH`] hits for `queries` queries.
pub(crate) fn validate_k(k: usize, queries: usize) -> Result<()> {
    if k == 0 || k > MAX_K {
        return Err(Error::InvalidK { k, max: MAX_K });
    }
    if queries.saturating_mul(k) > MAX_RESULTS_PER_SEARCH {
        return Err(Error::TooManyResults {
            queries,
            k,
            max: MAX_RESULTS_PER_SEARCH,
        });
    }
    Ok(())
}

/// A byte budget for an answer: searches count what they build against it and stop
/// with `RESPONSE_TOO_LARGE` once past it, so no request can make the node build an
/// answer of unbounded size (only to refuse it when serializing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerBudget {
    pub max_bytes: usize,
    /// Whether hits carry their metadata (which then counts).
    pub with_metadata: bool,
}

impl AnswerBudget {
    fn over(&self, used: usize) -> Result<()> {
        if used > self.max_bytes {
            return Err(Error::ResponseTooLarge {
                bytes: used as u64,
                max: self.max_bytes as u64,
            });
        }
        Ok(())
    }

    /// The fewest bytes one hit takes in JSON: braces, its id, its distance, its
    /// metadata's JSON text when included.
    fn hit_bytes(&self, id: &str, metadata: Option<&Metadata>) -> usize {
        let metadata = match (self.with_metadata, metadata) {
            (true, Some(m)) => crate::model::json_len(m),
            _ => 0,
        };
        24 + id.len() + metadata
    }

    /// What `hits` take, checked against the budget.
    pub(crate) fn count(&self, hits: &[SearchHit], mut used: usize) -> Result<usize> {
        for h in hits {
            used += self.hit_bytes(&h.id, h.metadata.as_deref());
            self.over(used)?;
        }
        Ok(used)
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn search(
    store: &Store,
    state: &CollectionState,
    queries: &[Vec<f32>],
    k: usize,
    filter: Option<&Filter>,
    include_vectors: bool,
    cancel: &CancelToken,
    budget: Option<&AnswerBudget>,
) -> Result<Vec<Vec<SearchHit>>> {
    let dims = state.stored.config.dimensions;
    validate_queries(queries, k, dims)?;
    // Every query has exactly `dims` components now: this is the size of data the
    // request already holds, not a count it claims.
    let mut flat = Vec::with_capacity(queries.len() * dims);
    for q in queries {
        flat.extend_from_slice(q);
    }
    let mut used = 0usize;
    let mut results = {
        let index = state.index.read();
        let mask = match filter {
            Some(f) => Some(
                index
                    .masks
                    .mask(f, &index.row_ids, &index.metadata, cancel)?,
            ),
            None => None,
        };
        let mut results = Vec::with_capacity(queries.len());
        for chunk in flat.chunks(QUERIES_PER_ENGINE_CALL * dims) {
            cancel.check()?;
            let hits = index.shard.search_batch(chunk, k, mask.as_deref())?;
            for per_query in hits {
                let mut out = Vec::with_capacity(per_query.len());
                for h in per_query {
                    let row = h.row as usize;
                    let Some(id) = index.row_ids.get(row).and_then(Option::as_ref) else {
                        continue;
                    };
                    let metadata = index.metadata[row].clone();
                    if let Some(b) = budget {
                        used += b.hit_bytes(id, metadata.as_deref());
                        b.over(used)?;
                    }
                    out.push(SearchHit {
                        id: id.to_string(),
                        distance: h.distance,
                        metadata,
                        vector: None,
                    });
                }
                results.push(out);
            }
        }
        results
    };
    if include_vectors {
        attach_vectors(store, state, &mut results, budget, used, cancel)?;
    }
    Ok(results)
}

/// Reads each hit's vector from the store, after checking that the answer with
/// them still fits `budget` (each component takes at least two bytes of JSON).
pub(crate) fn attach_vectors(
    store: &Store,
    state: &CollectionState,
    results: &mut [Vec<SearchHit>],
    budget: Option<&AnswerBudget>,
    used: usize,
    cancel: &CancelToken,
) -> Result<()> {
    if let Some(b) = budget {
        let hits: usize = results.iter().map(Vec::len).sum();
        let dims = state.stored.config.dimensions;
        b.over(used.saturating_add(hits.saturating_mul(2 * dims)))?;
    }
    for per_query in results.iter_mut() {
        cancel.check()?;
        for hit in per_query {
            hit.vector = store
                .get_vector(state.stored.id, &hit.id)?
                .map(|r| r.vector);
        }
    }
    Ok(())
}

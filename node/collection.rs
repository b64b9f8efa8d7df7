//! [`Collection`]: the library's per-collection API.

use crate::cancel::CancelToken;
use crate::database::Database;
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::model::{CollectionConfig, VectorRecord};
use crate::op::{Op, Precondition};
use crate::search::{self, AnswerBudget, SearchHit};

/// A handle to a collection by name. Every call resolves the name afresh, like an HTTP
/// client would: after a drop it reports `COLLECTION_NOT_FOUND`, and after a drop and
/// re-create it addresses the new collection.
#[derive(Clone)]
pub struct Collection {
    db: Database,
    name: String,
}

/// Collection handles come from the database; written here so that the database
/// need not know this type (it depends on the database, not the other way).
impl Database {
    /// Creates a collection; `COLLECTION_EXISTS` if the name is taken.
    pub fn create_collection(&self, config: CollectionConfig) -> Result<Collection> {
        let name = config.name.clone();
        self.submit(Op::CreateCollection(config), Precondition::None)?;
        Ok(Collection {
            db: self.clone(),
            name,
        })
    }

    /// A handle to an existing collection.
    pub fn collection(&self, name: &str) -> Result<Collection> {
        self.state(name)?;
        Ok(Collection {
            db: self.clone(),
            name: name.to_string(),
        })
    }
}

impl Collection {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> Result<CollectionConfig> {
        Ok(self.db.state(&self.name)?.stored.config.clone())
    }

    /// Live vectors.
    pub fn count(&self) -> Result<usize> {
        Ok(self.db.state(&self.name)?.index.read().live())
    }

    /// Deleted rows still held by the engine, waiting for background compaction (which
    /// starts once they are at least 1,024 and a quarter of all rows).
    pub fn tombstones(&self) -> Result<usize> {
        Ok(self.db.state(&self.name)?.index.read().tombstones())
    }

    /// Adds a vector; `VECTOR_EXISTS` if the id is taken.
    pub fn insert(&self, record: VectorRecord) -> Result<()> {
        let op = Op::Upsert {
            collection: self.name.clone(),
            records: vec![record],
        };
        self.db
            .submit(op, Precondition::IdsAbsent)
            .map_err(Error::single_item)?;
        Ok(())
    }

    /// Inserts or replaces every record, all or nothing. Returns how many were written.
    pub fn upsert(&self, records: Vec<VectorRecord>) -> Result<usize> {
        if records.is_empty() {
            self.db.state(&self.name)?;
            return Ok(0);
        }
        let op = Op::Upsert {
            collection: self.name.clone(),
            records,
        };
        Ok(self.db.submit(op, Precondition::None)?.affected)
    }

    /// Removes a vector; returns whether it existed.
    pub fn delete(&self, id: &str) -> Result<bool> {
        let op = Op::Delete {
            collection: self.name.clone(),
            ids: vec![id.to_string()],
        };
        let applied = self.db.submit(op, Precondition::None)?;
        Ok(applied.deleted.first().copied().unwrap_or(false))
    }

    /// Visits the id and metadata of every live vector that passes `filter`, in row
    /// order (no order a caller should rely on), under the collection's read lock:
    /// `visit` must be quick. A filter's row mask is cached as for searches, so
    /// paging through one filter's matches evaluates it once.
    pub fn scan(
        &self,
        filter: Option<&Filter>,
        mut visit: impl FnMut(&str, Option<&crate::model::Metadata>),
    ) -> Result<()> {
        let state = self.db.state(&self.name)?;
        let index = state.index.read();
        let mask = match filter {
            Some(f) => Some(index.masks.mask(
                f,
                &index.row_ids,
                &index.metadata,
                &CancelToken::never(),
            )?),
            None => None,
        };
        for (row, (id, metadata)) in index.row_ids.iter().zip(&index.metadata).enumerate() {
            let Some(id) = id else { continue };
            if mask.as_ref().is_none_or(|m| m.contains(row)) {
                visit(id, metadata.as_deref());
            }
        }
        Ok(())
    }

    /// Whether a vector with this id exists (in the store, which holds every
    /// committed write even while the in-memory index catches up).
    pub fn contains(&self, id: &str) -> Result<bool> {
        let state = self.db.state(&self.name)?;
        self.db.inner.store.vector_exists(state.stored.id, id)
    }

    /// Live vectors that pass `filter` (all live vectors without one).
    pub fn count_matching(&self, filter: Option<&Filter>) -> Result<usize> {
        let Some(filter) = filter else {
            return self.count();
        };
        let state = self.db.state(&self.name)?;
        let index = state.index.read();
        let mask = index.masks.mask(
            filter,
            &index.row_ids,
            &index.metadata,
            &CancelToken::never(),
        )?;
        Ok(mask.count())
    }

    /// A stored vector with its metadata.
    pub fn get(&self, id: &str) -> Result<VectorRecord> {
        crate::model::validate_id(id)?;
        let state = self.db.state(&self.name)?;
        self.db
            .inner
            .store
            .get_vector(state.stored.id, id)?
            .ok_or_else(|| Error::VectorNotFound(id.to_string()))
    }

    /// The `k` nearest vectors to `query` that pass `filter`, nearest first.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<SearchHit>> {
        let mut results = self.search_batch(&[query.to_vec()], k, filter, false)?;
        Ok(results.pop().unwrap_or_default())
    }

    /// One engine call for every query: the unit of work the engine is fast at.
    pub fn search_batch(
        &self,
        queries: &[Vec<f32>],
        k: usize,
        filter: Option<&Filter>,
        include_vectors: bool,
    ) -> Result<Vec<Vec<SearchHit>>> {
        self.search_batch_within(
            queries,
            k,
            filter,
            include_vectors,
            &CancelToken::never(),
            None,
        )
    }

    /// [`Collection::search_batch`] that stops with `CANCELLED` once `cancel` is set
    /// (its requester went away), and with `RESPONSE_TOO_LARGE` once the answer
    /// passes `budget`.
    pub fn search_batch_within(
        &self,
        queries: &[Vec<f32>],
        k: usize,
        filter: Option<&Filter>,
        include_vectors: bool,
        cancel: &CancelToken,
        budget: Option<&AnswerBudget>,
    ) -> Result<Vec<Vec<SearchHit>>> {
        let state = self.db.state(&self.name)?;
        search::search(
            &self.db.inner.store,
            &state,
            queries,
            k,
            filter,
            include_vectors,
            cancel,
            budget,
        )
    }

    /// Completes one query's hits for its caller: counts them against `budget` and
    /// reads their vectors if asked (the coalescer does this per caller, after cutting
    /// a shared engine call's hits to each caller's own k).
    pub fn finish_hits(
        &self,
        hits: &mut Vec<SearchHit>,
        include_vectors: bool,
        budget: Option<&AnswerBudget>,
    ) -> Result<()> {
        let used = match budget {
            Some(b) => b.count(hits, 0)?,
            None => 0,
        };
        if include_vectors {
            let state = self.db.state(&self.name)?;
            search::attach_vectors(
                &self.db.inner.store,
                &state,
                std::slice::from_mut(hits),
                budget,
                used,
                &CancelToken::never(),
            )?;
        }
        Ok(())
    }

    /// The checks a search of this collection must pass before it runs or waits in a
    /// queue: `k`, the result count and each query's dimensions and values.
    pub fn validate_search(&self, queries: &[Vec<f32>], k: usize) -> Result<()> {
        let dims = self.db.state(&self.name)?.stored.config.dimensions;
        search::validate_queries(queries, k, dims)
    }
}

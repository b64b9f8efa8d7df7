use super::budget::{ensure_fits, to_json_within, JsonBody};
use super::extract::ApiJson;
use super::{ApiError, AppState};
use crate::coalesce::SearchRequest;
use crate::{AnswerBudget, CancelToken, Collection, Filter, Metadata, SearchHit};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

fn default_k() -> usize {
    10
}

fn default_true() -> bool {
    true
}

/// The fewest bytes one hit can take in an answer (`{"id":"x","distance":0},`);
/// each vector component adds at least two (`0,`).
const MIN_HIT_BYTES: usize = 24;

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = Search)]
#[serde(deny_unknown_fields)]
pub struct SingleBody {
    vector: Vec<f32>,
    /// 1–10,000 (default 10).
    #[serde(default = "default_k")]
    #[schema(default = 10)]
    k: usize,
    /// MongoDB-style: `{"field": value}`, `$eq $ne $gt $gte $lt $lte $in $nin
    /// $exists`, `$and $or $not`.
    #[serde(default)]
    #[schema(value_type = Option<super::openapi::Object>)]
    filter: Option<Value>,
    #[serde(default)]
    include_vectors: bool,
    #[serde(default = "default_true")]
    include_metadata: bool,
    /// `linearizable` or `eventual` (default).
    #[serde(default)]
    consistency: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = SearchBatch)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    vectors: Vec<Vec<f32>>,
    /// 1–10,000 (default 10); at most 1,000,000 results in all.
    #[serde(default = "default_k")]
    #[schema(default = 10)]
    k: usize,
    #[serde(default)]
    #[schema(value_type = Option<super::openapi::Object>)]
    filter: Option<Value>,
    #[serde(default)]
    include_vectors: bool,
    #[serde(default = "default_true")]
    include_metadata: bool,
    /// `linearizable` or `eventual` (default).
    #[serde(default)]
    consistency: Option<String>,
}

/// One hit as the API answers it, serialized straight from the engine's hit.
#[derive(Serialize)]
struct HitOut<'a> {
    id: &'a str,
    /// As f64, as this API always wrote it.
    distance: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Option<&'a Metadata>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vector: Option<&'a [f32]>,
}

impl<'a> HitOut<'a> {
    fn new(hit: &'a SearchHit, include_metadata: bool) -> HitOut<'a> {
        HitOut {
            id: &hit.id,
            distance: f64::from(hit.distance),
            metadata: include_metadata.then_some(hit.metadata.as_deref()),
            vector: hit.vector.as_deref(),
        }
    }
}

#[derive(Serialize)]
struct Results<T> {
    results: T,
}

/// The fewest hits a search can return: `k` per query, or every live vector when
/// there are fewer; nothing is certain under a filter.
fn least_hits(
    collection: &Collection,
    queries: usize,
    k: usize,
    filtered: bool,
) -> crate::Result<usize> {
    if filtered {
        return Ok(0);
    }
    Ok(queries.saturating_mul(k.min(collection.count()?)))
}

fn per_hit_bytes(include_vectors: bool, dims: usize) -> usize {
    MIN_HIT_BYTES + if include_vectors { 2 * dims } else { 0 }
}

#[utoipa::path(post, path = "/collections/{name}/search", tag = "search", request_body = SingleBody,
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 200, description = "The k nearest vectors that pass the filter, nearest first", body = super::openapi::SearchResults),
        (status = 404, description = "COLLECTION_NOT_FOUND", body = super::openapi::ErrorBody), super::openapi::CommonErrors))]
/// Goes through the coalescer (unless switched off): concurrent single searches share
/// engine calls.
pub async fn single(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<SingleBody>,
) -> Result<JsonBody, ApiError> {
    state
        .read_barrier(body.consistency.as_deref(), &name)
        .await?;
    let collection = state.db().collection(&name)?;
    let filter = parse_filter(body.filter)?;
    let max = state.limits.max_response_bytes;
    ensure_fits(
        least_hits(&collection, 1, body.k, filter.is_some())?,
        per_hit_bytes(body.include_vectors, collection.config()?.dimensions),
        max,
    )?;
    let include_metadata = body.include_metadata;
    let budget = AnswerBudget {
        max_bytes: max,
        with_metadata: include_metadata,
    };
    let request = SearchRequest {
        query: body.vector,
        k: body.k,
        filter: filter.map(Arc::new),
        include_vectors: body.include_vectors,
        budget: Some(budget),
    };
    let hits = match &state.coalescer {
        Some(coalescer) => coalescer.search(collection, request).await?,
        None => {
            let r = request;
            let filter = r.filter.as_deref().cloned();
            engine_call(
                &state,
                &name,
                collection,
                vec![r.query],
                r.k,
                filter,
                r.include_vectors,
                budget,
            )
            .await?
            .pop()
            .unwrap_or_default()
        }
    };
    blocking(move || {
        let out: Vec<HitOut> = hits
            .iter()
            .map(|h| HitOut::new(h, include_metadata))
            .collect();
        to_json_within(&Results { results: out }, max)
    })
    .await
}

#[utoipa::path(post, path = "/collections/{name}/search/batch", tag = "search", request_body = BatchBody,
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 200, description = "One list of hits per query, from one engine call", body = super::openapi::BatchSearchResults),
        (status = 404, description = "COLLECTION_NOT_FOUND", body = super::openapi::ErrorBody), super::openapi::CommonErrors))]
/// One engine call for the whole batch.
pub async fn batch(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<BatchBody>,
) -> Result<JsonBody, ApiError> {
    state
        .read_barrier(body.consistency.as_deref(), &name)
        .await?;
    let collection = state.db().collection(&name)?;
    let filter = parse_filter(body.filter)?;
    let max = state.limits.max_response_bytes;
    if body.vectors.is_empty() {
        return Ok(to_json_within(&Results { results: [(); 0] }, max)?);
    }
    // Every count is checked before anything is sized by it or any work is done.
    collection.validate_search(&body.vectors, body.k)?;
    ensure_fits(
        least_hits(&collection, body.vectors.len(), body.k, filter.is_some())?,
        per_hit_bytes(body.include_vectors, collection.config()?.dimensions),
        max,
    )?;
    let (queries, k, include_vectors) = (body.vectors, body.k, body.include_vectors);
    let include_metadata = body.include_metadata;
    let budget = AnswerBudget {
        max_bytes: max,
        with_metadata: include_metadata,
    };
    let hits = engine_call(
        &state,
        &name,
        collection,
        queries,
        k,
        filter,
        include_vectors,
        budget,
    )
    .await?;
    blocking(move || {
        let out: Vec<Vec<HitOut>> = hits
            .iter()
            .map(|per_query| {
                per_query
                    .iter()
                    .map(|h| HitOut::new(h, include_metadata))
                    .collect()
            })
            .collect();
        to_json_within(&Results { results: out }, max)
    })
    .await
}

/// One engine call on a blocking thread (the scan is CPU-bound and parallel; it must
/// not occupy an async worker), counted in the batch-size metric. If this future is
/// dropped (the client went away), the search stops at its next step; once what it
/// builds passes `budget`, it stops with `RESPONSE_TOO_LARGE`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn engine_call(
    state: &AppState,
    name: &str,
    collection: Collection,
    queries: Vec<Vec<f32>>,
    k: usize,
    filter: Option<Filter>,
    include_vectors: bool,
    budget: AnswerBudget,
) -> Result<Vec<Vec<SearchHit>>, ApiError> {
    state
        .metrics
        .search_batch_size
        .with_label_values(&[name])
        .observe(queries.len() as f64);
    let cancel = CancelToken::never();
    let guard = cancel.guard();
    let cancelled = state.metrics.searches_cancelled.clone();
    let hits = blocking(move || {
        let hits = collection.search_batch_within(
            &queries,
            k,
            filter.as_ref(),
            include_vectors,
            &cancel,
            Some(&budget),
        );
        if matches!(hits, Err(crate::Error::Cancelled)) {
            cancelled.inc();
        }
        hits
    })
    .await;
    guard.disarm();
    hits
}

/// Runs `work` on a blocking thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, crate::Error> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string()))?
        .map_err(ApiError::from)
}

fn parse_filter(filter: Option<Value>) -> Result<Option<Filter>, ApiError> {
    match filter {
        None | Some(Value::Null) => Ok(None),
        Some(f) => Filter::parse(&f)
            .map(Some)
            .map_err(|m| ApiError::from(crate::Error::InvalidFilter(m))),
    }
}

use super::extract::ApiJson;
use super::{ApiError, AppState};
use crate::coalesce::SearchRequest;
use crate::{Collection, Filter, SearchHit};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;

fn default_k() -> usize {
    10
}

fn default_true() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SingleBody {
    vector: Vec<f32>,
    #[serde(default = "default_k")]
    k: usize,
    #[serde(default)]
    filter: Option<Value>,
    #[serde(default)]
    include_vectors: bool,
    #[serde(default = "default_true")]
    include_metadata: bool,
    /// `linearizable` or `eventual` (default).
    #[serde(default)]
    consistency: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    vectors: Vec<Vec<f32>>,
    #[serde(default = "default_k")]
    k: usize,
    #[serde(default)]
    filter: Option<Value>,
    #[serde(default)]
    include_vectors: bool,
    #[serde(default = "default_true")]
    include_metadata: bool,
    /// `linearizable` or `eventual` (default).
    #[serde(default)]
    consistency: Option<String>,
}

/// Goes through the coalescer (unless switched off): concurrent single searches share
/// engine calls.
pub async fn single(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<SingleBody>,
) -> Result<Json<Value>, ApiError> {
    state.read_barrier(body.consistency.as_deref()).await?;
    let collection = state.db().collection(&name)?;
    let request = SearchRequest {
        query: body.vector,
        k: body.k,
        filter: parse_filter(body.filter)?.map(Arc::new),
        include_vectors: body.include_vectors,
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
            )
            .await?
            .pop()
            .unwrap_or_default()
        }
    };
    let results: Vec<Value> = hits
        .into_iter()
        .map(|h| hit_json(h, body.include_metadata))
        .collect();
    Ok(Json(json!({ "results": results })))
}

/// One engine call for the whole batch.
pub async fn batch(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<BatchBody>,
) -> Result<Json<Value>, ApiError> {
    state.read_barrier(body.consistency.as_deref()).await?;
    let collection = state.db().collection(&name)?;
    let filter = parse_filter(body.filter)?;
    if body.vectors.is_empty() {
        return Ok(Json(json!({ "results": [] })));
    }
    let (queries, k, include_vectors) = (body.vectors, body.k, body.include_vectors);
    let hits = engine_call(
        &state,
        &name,
        collection,
        queries,
        k,
        filter,
        include_vectors,
    )
    .await?;
    let results: Vec<Vec<Value>> = hits
        .into_iter()
        .map(|per_query| {
            per_query
                .into_iter()
                .map(|h| hit_json(h, body.include_metadata))
                .collect()
        })
        .collect();
    Ok(Json(json!({ "results": results })))
}

/// One engine call on a blocking thread (the scan is CPU-bound and parallel; it must
/// not occupy an async worker), counted in the batch-size metric.
async fn engine_call(
    state: &AppState,
    name: &str,
    collection: Collection,
    queries: Vec<Vec<f32>>,
    k: usize,
    filter: Option<Filter>,
    include_vectors: bool,
) -> Result<Vec<Vec<SearchHit>>, ApiError> {
    state
        .metrics
        .search_batch_size
        .with_label_values(&[name])
        .observe(queries.len() as f64);
    tokio::task::spawn_blocking(move || {
        collection.search_batch(&queries, k, filter.as_ref(), include_vectors)
    })
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

fn hit_json(hit: SearchHit, include_metadata: bool) -> Value {
    let mut out = Map::new();
    out.insert("id".into(), Value::String(hit.id));
    out.insert("distance".into(), json!(hit.distance));
    if include_metadata {
        let metadata = hit
            .metadata
            .map(|m| Value::Object((*m).clone()))
            .unwrap_or(Value::Null);
        out.insert("metadata".into(), metadata);
    }
    if let Some(v) = hit.vector {
        out.insert("vector".into(), json!(v));
    }
    Value::Object(out)
}

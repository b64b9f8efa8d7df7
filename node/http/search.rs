use super::extract::ApiJson;
use super::{ApiError, AppState};
use crate::{Filter, SearchHit};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

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
}

pub async fn single(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<SingleBody>,
) -> Result<Json<Value>, ApiError> {
    let mut results = run(
        &state,
        name,
        vec![body.vector],
        body.k,
        body.filter,
        body.include_vectors,
        body.include_metadata,
    )
    .await?;
    Ok(Json(
        json!({ "results": results.pop().unwrap_or_default() }),
    ))
}

/// One engine call for the whole batch.
pub async fn batch(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<BatchBody>,
) -> Result<Json<Value>, ApiError> {
    let results = run(
        &state,
        name,
        body.vectors,
        body.k,
        body.filter,
        body.include_vectors,
        body.include_metadata,
    )
    .await?;
    Ok(Json(json!({ "results": results })))
}

async fn run(
    state: &AppState,
    name: String,
    queries: Vec<Vec<f32>>,
    k: usize,
    filter: Option<Value>,
    include_vectors: bool,
    include_metadata: bool,
) -> Result<Vec<Vec<Value>>, ApiError> {
    let collection = state.db.collection(&name)?;
    let filter = match filter {
        None | Some(Value::Null) => None,
        Some(f) => {
            Some(Filter::parse(&f).map_err(|m| ApiError::from(crate::Error::InvalidFilter(m)))?)
        }
    };
    if queries.is_empty() {
        return Ok(Vec::new());
    }
    state
        .metrics
        .search_batch_size
        .with_label_values(&[name.as_str()])
        .observe(queries.len() as f64);
    // The scan is CPU-bound and parallel; keep it off the async workers.
    let hits = tokio::task::spawn_blocking(move || {
        collection.search_batch(&queries, k, filter.as_ref(), include_vectors)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string()))??;
    Ok(hits
        .into_iter()
        .map(|per_query| {
            per_query
                .into_iter()
                .map(|h| hit_json(h, include_metadata))
                .collect()
        })
        .collect())
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

//! Nearest-neighbour search: `points/query` and `points/query/batch`, and the
//! legacy `points/search` and `points/search/batch`.
//!
//! Scores follow Qdrant: cosine and dot are similarities (larger is closer), Euclid
//! a distance (smaller is closer), all exact, so `score_threshold` keeps what a
//! Qdrant user expects (at least the threshold for similarities, at most for
//! distances). Searches of a batch that share their filter and sizes run as one
//! engine call.

use super::envelope::{ok, Started};
use super::params::{bad, refuse_if_set, with_vector, PayloadSelector, PointOut, ReadQuery};
use super::point_id::PointId;
use super::scroll::parse_filter;
use crate::http::budget::JsonBody;
use crate::http::extract::ApiJson;
use crate::http::{ApiError, AppState};
use crate::search::MAX_RESULTS_PER_SEARCH;
use crate::{AnswerBudget, Distance, SearchHit};
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One search, whichever endpoint it came from.
pub(super) struct Search {
    vector: Vec<f32>,
    filter: Option<Value>,
    limit: usize,
    offset: usize,
    score_threshold: Option<f32>,
    payload: PayloadSelector,
    vectors: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryBody {
    query: Option<Value>,
    filter: Option<Value>,
    limit: Option<usize>,
    offset: Option<usize>,
    score_threshold: Option<f32>,
    with_payload: Option<Value>,
    with_vector: Option<Value>,
    /// Accepted (`hnsw_ef`, `exact`, ...): needle always searches exactly.
    #[allow(dead_code)]
    params: Option<Value>,
    using: Option<Value>,
    prefetch: Option<Value>,
    lookup_from: Option<Value>,
    shard_key: Option<Value>,
}

/// A request body that is one search.
pub(super) trait IntoSearch {
    fn into_search(self) -> Result<Search, ApiError>;
}

impl IntoSearch for QueryBody {
    fn into_search(self) -> Result<Search, ApiError> {
        refuse_if_set(
            &[
                ("prefetch", &self.prefetch),
                ("lookup_from", &self.lookup_from),
                ("shard_key", &self.shard_key),
            ],
            "needle queries are one nearest-neighbour search",
        )?;
        if self.using.as_ref().is_some_and(|u| !u.is_null()) {
            return Err(bad(
                "using is not supported: needle collections have one unnamed vector",
            ));
        }
        let vector = match self.query {
            Some(Value::Array(items)) => query_vector(Value::Array(items))?,
            Some(Value::Object(mut q)) => match q.remove("nearest") {
                Some(v) if q.values().all(Value::is_null) => match v {
                    Value::Array(_) => query_vector(v)?,
                    _ => return Err(bad("nearest takes a vector (a list of numbers); querying by point id is not supported by needle")),
                },
                Some(_) => return Err(bad("nearest with mmr is not supported by needle")),
                None => {
                    let kind = q.keys().next().cloned().unwrap_or_default();
                    return Err(bad(format!(
                        "{kind:?} queries are not supported by needle: give a vector or {{\"nearest\": vector}}"
                    )));
                }
            },
            Some(Value::Number(_) | Value::String(_)) => {
                return Err(bad("querying by point id is not supported by needle: give a vector"))
            }
            None | Some(Value::Null) => {
                return Err(bad("query is required: needle answers nearest-neighbour queries (use points/scroll to list points)"))
            }
            Some(_) => return Err(bad("query must be a vector or {\"nearest\": vector}")),
        };
        Ok(Search {
            vector,
            filter: self.filter,
            limit: self.limit.unwrap_or(10),
            offset: self.offset.unwrap_or(0),
            score_threshold: self.score_threshold,
            payload: PayloadSelector::parse(self.with_payload.as_ref(), false)?,
            vectors: with_vector(self.with_vector.as_ref())?,
        })
    }
}

fn query_vector(value: Value) -> Result<Vec<f32>, ApiError> {
    match value {
        Value::Array(items) if items.first().is_some_and(Value::is_array) => Err(bad(
            "multivector queries are not supported by needle: give one list of numbers",
        )),
        other => serde_json::from_value(other).map_err(|e| bad(format!("query vector: {e}"))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    vector: Value,
    filter: Option<Value>,
    limit: usize,
    offset: Option<usize>,
    score_threshold: Option<f32>,
    with_payload: Option<Value>,
    with_vector: Option<Value>,
    #[allow(dead_code)]
    params: Option<Value>,
    shard_key: Option<Value>,
}

impl IntoSearch for SearchBody {
    fn into_search(self) -> Result<Search, ApiError> {
        refuse_if_set(
            &[("shard_key", &self.shard_key)],
            "needle does not shard collections",
        )?;
        let vector = match self.vector {
            Value::Object(_) => {
                return Err(bad("named and sparse vectors are not supported by needle: give the vector as a list of numbers"))
            }
            v => query_vector(v)?,
        };
        Ok(Search {
            vector,
            filter: self.filter,
            limit: self.limit,
            offset: self.offset.unwrap_or(0),
            score_threshold: self.score_threshold,
            payload: PayloadSelector::parse(self.with_payload.as_ref(), false)?,
            vectors: with_vector(self.with_vector.as_ref())?,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch<T> {
    searches: Vec<T>,
}

impl<T: IntoSearch> Batch<T> {
    /// Every search, or the first bad one's error naming its index.
    fn into_searches(self) -> Result<Vec<Search>, ApiError> {
        self.searches
            .into_iter()
            .enumerate()
            .map(|(i, q)| q.into_search().map_err(|e| indexed(i, e)))
            .collect()
    }
}

/// One search's scored points.
async fn run_one(
    state: &AppState,
    name: &str,
    read: &ReadQuery,
    body: impl IntoSearch,
) -> Result<Vec<PointOut>, ApiError> {
    let mut answers = run(state, name, read, vec![body.into_search()?]).await?;
    Ok(answers.pop().unwrap_or_default())
}

#[derive(Serialize)]
struct QueryResponse {
    points: Vec<PointOut>,
}

pub async fn query(
    State(state): State<AppState>,
    started: Started,
    Path(name): Path<String>,
    Query(read): Query<ReadQuery>,
    ApiJson(body): ApiJson<QueryBody>,
) -> Result<JsonBody, ApiError> {
    let points = run_one(&state, &name, &read, body).await?;
    ok(
        started,
        &QueryResponse { points },
        state.limits.max_response_bytes,
    )
}

pub async fn query_batch(
    State(state): State<AppState>,
    started: Started,
    Path(name): Path<String>,
    Query(read): Query<ReadQuery>,
    ApiJson(body): ApiJson<Batch<QueryBody>>,
) -> Result<JsonBody, ApiError> {
    let answers = run(&state, &name, &read, body.into_searches()?).await?;
    let out: Vec<QueryResponse> = answers
        .into_iter()
        .map(|points| QueryResponse { points })
        .collect();
    ok(started, &out, state.limits.max_response_bytes)
}

pub async fn search(
    State(state): State<AppState>,
    started: Started,
    Path(name): Path<String>,
    Query(read): Query<ReadQuery>,
    ApiJson(body): ApiJson<SearchBody>,
) -> Result<JsonBody, ApiError> {
    let points = run_one(&state, &name, &read, body).await?;
    ok(started, &points, state.limits.max_response_bytes)
}

pub async fn search_batch(
    State(state): State<AppState>,
    started: Started,
    Path(name): Path<String>,
    Query(read): Query<ReadQuery>,
    ApiJson(body): ApiJson<Batch<SearchBody>>,
) -> Result<JsonBody, ApiError> {
    let answers = run(&state, &name, &read, body.into_searches()?).await?;
    ok(started, &answers, state.limits.max_response_bytes)
}

fn indexed(i: usize, mut e: ApiError) -> ApiError {
    e.message = format!("searches[{i}]: {}", e.message);
    e
}

/// The most distinct (filter, size) groups one batch may have: each is an engine
/// call of its own and a filter mask to build (a collection caches 32).
const MAX_GROUPS_PER_BATCH: usize = 64;

/// Runs every search, grouped into one engine call per (filter, k, vectors). The
/// whole batch is held to the limits of one native search: at most
/// `MAX_RESULTS_PER_SEARCH` hits in all, and one response-size budget shared by its
/// groups.
async fn run(
    state: &AppState,
    name: &str,
    read: &ReadQuery,
    searches: Vec<Search>,
) -> Result<Vec<Vec<PointOut>>, ApiError> {
    let mut answers: Vec<Vec<PointOut>> = (0..searches.len()).map(|_| Vec::new()).collect();
    let mut results = 0usize;
    let mut groups: Vec<(usize, bool, Vec<usize>)> = Vec::new();
    let mut group_of: std::collections::HashMap<(String, usize, bool), usize> =
        std::collections::HashMap::new();
    for (i, s) in searches.iter().enumerate() {
        if s.limit == 0 {
            return Err(indexed(i, bad("limit must be at least 1")));
        }
        let k = s.limit.saturating_add(s.offset);
        results = results.saturating_add(k);
        let key = (
            s.filter.as_ref().map(Value::to_string).unwrap_or_default(),
            k,
            s.vectors,
        );
        let next = groups.len();
        let g = *group_of.entry(key).or_insert(next);
        if g == next {
            if next == MAX_GROUPS_PER_BATCH {
                return Err(bad(format!(
                    "a batch may have at most {MAX_GROUPS_PER_BATCH} distinct filter and limit combinations"
                )));
            }
            groups.push((k, s.vectors, Vec::new()));
        }
        groups[g].2.push(i);
    }
    if results > MAX_RESULTS_PER_SEARCH {
        return Err(ApiError::from(crate::Error::TooManyResults {
            queries: searches.len(),
            k: results / searches.len().max(1),
            max: MAX_RESULTS_PER_SEARCH,
        }));
    }
    state.read_barrier(read.needle_consistency()?, name).await?;
    let collection = state.db().collection(name)?;
    let distance = collection.config()?.distance;
    let mut remaining = state.limits.max_response_bytes;
    for (k, vectors, members) in groups {
        let first = &searches[members[0]];
        let filter = parse_filter(first.filter.as_ref())?;
        let queries: Vec<Vec<f32>> = members
            .iter()
            .map(|&i| searches[i].vector.clone())
            .collect();
        collection.validate_search(&queries, k)?;
        let budget = AnswerBudget {
            max_bytes: remaining,
            with_metadata: members.iter().any(|&i| searches[i].payload.wants_payload()),
        };
        let hits = crate::http::search::engine_call(
            state,
            name,
            collection.clone(),
            queries,
            k,
            filter,
            vectors,
            budget,
        )
        .await?;
        for (&i, hits) in members.iter().zip(hits) {
            answers[i] = scored(&searches[i], distance, hits);
            let used = crate::model::json_len(&answers[i]);
            remaining = remaining.checked_sub(used).ok_or_else(|| {
                ApiError::from(crate::Error::ResponseTooLarge {
                    bytes: (state.limits.max_response_bytes + 1) as u64,
                    max: state.limits.max_response_bytes as u64,
                })
            })?;
        }
    }
    Ok(answers)
}

/// needle's distance (smaller is closer) as Qdrant's score.
fn score(distance: Distance, d: f32) -> f32 {
    match distance {
        Distance::Cosine => 1.0 - d,
        Distance::Dot => -d,
        Distance::Euclidean => d,
    }
}

fn passes_threshold(distance: Distance, score: f32, threshold: Option<f32>) -> bool {
    match (threshold, distance) {
        (None, _) => true,
        (Some(t), Distance::Euclidean) => score <= t,
        (Some(t), _) => score >= t,
    }
}

fn scored(search: &Search, distance: Distance, hits: Vec<SearchHit>) -> Vec<PointOut> {
    hits.into_iter()
        .skip(search.offset)
        .take(search.limit)
        .map(|h| (score(distance, h.distance), h))
        .filter(|(s, _)| passes_threshold(distance, *s, search.score_threshold))
        .map(|(s, h)| PointOut {
            id: PointId::from_native(&h.id),
            // needle keeps no per-point version.
            version: Some(0),
            score: Some(f64::from(s)),
            payload: search.payload.select(h.metadata.as_deref()),
            vector: if search.vectors { h.vector } else { None },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_follow_qdrant_conventions() {
        assert_eq!(score(Distance::Cosine, 0.25), 0.75);
        assert_eq!(score(Distance::Dot, -3.0), 3.0);
        assert_eq!(score(Distance::Euclidean, 2.0), 2.0);
        assert!(passes_threshold(Distance::Cosine, 0.8, Some(0.8)));
        assert!(!passes_threshold(Distance::Cosine, 0.7, Some(0.8)));
        assert!(passes_threshold(Distance::Euclidean, 1.0, Some(1.5)));
        assert!(!passes_threshold(Distance::Euclidean, 2.0, Some(1.5)));
    }
}

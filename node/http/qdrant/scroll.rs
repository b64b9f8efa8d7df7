//! `points/scroll` (pages in Qdrant's id order) and `points/count`.

use super::envelope::{ok, Started};
use super::filter::translate;
use super::params::{bad, refuse_if_set, with_vector, PayloadSelector, PointOut, ReadQuery};
use super::point_id::PointId;
use super::points::{blocking, AnswerPoints};
use crate::http::budget::JsonBody;
use crate::http::extract::ApiJson;
use crate::http::{ApiError, AppState};
use crate::{Collection, Error, Filter};
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BinaryHeap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrollBody {
    offset: Option<Value>,
    limit: Option<usize>,
    filter: Option<Value>,
    with_payload: Option<Value>,
    with_vector: Option<Value>,
    order_by: Option<Value>,
    shard_key: Option<Value>,
}

#[derive(Serialize)]
struct ScrollResult {
    points: Vec<PointOut>,
    next_page_offset: Option<PointId>,
}

pub fn parse_filter(filter: Option<&Value>) -> Result<Option<Filter>, ApiError> {
    match filter {
        None | Some(Value::Null) => Ok(None),
        Some(f) => translate(f)
            .map(Some)
            .map_err(|m| ApiError::from(Error::InvalidFilter(m))),
    }
}

/// `POST /collections/{c}/points/scroll`: up to `limit` points from `offset` on, in
/// id order, and the id the next page starts at. Each page is one pass over the
/// collection's ids in memory, keeping the `limit + 1` smallest past the offset.
pub async fn scroll(
    State(state): State<AppState>,
    started: Started,
    Path(name): Path<String>,
    Query(query): Query<ReadQuery>,
    ApiJson(body): ApiJson<ScrollBody>,
) -> Result<JsonBody, ApiError> {
    refuse_if_set(
        &[("order_by", &body.order_by), ("shard_key", &body.shard_key)],
        "scroll pages follow point ids",
    )?;
    let limit = body.limit.unwrap_or(10);
    if limit == 0 {
        return Err(bad("limit must be at least 1"));
    }
    let offset = match &body.offset {
        None | Some(Value::Null) => None,
        Some(v) => Some(PointId::parse_offset(v).map_err(|e| bad(format!("offset: {e}")))?),
    };
    let filter = parse_filter(body.filter.as_ref())?;
    let payload = PayloadSelector::parse(body.with_payload.as_ref(), true)?;
    let vectors = with_vector(body.with_vector.as_ref())?;
    state
        .read_barrier(query.needle_consistency()?, &name)
        .await?;
    let collection = state.db().collection(&name)?;
    let answer = AnswerPoints::new(state.limits.max_response_bytes, vectors, payload);
    let result =
        blocking(move || page(&collection, filter.as_ref(), offset.as_ref(), limit, answer))
            .await?;
    ok(started, &result, state.limits.max_response_bytes)
}

fn page(
    collection: &Collection,
    filter: Option<&Filter>,
    offset: Option<&PointId>,
    limit: usize,
    mut answer: AnswerPoints,
) -> crate::Result<ScrollResult> {
    let keep = limit.saturating_add(1);
    let mut smallest: BinaryHeap<PointId> = BinaryHeap::new();
    collection.scan(filter, |id, _| {
        let id = PointId::from_native(id);
        if offset.is_some_and(|o| &id < o) {
            return;
        }
        if smallest.len() < keep {
            smallest.push(id);
        } else if smallest.peek().is_some_and(|largest| &id < largest) {
            smallest.pop();
            smallest.push(id);
        }
    })?;
    let mut ids = smallest.into_sorted_vec();
    let next = (ids.len() > limit).then(|| ids.pop()).flatten();
    for id in &ids {
        // A point deleted since the pass is left out of its page.
        match collection.get(&id.to_native()) {
            Ok(r) => answer.push(&r)?,
            Err(Error::VectorNotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(ScrollResult {
        points: answer.points,
        next_page_offset: next,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountBody {
    filter: Option<Value>,
    /// Counts are always exact.
    #[allow(dead_code)]
    exact: Option<bool>,
    shard_key: Option<Value>,
}

/// `POST /collections/{c}/points/count`: exact, with or without a filter.
pub async fn count(
    State(state): State<AppState>,
    started: Started,
    Path(name): Path<String>,
    Query(query): Query<ReadQuery>,
    ApiJson(body): ApiJson<CountBody>,
) -> Result<JsonBody, ApiError> {
    refuse_if_set(
        &[("shard_key", &body.shard_key)],
        "needle does not shard collections",
    )?;
    let filter = parse_filter(body.filter.as_ref())?;
    state
        .read_barrier(query.needle_consistency()?, &name)
        .await?;
    let collection = state.db().collection(&name)?;
    let count = blocking(move || collection.count_matching(filter.as_ref())).await?;
    ok(
        started,
        &serde_json::json!({ "count": count }),
        state.limits.max_response_bytes,
    )
}

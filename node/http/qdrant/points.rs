//! Point writes and reads by id: upsert (list and batch forms), retrieve, get,
//! delete (by ids or by filter), set and delete payload keys.
//!
//! Payload changes are `Op::PatchMetadata` writes, which the writer resolves against
//! the latest state, so they never undo another client's write.

use super::envelope::{ok, Started};
use super::filter::translate;
use super::params::{bad, refuse_if_set, with_vector, PayloadSelector, PointOut};
use super::params::{ReadQuery, UpdateResult, WriteQuery, WriteSettings};
use super::point_id::PointId;
use crate::http::budget::JsonBody;
use crate::http::extract::ApiJson;
use crate::http::{ApiError, AppState};
use crate::{Collection, Error, Filter, Metadata, Op, Precondition, VectorRecord};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpsertBody {
    points: Option<Vec<Value>>,
    batch: Option<BatchForm>,
    shard_key: Option<Value>,
    update_filter: Option<Value>,
    update_mode: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchForm {
    ids: Vec<Value>,
    vectors: Value,
    payloads: Option<Vec<Value>>,
}

/// `PUT /collections/{c}/points`: every point is checked before anything is written,
/// and all are written as one op (all or nothing).
pub async fn upsert(
    State(state): State<AppState>,
    started: Started,
    Path(name): Path<String>,
    Query(query): Query<WriteQuery>,
    ApiJson(body): ApiJson<UpsertBody>,
) -> Result<JsonBody, ApiError> {
    let settings = query.settings()?;
    refuse_if_set(
        &[
            ("shard_key", &body.shard_key),
            ("update_filter", &body.update_filter),
            ("update_mode", &body.update_mode),
        ],
        "needle upserts every point it is given",
    )?;
    let records = match (body.points, body.batch) {
        (Some(points), None) => points
            .into_iter()
            .enumerate()
            .map(|(i, p)| point_record(p).map_err(|m| bad(format!("points[{i}]: {m}"))))
            .collect::<Result<Vec<_>, _>>()?,
        (None, Some(batch)) => batch_records(batch)?,
        _ => {
            return Err(bad(
                "give either points (a list) or batch (ids and vectors)",
            ))
        }
    };
    if state.mode.knows_every_collection() {
        state.db().collection_info(&name)?;
    }
    let seq = write_records(&state, name, records, &settings).await?;
    updated(&state, started, seq, &settings)
}

/// A write's answer: where it is in the log, and whether it was waited for.
fn updated(
    state: &AppState,
    started: Started,
    seq: Option<u64>,
    settings: &WriteSettings,
) -> Result<JsonBody, ApiError> {
    ok(
        started,
        &UpdateResult::new(seq, settings),
        state.limits.max_response_bytes,
    )
}

/// `{"id", "vector", "payload"}` as a record.
fn point_record(point: Value) -> Result<VectorRecord, String> {
    let Value::Object(mut fields) = point else {
        return Err("a point must be an object".into());
    };
    let id: PointId = serde_json::from_value(fields.remove("id").ok_or("id is required")?)
        .map_err(|e| e.to_string())?;
    let vector = vector(fields.remove("vector").ok_or("vector is required")?)?;
    let metadata = payload(fields.remove("payload"))?;
    if let Some(other) = fields.keys().next() {
        return Err(format!("unknown field {other:?}"));
    }
    Ok(VectorRecord {
        id: id.to_native(),
        vector,
        metadata,
    })
}

fn vector(value: Value) -> Result<Vec<f32>, String> {
    match value {
        Value::Object(_) => Err("named and sparse vectors are not supported by needle: give the vector as a list of numbers".into()),
        Value::Array(items) if items.first().is_some_and(Value::is_array) => {
            Err("multivectors are not supported by needle: give one list of numbers".into())
        }
        other => serde_json::from_value(other).map_err(|e| format!("vector: {e}")),
    }
}

fn payload(value: Option<Value>) -> Result<Option<Metadata>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err("payload must be a JSON object".into()),
    }
}

fn batch_records(batch: BatchForm) -> Result<Vec<VectorRecord>, ApiError> {
    let Value::Array(vectors) = batch.vectors else {
        return Err(bad(
            "batch.vectors: named vectors are not supported by needle: give a list of vectors",
        ));
    };
    if vectors.len() != batch.ids.len() {
        return Err(bad(format!(
            "batch has {} ids and {} vectors",
            batch.ids.len(),
            vectors.len()
        )));
    }
    let payloads = batch.payloads.unwrap_or_default();
    if !payloads.is_empty() && payloads.len() != batch.ids.len() {
        return Err(bad(format!(
            "batch has {} ids and {} payloads",
            batch.ids.len(),
            payloads.len()
        )));
    }
    let mut payloads = payloads.into_iter();
    batch
        .ids
        .into_iter()
        .zip(vectors)
        .enumerate()
        .map(|(i, (id, v))| {
            let record = (|| {
                let id: PointId = serde_json::from_value(id).map_err(|e| e.to_string())?;
                Ok::<_, String>(VectorRecord {
                    id: id.to_native(),
                    vector: vector(v)?,
                    metadata: payload(payloads.next())?,
                })
            })();
            record.map_err(|m| bad(format!("batch item {i}: {m}")))
        })
        .collect()
}

/// Writes `records` as one upsert; the op's position in the log (none for nothing).
async fn write_records(
    state: &AppState,
    collection: String,
    records: Vec<VectorRecord>,
    settings: &WriteSettings,
) -> Result<Option<u64>, ApiError> {
    if records.is_empty() {
        return Ok(None);
    }
    let applied = state
        .write(
            Op::Upsert {
                collection,
                records,
            },
            Precondition::None,
            settings.concern,
            None,
        )
        .await?;
    Ok(Some(applied.seq))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrieveBody {
    ids: Vec<Value>,
    with_payload: Option<Value>,
    with_vector: Option<Value>,
    shard_key: Option<Value>,
}

/// `POST /collections/{c}/points`: the points that exist, in the order asked.
pub async fn retrieve(
    State(state): State<AppState>,
    started: Started,
    Path(name): Path<String>,
    Query(query): Query<ReadQuery>,
    ApiJson(body): ApiJson<RetrieveBody>,
) -> Result<JsonBody, ApiError> {
    refuse_if_set(
        &[("shard_key", &body.shard_key)],
        "needle does not shard collections",
    )?;
    let payload = PayloadSelector::parse(body.with_payload.as_ref(), true)?;
    let vectors = with_vector(body.with_vector.as_ref())?;
    let ids = body
        .ids
        .into_iter()
        .map(|id| serde_json::from_value::<PointId>(id).map_err(|e| bad(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    state
        .read_barrier(query.needle_consistency()?, &name)
        .await?;
    let collection = state.db().collection(&name)?;
    let native: Vec<String> = ids.iter().map(PointId::to_native).collect();
    let mut answer = AnswerPoints::new(state.limits.max_response_bytes, vectors, payload);
    let points = blocking(move || {
        read_existing(&collection, &native, &mut answer)?;
        Ok(answer.points)
    })
    .await?;
    ok(started, &points, state.limits.max_response_bytes)
}

/// `GET /collections/{c}/points/{id}`: payload and vector, or 404.
pub async fn get_one(
    State(state): State<AppState>,
    started: Started,
    Path((name, id)): Path<(String, String)>,
    Query(query): Query<ReadQuery>,
) -> Result<JsonBody, ApiError> {
    let id = PointId::parse_path(&id).map_err(bad)?;
    state
        .read_barrier(query.needle_consistency()?, &name)
        .await?;
    let collection = state.db().collection(&name)?;
    let native = id.to_native();
    let record = blocking(move || collection.get(&native))
        .await
        .map_err(|e| not_found_as_point(e, &id))?;
    let point = point_out(&record, &PayloadSelector::All, true);
    ok(started, &point, state.limits.max_response_bytes)
}

fn not_found_as_point(e: ApiError, id: &PointId) -> ApiError {
    if e.code == "VECTOR_NOT_FOUND" {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "VECTOR_NOT_FOUND",
            format!("No point with id {} found", id.to_native()),
        )
    } else {
        e
    }
}

pub fn point_out(record: &VectorRecord, payload: &PayloadSelector, vectors: bool) -> PointOut {
    PointOut {
        id: PointId::from_native(&record.id),
        version: None,
        score: None,
        payload: payload.select(record.metadata.as_ref()),
        vector: vectors.then(|| record.vector.clone()),
    }
}

/// The points of an answer, each made (with the payload keys and vector asked for)
/// and counted as its record is read: past the response limit the read stops with
/// `RESPONSE_TOO_LARGE`, so no request makes the node copy more out of the store
/// than it may send.
pub struct AnswerPoints {
    max: usize,
    vectors: bool,
    payload: PayloadSelector,
    used: usize,
    pub points: Vec<PointOut>,
}

impl AnswerPoints {
    pub fn new(max: usize, vectors: bool, payload: PayloadSelector) -> AnswerPoints {
        AnswerPoints {
            max,
            vectors,
            payload,
            used: 0,
            points: Vec::new(),
        }
    }

    /// Adds `record`'s point, counted as its id and braces, two bytes or more per
    /// vector component and its selected payload's JSON text.
    pub fn push(&mut self, record: &VectorRecord) -> crate::Result<()> {
        let point = point_out(record, &self.payload, self.vectors);
        let bytes = 32
            + record.id.len()
            + point.vector.as_ref().map_or(0, |v| 2 * v.len())
            + point.payload.as_ref().map_or(0, crate::model::json_len);
        self.used = self.used.saturating_add(bytes);
        if self.used > self.max {
            return Err(Error::ResponseTooLarge {
                bytes: self.used as u64,
                max: self.max as u64,
            });
        }
        self.points.push(point);
        Ok(())
    }
}

/// Adds the points of `ids` that exist to `answer`, in order, each once.
fn read_existing(
    collection: &Collection,
    ids: &[String],
    answer: &mut AnswerPoints,
) -> crate::Result<()> {
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        if !seen.insert(id.as_str()) {
            continue;
        }
        match collection.get(id) {
            Ok(record) => answer.push(&record)?,
            Err(Error::VectorNotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> crate::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string()))?
        .map_err(ApiError::from)
}

/// Which points a delete or payload change is for: ids, or a filter.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    points: Option<Vec<Value>>,
    filter: Option<Value>,
    shard_key: Option<Value>,
}

/// The points a selector names: `ByIds` as given, `ByFilter` those that match after
/// a linearizable read barrier (so every write acknowledged before is seen).
enum Selected {
    ByIds(Vec<String>),
    ByFilter(Vec<String>),
}

async fn selected_ids(
    state: &AppState,
    name: &str,
    selector: Selector,
) -> Result<Selected, ApiError> {
    refuse_if_set(
        &[("shard_key", &selector.shard_key)],
        "needle does not shard collections",
    )?;
    match (selector.points, selector.filter) {
        (Some(points), None) => points
            .into_iter()
            .map(|id| {
                serde_json::from_value::<PointId>(id)
                    .map(|id| id.to_native())
                    .map_err(|e| bad(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Selected::ByIds),
        (None, Some(filter)) => {
            let filter = translate(&filter).map_err(|m| ApiError::from(Error::InvalidFilter(m)))?;
            state.read_barrier(Some("linearizable"), name).await?;
            let collection = state.db().collection(name)?;
            blocking(move || matching_ids(&collection, &filter))
                .await
                .map(Selected::ByFilter)
        }
        _ => Err(bad("give either points (a list of ids) or filter")),
    }
}

pub fn matching_ids(collection: &Collection, filter: &Filter) -> crate::Result<Vec<String>> {
    let mut ids = Vec::new();
    collection.scan(Some(filter), |id, _| ids.push(id.to_string()))?;
    Ok(ids)
}

/// Points per op when a filter selects them: each op is atomic and bounded (a
/// patch is logged as the upsert of whole records), the selection as a whole is
/// not (as in Qdrant).
fn chunk_for(dimensions: usize) -> usize {
    // Every point at its largest: the longest id and the most metadata allowed.
    let largest = dimensions
        .saturating_mul(4)
        .saturating_add(crate::model::MAX_ID_BYTES + crate::model::MAX_METADATA_BYTES + 64);
    crate::write_checks::MAX_OP_BYTES / largest
}

fn chunk_size(state: &AppState, name: &str) -> Result<usize, ApiError> {
    let dims = state.db().collection_info(name)?.config.dimensions;
    Ok(chunk_for(dims).clamp(1, 4096))
}

/// The selected points as the id lists of one op each: named ids in one (the change
/// is atomic), a filter's matches in bounded batches; none for nothing selected.
fn batches(state: &AppState, name: &str, selected: Selected) -> Result<Vec<Vec<String>>, ApiError> {
    Ok(match selected {
        Selected::ByIds(ids) if ids.is_empty() => Vec::new(),
        Selected::ByIds(ids) => vec![ids],
        Selected::ByFilter(ids) => {
            let chunk = chunk_size(state, name)?;
            ids.chunks(chunk).map(<[String]>::to_vec).collect()
        }
    })
}

/// Writes the op `make` builds for each batch of ids, one at a time, in order; the
/// last one's position in the log. With nothing to write, the collection must
/// still exist.
async fn write_all(
    state: &AppState,
    name: &str,
    batches: Vec<Vec<String>>,
    make: impl Fn(Vec<String>) -> Op,
    settings: &WriteSettings,
) -> Result<Option<u64>, ApiError> {
    if batches.is_empty() {
        state.db().collection_info(name)?;
    }
    let mut last = None;
    for ids in batches {
        let op = make(ids);
        let applied = state
            .write(op, Precondition::None, settings.concern, None)
            .await?;
        last = Some(applied.seq);
    }
    Ok(last)
}

/// `POST /collections/{c}/points/delete`.
pub async fn delete(
    State(state): State<AppState>,
    started: Started,
    Path(name): Path<String>,
    Query(query): Query<WriteQuery>,
    ApiJson(selector): ApiJson<Selector>,
) -> Result<JsonBody, ApiError> {
    let settings = query.settings()?;
    let selected = selected_ids(&state, &name, selector).await?;
    let batches = batches(&state, &name, selected)?;
    let delete = |ids| Op::Delete {
        collection: name.clone(),
        ids,
    };
    let seq = write_all(&state, &name, batches, delete, &settings).await?;
    updated(&state, started, seq, &settings)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPayloadBody {
    payload: Map<String, Value>,
    key: Option<Value>,
    points: Option<Vec<Value>>,
    filter: Option<Value>,
    shard_key: Option<Value>,
}

/// `POST /collections/{c}/points/payload`: writes keys into each point's payload.
pub async fn set_payload(
    State(state): State<AppState>,
    started: Started,
    Path(name): Path<String>,
    Query(query): Query<WriteQuery>,
    ApiJson(body): ApiJson<SetPayloadBody>,
) -> Result<JsonBody, ApiError> {
    refuse_if_set(&[("key", &body.key)], "set payload keys at the top level")?;
    crate::model::validate_metadata(&body.payload)?;
    let settings = query.settings()?;
    let selector = Selector {
        points: body.points,
        filter: body.filter,
        shard_key: body.shard_key,
    };
    let seq = patch(
        &state,
        &name,
        selector,
        &settings,
        Some(body.payload),
        Vec::new(),
    )
    .await?;
    updated(&state, started, seq, &settings)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeletePayloadBody {
    keys: Vec<String>,
    points: Option<Vec<Value>>,
    filter: Option<Value>,
    shard_key: Option<Value>,
}

/// `POST /collections/{c}/points/payload/delete`: removes keys (dotted paths too).
pub async fn delete_payload(
    State(state): State<AppState>,
    started: Started,
    Path(name): Path<String>,
    Query(query): Query<WriteQuery>,
    ApiJson(body): ApiJson<DeletePayloadBody>,
) -> Result<JsonBody, ApiError> {
    let settings = query.settings()?;
    crate::model::validate_metadata_paths(&body.keys)?;
    if let Some(key) = body.keys.iter().find(|k| k.contains('[')) {
        return Err(bad(format!(
            "key {key:?}: deleting inside arrays is not supported by needle; name a key or a dotted path"
        )));
    }
    let selector = Selector {
        points: body.points,
        filter: body.filter,
        shard_key: body.shard_key,
    };
    let seq = patch(&state, &name, selector, &settings, None, body.keys).await?;
    updated(&state, started, seq, &settings)
}

/// One metadata patch per chunk of the selected points, each resolved by the
/// writer against the latest state (`Op::PatchMetadata`): a write to a point
/// ordered before the patch is kept, never overwritten. A point named by id that
/// does not exist is a 404, as in Qdrant.
async fn patch(
    state: &AppState,
    name: &str,
    selector: Selector,
    settings: &WriteSettings,
    set: Option<Map<String, Value>>,
    remove: Vec<String>,
) -> Result<Option<u64>, ApiError> {
    let selected = selected_ids(state, name, selector).await?;
    if let Selected::ByIds(ids) = &selected {
        state.read_barrier(Some("linearizable"), name).await?;
        let collection = state.db().collection(name)?;
        let named = ids.clone();
        let missing = blocking(move || {
            for id in &named {
                if !collection.contains(id)? {
                    return Ok(Some(id.clone()));
                }
            }
            Ok(None)
        })
        .await?;
        if let Some(id) = missing {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "VECTOR_NOT_FOUND",
                format!(
                    "No point with id {} found",
                    PointId::from_native(&id).to_native()
                ),
            ));
        }
    }
    let batches = batches(state, name, selected)?;
    let patch = |ids| Op::PatchMetadata {
        collection: name.to_string(),
        ids,
        set: set.clone(),
        remove: remove.clone(),
    };
    write_all(state, name, batches, patch, settings).await
}

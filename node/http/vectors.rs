use super::extract::ApiJson;
use super::{ApiError, AppState};
use crate::{Error, Metadata, Op, Precondition, VectorRecord};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

/// A vector as sent by clients. Metadata is taken as any JSON value and checked to be
/// an object here, so a wrong type gets `INVALID_METADATA` rather than a parse error.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = NewVector)]
#[serde(deny_unknown_fields)]
pub struct RecordBody {
    /// 1–1,024 bytes.
    id: String,
    /// Finite components within ±1e16, as many as the collection's dimensions.
    vector: Vec<f32>,
    /// A JSON object of at most 64 KiB.
    #[serde(default)]
    #[schema(value_type = Option<super::openapi::Object>)]
    metadata: Option<Value>,
    /// Single inserts only; a batch carries one for the whole request.
    #[serde(default)]
    write_concern: Option<String>,
}

impl RecordBody {
    fn into_record(self) -> Result<VectorRecord, Error> {
        let metadata: Option<Metadata> = match self.metadata {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m),
            Some(_) => {
                return Err(Error::InvalidMetadata(
                    "metadata must be a JSON object".into(),
                ))
            }
        };
        Ok(VectorRecord {
            id: self.id,
            vector: self.vector,
            metadata,
        })
    }
}

#[utoipa::path(post, path = "/collections/{name}/vectors", tag = "vectors", request_body = RecordBody,
    params(("name" = String, Path, description = "Collection name"), super::extract::IdempotencyKeyHeader),
    responses((status = 201, description = "Inserted", body = super::openapi::Inserted),
        (status = 404, description = "COLLECTION_NOT_FOUND", body = super::openapi::ErrorBody),
        (status = 507, description = "DEVICE_MEMORY_FULL", body = super::openapi::ErrorBody), super::openapi::WriteErrors, super::openapi::CommonErrors))]
pub async fn insert(
    State(state): State<AppState>,
    super::extract::IdempotencyKey(request_id): super::extract::IdempotencyKey,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<RecordBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let concern = state.concern(body.write_concern.as_deref())?;
    let record = body.into_record()?;
    let id = record.id.clone();
    let op = Op::Upsert {
        collection: name,
        records: vec![record],
    };
    let applied = state
        .write_with(
            op,
            Precondition::IdsAbsent,
            concern,
            request_id,
            crate::replication::ReplicationError::single_item,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "seq": applied.seq })),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = VectorBatch)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// Vectors as in a single insert, without `write_concern`.
    #[schema(value_type = Vec<RecordBody>)]
    vectors: Vec<Value>,
    #[serde(default)]
    write_concern: Option<String>,
}

#[utoipa::path(post, path = "/collections/{name}/vectors/batch", tag = "vectors", request_body = BatchBody,
    params(("name" = String, Path, description = "Collection name"), super::extract::IdempotencyKeyHeader),
    responses((status = 200, description = "Upserted, all or nothing", body = super::openapi::Upserted),
        (status = 404, description = "COLLECTION_NOT_FOUND", body = super::openapi::ErrorBody),
        (status = 507, description = "DEVICE_MEMORY_FULL", body = super::openapi::ErrorBody), super::openapi::WriteErrors, super::openapi::CommonErrors))]
/// All or nothing: every item is parsed and validated before anything is written, and
/// the first bad item's index is in the error message.
pub async fn upsert_batch(
    State(state): State<AppState>,
    super::extract::IdempotencyKey(request_id): super::extract::IdempotencyKey,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<BatchBody>,
) -> Result<Json<Value>, ApiError> {
    let concern = state.concern(body.write_concern.as_deref())?;
    // A Raft member may not have applied a just-created collection yet: there the
    // log decides.
    if state.mode.knows_every_collection() {
        state.db().collection_info(&name)?;
    }
    let mut records = Vec::with_capacity(body.vectors.len());
    for (index, item) in body.vectors.into_iter().enumerate() {
        let item = serde_json::from_value::<RecordBody>(item).map_err(|e| {
            ApiError::bad_request("INVALID_REQUEST", format!("vectors[{index}]: {e}"))
        })?;
        if item.write_concern.is_some() {
            return Err(ApiError::bad_request(
                "INVALID_REQUEST",
                format!("vectors[{index}]: write_concern belongs to the request, not to an item"),
            ));
        }
        let record = item.into_record().map_err(|e| {
            ApiError::from(Error::InvalidBatchItem {
                index,
                source: Box::new(e),
            })
        })?;
        records.push(record);
    }
    if records.is_empty() {
        return Ok(Json(json!({ "upserted": 0 })));
    }
    let applied = state
        .write(
            Op::Upsert {
                collection: name,
                records,
            },
            Precondition::None,
            concern,
            request_id,
        )
        .await?;
    Ok(Json(
        json!({ "upserted": applied.affected, "seq": applied.seq }),
    ))
}

#[utoipa::path(get, path = "/collections/{name}/vectors/{id}", tag = "vectors",
    params(("name" = String, Path, description = "Collection name"), ("id" = String, Path, description = "Vector id"), super::ConsistencyQuery),
    responses((status = 200, description = "The vector and its metadata", body = super::openapi::Vector),
        (status = 404, description = "COLLECTION_NOT_FOUND, VECTOR_NOT_FOUND", body = super::openapi::ErrorBody), super::openapi::CommonErrors))]
pub async fn get(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
    Query(query): Query<super::ConsistencyQuery>,
) -> Result<Json<VectorRecord>, ApiError> {
    state
        .read_barrier(query.consistency.as_deref(), &name)
        .await?;
    let collection = state.db().collection(&name)?;
    let record = tokio::task::spawn_blocking(move || collection.get(&id))
        .await
        .map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string())
        })??;
    Ok(Json(record))
}

#[utoipa::path(delete, path = "/collections/{name}/vectors/{id}", tag = "vectors",
    params(("name" = String, Path, description = "Collection name"), ("id" = String, Path, description = "Vector id"), super::ConcernQuery, super::extract::IdempotencyKeyHeader),
    responses((status = 200, description = "Whether it existed", body = super::openapi::Deleted),
        (status = 404, description = "COLLECTION_NOT_FOUND", body = super::openapi::ErrorBody), super::openapi::WriteErrors, super::openapi::CommonErrors))]
pub async fn delete(
    State(state): State<AppState>,
    super::extract::IdempotencyKey(request_id): super::extract::IdempotencyKey,
    Path((name, id)): Path<(String, String)>,
    Query(query): Query<super::ConcernQuery>,
) -> Result<Json<Value>, ApiError> {
    let concern = state.concern(query.write_concern.as_deref())?;
    crate::model::validate_id(&id)?;
    let op = Op::Delete {
        collection: name,
        ids: vec![id],
    };
    let applied = state
        .write(op, Precondition::None, concern, request_id)
        .await?;
    Ok(Json(
        json!({ "deleted": applied.deleted.first().copied().unwrap_or(false) }),
    ))
}

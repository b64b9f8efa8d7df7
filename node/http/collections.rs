use super::extract::ApiJson;
use super::{ApiError, AppState};
use crate::{CollectionConfig, CollectionInfo, Error};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = NewCollection)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// 1–128 of `[A-Za-z0-9_-]`.
    name: String,
    /// 1–65,536.
    dimensions: u64,
    /// `cosine`, `euclidean` or `dot`. A string, parsed by us, so an unknown
    /// distance gets its own error code.
    distance: String,
    /// `f32` (default) or `f16`: how a GPU backend keeps the vectors.
    storage: Option<String>,
    /// `primary`, `majority` (default) or `all`.
    write_concern: Option<String>,
}

#[utoipa::path(post, path = "/collections", tag = "collections", request_body = CreateBody,
    params(super::extract::IdempotencyKeyHeader),
    responses((status = 201, description = "Created", body = super::openapi::Collection), super::openapi::WriteErrors, super::openapi::CommonErrors))]
pub async fn create(
    State(state): State<AppState>,
    super::extract::IdempotencyKey(request_id): super::extract::IdempotencyKey,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<(StatusCode, Json<CollectionInfo>), ApiError> {
    let concern = state.concern(body.write_concern.as_deref())?;
    let dimensions =
        usize::try_from(body.dimensions).map_err(|_| Error::InvalidDimensions(body.dimensions))?;
    let storage = match body.storage {
        Some(text) => text.parse()?,
        None => crate::VectorStorage::default(),
    };
    let config =
        CollectionConfig::new(body.name, dimensions, body.distance.parse()?).with_storage(storage);
    config.validate()?;
    let name = config.name.clone();
    state
        .write(
            crate::Op::CreateCollection(config),
            crate::Precondition::None,
            concern,
            request_id,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(state.db().collection_info(&name)?),
    ))
}

#[utoipa::path(get, path = "/collections", tag = "collections",
    responses((status = 200, description = "Every collection", body = super::openapi::CollectionList), super::openapi::CommonErrors))]
pub async fn list(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "collections": state.db().collections() }))
}

#[utoipa::path(get, path = "/collections/{name}", tag = "collections",
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 200, description = "The collection", body = super::openapi::Collection),
        (status = 404, description = "COLLECTION_NOT_FOUND", body = super::openapi::ErrorBody), super::openapi::CommonErrors))]
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<CollectionInfo>, ApiError> {
    Ok(Json(state.db().collection_info(&name)?))
}

#[utoipa::path(delete, path = "/collections/{name}", tag = "collections",
    params(("name" = String, Path, description = "Collection name"), super::ConcernQuery, super::extract::IdempotencyKeyHeader),
    responses((status = 200, description = "Dropped", body = super::openapi::Dropped),
        (status = 404, description = "COLLECTION_NOT_FOUND", body = super::openapi::ErrorBody), super::openapi::WriteErrors, super::openapi::CommonErrors))]
pub async fn drop(
    State(state): State<AppState>,
    super::extract::IdempotencyKey(request_id): super::extract::IdempotencyKey,
    Path(name): Path<String>,
    Query(query): Query<super::ConcernQuery>,
) -> Result<Json<Value>, ApiError> {
    let concern = state.concern(query.write_concern.as_deref())?;
    state
        .write(
            crate::Op::DropCollection { name: name.clone() },
            crate::Precondition::None,
            concern,
            request_id,
        )
        .await?;
    Ok(Json(json!({ "dropped": name })))
}

/// `GET /collections/{name}/checksum`: compare replicas without reading every vector
/// through the API.
#[utoipa::path(get, path = "/collections/{name}/checksum", tag = "collections",
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 200, description = "Vector count and an order-independent checksum of the collection", body = super::openapi::Checksum),
        (status = 404, description = "COLLECTION_NOT_FOUND", body = super::openapi::ErrorBody), super::openapi::CommonErrors))]
pub async fn checksum(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let db = state.db();
    let collection = name.clone();
    let sum = tokio::task::spawn_blocking(move || db.collection_checksum(&collection))
        .await
        .map_err(|_| Error::Closed)??;
    Ok(Json(json!({
        "collection": name,
        "vectors": sum.vectors,
        "checksum": format!("{:016x}", sum.checksum),
        "applied_seq": sum.applied_seq,
    })))
}

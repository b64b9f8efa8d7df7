//! `/collections`: list, get, exists, create, delete: the same collections the
//! native API serves.

use super::envelope::{ok, Started};
use super::params::{bad, refuse_if_set, WriteQuery};
use crate::http::budget::JsonBody;
use crate::http::extract::ApiJson;
use crate::http::{ApiError, AppState};
use crate::{CollectionConfig, Distance, Error, Op, Precondition, VectorStorage};
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{json, Value};

pub async fn list(State(state): State<AppState>, started: Started) -> Result<JsonBody, ApiError> {
    let names: Vec<Value> = state
        .db()
        .collections()
        .into_iter()
        .map(|c| json!({ "name": c.config.name }))
        .collect();
    ok(
        started,
        &json!({ "collections": names }),
        state.limits.max_response_bytes,
    )
}

pub async fn exists(
    State(state): State<AppState>,
    started: Started,
    Path(name): Path<String>,
) -> Result<JsonBody, ApiError> {
    let exists = state.db().collection_info(&name).is_ok();
    ok(
        started,
        &json!({ "exists": exists }),
        state.limits.max_response_bytes,
    )
}

fn qdrant_distance(distance: Distance) -> &'static str {
    match distance {
        Distance::Cosine => "Cosine",
        Distance::Euclidean => "Euclid",
        Distance::Dot => "Dot",
    }
}

/// Qdrant's `CollectionInfo`. needle searches exactly, so there is no vector index
/// (`indexed_vectors_count` 0, HNSW `m` 0, which is how Qdrant itself spells "no
/// graph") and one segment; `deleted_threshold` and `vacuum_min_vector_number` are
/// needle's own compaction thresholds.
pub async fn get(
    State(state): State<AppState>,
    started: Started,
    Path(name): Path<String>,
) -> Result<JsonBody, ApiError> {
    let info = state.db().collection_info(&name)?;
    let mut vectors = json!({
        "size": info.config.dimensions,
        "distance": qdrant_distance(info.config.distance),
    });
    if info.config.storage == VectorStorage::F16 {
        vectors["datatype"] = json!("float16");
    }
    let result = json!({
        "status": "green",
        "optimizer_status": "ok",
        "indexed_vectors_count": 0,
        "points_count": info.count,
        "segments_count": 1,
        "config": {
            "params": {
                "vectors": vectors,
                "shard_number": 1,
                "on_disk_payload": true,
            },
            "hnsw_config": {"m": 0, "ef_construct": 100, "full_scan_threshold": 0},
            "optimizer_config": {
                "deleted_threshold": 0.25,
                "vacuum_min_vector_number": 1024,
                "default_segment_number": 1,
                "flush_interval_sec": 0,
            },
        },
        "payload_schema": {},
    });
    ok(started, &result, state.limits.max_response_bytes)
}

/// `vectors` of `PUT /collections/{name}`: one unnamed vector.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VectorParams {
    size: u64,
    distance: String,
    datatype: Option<String>,
    /// Accepted and ignored: needle searches exactly.
    #[allow(dead_code)]
    hnsw_config: Option<Value>,
    /// Accepted and ignored: needle keeps vectors in RocksDB and memory.
    #[allow(dead_code)]
    on_disk: Option<bool>,
    /// Accepted and ignored, as `on_disk`.
    #[allow(dead_code)]
    memory: Option<Value>,
    quantization_config: Option<Value>,
    multivector_config: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    vectors: Option<Value>,
    shard_number: Option<u64>,
    /// Accepted: every member of a needle cluster holds every point (see README).
    #[allow(dead_code)]
    replication_factor: Option<u64>,
    #[allow(dead_code)]
    write_consistency_factor: Option<u64>,
    // Accepted and ignored (README, "Using Qdrant clients").
    #[allow(dead_code)]
    on_disk_payload: Option<bool>,
    #[allow(dead_code)]
    hnsw_config: Option<Value>,
    #[allow(dead_code)]
    wal_config: Option<Value>,
    #[allow(dead_code)]
    optimizers_config: Option<Value>,
    #[allow(dead_code)]
    metadata: Option<Value>,
    sharding_method: Option<Value>,
    sparse_vectors: Option<Value>,
    quantization_config: Option<Value>,
    strict_mode_config: Option<Value>,
    init_from: Option<Value>,
    payload: Option<Value>,
    id_tracker: Option<Value>,
}

pub async fn create(
    State(state): State<AppState>,
    started: Started,
    Path(name): Path<String>,
    Query(query): Query<WriteQuery>,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<JsonBody, ApiError> {
    refuse_if_set(
        &[
            ("sparse_vectors", &body.sparse_vectors),
            ("quantization_config", &body.quantization_config),
            ("sharding_method", &body.sharding_method),
            ("strict_mode_config", &body.strict_mode_config),
            ("init_from", &body.init_from),
            ("payload", &body.payload),
            ("id_tracker", &body.id_tracker),
        ],
        "needle collections hold one dense vector per point, searched exactly",
    )?;
    if body.shard_number.is_some_and(|n| n > 1) {
        return Err(bad(
            "shard_number above 1 is not supported yet: needle does not shard collections; every member holds every point",
        ));
    }
    let vectors = match body.vectors {
        Some(Value::Object(v)) if v.contains_key("size") => {
            serde_json::from_value::<VectorParams>(Value::Object(v))
                .map_err(|e| bad(format!("vectors: {e}")))?
        }
        Some(Value::Object(_)) => return Err(bad(
            "named vectors are not supported by needle: give vectors as {\"size\", \"distance\"}",
        )),
        _ => return Err(bad("vectors {\"size\", \"distance\"} is required")),
    };
    refuse_if_set(
        &[
            ("vectors.quantization_config", &vectors.quantization_config),
            ("vectors.multivector_config", &vectors.multivector_config),
        ],
        "needle searches full-precision vectors exactly",
    )?;
    let distance = match vectors.distance.as_str() {
        "Cosine" => Distance::Cosine,
        "Euclid" => Distance::Euclidean,
        "Dot" => Distance::Dot,
        other => {
            return Err(bad(format!(
                "distance {other:?} is not supported: needle has Cosine, Euclid and Dot"
            )))
        }
    };
    let storage = match vectors.datatype.as_deref() {
        None | Some("float32") => VectorStorage::F32,
        Some("float16") => VectorStorage::F16,
        Some(other) => {
            return Err(bad(format!(
                "datatype {other:?} is not supported: needle has float32 and float16"
            )))
        }
    };
    let dimensions =
        usize::try_from(vectors.size).map_err(|_| Error::InvalidDimensions(vectors.size))?;
    let config = CollectionConfig::new(name, dimensions, distance).with_storage(storage);
    config.validate()?;
    let settings = query.settings_waiting_by_default(true)?;
    state
        .write(
            Op::CreateCollection(config),
            Precondition::None,
            settings.concern,
            None,
        )
        .await?;
    ok(started, &true, state.limits.max_response_bytes)
}

/// `true` when the collection existed and is gone, `false` when there was none, as
/// Qdrant answers.
pub async fn delete(
    State(state): State<AppState>,
    started: Started,
    Path(name): Path<String>,
    Query(query): Query<WriteQuery>,
) -> Result<JsonBody, ApiError> {
    let settings = query.settings_waiting_by_default(true)?;
    let dropped = state
        .write(
            Op::DropCollection { name },
            Precondition::None,
            settings.concern,
            None,
        )
        .await;
    let existed = match dropped {
        Ok(_) => true,
        Err(e) if e.code == "COLLECTION_NOT_FOUND" => false,
        Err(e) => return Err(e),
    };
    ok(started, &existed, state.limits.max_response_bytes)
}

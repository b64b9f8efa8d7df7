//! The native API's OpenAPI document, served at `GET /openapi.json`.
//!
//! Paths come from the handlers' own `#[utoipa::path]` annotations, collected by the
//! route table itself (`routes.rs` registers every route through `utoipa_axum`), so
//! a route cannot be served without being described. Request bodies are the
//! handlers' own body types; answers, which handlers build as JSON, are described by
//! the shapes below. `tests/clients/test_openapi.py` validates live answers and the
//! README's examples against this document, and `tests/e2e/openapi.rs` checks that
//! every route and error code is in it.

// The shapes below describe answers; nothing constructs them.
#![allow(dead_code)]

use serde_json::Value;
use utoipa::openapi::security::SecurityScheme;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "needle",
        description = "The native HTTP API of a needle node: collections, vectors, exact nearest-neighbour search, replication and cluster administration. Errors are {\"error\":{\"code\",\"message\"}} with a stable code (ErrorCode).",
        license(name = "Apache-2.0"),
    ),
    tags(
        (name = "observability", description = "Health, metrics, this document"),
        (name = "collections"),
        (name = "vectors"),
        (name = "search"),
        (name = "replication", description = "Primary–replica status and manual failover"),
        (name = "cluster", description = "Raft membership and leadership"),
        (name = "admin", description = "Snapshots, reloads, fault injection"),
    ),
    components(schemas(ErrorBody, ErrorCode)),
    modifiers(&Keys),
    security(("bearer" = []), ("api_key" = [])),
)]
pub struct ApiDoc;

/// `Authorization: Bearer <key>` or `api-key: <key>`, when the node has keys.
struct Keys;

impl Modify for Keys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("api-key"))),
        );
    }
}

/// Every error answer.
#[derive(ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(ToSchema)]
pub struct ErrorDetail {
    code: ErrorCode,
    message: String,
    /// On `NOT_PRIMARY`: where to send writes instead.
    primary: Option<String>,
}

/// Every error code the node answers with.
#[derive(ToSchema)]
#[schema(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    InvalidCollectionName,
    InvalidDimensions,
    InvalidDistance,
    InvalidStorage,
    CollectionExists,
    CollectionNotFound,
    DimensionMismatch,
    InvalidVector,
    InvalidId,
    InvalidMetadata,
    VectorExists,
    VectorNotFound,
    InvalidK,
    TooManyResults,
    InvalidFilter,
    InvalidRequest,
    MalformedJson,
    PayloadTooLarge,
    NotFound,
    MethodNotAllowed,
    StorageError,
    StorageCorrupt,
    EngineError,
    DeviceMemoryFull,
    NotPrimary,
    WriteConcernTimeout,
    Unauthorized,
    Forbidden,
    InvalidSnapshot,
    SnapshotFailed,
    RoleConflict,
    ResponseTooLarge,
    IdempotencyKeyReused,
    Overloaded,
    BodyTimeout,
    Interrupted,
    NodeFailed,
    ShuttingDown,
    Cancelled,
    LogGap,
    ReplicationError,
    NoLeader,
    NotRaft,
    Internal,
}

/// The error statuses any data route may answer with (each body an [`ErrorBody`]).
#[derive(IntoResponses)]
pub enum CommonErrors {
    /// Bad input: the code says which (INVALID_*, MALFORMED_JSON, DIMENSION_MISMATCH, ...).
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// UNAUTHORIZED: no key, or a wrong one.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// FORBIDDEN: the read-only key on a write.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// PAYLOAD_TOO_LARGE or RESPONSE_TOO_LARGE.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// STORAGE_ERROR, STORAGE_CORRUPT, ENGINE_ERROR, INTERNAL.
    #[response(status = 500)]
    Internal(ErrorBody),
    /// OVERLOADED (with Retry-After), NO_LEADER, INTERRUPTED, NODE_FAILED, REPLICATION_ERROR.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// What every write may also answer: another write used its idempotency key, or
/// this node is a replica.
#[derive(IntoResponses)]
pub enum WriteErrors {
    /// IDEMPOTENCY_KEY_REUSED (and, per route, COLLECTION_EXISTS or VECTOR_EXISTS).
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// NOT_PRIMARY: this node is a replica; `primary` says where writes go.
    #[response(status = 421)]
    NotPrimary(ErrorBody),
    /// WRITE_CONCERN_TIMEOUT: applied where it was ordered, not yet confirmed by
    /// the copies the concern asks for.
    #[response(status = 504)]
    ConcernTimeout(ErrorBody),
}

/// The open routes, when `--protect-metrics` puts them behind a key.
#[derive(IntoResponses)]
pub enum OpenErrors {
    /// UNAUTHORIZED: `--protect-metrics` is on and no key (or a wrong one) was given.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
}

/// `GET /health`.
#[derive(ToSchema)]
pub struct Health {
    /// `ok`, `degraded` or `failed` (then the status is 503).
    status: String,
    problems: Vec<Problem>,
    backend: String,
    device: String,
    passed_over: Vec<PassedOver>,
    collections_on_host: Vec<String>,
    version: String,
}

#[derive(ToSchema)]
pub struct Problem {
    component: String,
    message: String,
    unix_ms: u64,
}

#[derive(ToSchema)]
pub struct PassedOver {
    backend: String,
    reason: String,
}

/// A collection and its live vector count.
#[derive(ToSchema)]
pub struct Collection {
    name: String,
    dimensions: u64,
    /// `cosine`, `euclidean` or `dot`.
    distance: String,
    /// `f32` or `f16`.
    storage: String,
    count: u64,
}

#[derive(ToSchema)]
pub struct CollectionList {
    collections: Vec<Collection>,
}

#[derive(ToSchema)]
pub struct Dropped {
    dropped: String,
}

#[derive(ToSchema)]
pub struct Checksum {
    collection: String,
    vectors: u64,
    /// 16 hexadecimal digits.
    checksum: String,
    applied_seq: u64,
}

#[derive(ToSchema)]
pub struct Inserted {
    id: String,
    seq: u64,
}

#[derive(ToSchema)]
pub struct Upserted {
    upserted: u64,
    /// Absent when the batch was empty.
    seq: Option<u64>,
}

#[derive(ToSchema)]
pub struct Vector {
    id: String,
    vector: Vec<f32>,
    metadata: Option<Object>,
}

#[derive(ToSchema)]
pub struct Deleted {
    deleted: bool,
}

/// Any JSON object.
#[derive(ToSchema)]
#[schema(value_type = Object)]
pub struct Object(serde_json::Map<String, Value>);

#[derive(ToSchema)]
pub struct Hit {
    id: String,
    /// Smaller is closer: cosine 1 − cos, euclidean L2, dot −(q·x).
    distance: f64,
    metadata: Option<Object>,
    vector: Option<Vec<f32>>,
}

#[derive(ToSchema)]
pub struct SearchResults {
    results: Vec<Hit>,
}

#[derive(ToSchema)]
pub struct BatchSearchResults {
    /// One list of hits per query, in order.
    results: Vec<Vec<Hit>>,
}

/// `GET /replication/status`: the one status shape of every mode; the mode's own
/// fields are flattened into it.
#[derive(ToSchema)]
pub struct NodeStatus {
    /// `standalone`, `primary`, `replica`, `fenced` or `raft`.
    role: String,
    applied_seq: u64,
    lag: Vec<Lag>,
}

#[derive(ToSchema)]
pub struct Lag {
    replica: String,
    operations: u64,
    seconds: Option<f64>,
}

/// `GET /cluster/status`: this member's view of the Raft cluster.
#[derive(ToSchema)]
pub struct ClusterStatus {
    node_id: u64,
    state: String,
    leader_id: Option<u64>,
    term: u64,
    commit_index: u64,
    applied_index: u64,
    snapshot_index: Option<u64>,
    purged_index: Option<u64>,
    peers: Vec<Object>,
    /// Every shard group this member holds a replica of: `collection`, `shard`,
    /// `group`, `range` ([lo, hi]), `state`, `leader`, `members`, `term`,
    /// `commit_index`, `applied_index`, `count`.
    groups: Vec<Object>,
}

#[derive(ToSchema)]
pub struct SteppedDown {
    previous_leader: u64,
    leader_id: u64,
}

#[derive(ToSchema)]
pub struct MemberAdded {
    node_id: u64,
}

#[derive(ToSchema)]
pub struct MemberRemoved {
    removed: u64,
}

#[derive(ToSchema)]
pub struct Promoted {
    role: String,
    epoch: u64,
    applied_seq: u64,
    /// Entries taken from the other replicas before promoting.
    caught_up: u64,
}

/// Faults now configured on this node's transport.
#[derive(ToSchema)]
pub struct Faults {
    faults: Object,
}

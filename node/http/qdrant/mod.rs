//! A Qdrant-compatible REST API (`--qdrant-http`), so applications written against
//! `qdrant-client` work with needle by changing a URL.
//!
//! It has a listener of its own (Qdrant's paths collide with the native ones) and
//! serves the same data, through the same write path, read barriers, keys and
//! limits as the native API: it only translates requests and answers. What it maps
//! and what it refuses is in the README's "Using Qdrant clients".

mod collections;
mod envelope;
mod filter;
mod params;
mod point_id;
mod points;
mod query;
mod scroll;

use super::{auth, limits, observability, ApiError, AppState};
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get, post, put, MethodRouter};
use axum::{middleware, Json, Router};
use serde_json::{json, Value};

/// The Qdrant version whose REST contract this API follows: `qdrant-client` warns
/// when the server's minor version is more than one away from its own.
pub const QDRANT_VERSION: &str = "1.20.0";

/// `GET /`: what `qdrant-client` reads to check compatibility.
async fn version() -> Json<Value> {
    Json(json!({
        "title": "qdrant - vector search engine",
        "version": QDRANT_VERSION,
        "commit": null,
        "needle_version": env!("CARGO_PKG_VERSION"),
    }))
}

/// Kubernetes-style probes, as Qdrant has them: 503 once the node has failed (as
/// the native `/health` answers), so a failed node is taken out.
async fn probe(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> (axum::http::StatusCode, &'static str) {
    if state.db().health().status() == crate::health::Status::Failed {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "the node has failed: see the native /health",
        )
    } else {
        (axum::http::StatusCode::OK, "healthz check passed")
    }
}

/// Qdrant routes for features needle does not have: a 400 that says so, rather than
/// a 404 that reads as a wrong URL.
fn unsupported(what: &'static str) -> MethodRouter<AppState> {
    any(move || async move {
        ApiError::bad_request(
            "INVALID_REQUEST",
            format!("{what} not supported by needle's Qdrant-compatible API (README, \"Using Qdrant clients\")"),
        )
    })
}

/// Payload indexes only make Qdrant's filters faster; needle's filters need none
/// (their row masks are cached per collection), so creating or dropping one is
/// accepted and changes nothing.
async fn payload_index_accepted(
    axum::extract::State(state): axum::extract::State<AppState>,
    started: envelope::Started,
    axum::extract::Path(path): axum::extract::Path<Vec<(String, String)>>,
) -> Result<crate::http::budget::JsonBody, ApiError> {
    if let Some((_, name)) = path.iter().find(|(k, _)| k == "name") {
        state.db().collection_info(name)?;
    }
    envelope::ok(
        started,
        &serde_json::json!({"operation_id": null, "status": "completed"}),
        state.limits.max_response_bytes,
    )
}

/// The Qdrant route table, with the native API's access classes and layers.
pub fn router(state: AppState) -> Router {
    let admitted = |group: Router<AppState>| {
        group.route_layer(middleware::from_fn_with_state(state.clone(), limits::admit))
    };
    let open = Router::new()
        .route("/", get(version))
        .route("/healthz", get(probe))
        .route("/livez", get(probe))
        .route("/readyz", get(probe))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::observability,
        ));
    let c = "/collections/{name}";
    let read = admitted(
        Router::new()
            .route("/collections", get(collections::list))
            .route(c, get(collections::get))
            .route(&format!("{c}/exists"), get(collections::exists))
            .route(&format!("{c}/points"), post(points::retrieve))
            .route(&format!("{c}/points/{{id}}"), get(points::get_one))
            .route(&format!("{c}/points/scroll"), post(scroll::scroll))
            .route(&format!("{c}/points/count"), post(scroll::count))
            .route(&format!("{c}/points/query"), post(query::query))
            .route(&format!("{c}/points/query/batch"), post(query::query_batch))
            .route(&format!("{c}/points/search"), post(query::search))
            .route(
                &format!("{c}/points/search/batch"),
                post(query::search_batch),
            )
            .route("/snapshots", unsupported("Qdrant snapshots are"))
            .route("/snapshots/{snapshot}", unsupported("Qdrant snapshots are"))
            .route(
                &format!("{c}/snapshots"),
                unsupported(
                    "Qdrant snapshots are (needle's are POST /admin/snapshot on the native API)",
                ),
            )
            .route(
                &format!("{c}/snapshots/{{snapshot}}"),
                unsupported("Qdrant snapshots are"),
            )
            .route(
                &format!("{c}/snapshots/recover"),
                unsupported("Qdrant snapshots are"),
            )
            .route(
                &format!("{c}/snapshots/upload"),
                unsupported("Qdrant snapshots are"),
            )
            .route(
                &format!("{c}/points/recommend"),
                unsupported("recommend is"),
            )
            .route(
                &format!("{c}/points/recommend/batch"),
                unsupported("recommend is"),
            )
            .route(
                &format!("{c}/points/recommend/groups"),
                unsupported("recommend is"),
            )
            .route(&format!("{c}/points/discover"), unsupported("discover is"))
            .route(
                &format!("{c}/points/discover/batch"),
                unsupported("discover is"),
            )
            .route(
                &format!("{c}/points/search/groups"),
                unsupported("grouped search is"),
            )
            .route(
                &format!("{c}/points/query/groups"),
                unsupported("grouped query is"),
            )
            .route(
                &format!("{c}/points/search/matrix/pairs"),
                unsupported("the distance matrix is"),
            )
            .route(
                &format!("{c}/points/search/matrix/offsets"),
                unsupported("the distance matrix is"),
            )
            .route(&format!("{c}/facet"), unsupported("facet counting is"))
            .route("/aliases", unsupported("collection aliases are"))
            .route(
                "/collections/aliases",
                unsupported("collection aliases are"),
            )
            .route(
                &format!("{c}/aliases"),
                unsupported("collection aliases are"),
            )
            .route(
                "/cluster",
                unsupported(
                    "Qdrant's cluster API is (needle's is /cluster/status on the native API)",
                ),
            )
            .route(
                &format!("{c}/cluster"),
                unsupported("Qdrant's shard placement is"),
            )
            .route(&format!("{c}/shards"), unsupported("custom shard keys are")),
    )
    .route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_read,
    ));
    let write = admitted(
        Router::new()
            .route(
                c,
                put(collections::create)
                    .delete(collections::delete)
                    .patch(|| async {
                        ApiError::bad_request(
                            "INVALID_REQUEST",
                            "updating a collection's parameters is not supported by needle: they are fixed at creation",
                        )
                    }),
            )
            .route(&format!("{c}/index"), put(payload_index_accepted))
            .route(
                &format!("{c}/index/{{field}}"),
                axum::routing::delete(payload_index_accepted),
            )
            .route(&format!("{c}/points/batch"), unsupported("batched update operations are"))
            .route(&format!("{c}/points/vectors"), unsupported("updating vectors alone is (upsert the point)"))
            .route(&format!("{c}/points/vectors/delete"), unsupported("deleting vectors alone is (delete the point)"))
            .route(&format!("{c}/points/payload/clear"), unsupported("clearing payloads is (delete its keys)"))
            .route(&format!("{c}/points"), put(points::upsert))
            .route(&format!("{c}/points/delete"), post(points::delete))
            .route(&format!("{c}/points/payload"), post(points::set_payload))
            .route(
                &format!("{c}/points/payload/delete"),
                post(points::delete_payload),
            ),
    )
    .route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_write,
    ));
    let metered = state.clone();
    let max_body = state.limits.max_body_bytes;
    Router::new()
        .merge(open)
        .merge(read)
        .merge(write)
        .fallback(observability::not_found)
        .method_not_allowed_fallback(observability::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(envelope::qdrant_errors))
        .layer(middleware::from_fn_with_state(
            metered,
            observability::record_qdrant,
        ))
        .with_state(state)
}

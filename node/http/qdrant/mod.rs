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

use super::{auth, limits, observability, AppState};
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
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
            ),
    )
    .route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_read,
    ));
    let write = admitted(
        Router::new()
            .route(c, put(collections::create).delete(collections::delete))
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

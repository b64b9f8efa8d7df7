//! The HTTP API (axum). Handlers translate JSON to library calls and library errors to
//! `{"error":{"code","message"}}` responses; they hold no logic of their own.

mod collections;
mod error;
mod extract;
mod observability;
mod search;
mod vectors;

pub use error::ApiError;

use crate::metrics::Metrics;
use crate::Database;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{middleware, Router};
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Default request body limit: 64 MiB, room for a batch of ~40k 384-d vectors.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub db: Database,
    pub metrics: Arc<Metrics>,
}

/// The full route table.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    let metered = state.clone();
    Router::new()
        .route("/health", get(observability::health))
        .route("/metrics", get(observability::metrics))
        .route(
            "/collections",
            post(collections::create).get(collections::list),
        )
        .route(
            "/collections/{name}",
            get(collections::get).delete(collections::drop),
        )
        .route("/collections/{name}/vectors", post(vectors::insert))
        .route(
            "/collections/{name}/vectors/batch",
            post(vectors::upsert_batch),
        )
        .route(
            "/collections/{name}/vectors/{id}",
            get(vectors::get).delete(vectors::delete),
        )
        .route("/collections/{name}/search", post(search::single))
        .route("/collections/{name}/search/batch", post(search::batch))
        .fallback(observability::not_found)
        .method_not_allowed_fallback(observability::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(
            metered,
            observability::record,
        ))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes, then finishes in-flight
/// requests.
pub async fn serve(
    db: Database,
    listener: TcpListener,
    max_body_bytes: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let metrics = Arc::new(Metrics::new().map_err(std::io::Error::other)?);
    let app = router(AppState { db, metrics }, max_body_bytes);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

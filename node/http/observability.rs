use super::{ApiError, AppState};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::time::Instant;

/// `ok`, `degraded` (something went wrong and was recovered from: `problems` says
/// what) or `failed` (the node stopped taking writes; answered with 503 so load
/// balancers take it out).
#[utoipa::path(get, path = "/health", tag = "observability", security(()),
    responses((status = 200, description = "ok or degraded", body = super::openapi::Health),
        (status = 503, description = "failed: the node stopped taking writes", body = super::openapi::Health),
        super::openapi::OpenErrors))]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let db = state.db();
    let selection = db.backend_selection();
    let passed_over: Vec<Value> = selection
        .passed_over
        .iter()
        .map(|(backend, reason)| json!({ "backend": backend, "reason": reason }))
        .collect();
    let health = db.health();
    let status = health.status();
    let code = if status == crate::health::Status::Failed {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (
        code,
        Json(json!({
            "status": status,
            "problems": health.problems(),
            "backend": selection.backend,
            "device": selection.device,
            "passed_over": passed_over,
            "collections_on_host": db.collections_on_host(),
            "version": env!("CARGO_PKG_VERSION"),
        })),
    )
}

#[utoipa::path(get, path = "/replication/status", tag = "replication",
    responses((status = 200, description = "The node's role and how far behind each copy is", body = super::openapi::NodeStatus), super::openapi::CommonErrors))]
/// The node's role and where replication stands: the one status shape, whatever
/// the mode (`replication::status`).
pub async fn replication_status(
    State(state): State<AppState>,
) -> Result<Json<crate::replication::status::NodeStatus>, ApiError> {
    Ok(Json(state.mode.status().await?))
}

#[utoipa::path(get, path = "/metrics", tag = "observability", security(()),
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String),
        super::openapi::OpenErrors))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.mode.refresh_metrics(&state.metrics);
    let db = state.db();
    let body = state
        .metrics
        .render(&db.collections(), &db.collections_on_host());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "method not allowed on this route",
    )
}

/// Counts and times every request by its route template (not the raw path, which
/// would make one series per collection and id).
pub async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    record_as("", &state, req, next).await
}

/// [`record`] for the Qdrant-compatible listener: its routes are labelled
/// `qdrant:/collections/...`, apart from the native routes of the same path.
pub async fn record_qdrant(State(state): State<AppState>, req: Request, next: Next) -> Response {
    record_as("qdrant:", &state, req, next).await
}

async fn record_as(prefix: &str, state: &AppState, req: Request, next: Next) -> Response {
    let route = format!(
        "{prefix}{}",
        req.extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", |p| p.as_str())
    );
    // Only the methods the API knows become label values: any string is a valid
    // HTTP method, and each new one would be a new series forever.
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "DELETE" | "HEAD" | "OPTIONS" | "PATCH") => m,
        _ => "other",
    }
    .to_string();
    let start = Instant::now();
    let response = next.run(req).await;
    let m = &state.metrics;
    m.http_duration
        .with_label_values(&[route.as_str(), method.as_str()])
        .observe(start.elapsed().as_secs_f64());
    m.http_requests
        .with_label_values(&[route.as_str(), method.as_str(), response.status().as_str()])
        .inc();
    if let Some(code) = response.extensions().get::<super::error::ErrorCode>() {
        m.http_errors
            .with_label_values(&[route.as_str(), code.0.as_ref()])
            .inc();
    }
    response
}

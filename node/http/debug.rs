//! `/debug/faults`: drives the transport's fault injector, for tests that partition
//! or degrade a live cluster. Exists only on nodes started with `--fault-injection`.

use super::extract::ApiJson;
use super::{ApiError, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use needle_transport::faults::{FaultConfig, FaultInjector};
use serde_json::{json, Value};
use std::sync::Arc;

fn injector(state: &AppState) -> Result<&Arc<FaultInjector>, ApiError> {
    state.faults.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "fault injection is off: start the node with --fault-injection",
        )
    })
}

#[utoipa::path(get, path = "/debug/faults", tag = "admin",
    responses((status = 200, description = "The faults configured", body = super::openapi::Faults),
        (status = 404, description = "NOT_FOUND: fault injection is off", body = super::openapi::ErrorBody), super::openapi::CommonErrors))]
pub async fn get_faults(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "faults": injector(&state)?.config() })))
}

#[utoipa::path(post, path = "/debug/faults", tag = "admin",
    request_body(content = super::openapi::Object, description = "The transport's fault configuration (drop, delay, duplicate, reorder, partition)"),
    responses((status = 200, description = "The faults now configured", body = super::openapi::Faults),
        (status = 404, description = "NOT_FOUND: fault injection is off", body = super::openapi::ErrorBody), super::openapi::CommonErrors))]
/// Replaces the whole fault configuration.
pub async fn set_faults(
    State(state): State<AppState>,
    ApiJson(config): ApiJson<FaultConfig>,
) -> Result<Json<Value>, ApiError> {
    let faults = injector(&state)?;
    tracing::warn!(?config, "fault injection changed");
    faults.set(config);
    Ok(Json(json!({ "faults": faults.config() })))
}

#[utoipa::path(delete, path = "/debug/faults", tag = "admin",
    responses((status = 200, description = "No faults left", body = super::openapi::Faults),
        (status = 404, description = "NOT_FOUND: fault injection is off", body = super::openapi::ErrorBody), super::openapi::CommonErrors))]
/// Removes every fault.
pub async fn heal_faults(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let faults = injector(&state)?;
    tracing::warn!("fault injection healed");
    faults.heal();
    Ok(Json(json!({ "faults": faults.config() })))
}

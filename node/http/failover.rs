//! Manual failover over HTTP: `POST /replication/promote` and
//! `POST /replication/demote {"primary": "HOST:PORT"}`, admin routes.

use super::admin::authorize;
use super::{ApiError, AppState};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

use crate::replication::Replication;

fn replication(state: &AppState) -> Result<&Arc<Replication>, ApiError> {
    state.replication.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "ROLE_CONFLICT",
            "this node is standalone: start it with --role primary or --role replica",
        )
    })
}

/// Makes this replica the primary of a new epoch.
pub async fn promote(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let promoted = replication(&state)?
        .promote()
        .await
        .map_err(role_conflict)?;
    Ok(Json(
        json!({ "role": "primary", "epoch": promoted.epoch, "applied_seq": promoted.applied_seq }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoteRequest {
    /// The new primary's cluster address.
    primary: String,
}

/// Makes this node a replica of `primary`, discarding what `primary` never had.
pub async fn demote(
    State(state): State<AppState>,
    headers: HeaderMap,
    super::extract::ApiJson(request): super::extract::ApiJson<DemoteRequest>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let replication = replication(&state)?;
    let primary = tokio::net::lookup_host(&request.primary)
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| {
            crate::Error::InvalidRequest(format!(
                "\"primary\": {:?} is not a reachable HOST:PORT",
                request.primary
            ))
        })?;
    let demoted = replication.demote(primary).await.map_err(role_conflict)?;
    Ok(Json(json!({
        "role": "replica",
        "primary": primary.to_string(),
        "epoch": demoted.epoch,
        "discarded": demoted.discarded,
        "applied_seq": demoted.applied_seq,
    })))
}

/// A role change that cannot be made now is a conflict with the node's state, not
/// an unavailable server.
fn role_conflict(e: crate::Error) -> ApiError {
    match e {
        crate::Error::Replication(message) => {
            ApiError::new(StatusCode::CONFLICT, "ROLE_CONFLICT", message)
        }
        other => other.into(),
    }
}

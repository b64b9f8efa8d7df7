//! `/cluster/...`: the Raft cluster as this node sees it, and leadership hand-over.

use super::{admin, ApiError, AppState};
use crate::replication::raft::{ClusterStatus, RaftNode};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

fn raft(state: &AppState) -> Result<&RaftNode, ApiError> {
    state.raft.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "NOT_RAFT",
            "this node is not a Raft member (start it with --raft)",
        )
    })
}

/// `GET /cluster/status`: leader, term, commit index and every member with its lag.
pub async fn status(State(state): State<AppState>) -> Result<Json<ClusterStatus>, ApiError> {
    Ok(Json(raft(&state)?.cluster_status().await?))
}

/// `POST /cluster/step-down` (admin key): the leader hands leadership to its most
/// up-to-date follower; answers once a new leader exists.
pub async fn step_down(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    admin::authorize(&state, &headers)?;
    let node = raft(&state)?;
    let previous = node.node_id();
    let leader = node.step_down().await?;
    Ok(Json(
        json!({ "previous_leader": previous, "leader_id": leader }),
    ))
}

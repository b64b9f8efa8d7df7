//! `/cluster/...`: the Raft cluster as this node sees it, and leadership hand-over.

use super::{ApiError, AppState};
use crate::replication::raft::{ClusterView, RaftNode};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

fn raft(state: &AppState) -> Result<Arc<RaftNode>, ApiError> {
    crate::replication::mode_as::<RaftNode>(&state.mode).ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "NOT_RAFT",
            "this node is not a Raft member (start it with --raft)",
        )
    })
}

#[utoipa::path(get, path = "/cluster/status", tag = "cluster",
    responses((status = 200, description = "This member's view of the cluster", body = super::openapi::ClusterStatus),
        (status = 409, description = "NOT_RAFT", body = super::openapi::ErrorBody), super::openapi::CommonErrors))]
/// `GET /cluster/status`: leader, term, commit index and every member with its
/// lag; and every shard group this member holds a replica of.
pub async fn status(State(state): State<AppState>) -> Result<Json<ClusterView>, ApiError> {
    let node = raft(&state)?;
    Ok(Json(ClusterView {
        cluster: node.cluster_status().await?,
        groups: node.shard_group_statuses(),
    }))
}

/// Kept as text, and its rejection mapped, so a bad query is refused with the API's
/// JSON error rather than axum's plain-text one.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StepDownQuery {
    /// The voter to hand leadership to (`etcdctl move-leader`); by default the most
    /// up-to-date one.
    to: Option<String>,
}

#[utoipa::path(post, path = "/cluster/step-down", tag = "cluster", params(StepDownQuery),
    responses((status = 200, description = "A new leader exists", body = super::openapi::SteppedDown),
        (status = 409, description = "NOT_RAFT", body = super::openapi::ErrorBody), super::openapi::CommonErrors))]
/// `POST /cluster/step-down[?to=ID]` (admin key): the leader hands leadership to
/// `to` or to its most up-to-date follower; answers once a new leader exists.
pub async fn step_down(
    State(state): State<AppState>,
    query: Result<Query<StepDownQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let node = raft(&state)?;
    let Query(query) =
        query.map_err(|e| ApiError::bad_request("INVALID_REQUEST", e.body_text()))?;
    let to = match query.to.as_deref() {
        Some(to) => Some(to.parse::<u64>().map_err(|_| {
            ApiError::bad_request("INVALID_REQUEST", format!("to={to:?} is not a node id"))
        })?),
        None => None,
    };
    let previous = node.node_id();
    let leader = node.step_down(to).await?;
    Ok(Json(
        json!({ "previous_leader": previous, "leader_id": leader }),
    ))
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMemberBody {
    /// The new member's cluster (QUIC) address, `IP:PORT`.
    cluster_addr: String,
}

#[utoipa::path(post, path = "/cluster/members", tag = "cluster", request_body = AddMemberBody,
    responses((status = 200, description = "Added as a voter", body = super::openapi::MemberAdded),
        (status = 409, description = "NOT_RAFT", body = super::openapi::ErrorBody), super::openapi::CommonErrors))]
/// `POST /cluster/members` (admin key): adds the member at `cluster_addr`, first as
/// a learner, then, once caught up, as a voter.
pub async fn add_member(
    State(state): State<AppState>,
    super::extract::ApiJson(body): super::extract::ApiJson<AddMemberBody>,
) -> Result<Json<Value>, ApiError> {
    let addr = body.cluster_addr.parse().map_err(|e| {
        ApiError::bad_request(
            "INVALID_REQUEST",
            format!("cluster_addr {:?} is not IP:PORT: {e}", body.cluster_addr),
        )
    })?;
    let id = raft(&state)?.add_member(addr).await?;
    Ok(Json(json!({ "node_id": id })))
}

#[utoipa::path(delete, path = "/cluster/members/{id}", tag = "cluster",
    params(("id" = u64, Path, description = "The member's node id")),
    responses((status = 200, description = "Removed", body = super::openapi::MemberRemoved),
        (status = 409, description = "NOT_RAFT", body = super::openapi::ErrorBody), super::openapi::CommonErrors))]
/// `DELETE /cluster/members/{id}` (admin key).
pub async fn remove_member(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<u64>,
) -> Result<Json<Value>, ApiError> {
    raft(&state)?.remove_member(id).await?;
    Ok(Json(json!({ "removed": id })))
}

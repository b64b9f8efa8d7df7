//! Manual failover over HTTP: `POST /replication/promote`,
//! `POST /replication/demote {"primary": "HOST:PORT"}` and
//! `POST /replication/forget {"name": "node-3"}`, admin routes.

use super::{ApiError, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

use crate::replication::{Replication, ReplicationError};

fn replication(state: &AppState) -> Result<Arc<Replication>, ApiError> {
    crate::replication::mode_as::<Replication>(&state.mode).ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "ROLE_CONFLICT",
            "this node is standalone: start it with --role primary or --role replica",
        )
    })
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    /// The other replicas' cluster addresses: promotion first takes what they have.
    #[serde(default)]
    peers: Vec<String>,
    /// Promote even without hearing from enough of the cluster (may lose writes a
    /// majority acknowledged).
    #[serde(default)]
    force: bool,
}

#[utoipa::path(post, path = "/replication/promote", tag = "replication",
    request_body(content = Option<PromoteRequest>, description = "Optional"),
    responses((status = 200, description = "This node is the primary of a new epoch", body = super::openapi::Promoted),
        (status = 409, description = "ROLE_CONFLICT", body = super::openapi::ErrorBody), super::openapi::CommonErrors))]
/// Makes this replica the primary of a new epoch (body optional:
/// `{"peers": ["HOST:PORT", ...]}`).
pub async fn promote(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let replication = replication(&state)?;
    let request: PromoteRequest = super::extract::optional_json(&body, "promote")?;
    let mut peers = Vec::with_capacity(request.peers.len());
    for peer in &request.peers {
        peers.push(resolve(peer).await?);
    }
    let force = request.force;
    let promoted = to_the_end(async move { replication.promote(&peers, force).await })
        .await?
        .map_err(role_conflict)?;
    Ok(Json(json!({
        "role": "primary",
        "epoch": promoted.epoch,
        "applied_seq": promoted.applied_seq,
        "caught_up": promoted.caught_up,
    })))
}

async fn resolve(addr: &str) -> Result<std::net::SocketAddr, ApiError> {
    tokio::net::lookup_host(addr)
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| {
            crate::Error::InvalidRequest(format!("{addr:?} is not a reachable HOST:PORT")).into()
        })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DemoteRequest {
    /// The new primary's cluster address.
    primary: String,
}

#[utoipa::path(post, path = "/replication/demote", tag = "replication", request_body = DemoteRequest,
    responses((status = 200, description = "This node follows `primary`", body = super::openapi::Object),
        (status = 409, description = "ROLE_CONFLICT", body = super::openapi::ErrorBody), super::openapi::CommonErrors))]
/// Makes this node a replica of `primary`, discarding what `primary` never had.
pub async fn demote(
    State(state): State<AppState>,
    super::extract::ApiJson(request): super::extract::ApiJson<DemoteRequest>,
) -> Result<Json<Value>, ApiError> {
    let replication = replication(&state)?;
    let primary = resolve(&request.primary).await?;
    let demoted = to_the_end(async move { replication.demote(primary).await })
        .await?
        .map_err(role_conflict)?;
    Ok(Json(json!({
        "role": "replica",
        "primary": primary.to_string(),
        "epoch": demoted.epoch,
        "discarded": demoted.discarded,
        "applied_seq": demoted.applied_seq,
    })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgetRequest {
    /// The replica's name: its certificate's node name (`node-3`), or its cluster
    /// address for nodes without certificates.
    name: String,
}

#[utoipa::path(post, path = "/replication/forget", tag = "replication", request_body = ForgetRequest,
    responses((status = 200, description = "Whether it was known, and the replicas still known", body = super::openapi::Object),
        (status = 409, description = "ROLE_CONFLICT", body = super::openapi::ErrorBody), super::openapi::CommonErrors))]
/// Forgets a retired or re-addressed replica: it no longer counts for `majority`
/// write concerns or promotions' quorums (until it pulls again).
pub async fn forget(
    State(state): State<AppState>,
    super::extract::ApiJson(request): super::extract::ApiJson<ForgetRequest>,
) -> Result<Json<Value>, ApiError> {
    let replication = replication(&state)?;
    let forgotten = replication.forget(&request.name).map_err(role_conflict)?;
    Ok(Json(json!({
        "forgotten": forgotten,
        "name": request.name,
        "known": replication.known_replicas(),
    })))
}

/// A role change that cannot be made now is a conflict with the node's state, not
/// an unavailable server.
fn role_conflict(e: ReplicationError) -> ApiError {
    e.as_role_conflict().into()
}

/// Runs a role change to its end even if the client goes away: dropped halfway (a
/// promotion after its peers promised, a demotion after its role changed), it would
/// leave the node following nobody.
async fn to_the_end<T: Send + 'static>(
    change: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::spawn(change).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            format!("the role change failed: {e}"),
        )
    })
}

//! Admin routes: operations on the node itself rather than on its data. They need
//! the node's admin key when it has one (`auth.rs`).
//!
//! Snapshot files live in the node's snapshot directory (`--snapshot-dir`, default
//! `DATA/snapshots`); requests name a file there, never a path, so no request can
//! make the node write or rename anything elsewhere.

use super::extract::ApiJson;
use super::{ApiError, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRequest {
    /// The file name to write in the node's snapshot directory.
    name: String,
}

/// A file name for the snapshot directory: no separators, no `.`/`..`, no hidden
/// files, and not the names a snapshot is written under while it is made.
fn snapshot_file(state: &AppState, name: &str) -> Result<PathBuf, ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.contains(".partial-")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        return Err(crate::Error::InvalidRequest(format!(
            "snapshot name {name:?} must be a file name of [A-Za-z0-9._-] (not starting with '.'): snapshots live in the node's snapshot directory"
        ))
        .into());
    }
    Ok(state.snapshot_dir.join(name))
}

#[utoipa::path(post, path = "/admin/snapshot", tag = "admin", request_body = SnapshotRequest,
    responses((status = 200, description = "The snapshot written: path, bytes, applied_seq", body = super::openapi::Object),
        (status = 500, description = "SNAPSHOT_FAILED", body = super::openapi::ErrorBody), super::openapi::CommonErrors))]
/// `POST /admin/snapshot {"name": "nightly.snap"}`: a consistent single-file
/// snapshot of this live node, written by the node itself (it holds the RocksDB
/// lock) into its snapshot directory.
pub async fn snapshot(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<SnapshotRequest>,
) -> Result<Json<Value>, ApiError> {
    let out = snapshot_file(&state, &request.name)?;
    let db = state.db();
    let written = tokio::task::spawn_blocking(move || db.write_snapshot(&out))
        .await
        .map_err(|e| crate::Error::Snapshot(format!("snapshot task failed: {e}")))??;
    tracing::info!(
        out = %written.path.display(),
        applied_seq = written.info.applied_seq,
        bytes = written.bytes,
        "snapshot written"
    );
    Ok(Json(json!(written)))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReloadRequest {
    /// A snapshot file's name in the snapshot directory; default: `--reload-from`.
    from: Option<String>,
}

#[utoipa::path(post, path = "/reload", tag = "admin",
    request_body(content = Option<ReloadRequest>, description = "Optional"),
    responses((status = 200, description = "The state now served: from, applied_seq, collections", body = super::openapi::Object),
        (status = 409, description = "ROLE_CONFLICT: not standalone", body = super::openapi::ErrorBody),
        (status = 400, description = "INVALID_SNAPSHOT, INVALID_REQUEST", body = super::openapi::ErrorBody), super::openapi::CommonErrors))]
/// `POST /reload`, optionally `{"from": "name"}`: replaces this node's whole
/// state with a snapshot file's, without a restart. The current state keeps serving
/// while the new one is unpacked and loaded; then requests move over, and the old
/// state's store is removed once the requests still using it finish. Writes sent to
/// the node while it reloads land in the old state and are discarded with it: reload
/// is for nodes fed by snapshots (file-based replication), not for ones taking writes.
pub async fn reload(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    // A clustered node's state belongs to its cluster: swapping it from a file would
    // put it out of step (under Raft, behind the state machine's back).
    if state.mode.name() != crate::replication::ModeName::Standalone {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ROLE_CONFLICT",
            "this node replicates over the cluster transport; /reload is for standalone nodes fed by snapshot files",
        ));
    }
    let request: ReloadRequest = super::extract::optional_json(&body, "reload")?;
    let from = match request.from {
        Some(name) => snapshot_file(&state, &name)?,
        None => state
            .reload_from
            .as_deref()
            .map(PathBuf::from)
            .ok_or_else(|| {
                crate::Error::InvalidRequest(
                    "no snapshot file: send {\"from\": \"NAME\"} (a file in the snapshot directory) or start the node with --reload-from".into(),
                )
            })?,
    };
    // One reload at a time: each builds on the generation the previous one made.
    let _one_at_a_time = state.reload_lock.lock().await;
    let current = state.db();
    let source = from.clone();
    let reloaded = tokio::task::spawn_blocking(move || current.reload_from(&source))
        .await
        .map_err(|e| crate::Error::Snapshot(format!("reload task failed: {e}")))??;
    let old = state.replace_db(reloaded.clone());
    let answer = json!({
        "from": from,
        "applied_seq": reloaded.applied_seq(),
        "collections": reloaded.collections().len(),
    });
    tokio::spawn(async move {
        drop(old);
        // Requests that took the old state finish first; a store still open then is
        // removed after the next reload or at the next start.
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let _ = tokio::task::spawn_blocking(move || reloaded.remove_inactive_generations()).await;
    });
    Ok(Json(answer))
}

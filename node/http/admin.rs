//! Admin routes: operations on the node itself rather than on its data. When the
//! node has an admin key (`--admin-key`), they need `Authorization: Bearer <key>`.

use super::extract::ApiJson;
use super::{ApiError, AppState};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::PathBuf;

/// 401 unless the request carries the node's admin key (or the node has none).
pub fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = state.admin_key.as_deref() else {
        return Ok(());
    };
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(key) if same_key(key.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "wrong admin key",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "this route needs the node's admin key: Authorization: Bearer <key>",
        )),
    }
}

/// Compares without stopping at the first difference, so response times do not
/// reveal how much of a guessed key was right.
fn same_key(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRequest {
    /// Where the node writes the snapshot: an absolute path on the node's machine.
    out: PathBuf,
}

/// `POST /admin/snapshot {"out": "/abs/path"}`: a consistent single-file snapshot of
/// this live node, written by the node itself (it holds the RocksDB lock).
pub async fn snapshot(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<SnapshotRequest>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    if !request.out.is_absolute() {
        return Err(crate::Error::InvalidRequest(format!(
            "\"out\" must be an absolute path on the node's machine, got {}",
            request.out.display()
        ))
        .into());
    }
    let db = state.db();
    let written = tokio::task::spawn_blocking(move || db.write_snapshot(&request.out))
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadRequest {
    /// The snapshot file; default: the node's `--reload-from`.
    from: Option<PathBuf>,
}

/// `POST /reload`, optionally `{"from": "/abs/file"}`: replaces this node's whole
/// state with a snapshot file's, without a restart. The current state keeps serving
/// while the new one is unpacked and loaded; then requests move over, and the old
/// state's store is removed once the requests still using it finish. Writes sent to
/// the node while it reloads land in the old state and are discarded with it: reload
/// is for nodes fed by snapshots (file-based replication), not for ones taking writes.
pub async fn reload(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    if state.replication.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ROLE_CONFLICT",
            "this node replicates over the cluster transport; /reload is for nodes fed by snapshot files",
        ));
    }
    let request: ReloadRequest = super::extract::optional_json(&body, "reload")?;
    let from = request
        .from
        .or_else(|| state.reload_from.as_deref().map(PathBuf::from))
        .ok_or_else(|| {
            crate::Error::InvalidRequest(
                "no snapshot file: send {\"from\": \"/path/file\"} or start the node with --reload-from".into(),
            )
        })?;
    if !from.is_absolute() {
        return Err(crate::Error::InvalidRequest(format!(
            "\"from\" must be an absolute path on the node's machine, got {}",
            from.display()
        ))
        .into());
    }
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

#[cfg(test)]
mod tests {
    use super::same_key;

    #[test]
    fn keys_match_only_when_identical() {
        assert!(same_key(b"s3cret", b"s3cret"));
        assert!(!same_key(b"s3cret", b"s3creT"));
        assert!(!same_key(b"s3cret", b"s3cre"));
        assert!(!same_key(b"", b"x"));
    }
}

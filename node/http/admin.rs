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
    let db = state.db.clone();
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

//! Qdrant's response envelope: `{"result": ..., "status": "ok", "time": seconds}`,
//! and `{"status": {"error": "..."}, "time": seconds}` for errors.
//!
//! Handlers return needle's own `ApiError`s; [`qdrant_errors`] rewrites every error
//! answer of this listener (the handlers', and those of the shared auth, limit and
//! body layers) into Qdrant's shape, keeping the status code. So the error texts and
//! codes stay the ones the native API documents.

use super::super::budget::{to_json_within, JsonBody};
use super::super::ApiError;
use axum::body::{to_bytes, Body};
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{json, Value};
use std::time::Instant;

/// When the handler started: the envelope's `time`.
#[derive(Clone, Copy)]
pub struct Started(pub Instant);

impl<S: Send + Sync> FromRequestParts<S> for Started {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Started>()
            .copied()
            .unwrap_or(Started(Instant::now())))
    }
}

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    result: &'a T,
    status: &'static str,
    time: f64,
}

/// A successful answer, serialized within the response size limit.
pub fn ok<T: Serialize>(
    started: Started,
    result: &T,
    max_bytes: usize,
) -> Result<JsonBody, ApiError> {
    let envelope = Envelope {
        result,
        status: "ok",
        time: started.0.elapsed().as_secs_f64(),
    };
    Ok(to_json_within(&envelope, max_bytes)?)
}

/// Error bodies are small; anything larger is passed through untouched.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Notes the request's start for [`Started`], and rewrites needle's error bodies
/// (`{"error":{"code","message"}}`) into Qdrant's (`{"status":{"error"}}`), with
/// the same status code.
pub async fn qdrant_errors(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    req.extensions_mut().insert(Started(started));
    let response = next.run(req).await;
    if response.status().is_success() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_ERROR_BODY).await else {
        return (parts.status, "error body too large to rewrite").into_response();
    };
    let message = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| {
            let error = v.get("error")?;
            let code = error.get("code")?.as_str()?.to_string();
            let message = error.get("message")?.as_str()?.to_string();
            Some(format!("{message} ({code})"))
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
    let body = json!({
        "status": {"error": message},
        "time": started.elapsed().as_secs_f64(),
    });
    let text = body.to_string();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(text))
}

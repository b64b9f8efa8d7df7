//! What keeps a few clients from starving the rest: bodies are read with a deadline
//! and a node-wide byte budget before a request counts as in flight, and at most
//! `max_requests` requests are processed at once (more get 503 `OVERLOADED` with
//! `Retry-After` at once, instead of queueing without bound).
//!
//! Reading the body first matters: a client that trickles its body would otherwise
//! hold one of the processing slots for as long as it likes. Header read timeouts and
//! the connection limit are the accept loop's (`server.rs`).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use tokio::sync::Semaphore;

use super::{ApiError, AppState};
pub use crate::config::HttpLimits;

/// The semaphores behind the limits, shared by every connection.
#[derive(Debug, Clone)]
pub struct Gates {
    requests: Arc<Semaphore>,
    body_bytes: Arc<Semaphore>,
}

impl Gates {
    pub fn new(limits: &HttpLimits) -> Gates {
        Gates {
            requests: Arc::new(Semaphore::new(limits.max_requests.max(1))),
            body_bytes: Arc::new(Semaphore::new(
                limits
                    .max_body_bytes_in_flight
                    .clamp(limits.max_body_bytes.max(1), Semaphore::MAX_PERMITS),
            )),
        }
    }
}

fn overloaded(what: &str) -> Response {
    ApiError::from(crate::Error::Overloaded(what.to_string())).into_response()
}

fn too_large() -> Response {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        "request body is larger than the configured limit",
    )
    .into_response()
}

/// Reads the whole body within the deadline and the byte budget, then processes the
/// request if a processing slot is free.
pub async fn admit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limits = &state.limits;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return too_large();
    }
    let (parts, body) = req.into_parts();
    let mut held = None;
    let deadline = tokio::time::Instant::now() + limits.body_timeout;
    let read = tokio::time::timeout_at(
        deadline,
        read_within(
            body,
            limits.max_body_bytes,
            &state.gates.body_bytes,
            &mut held,
        ),
    )
    .await;
    let bytes = match read {
        Err(_) => {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "BODY_TIMEOUT",
                format!(
                    "the request body did not arrive within {} ms",
                    limits.body_timeout.as_millis()
                ),
            )
            .into_response()
        }
        Ok(Err(response)) => return response,
        Ok(Ok(bytes)) => bytes,
    };
    let Ok(_slot) = state.gates.requests.clone().try_acquire_owned() else {
        return overloaded("too many requests are in flight");
    };
    let _counted = InFlight::count(&state.metrics.http_in_flight);
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    drop(held);
    response
}

/// Counts a request in `needle_http_requests_in_flight` while it holds a slot
/// (also when its future is dropped: the client left).
struct InFlight(prometheus::IntGauge);

impl InFlight {
    fn count(gauge: &prometheus::IntGauge) -> InFlight {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The body's bytes, holding one permit of `budget` per byte until the request is
/// done; a body over `max` is refused as soon as it passes it.
async fn read_within(
    mut body: Body,
    max: usize,
    budget: &Arc<Semaphore>,
    held: &mut Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<Bytes, Response> {
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::bad_request("INVALID_REQUEST", format!("reading the body: {e}"))
                .into_response()
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if buf.len() + data.len() > max {
            return Err(too_large());
        }
        let n = u32::try_from(data.len()).map_err(|_| too_large())?;
        if n > 0 {
            let permit = budget.clone().try_acquire_many_owned(n).map_err(|_| {
                overloaded("request bodies in flight take all of the node's body budget")
            })?;
            match held {
                Some(all) => all.merge(permit),
                None => *held = Some(permit),
            }
        }
        buf.extend_from_slice(&data);
    }
    Ok(Bytes::from(buf))
}

//! A JSON body extractor whose failures are API errors with stable codes, instead of
//! axum's plain-text rejections. It also accepts bodies without a JSON content type,
//! as curl sends them by default.

use super::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

pub struct ApiJson<T>(pub T);

/// Bodies larger than this are parsed on the blocking pool. A batch of a thousand
/// 384-d vectors is ~8 MB of JSON and tens of milliseconds of parsing: on an async
/// worker it would hold up every task queued behind it, a Raft member's heartbeats
/// and votes among them (on a 2-core machine that was enough for followers to miss
/// the leader and elect another under load). The operating system shares cores
/// between threads fairly; tokio's workers do not preempt.
const PARSE_INLINE_LIMIT: usize = 64 * 1024;

/// Slots for parses of bodies over [`PARSE_INLINE_LIMIT`]: the machine's cores but
/// one (at least one). Process-wide, as the cores are.
fn large_parses() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        tokio::sync::Semaphore::new(cores.saturating_sub(1).max(1))
    })
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send + 'static,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "PAYLOAD_TOO_LARGE",
                    "request body is larger than the configured limit",
                )
            } else {
                ApiError::bad_request("INVALID_REQUEST", rejection.body_text())
            }
        })?;
        if bytes.len() <= PARSE_INLINE_LIMIT {
            return parse(&bytes).map(ApiJson);
        }
        // One large parse per core but one: the rest wait here, asynchronously,
        // instead of crowding the cores the runtime and the writer need.
        // The slot goes with the parse: a client that gives up frees it only when
        // its parse, which runs on regardless, ends.
        let slot = large_parses().acquire().await.map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string())
        })?;
        tokio::task::spawn_blocking(move || {
            let parsed = parse(&bytes);
            drop(slot);
            parsed
        })
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                format!("parsing the request body did not finish: {e}"),
            )
        })?
        .map(ApiJson)
    }
}

/// Syntax errors are `MALFORMED_JSON`; well-formed JSON of the wrong shape is
/// `INVALID_REQUEST`, with serde's description of what is wrong.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::bad_request("MALFORMED_JSON", format!("malformed JSON: {e}"))
            }
            Category::Data => ApiError::bad_request("INVALID_REQUEST", e.to_string()),
        }
    })
}

/// A JSON body that may be left empty (then `T::default()`), for routes whose body
/// only carries options.
pub fn optional_json<T: Default + serde::de::DeserializeOwned>(
    body: &[u8],
    what: &str,
) -> Result<T, crate::Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| crate::Error::InvalidRequest(format!("{what} body: {e}")))
}

/// `Idempotency-Key: CLIENT:SERIAL` (two unsigned integers) on a write to a Raft
/// member: a retry with the same key is applied at most once.
pub struct IdempotencyKey(pub Option<needle_consensus::RequestId>);

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// [`IdempotencyKey`] as the OpenAPI document describes it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKeyHeader {
    /// `CLIENT:SERIAL`, two unsigned integers: on a Raft member, a retry with the same
    /// key is applied at most once (409 IDEMPOTENCY_KEY_REUSED for a different write).
    #[param(rename = "Idempotency-Key")]
    #[allow(dead_code)]
    idempotency_key: Option<String>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(IDEMPOTENCY_KEY) else {
            return Ok(IdempotencyKey(None));
        };
        let bad = || {
            ApiError::bad_request(
                "INVALID_REQUEST",
                "Idempotency-Key must be CLIENT:SERIAL, two unsigned integers",
            )
        };
        let text = value.to_str().map_err(|_| bad())?;
        let (client, serial) = text.trim().split_once(':').ok_or_else(bad)?;
        Ok(IdempotencyKey(Some(needle_consensus::RequestId {
            client: client.parse().map_err(|_| bad())?,
            serial: serial.parse().map_err(|_| bad())?,
        })))
    }
}

use crate::error::{Error, ErrorKind};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// An error response: a status and `{"error":{"code","message"}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: std::borrow::Cow<'static, str>,
    pub message: String,
    /// One more field inside `"error"`, e.g. `"primary"` on NOT_PRIMARY.
    pub extra: Option<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: std::borrow::Cow::Borrowed(code),
            message: message.into(),
            extra: None,
        }
    }

    /// 421 for a write sent to a replica, naming the primary to send it to.
    pub fn not_primary(primary: std::net::SocketAddr) -> Self {
        ApiError {
            extra: Some(("primary", primary.to_string())),
            ..Self::new(
                StatusCode::MISDIRECTED_REQUEST,
                "NOT_PRIMARY",
                format!("this node is not the primary; send writes to the primary at {primary}"),
            )
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl From<crate::replication::ReplicationError> for ApiError {
    fn from(e: crate::replication::ReplicationError) -> Self {
        use crate::replication::ReplicationError;
        match e {
            ReplicationError::Core(e) => e.into(),
            ReplicationError::NotPrimary { primary } => ApiError::not_primary(primary),
            other => ApiError::coded(other.kind(), other.code(), other.to_string()),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::coded(e.kind(), e.code(), e.to_string())
    }
}

impl ApiError {
    /// The response for an error of class `kind` with a stable `code`.
    fn coded(kind: ErrorKind, code: &str, message: String) -> ApiError {
        let status = match kind {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            // nginx's "client closed request": nobody reads it, it only shows in metrics.
            ErrorKind::ClientGone => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        };
        if status.is_server_error() {
            tracing::error!(error = %message, "request failed");
        }
        ApiError {
            status,
            code: std::borrow::Cow::Owned(code.to_string()),
            message,
            extra: None,
        }
    }
}

/// The error code of an error answer, for the metrics layer
/// (`needle_http_errors_total`). Codes are a fixed set of names, never user input.
#[derive(Debug, Clone)]
pub struct ErrorCode(pub std::borrow::Cow<'static, str>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = ErrorCode(self.code.clone());
        let mut response = self.into_response_without_code();
        response.extensions_mut().insert(code);
        response
    }
}

impl ApiError {
    fn into_response_without_code(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some((key, value)) = self.extra {
            error[key] = json!(value);
        }
        let body = json!({ "error": error });
        if self.code == "OVERLOADED" {
            // Load shedding: the client should come back, soon.
            let retry = [(axum::http::header::RETRY_AFTER, "1")];
            return (self.status, retry, Json(body)).into_response();
        }
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the oversized body is never read, so this connection's
            // framing is lost: tell the client not to send another request on it.
            let close = [(axum::http::header::CONNECTION, "close")];
            return (self.status, close, Json(body)).into_response();
        }
        (self.status, Json(body)).into_response()
    }
}

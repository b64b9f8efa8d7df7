//! The HTTP server's limits, as settings: what the CLI resolves and the server
//! (`crate::http`) enforces.

use std::time::Duration;

/// Default request body limit: 64 MiB, room for a batch of ~40k 384-d vectors.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The HTTP server's limits.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Largest response body (see `budget.rs`).
    pub max_response_bytes: usize,
    /// Requests processed at once (bodies already read).
    pub max_requests: usize,
    /// Bytes of request bodies held by the whole node at once.
    pub max_body_bytes_in_flight: usize,
    /// How long a whole body may take to arrive.
    pub body_timeout: Duration,
    /// How long a request's headers may take to arrive (and an idle keep-alive
    /// connection may wait for the next request).
    pub header_timeout: Duration,
    /// Connections held open at once; more wait in the listen backlog.
    pub max_connections: usize,
}

pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 << 20;

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_requests: 512,
            max_body_bytes_in_flight: 1 << 30,
            body_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            max_connections: 4096,
        }
    }
}

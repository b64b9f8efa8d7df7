//! Who may call what: API keys on data routes, the admin key on admin routes.
//!
//! Every route belongs to one class, fixed where the router is built
//! (`routes.rs`), and each class has one middleware:
//! - read (gets, searches, status): the read-write or read-only API key;
//! - write (inserts, deletes, collections): the read-write API key (403 `FORBIDDEN`
//!   with the read-only one);
//! - admin (failover, membership, snapshots, reload, fault injection): the admin key;
//! - open (`/health`, `/metrics`): no key, unless `--protect-metrics` makes them read
//!   routes.
//!
//! A class with no key configured is open (a node on loopback, as for development);
//! `cli/serve.rs` refuses to start a node reachable from the network that way. The
//! admin key also opens data routes: it is the strongest credential. Keys come as
//! `Authorization: Bearer KEY` or `api-key: KEY` and are compared in constant time.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};

/// The node's keys; `None` leaves that class open.
#[derive(Debug, Clone, Default)]
pub struct AccessKeys {
    pub admin: Option<String>,
    pub read_write: Option<String>,
    pub read_only: Option<String>,
    /// `/health` and `/metrics` need a key too.
    pub protect_metrics: bool,
}

/// What a presented key grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Grant {
    Nothing,
    Read,
    ReadWrite,
    Admin,
}

impl AccessKeys {
    fn data_keys_set(&self) -> bool {
        self.read_write.is_some() || self.read_only.is_some()
    }

    /// Every configured key is compared, whichever matches, so timing tells nothing
    /// about which one a guess came close to.
    fn grant(&self, presented: Option<&str>) -> Grant {
        let Some(presented) = presented else {
            return Grant::Nothing;
        };
        let matches = |key: &Option<String>| {
            key.as_deref()
                .is_some_and(|k| bool::from(k.as_bytes().ct_eq(presented.as_bytes())))
        };
        let (admin, read_write, read_only) = (
            matches(&self.admin),
            matches(&self.read_write),
            matches(&self.read_only),
        );
        if admin {
            Grant::Admin
        } else if read_write {
            Grant::ReadWrite
        } else if read_only {
            Grant::Read
        } else {
            Grant::Nothing
        }
    }
}

/// The key a request carries: `Authorization: Bearer KEY`, else `api-key: KEY`.
fn presented(headers: &HeaderMap) -> Option<&str> {
    if let Some(bearer) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(bearer.trim());
    }
    headers
        .get("api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
}

fn check_read(keys: &AccessKeys, headers: &HeaderMap) -> Result<(), ApiError> {
    if !keys.data_keys_set() {
        // No API key (perhaps an admin key): data routes are open.
        return Ok(());
    }
    match keys.grant(presented(headers)) {
        Grant::Nothing if presented(headers).is_some() => Err(unauthorized("wrong API key")),
        Grant::Nothing => Err(unauthorized(
            "this route needs an API key: Authorization: Bearer <key> or api-key: <key>",
        )),
        _ => Ok(()),
    }
}

fn check_write(keys: &AccessKeys, headers: &HeaderMap) -> Result<(), ApiError> {
    check_read(keys, headers)?;
    if !keys.data_keys_set() {
        return Ok(());
    }
    match keys.grant(presented(headers)) {
        Grant::Read => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "the read-only API key cannot write; use the read-write key",
        )),
        _ => Ok(()),
    }
}

fn check_admin(keys: &AccessKeys, headers: &HeaderMap) -> Result<(), ApiError> {
    if keys.admin.is_none() {
        return Ok(());
    }
    match keys.grant(presented(headers)) {
        Grant::Admin => Ok(()),
        _ if presented(headers).is_some() => Err(unauthorized("wrong admin key")),
        _ => Err(unauthorized(
            "this route needs the node's admin key: Authorization: Bearer <key>",
        )),
    }
}

async fn guarded(
    check: fn(&AccessKeys, &HeaderMap) -> Result<(), ApiError>,
    state: &AppState,
    req: Request,
    next: Next,
) -> Response {
    match check(&state.keys, req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

pub async fn require_read(State(state): State<AppState>, req: Request, next: Next) -> Response {
    guarded(check_read, &state, req, next).await
}

pub async fn require_write(State(state): State<AppState>, req: Request, next: Next) -> Response {
    guarded(check_write, &state, req, next).await
}

pub async fn require_admin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    guarded(check_admin, &state, req, next).await
}

/// `/health` and `/metrics`: open, or read routes under `--protect-metrics`.
pub async fn observability(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !state.keys.protect_metrics {
        return next.run(req).await;
    }
    guarded(check_read_any, &state, req, next).await
}

/// Under `--protect-metrics`: any of the node's keys.
fn check_read_any(keys: &AccessKeys, headers: &HeaderMap) -> Result<(), ApiError> {
    match keys.grant(presented(headers)) {
        Grant::Nothing => Err(unauthorized(
            "metrics and health are protected: send any of the node's keys",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn keys() -> AccessKeys {
        AccessKeys {
            admin: Some("adm".into()),
            read_write: Some("rw".into()),
            read_only: Some("ro".into()),
            protect_metrics: false,
        }
    }

    fn status(r: Result<(), ApiError>) -> u16 {
        r.err().map_or(200, |e| e.status.as_u16())
    }

    #[test]
    fn each_class_takes_its_keys_and_refuses_others() {
        let k = keys();
        let none = headers(&[]);
        let rw = headers(&[("authorization", "Bearer rw")]);
        let ro = headers(&[("api-key", "ro")]);
        let adm = headers(&[("authorization", "Bearer adm")]);
        let bad = headers(&[("authorization", "Bearer nope")]);
        assert_eq!(status(check_read(&k, &none)), 401);
        assert_eq!(status(check_read(&k, &bad)), 401);
        assert_eq!(status(check_read(&k, &ro)), 200);
        assert_eq!(status(check_read(&k, &rw)), 200);
        assert_eq!(status(check_write(&k, &ro)), 403);
        assert_eq!(status(check_write(&k, &rw)), 200);
        assert_eq!(status(check_write(&k, &adm)), 200);
        assert_eq!(status(check_admin(&k, &rw)), 401);
        assert_eq!(status(check_admin(&k, &none)), 401);
        assert_eq!(status(check_admin(&k, &adm)), 200);
        assert_eq!(status(check_read_any(&k, &ro)), 200);
        assert_eq!(status(check_read_any(&k, &none)), 401);
    }

    #[test]
    fn classes_without_keys_stay_open() {
        let open = AccessKeys::default();
        let none = headers(&[]);
        assert_eq!(status(check_read(&open, &none)), 200);
        assert_eq!(status(check_write(&open, &none)), 200);
        assert_eq!(status(check_admin(&open, &none)), 200);
        let admin_only = AccessKeys {
            admin: Some("adm".into()),
            ..AccessKeys::default()
        };
        assert_eq!(status(check_write(&admin_only, &none)), 200);
        assert_eq!(status(check_admin(&admin_only, &none)), 401);
    }
}

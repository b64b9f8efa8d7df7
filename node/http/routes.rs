//! The route table, one group per access class (see `auth.rs`): a route's class is
//! where it is declared, so no route can be added without one.

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::{middleware, Router};

use super::{
    admin, auth, cluster, collections, debug, failover, limits, observability, search, vectors,
    AppState,
};

/// The full route table with its layers: metrics outermost (every request counts),
/// then each group's key check, then body reading and the in-flight limit.
pub fn router(state: AppState) -> Router {
    let admitted = |group: Router<AppState>| {
        group.route_layer(middleware::from_fn_with_state(state.clone(), limits::admit))
    };
    let open = Router::new()
        .route("/health", get(observability::health))
        .route("/metrics", get(observability::metrics))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::observability,
        ));
    let read = admitted(
        Router::new()
            .route("/collections", get(collections::list))
            .route("/collections/{name}", get(collections::get))
            .route("/collections/{name}/checksum", get(collections::checksum))
            .route("/collections/{name}/vectors/{id}", get(vectors::get))
            .route("/collections/{name}/search", post(search::single))
            .route("/collections/{name}/search/batch", post(search::batch))
            .route(
                "/replication/status",
                get(observability::replication_status),
            )
            .route("/cluster/status", get(cluster::status)),
    )
    .route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_read,
    ));
    let write = admitted(
        Router::new()
            .route("/collections", post(collections::create))
            .route("/collections/{name}", delete(collections::drop))
            .route("/collections/{name}/vectors", post(vectors::insert))
            .route(
                "/collections/{name}/vectors/batch",
                post(vectors::upsert_batch),
            )
            .route("/collections/{name}/vectors/{id}", delete(vectors::delete)),
    )
    .route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_write,
    ));
    let admin = admitted(
        Router::new()
            .route("/replication/promote", post(failover::promote))
            .route("/replication/demote", post(failover::demote))
            .route("/replication/forget", post(failover::forget))
            .route("/cluster/step-down", post(cluster::step_down))
            .route("/cluster/members", post(cluster::add_member))
            .route("/cluster/members/{id}", delete(cluster::remove_member))
            .route("/admin/snapshot", post(admin::snapshot))
            .route("/reload", post(admin::reload))
            .route(
                "/debug/faults",
                get(debug::get_faults)
                    .post(debug::set_faults)
                    .delete(debug::heal_faults),
            ),
    )
    .route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_admin,
    ));
    let metered = state.clone();
    let max_body = state.limits.max_body_bytes;
    Router::new()
        .merge(open)
        .merge(read)
        .merge(write)
        .merge(admin)
        .fallback(observability::not_found)
        .method_not_allowed_fallback(observability::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            metered,
            observability::record,
        ))
        .with_state(state)
}

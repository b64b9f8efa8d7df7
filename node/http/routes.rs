//! The route table, one group per access class (see `auth.rs`): a route's class is
//! where it is declared, so no route can be added without one.

use axum::extract::DefaultBodyLimit;
use axum::{middleware, Router};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{
    admin, auth, cluster, collections, debug, failover, limits, observability, openapi, search,
    vectors, AppState,
};

/// `GET /openapi.json`.
#[utoipa::path(get, path = "/openapi.json", tag = "observability", security(()),
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = openapi::Object),
        openapi::OpenErrors))]
async fn openapi_json(
    axum::extract::Extension(doc): axum::extract::Extension<OpenApiJson>,
) -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        doc.0,
    )
}

/// The document's JSON text, made once when the router is built (shared, not
/// copied, by each answer).
#[derive(Clone)]
struct OpenApiJson(axum::body::Bytes);

/// The full route table with its layers: metrics outermost (every request counts),
/// then each group's key check, then body reading and the in-flight limit. Every
/// route is registered through `routes!`, which also puts its handler's description
/// into the OpenAPI document.
pub fn router(state: AppState) -> Router {
    let admitted = |group: OpenApiRouter<AppState>| {
        group.route_layer(middleware::from_fn_with_state(state.clone(), limits::admit))
    };
    let open = OpenApiRouter::new()
        .routes(routes!(observability::health))
        .routes(routes!(observability::metrics))
        .routes(routes!(openapi_json))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::observability,
        ));
    let read = admitted(
        OpenApiRouter::new()
            .routes(routes!(collections::list))
            .routes(routes!(collections::get))
            .routes(routes!(collections::checksum))
            .routes(routes!(vectors::get))
            .routes(routes!(search::single))
            .routes(routes!(search::batch))
            .routes(routes!(observability::replication_status))
            .routes(routes!(cluster::status)),
    )
    .route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_read,
    ));
    let write = admitted(
        OpenApiRouter::new()
            .routes(routes!(collections::create))
            .routes(routes!(collections::drop))
            .routes(routes!(vectors::insert))
            .routes(routes!(vectors::upsert_batch))
            .routes(routes!(vectors::delete)),
    )
    .route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_write,
    ));
    let admin = admitted(
        OpenApiRouter::new()
            .routes(routes!(failover::promote))
            .routes(routes!(failover::demote))
            .routes(routes!(failover::forget))
            .routes(routes!(cluster::step_down))
            .routes(routes!(cluster::add_member))
            .routes(routes!(cluster::remove_member))
            .routes(routes!(admin::snapshot))
            .routes(routes!(admin::reload))
            .routes(routes!(debug::get_faults))
            .routes(routes!(debug::set_faults))
            .routes(routes!(debug::heal_faults)),
    )
    .route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_admin,
    ));
    let metered = state.clone();
    let max_body = state.limits.max_body_bytes;
    let (router, document) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(open)
        .merge(read)
        .merge(write)
        .merge(admin)
        .split_for_parts();
    let served = OpenApiJson(serde_json::to_vec(&document).unwrap_or_default().into());
    router
        .fallback(observability::not_found)
        .method_not_allowed_fallback(observability::method_not_allowed)
        .layer(axum::Extension(served))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            metered,
            observability::record,
        ))
        .with_state(state)
}

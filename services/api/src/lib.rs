//! The Netledger REST API (axum + utoipa): tenants, users, roles and API keys; devices,
//! configs, workflows, rollouts, firmware and events; change requests (change control);
//! live events over SSE fed by NATS; health and Prometheus metrics; the OpenAPI document
//! and interactive docs.
//!
//! Handlers are thin: authenticate and authorize (an extractor, first), parse, call the
//! command side (this crate's [`accounts`] for identity, the store/engine crates for the
//! rest) or a read model, map to a DTO. Errors are one type ([`error::ApiError`]) mapped
//! to problem+json at the edge.
//!
//! This crate never talks to devices or git (HTTP latency must not depend on a router),
//! reads no environment and no system clock: the binary passes pools, the NATS client, the
//! clock and [`config::ApiConfig`].

pub mod accounts;
pub mod auth;
pub mod authz;
pub mod config;
pub mod error;
pub mod http;
pub mod idempotency;
pub mod metrics;
mod openapi;
pub mod ratelimit;
pub mod routes;
pub mod scripts;
pub mod state;
pub mod ui;

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;

pub use accounts::{BootstrapOutcome, bootstrap_admin};
pub use config::ApiConfig;
pub use error::{ApiError, Problem, ProblemKind};
pub use state::{ApiDeps, ApiState};

/// Every route with its OpenAPI operation, before state and middleware.
fn api_router() -> OpenApiRouter<ApiState> {
    let v1 = OpenApiRouter::new()
        .merge(routes::auth::router())
        .merge(routes::identity::router())
        .merge(routes::events::router())
        .merge(routes::live::router())
        .merge(routes::devices::router())
        .merge(routes::workflows::router())
        .merge(routes::audit::router())
        .merge(routes::firmware::router())
        .merge(routes::changes::router());
    OpenApiRouter::with_openapi(openapi::base())
        .nest("/api/v1", v1)
        .merge(routes::health::router())
}

/// The OpenAPI document of every route (no state needed).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = api_router().split_for_parts();
    openapi::finish(&mut doc);
    doc
}

/// The OpenAPI document as pretty JSON with a trailing newline: the exact bytes of the
/// committed `openapi/openapi.json` (paths and components are sorted, so the output is
/// stable).
pub fn openapi_json() -> String {
    openapi_json_of(&openapi())
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The full application: every route, `/openapi.json`, `/docs`, `/metrics` and the web UI
/// when one is configured, with request
/// ids, JSON-loggable tracing spans, metrics, body limits and panic-to-500; plus its
/// OpenAPI document.
pub fn router(state: ApiState) -> (Router, utoipa::openapi::OpenApi) {
    let (routes, mut doc) = api_router().split_for_parts();
    openapi::finish(&mut doc);
    let json = openapi_json_of(&doc);
    let body_limit = state.config().body_limit_bytes;
    let ui = state.config().ui.clone();
    let app = routes
        .route(
            "/openapi.json",
            get(move || {
                let json = json.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], json) }
            }),
        )
        .route("/docs", get(routes::docs))
        .route("/metrics", get(routes::health::metrics))
        .fallback(move |req: Request| {
            let ui = ui.clone();
            async move {
                match ui {
                    Some(ui) => ui.serve(req).await,
                    None => ApiError::not_found("route").into_response(),
                }
            }
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new([
                    header::AUTHORIZATION,
                    header::COOKIE,
                ]))
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|req: &Request| {
                            let id = req
                                .headers()
                                .get(REQUEST_ID)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("");
                            let route = req
                                .extensions()
                                .get::<axum::extract::MatchedPath>()
                                .map(|p| p.as_str())
                                .unwrap_or("");
                            tracing::info_span!(
                                "request",
                                request_id = %id,
                                method = %req.method(),
                                route = %route,
                            )
                        })
                        .on_request(())
                        .on_response(
                            tower_http::trace::DefaultOnResponse::new().level(tracing::Level::INFO),
                        ),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(CatchPanicLayer::custom(panic_response)),
        )
        .with_state(state);
    (app, doc)
}

fn openapi_json_of(doc: &utoipa::openapi::OpenApi) -> String {
    let mut s = serde_json::to_string_pretty(doc).unwrap_or_else(|_| "{}".to_owned());
    s.push('\n');
    s
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal("handler panicked").into_response()
}

/// Serves the API on `listener` until `shutdown` resolves; then live-event connections are
/// closed and in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (app, _) = router(state.clone());
    let stopping = state.clone();
    let signal = async move {
        shutdown.await;
        stopping.begin_shutdown();
    };
    // Expired idempotency keys of every tenant, hourly (a tenant's own keyed requests purge
    // its rows too); ends with the server.
    let purging = state.clone();
    let purge = tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            every.tick().await;
            match idempotency::purge_expired(&purging).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "expired idempotency keys purged"),
                Err(e) => tracing::warn!(error = %e, "purging expired idempotency keys failed"),
            }
        }
    });
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(signal)
    .await;
    purge.abort();
    served
}

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
pub mod keycache;
pub mod metrics;
mod openapi;
pub mod ratelimit;
pub mod routes;
pub mod scripts;
pub mod security;
pub mod sessions;
pub mod state;
pub mod tls;
pub mod ui;

use std::future::Future;
use std::sync::Arc;

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
pub use tls::{TlsError, TlsFiles, TlsServerConfig};

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
    let mut app = routes
        .route(
            "/openapi.json",
            get(move || {
                let json = json.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], json) }
            }),
        )
        .route("/docs", get(routes::docs));
    if state.config().metrics_listen.is_none() {
        app = app.route("/metrics", get(routes::health::metrics));
    }
    let app = app
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
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            state.config().body_timeout,
        ))
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
/// closed and in-flight requests finish. With `ApiConfig::metrics_listen`, `/metrics` is
/// served on that address instead (bound here).
///
/// Connections are HTTP/1.1 with a header read timeout (`ApiConfig::header_timeout`: a
/// client that does not send its request head in time is disconnected) and at most
/// `ApiConfig::max_connections` open at once (further connections wait in the listen
/// backlog until one closes). Request bodies time out separately (`body_timeout`, a layer
/// of [`router`]).
///
/// With `ApiConfig::tls`, every connection is HTTPS: the TLS handshake uses the
/// configuration current when the connection is accepted (a
/// [`TlsServerConfig::reload`] applies to new connections), must finish within the header
/// timeout, and a failed handshake drops the connection. The metrics address stays plain
/// HTTP.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (app, _) = router(state.clone());
    let config = state.config().clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopping = state.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopping.begin_shutdown();
        let _ = stop_tx.send(true);
    });
    let metrics = match config.metrics_listen {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr).await?;
            tracing::info!(address = %l.local_addr()?, "metrics listening");
            let app = metrics_router(state.clone());
            let mut stop = stop_rx.clone();
            Some(tokio::spawn(serve_connections(
                l,
                app,
                64,
                config.header_timeout,
                None,
                async move {
                    let _ = stop.wait_for(|s| *s).await;
                },
            )))
        }
        None => None,
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
    let mut stop = stop_rx;
    let result = serve_connections(
        listener,
        app,
        config.max_connections,
        config.header_timeout,
        config.tls.clone(),
        async move {
            let _ = stop.wait_for(|s| *s).await;
        },
    )
    .await;
    purge.abort();
    if let Some(m) = metrics {
        m.await.map_err(std::io::Error::other)??;
    }
    result
}

/// `/metrics` alone (for `ApiConfig::metrics_listen`).
pub fn metrics_router(state: ApiState) -> Router {
    Router::new()
        .route("/metrics", get(routes::health::metrics))
        .with_state(state)
}

/// The accept loop: at most `max_connections` open, each with a header read timeout (and,
/// with `tls`, a TLS handshake within the same timeout first); graceful shutdown when
/// `shutdown` resolves.
async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: Router,
    max_connections: usize,
    header_timeout: std::time::Duration,
    tls: Option<tls::TlsServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Ends TLS handshakes still under way at shutdown (as a plain connection that has not
    // sent a request is closed at once).
    let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s.map_err(std::io::Error::other)?,
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: let it pass rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let app = app.clone();
        // Taken here, before the task runs: a shutdown from now on reaches the connection.
        let watcher = graceful.watcher();
        // The configuration current at accept time.
        let handshake = tls.as_ref().map(|t| (t.acceptor(), stopping_rx.clone()));
        tokio::spawn(async move {
            let _slot = slot;
            let Some((acceptor, mut stopping)) = handshake else {
                return serve_connection(stream, peer, app, header_timeout, watcher).await;
            };
            let accepted = tokio::select! {
                r = tokio::time::timeout(header_timeout, acceptor.accept(stream)) => r,
                _ = stopping.wait_for(|s| *s) => return,
            };
            match accepted {
                Ok(Ok(stream)) => {
                    serve_connection(stream, peer, app, header_timeout, watcher).await;
                }
                Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
    let _ = stopping_tx.send(true);
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Serves HTTP/1.1 on one accepted connection (TCP or TLS over it) until the client closes
/// it, the header read timeout cuts it off, or the server stops (`watcher`).
async fn serve_connection<I>(
    io: I,
    peer: std::net::SocketAddr,
    app: Router,
    header_timeout: std::time::Duration,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt as _;

    let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        app.clone().oneshot(req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, %peer, "connection ended with an error");
    }
}

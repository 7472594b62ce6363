//! The HTTP routes, one module per resource. Each module's `router()` returns an
//! `OpenApiRouter` so that routes and their OpenAPI operations are registered together.

pub mod audit;
pub mod auth;
pub mod changes;
pub mod devices;
pub mod events;
pub mod firmware;
pub mod health;
pub mod identity;
pub mod live;
pub mod workflows;

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

/// The interactive API documentation: one self-contained page (no CDN, no build-time
/// download) that renders `/openapi.json` and can send requests.
pub async fn docs() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
            ),
        ],
        Html(include_str!("docs.html")),
    )
        .into_response()
}

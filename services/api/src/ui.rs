//! Serves the built web UI (`frontend/dist`) from the API process, same origin as the API:
//! files under the folder as they are, `index.html` for every other path so client-side
//! routes survive a reload. API paths (`/api/`, `/health/`) never fall through to the UI: an
//! unknown one stays a problem+json 404. Hashed assets are cached for a year; `index.html`
//! is revalidated on every load so a new build shows at once. UI responses carry a strict
//! content security policy (same-origin scripts, styles and connections only).

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile};

use crate::error::ApiError;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; font-src 'self'; \
                   object-src 'none'; base-uri 'self'; form-action 'self'; \
                   frame-ancestors 'none'";

/// Path prefixes that belong to the API and must never be answered with the UI.
const API_PREFIXES: [&str; 3] = ["/api/", "/health/", "/metrics"];

/// The UI folder, checked once at start.
#[derive(Debug, Clone)]
pub struct UiDir {
    dir: PathBuf,
}

/// Why a UI folder cannot be served.
#[derive(Debug, thiserror::Error)]
#[error(
    "the web UI folder {} has no index.html: build it with `npm ci && npm run build` in \
     frontend/ (scripts/run does), or leave out --ui-dir",
    .0.display()
)]
pub struct UiDirError(PathBuf);

impl UiDir {
    /// A folder holding a built UI (`index.html` plus assets).
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, UiDirError> {
        let dir = dir.into();
        if !dir.join("index.html").is_file() {
            return Err(UiDirError(dir));
        }
        Ok(Self { dir })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Answers a request no API route matched.
    pub(crate) async fn serve(&self, req: Request) -> Response {
        let path = req.uri().path();
        if API_PREFIXES.iter().any(|p| path.starts_with(p)) || path == "/api" {
            return ApiError::not_found("route").into_response();
        }
        let immutable = path.starts_with("/assets/");
        let index = self.dir.join("index.html");
        let service = ServeDir::new(&self.dir)
            .append_index_html_on_directories(true)
            .fallback(ServeFile::new(index));
        let mut response = match service.oneshot(req).await {
            Ok(r) => r.map(Body::new),
            Err(infallible) => match infallible {},
        };
        let cache = if immutable && response.status() == StatusCode::OK {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        response
    }
}

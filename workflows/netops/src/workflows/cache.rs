//! The read-only HTTP server devices fetch firmware packages from: `GET /<version>/<file>`
//! from the cache layout `<dir>/<version>/<file>`. No directory listing (only that route
//! exists); both segments must be plain names (letters, digits, `.`, `_`, `-`, `+`, not
//! starting with `.`), so no path can leave `dir`.

use std::future::Future;
use std::path::PathBuf;

use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
}

async fn package(
    State(root): State<PathBuf>,
    UrlPath((version, file)): UrlPath<(String, String)>,
) -> axum::response::Response {
    if !plain_name(&version) || !plain_name(&file) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let path = root.join(&version).join(&file);
    match tokio::fs::metadata(&path).await {
        Ok(m) if m.is_file() => {}
        _ => return StatusCode::NOT_FOUND.into_response(),
    }
    match tokio::fs::read(&path).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "firmware cache read failed");
            StatusCode::NOT_FOUND.into_response()
        }
    }
}

/// Serves `dir` read-only on `listener` until `shutdown` resolves.
pub async fn serve_firmware_cache(
    dir: PathBuf,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route("/{version}/{file}", axum::routing::get(package))
        .with_state(dir);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::plain_name;

    #[test]
    fn only_plain_names_pass() {
        assert!(plain_name("7.19.4"));
        assert!(plain_name("routeros-7.19.4-arm64.npk"));
        for bad in ["", "..", ".", ".hidden", "a/b", "a\\b", "%2e%2e", "a b"] {
            assert!(!plain_name(bad), "{bad}");
        }
    }
}

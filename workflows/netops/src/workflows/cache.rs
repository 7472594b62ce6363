//! The HTTP server devices fetch firmware packages from, and the download tokens it honours.
//!
//! Only `GET /d/<token>/<version>/<file>` exists (no listing, no other path). A token is
//! minted by a firmware workflow for one device and one package and expires soon after the
//! device's fetch timeout: `<tenant>.<device>.<sha256>.<expires>.<mac>`, where `mac` is
//! HMAC-SHA256 under the cache's download key over the tenant, device, version, file,
//! SHA-256 and expiry. The key is 32 random bytes in `<cache>/.download-key` (mode 0600),
//! created by the first process that needs it, so every worker sharing the cache honours
//! every worker's tokens; the API never needs it.
//!
//! The server checks the MAC and the expiry (403 otherwise), opens the package in its
//! tenant's part of the cache (`<cache>/tenants/<tenant>/<version>/<file>`), hashes it and
//! serves that same open file only when it still has the token's SHA-256 (the pin of the
//! tenant's own upload event, which the workflow checked): streamed from disk in chunks,
//! never read into memory whole. Both path segments must be plain names (letters, digits,
//! `.`, `_`, `-`, `+`, not starting with `.`), so no path can leave the cache.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use netledger_domain::clock::Clock;
use netledger_domain::{DeviceId, TenantId};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// File (in the cache root) holding the download key.
pub const DOWNLOAD_KEY_FILE: &str = ".download-key";

fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
}

/// What a download token allows: one device to fetch one package until `expires`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadGrant {
    /// Whose cache the package is in.
    pub tenant: TenantId,
    /// The device allowed to fetch it.
    pub device: DeviceId,
    /// RouterOS version (the first path segment).
    pub version: String,
    /// Package file (the second path segment).
    pub file_name: String,
    /// Lowercase hex SHA-256 the served bytes must have.
    pub sha256: String,
    /// Unix seconds after which the token is refused.
    pub expires: i64,
}

/// The HMAC key download tokens are signed with.
#[derive(Clone)]
pub struct DownloadKey([u8; 32]);

impl std::fmt::Debug for DownloadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DownloadKey(<redacted>)")
    }
}

impl DownloadKey {
    /// A key from its bytes (tests).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The key of the cache at `root`: read from [`DOWNLOAD_KEY_FILE`], or created there
    /// (32 random bytes, mode 0600; written aside and linked into place, so concurrent
    /// creators agree on one key).
    pub async fn load_or_create(root: &Path) -> std::io::Result<Self> {
        let root = root.to_path_buf();
        tokio::task::spawn_blocking(move || Self::load_or_create_blocking(&root))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?
    }

    fn load_or_create_blocking(root: &Path) -> std::io::Result<Self> {
        use std::io::Write as _;
        let path = root.join(DOWNLOAD_KEY_FILE);
        if !path.exists() {
            std::fs::create_dir_all(root)?;
            let tmp = root.join(format!(
                "{DOWNLOAD_KEY_FILE}.{}.tmp",
                uuid::Uuid::new_v4().simple()
            ));
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                options.mode(0o600);
            }
            let mut key = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
            let mut f = options.open(&tmp)?;
            f.write_all(hex::encode(key).as_bytes())?;
            f.sync_all()?;
            drop(f);
            let linked = std::fs::hard_link(&tmp, &path);
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        let text = std::fs::read_to_string(&path)?;
        let mut key = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut key).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        Ok(Self(key))
    }

    fn mac(&self, g: &DownloadGrant) -> Option<Hmac<Sha256>> {
        // HMAC takes a key of any length: this never fails.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).ok()?;
        for part in [
            g.tenant.as_uuid().to_string().as_bytes(),
            g.device.as_uuid().to_string().as_bytes(),
            g.version.as_bytes(),
            g.file_name.as_bytes(),
            g.sha256.as_bytes(),
            g.expires.to_string().as_bytes(),
        ] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        Some(mac)
    }

    /// The token (one path segment) for `grant`.
    pub fn mint(&self, grant: &DownloadGrant) -> Option<String> {
        Some(format!(
            "{}.{}.{}.{}.{}",
            grant.tenant.as_uuid().simple(),
            grant.device.as_uuid().simple(),
            grant.sha256,
            grant.expires,
            hex::encode(self.mac(grant)?.finalize().into_bytes())
        ))
    }

    /// The grant of `token` for `version`/`file_name`, when its MAC checks out and it has not
    /// expired at `now` (unix seconds).
    pub fn check(
        &self,
        token: &str,
        version: &str,
        file_name: &str,
        now: i64,
    ) -> Option<DownloadGrant> {
        let mut parts = token.split('.');
        let tenant = uuid::Uuid::parse_str(parts.next()?).ok()?;
        let device = uuid::Uuid::parse_str(parts.next()?).ok()?;
        let sha256 = parts.next()?;
        let expires: i64 = parts.next()?.parse().ok()?;
        let mac = hex::decode(parts.next()?).ok()?;
        if parts.next().is_some()
            || sha256.len() != 64
            || !sha256
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return None;
        }
        let grant = DownloadGrant {
            tenant: TenantId::from_uuid(tenant),
            device: DeviceId::from_uuid(device),
            version: version.to_owned(),
            file_name: file_name.to_owned(),
            sha256: sha256.to_owned(),
            expires,
        };
        self.mac(&grant)?.verify_slice(&mac).ok()?;
        (now <= expires).then_some(grant)
    }
}

struct Server {
    root: PathBuf,
    key: DownloadKey,
    clock: Arc<dyn Clock>,
}

async fn package(
    State(s): State<Arc<Server>>,
    UrlPath((token, version, file)): UrlPath<(String, String, String)>,
) -> Response {
    if !plain_name(&version) || !plain_name(&file) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let now = s.clock.now().unix_timestamp();
    let Some(grant) = s.key.check(&token, &version, &file, now) else {
        tracing::warn!(%version, %file, "firmware download refused: bad or expired token");
        return StatusCode::FORBIDDEN.into_response();
    };
    let path = netledger_store::firmware::tenant_dir(&s.root, grant.tenant)
        .join(&version)
        .join(&file);
    match open_verified(&path, &grant.sha256).await {
        Ok(Some((f, len))) => {
            tracing::info!(tenant = %grant.tenant, device = %grant.device, %version, %file, "firmware download");
            let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(f, 64 * 1024));
            (
                [
                    (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                    (header::CONTENT_LENGTH, len.to_string()),
                ],
                body,
            )
                .into_response()
        }
        Ok(None) => {
            tracing::warn!(path = %path.display(), pinned = %grant.sha256, "firmware download refused: the cached package does not have the pinned SHA-256");
            StatusCode::NOT_FOUND.into_response()
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "firmware cache read failed");
            StatusCode::NOT_FOUND.into_response()
        }
    }
}

/// Opens `path`, hashes it in chunks and, when it has `sha256`, returns the same open file
/// rewound (a package replaced meanwhile does not change what is served) and its length.
async fn open_verified(
    path: &Path,
    sha256: &str,
) -> std::io::Result<Option<(tokio::fs::File, u64)>> {
    let mut f = tokio::fs::File::open(path).await?;
    let meta = f.metadata().await?;
    if !meta.is_file() {
        return Ok(None);
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        len += n as u64;
        h.update(&buf[..n]);
    }
    if hex::encode(h.finalize()) != sha256 {
        return Ok(None);
    }
    f.rewind().await?;
    Ok(Some((f, len)))
}

/// Serves the firmware cache at `dir` read-only on `listener` until `shutdown` resolves,
/// honouring download tokens signed with the cache's key (created if missing) and checked
/// against `clock`.
pub async fn serve_firmware_cache(
    dir: PathBuf,
    listener: tokio::net::TcpListener,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let key = DownloadKey::load_or_create(&dir).await?;
    let app = axum::Router::new()
        .route("/d/{token}/{version}/{file}", axum::routing::get(package))
        .with_state(Arc::new(Server {
            root: dir,
            key,
            clock,
        }));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_plain_names_pass() {
        assert!(plain_name("7.19.4"));
        assert!(plain_name("routeros-7.19.4-arm64.npk"));
        for bad in ["", "..", ".", ".hidden", "a/b", "a\\b", "%2e%2e", "a b"] {
            assert!(!plain_name(bad), "{bad}");
        }
    }

    fn grant() -> DownloadGrant {
        DownloadGrant {
            tenant: TenantId::from_uuid(uuid::Uuid::from_u128(1)),
            device: DeviceId::from_uuid(uuid::Uuid::from_u128(2)),
            version: "7.19.4".into(),
            file_name: "routeros-7.19.4-arm64.npk".into(),
            sha256: "ab".repeat(32),
            expires: 1_000,
        }
    }

    #[test]
    fn tokens_bind_device_package_and_expiry() {
        let key = DownloadKey::from_bytes([7; 32]);
        let g = grant();
        let t = key.mint(&g).unwrap();
        assert_eq!(
            key.check(&t, &g.version, &g.file_name, 1_000),
            Some(g.clone())
        );
        // expired
        assert_eq!(key.check(&t, &g.version, &g.file_name, 1_001), None);
        // another package or version under the same token
        assert_eq!(key.check(&t, "7.19.5", &g.file_name, 10), None);
        assert_eq!(
            key.check(&t, &g.version, "routeros-7.19.4-mipsbe.npk", 10),
            None
        );
        // another key, or a token edited to another device or a later expiry
        assert_eq!(
            DownloadKey::from_bytes([8; 32]).check(&t, &g.version, &g.file_name, 10),
            None
        );
        let other_device = t.replacen(
            &uuid::Uuid::from_u128(2).simple().to_string(),
            &uuid::Uuid::from_u128(3).simple().to_string(),
            1,
        );
        assert_eq!(key.check(&other_device, &g.version, &g.file_name, 10), None);
        assert_eq!(
            key.check(&t.replace(".1000.", ".9999."), &g.version, &g.file_name, 10),
            None
        );
        assert_eq!(key.check("garbage", &g.version, &g.file_name, 10), None);
    }
}

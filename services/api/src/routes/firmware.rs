//! `/api/v1/firmware`: the tenant's part of the firmware package cache,
//! `<dir>/tenants/<tenant>/<version>/<package file>` (`netledger_store::firmware`) — the
//! layout the firmware workflow reads and the package server devices fetch from
//! (`netledger_netops::serve_firmware_cache`). A tenant sees and writes only its own
//! packages: another tenant can neither list nor replace them. Uploads stream to a temporary
//! file, are hashed on the way, and are renamed into place, so a reader never sees half a
//! package; a `<file>.sha256` beside each package saves re-hashing for the list. Each upload
//! appends `FirmwarePackageCached` (with the SHA-256) to the stream `firmware-<version>` of
//! the uploader's tenant: the pin a firmware workflow checks the cached file against before a
//! device may fetch it. The tenant's packages together may take at most
//! `ApiConfig::firmware_quota_bytes` (a replaced package's old size does not count).

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use netledger_domain::{ExpectedVersion, NewEvent, StreamName};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Require;
use crate::authz::perm;
use crate::error::{ApiError, ApiResult, BadRequest, PayloadTooLarge, Unavailable};
use crate::http::{Json, Path, RequestId, Written};
use crate::state::ApiState;

pub(crate) fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_firmware))
        .routes(routes!(upload_firmware))
}

pub use netledger_domain::firmware::FirmwarePackageCached;

/// Whether `v` looks like a RouterOS version: `7.19.4`, `6.49.17`, `7.20beta2`, `7.19rc1`.
pub fn version_ok(v: &str) -> bool {
    let (nums, suffix) = match v.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => v.split_at(i),
        None => (v, ""),
    };
    let parts: Vec<&str> = nums.split('.').collect();
    let nums_ok = (2..=4).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()));
    let suffix_ok = suffix.is_empty()
        || ["beta", "rc"].iter().any(|s| {
            suffix.strip_prefix(s).is_some_and(|n| {
                !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit())
            })
        });
    v.len() <= 20 && nums_ok && suffix_ok
}

/// Whether `f` is a RouterOS package file name (`routeros-7.19.4-arm64.npk`, also other
/// packages such as `wireless-7.19.4-arm64.npk`): letters, digits, `.`, `_`, `-`, `+`,
/// ending in `.npk`.
pub fn file_name_ok(f: &str) -> bool {
    f.len() <= 200
        && f.ends_with(".npk")
        && f.len() > 4
        && !f.starts_with('.')
        && f.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
}

/// A cached package.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FirmwarePackage {
    /// RouterOS version.
    pub version: String,
    /// File name.
    pub file_name: String,
    /// Size in bytes.
    pub size: u64,
    /// Hex SHA-256 (absent for files put into the cache by hand).
    pub sha256: Option<String>,
}

/// The cache's packages.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FirmwareList {
    /// Packages by version, then name.
    pub items: Vec<FirmwarePackage>,
}

fn dir(state: &ApiState, tenant: netledger_domain::TenantId) -> ApiResult<std::path::PathBuf> {
    state
        .firmware_dir()
        .map(|d| netledger_store::firmware::tenant_dir(d, tenant))
        .ok_or_else(|| ApiError::unavailable("the firmware cache directory is not configured"))
}

/// Bytes the tenant's packages take in `root` (its part of the cache), leaving out
/// `except` (`version`, `file`: the package an upload replaces).
fn usage(root: &std::path::Path, except: (&str, &str)) -> std::io::Result<u64> {
    let mut total = 0;
    let Ok(versions) = std::fs::read_dir(root) else {
        return Ok(0);
    };
    for v in versions {
        let v = v?;
        let version = v.file_name().to_string_lossy().into_owned();
        if !v.file_type()?.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(v.path())? {
            let f = f?;
            let name = f.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".npk") || (version.as_str(), name.as_str()) == except {
                continue;
            }
            if f.file_type()?.is_file() {
                total += f.metadata()?.len();
            }
        }
    }
    Ok(total)
}

/// List the tenant's firmware packages (only those its own uploads put there).
#[utoipa::path(
    get,
    path = "/firmware",
    operation_id = "list_firmware",
    tag = "firmware",
    security(("bearer" = ["firmware:read"])),
    responses(
        (status = 200, description = "The packages.", body = FirmwareList),
        (status = 503, response = Unavailable),
    )
)]
pub async fn list_firmware(
    State(state): State<ApiState>,
    auth: Require<perm::FirmwareRead>,
) -> ApiResult<Json<FirmwareList>> {
    let root = dir(&state, auth.principal().tenant)?;
    let items = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<FirmwarePackage>> {
        let mut out = Vec::new();
        let Ok(versions) = std::fs::read_dir(&root) else {
            return Ok(out);
        };
        for v in versions {
            let v = v?;
            let version = v.file_name().to_string_lossy().into_owned();
            if !version_ok(&version) || !v.file_type()?.is_dir() {
                continue;
            }
            for f in std::fs::read_dir(v.path())? {
                let f = f?;
                let name = f.file_name().to_string_lossy().into_owned();
                if !file_name_ok(&name) || !f.file_type()?.is_file() {
                    continue;
                }
                let sha256 = std::fs::read_to_string(v.path().join(format!("{name}.sha256")))
                    .ok()
                    .map(|s| s.trim().to_owned())
                    .filter(|s| s.len() == 64);
                out.push(FirmwarePackage {
                    version: version.clone(),
                    file_name: name,
                    size: f.metadata()?.len(),
                    sha256,
                });
            }
        }
        out.sort_by(|a, b| (&a.version, &a.file_name).cmp(&(&b.version, &b.file_name)));
        Ok(out)
    })
    .await
    .map_err(|e| ApiError::internal(format!("firmware list task: {e}")))?
    .map_err(|e| ApiError::internal(format!("read the firmware cache: {e}")))?;
    Ok(Json(FirmwareList { items }))
}

/// An uploaded package.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FirmwareUploaded {
    /// The package.
    pub package: FirmwarePackage,
    /// Events appended.
    pub events: Vec<Written>,
}

/// Upload a package into the tenant's cache (raw bytes, `application/octet-stream`).
/// Uploading the same name again replaces it (for this tenant only); the new SHA-256 is
/// pinned by the `FirmwarePackageCached` event. 413 when the package is larger than the
/// per-package limit or would take the tenant's packages past its quota.
#[utoipa::path(
    put,
    path = "/firmware/{version}/{file_name}",
    operation_id = "upload_firmware",
    tag = "firmware",
    security(("bearer" = ["firmware:write"])),
    params(
        ("version" = String, Path, description = "RouterOS version (`7.19.4`).", max_length = 20, pattern = r"^[0-9]{1,4}(\.[0-9]{1,4}){1,3}((beta|rc)[0-9]{1,3})?$"),
        ("file_name" = String, Path, description = "Package file as MikroTik names it (`routeros-7.19.4-arm64.npk`).", max_length = 200, pattern = r"^[A-Za-z0-9_+-][A-Za-z0-9._+-]*\.npk$"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The package bytes."),
    responses(
        (status = 201, description = "Stored.", body = FirmwareUploaded),
        (status = 400, response = BadRequest),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = Unavailable),
    )
)]
pub async fn upload_firmware(
    State(state): State<ApiState>,
    auth: Require<perm::FirmwareWrite>,
    rid: RequestId,
    Path((version, file_name)): Path<(String, String)>,
    body: Body,
) -> ApiResult<Response> {
    let p = auth.principal();
    if !version_ok(&version) {
        return Err(ApiError::bad_request(format!(
            "`{version}` is not a RouterOS version like 7.19.4"
        )));
    }
    if !file_name_ok(&file_name) {
        return Err(ApiError::bad_request(format!(
            "`{file_name}` is not a package file name (letters, digits, `.`, `_`, `-`, `+`, ending in .npk)"
        )));
    }
    let root = dir(&state, p.tenant)?;
    let used = {
        let (root, v, f) = (root.clone(), version.clone(), file_name.clone());
        tokio::task::spawn_blocking(move || usage(&root, (&v, &f)))
            .await
            .map_err(|e| ApiError::internal(format!("firmware usage task: {e}")))?
            .map_err(|e| ApiError::internal(format!("read the firmware cache: {e}")))?
    };
    let quota = state.config().firmware_quota_bytes;
    let vdir = root.join(&version);
    tokio::fs::create_dir_all(&vdir)
        .await
        .map_err(|e| ApiError::internal(format!("create {}: {e}", vdir.display())))?;
    let tmp = vdir.join(format!(
        ".{file_name}.{}.part",
        uuid::Uuid::new_v4().simple()
    ));
    let limit = state.config().firmware_limit_bytes as u64;
    let room = quota.saturating_sub(used);
    let result = async {
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| ApiError::internal(format!("create {}: {e}", tmp.display())))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::bad_request(format!("upload interrupted: {e}")))?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(ApiError::new(
                    crate::error::ProblemKind::PayloadTooLarge,
                    format!("packages may have at most {limit} bytes"),
                ));
            }
            if size > room {
                return Err(ApiError::new(
                    crate::error::ProblemKind::PayloadTooLarge,
                    format!(
                        "the tenant's firmware quota is {quota} bytes and its other packages \
                         take {used}: remove or replace packages, or ask the operator for a \
                         larger firmware_quota_bytes"
                    ),
                ));
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| ApiError::internal(format!("write {}: {e}", tmp.display())))?;
        }
        if size == 0 {
            return Err(ApiError::bad_request("the upload is empty"));
        }
        file.sync_all()
            .await
            .map_err(|e| ApiError::internal(format!("sync {}: {e}", tmp.display())))?;
        Ok((size, hex::encode(hasher.finalize())))
    }
    .await;
    let (size, sha256) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
    };
    let target = vdir.join(&file_name);
    tokio::fs::write(
        vdir.join(format!("{file_name}.sha256")),
        format!("{sha256}\n"),
    )
    .await
    .map_err(|e| ApiError::internal(format!("write checksum: {e}")))?;
    tokio::fs::rename(&tmp, &target)
        .await
        .map_err(|e| ApiError::internal(format!("move into {}: {e}", target.display())))?;
    let stream = StreamName::parse(&format!("firmware-{version}"))
        .map_err(|e| ApiError::internal(format!("stream name: {e}")))?;
    let event = NewEvent::from_typed(
        &FirmwarePackageCached {
            version: version.clone(),
            file_name: file_name.clone(),
            size,
            sha256: sha256.clone(),
        },
        rid.metadata(p.actor()),
    )
    .map_err(|e| ApiError::internal(format!("build event: {e}")))?;
    let outcome = state
        .store()
        .append(p.tenant, &stream, ExpectedVersion::Any, vec![event])
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(FirmwareUploaded {
            package: FirmwarePackage {
                version,
                file_name,
                size,
                sha256: Some(sha256),
            },
            events: vec![Written::new(&stream, outcome)],
        }),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_file_names_are_plain() {
        for ok in ["7.19.4", "6.49.17", "7.20beta2", "7.19rc1", "7.16"] {
            assert!(version_ok(ok), "{ok}");
        }
        for bad in ["", "7", "../7.1", "7.1/..", "7.1.x", "7.1beta", "a.b"] {
            assert!(!version_ok(bad), "{bad}");
        }
        assert!(file_name_ok("routeros-7.19.4-arm64.npk"));
        for bad in ["../x.npk", ".npk", "x.zip", "a/b.npk", ".hidden.npk"] {
            assert!(!file_name_ok(bad), "{bad}");
        }
    }
}

//! Firmware upgrade of one device, as idempotent steps: [`precheck`] -> (snapshot, from
//! [`crate::push::snapshot`]) -> [`upload`] -> [`install`] -> [`await_version`] -> optional
//! [`routerboard_upgrade`] + [`await_routerboard`].
//!
//! How the package gets onto the device: the RouterOS API has no file upload (a `/file add
//! contents=` value is text, capped around 60 KB, ROUTEROS-NOTES §5.9), and an `.npk` is
//! megabytes of binary. So the device downloads it itself with `/tool/fetch url=...`
//! (ROUTEROS-NOTES §5.12) from a URL the platform serves with the local cache's layout,
//! `<base>/<version>/<file>`; a RouterOS package in the root of `/file` is installed by the
//! next reboot (MT-UPG). device-mode `fetch=no` (home mode) blocks this, and so may a
//! network where devices cannot reach the platform: then a device with SSH access gets the
//! package uploaded over SFTP instead ([`PackageDelivery::Sftp`], chosen by
//! [`precheck_via`]); without SSH access it is refused ([`NetopsError::FetchDisabled`],
//! [`NetopsError::NoPackagePath`]). The cache layout is `<cache>/<version>/<file>` with the
//! file named as MikroTik names it: `routeros-<version>-<arch>.npk` (v7),
//! `routeros-<version>.npk` (v7 x86/CHR), `routeros-<arch>-<version>.npk` (v6).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use netledger_engine::crash_point;
use routeros::{Client, Command, Config};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::device::{
    DeviceTime, connect_within, device_clock, device_mode, file_row, version_key, version_text,
};
use crate::error::{NetopsError, Result};
use crate::files::Files;
use crate::push::{await_reboot, wait_closed};

/// Which version to install, and where the packages are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwareTarget {
    /// Target RouterOS version (`7.19.4`).
    pub version: String,
    /// Local firmware cache: `<cache_dir>/<version>/<package file>`.
    pub cache_dir: PathBuf,
}

/// The package found in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedPackage {
    /// File name (`routeros-7.19.4-arm64.npk`).
    pub file_name: String,
    /// Path relative to the cache and to the serving URL (`7.19.4/routeros-7.19.4-arm64.npk`).
    pub relative_path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the file.
    pub sha256: String,
}

/// What the upgrade has to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FirmwareAction {
    /// Install the package.
    Upgrade,
    /// The device already runs the target version: nothing to do.
    AlreadyCurrent,
}

/// How the package gets onto the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PackageDelivery {
    /// The device downloads it with `/tool/fetch` from the platform (the default).
    #[default]
    Fetch,
    /// The worker uploads it over SFTP (device-mode disables `fetch`, or the network does
    /// not let devices reach the platform; the device has SSH access).
    Sftp,
}

/// Precheck result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwarePrecheck {
    /// How [`upload`] puts the package on the device (journals written before SFTP uploads
    /// existed decode as `fetch`).
    #[serde(default)]
    pub delivery: PackageDelivery,
    /// Running version.
    pub current_version: String,
    /// Target version.
    pub target_version: String,
    /// `architecture-name`.
    pub architecture: String,
    /// `board-name`.
    pub board: Option<String>,
    /// Free storage in bytes.
    pub free_hdd_space: u64,
    /// What to do.
    pub action: FirmwareAction,
    /// The package (absent when already current).
    pub package: Option<CachedPackage>,
}

/// Package file names MikroTik uses for this version and architecture.
pub fn package_names(version: &routeros::Version, arch: &str) -> Vec<String> {
    let v = version_text(version);
    let x86 = arch.starts_with("x86") || arch == "i386";
    if version.major >= 7 {
        if x86 {
            vec![
                format!("routeros-{v}.npk"),
                format!("routeros-{v}-{arch}.npk"),
            ]
        } else {
            vec![format!("routeros-{v}-{arch}.npk")]
        }
    } else if x86 {
        vec![format!("routeros-x86-{v}.npk")]
    } else {
        vec![format!("routeros-{arch}-{v}.npk")]
    }
}

fn parse_version(s: &str) -> Result<routeros::Version> {
    routeros::Version::from_str(s).map_err(|_| NetopsError::Unexpected {
        detail: format!("{s:?} is not a RouterOS version"),
    })
}

fn cache_error<T>(path: &Path, r: std::io::Result<T>) -> Result<T> {
    r.map_err(|source| NetopsError::Cache {
        path: path.to_path_buf(),
        source,
    })
}

/// SHA-256 of a file, read in chunks.
async fn file_sha256(path: &Path) -> Result<String> {
    use tokio::io::AsyncReadExt;
    let mut f = cache_error(path, tokio::fs::File::open(path).await)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = cache_error(path, f.read(&mut buf).await)?;
        if n == 0 {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

/// Precheck: running version, architecture, free space against the package size, the
/// package present in the cache, device-mode allowing fetch. A device already on the
/// target gives [`FirmwareAction::AlreadyCurrent`]; an older target is refused.
#[tracing::instrument(skip_all, fields(target = %target.version))]
pub async fn precheck(client: &Client, target: &FirmwareTarget) -> Result<FirmwarePrecheck> {
    precheck_via(&Files::api(client), target, true).await
}

/// [`precheck`] that also chooses the [`PackageDelivery`]: `/tool/fetch` when device-mode
/// allows it and `fetch_allowed` (the network lets devices reach the platform), SFTP
/// otherwise when the device has SSH access; refused without.
#[tracing::instrument(skip_all, fields(target = %target.version))]
pub async fn precheck_via(
    files: &Files<'_>,
    target: &FirmwareTarget,
    fetch_allowed: bool,
) -> Result<FirmwarePrecheck> {
    let client = files.client();
    let res = client
        .resources()
        .await
        .map_err(|e| NetopsError::device("/system/resource/print", e))?;
    let want = parse_version(&target.version)?;
    let (cur, tgt) = (version_key(&res.version), version_key(&want));
    let architecture = res
        .architecture_name
        .clone()
        .ok_or_else(|| NetopsError::Unexpected {
            detail: "/system/resource has no architecture-name: cannot pick a package".into(),
        })?;
    let mut out = FirmwarePrecheck {
        current_version: version_text(&res.version),
        target_version: version_text(&want),
        architecture: architecture.clone(),
        board: res.board_name.clone(),
        free_hdd_space: res.free_hdd_space,
        delivery: PackageDelivery::Fetch,
        action: FirmwareAction::AlreadyCurrent,
        package: None,
    };
    if cur == tgt {
        return Ok(out);
    }
    if cur > tgt {
        return Err(NetopsError::Downgrade {
            target: out.target_version,
            current: out.current_version,
        });
    }
    let dir = target.cache_dir.join(&out.target_version);
    let mut tried = Vec::new();
    let mut found = None;
    for name in package_names(&want, &architecture) {
        let path = dir.join(&name);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            found = Some((path, name));
            break;
        }
        tried.push(path);
    }
    let Some((path, name)) = found else {
        return Err(NetopsError::PackageMissing { tried });
    };
    let size = cache_error(&path, tokio::fs::metadata(&path).await)?.len();
    if size > res.free_hdd_space {
        return Err(NetopsError::InsufficientSpace {
            package: name,
            needed: size,
            free: res.free_hdd_space,
        });
    }
    let mode = device_mode(client).await?;
    out.delivery = if mode.fetch && fetch_allowed {
        PackageDelivery::Fetch
    } else if files.has_ssh() {
        PackageDelivery::Sftp
    } else if !mode.fetch {
        return Err(NetopsError::FetchDisabled {
            mode: mode.mode.unwrap_or_else(|| "unknown".into()),
        });
    } else {
        return Err(NetopsError::NoPackagePath {
            package: name,
            reason: "devices may not download packages from the platform here \
                     (`firmware_fetch` is off) and the device has no SSH access for an SFTP \
                     upload: register SSH access for it"
                .into(),
        });
    };
    out.action = FirmwareAction::Upgrade;
    out.package = Some(CachedPackage {
        relative_path: format!("{}/{name}", out.target_version),
        file_name: name,
        size,
        sha256: file_sha256(&path).await?,
    });
    Ok(out)
}

/// Where the device downloads packages from: `<base_url>/<relative_path>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageSource {
    /// Base URL serving the cache layout (`http://10.0.0.1:8080/firmware`).
    pub base_url: String,
    /// Bound on the download.
    pub timeout: Duration,
}

/// Upload result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uploaded {
    /// File on the device.
    pub file_name: String,
    /// Its size.
    pub size: u64,
    /// False when the file was already there with the right size and version.
    pub fetched: bool,
}

fn package_of(pre: &FirmwarePrecheck, step: &'static str) -> Result<CachedPackage> {
    pre.package.clone().ok_or_else(|| NetopsError::WrongState {
        step,
        change: format!("firmware {}", pre.target_version),
        reason: "the device already runs the target version: nothing to do".into(),
    })
}

/// Checks a package file's row: size and, when RouterOS lists them, version and
/// architecture.
fn check_row(row: &routeros::Attrs, pre: &FirmwarePrecheck, pkg: &CachedPackage) -> Option<String> {
    let size: Option<u64> = row.get_str("size").and_then(|s| s.parse().ok());
    if size != Some(pkg.size) {
        return Some(format!("size {size:?}, expected {}", pkg.size));
    }
    if let Some(v) = row.get_str("package-version")
        && v != pre.target_version
    {
        return Some(format!(
            "package-version {v}, expected {}",
            pre.target_version
        ));
    }
    if let Some(a) = row.get_str("package-architecture")
        && a != pre.architecture
    {
        return Some(format!(
            "package-architecture {a}, expected {}",
            pre.architecture
        ));
    }
    None
}

/// Upload: the device fetches the package into the root of `/file` (where RouterOS installs
/// packages from at boot). Skipped when the file is already there and checks out; a wrong
/// file is removed and reported.
#[tracing::instrument(skip_all, fields(target = %pre.target_version))]
pub async fn upload(
    client: &Client,
    pre: &FirmwarePrecheck,
    source: &PackageSource,
) -> Result<Uploaded> {
    fetch_package(client, pre, source).await
}

/// Upload by the precheck's [`PackageDelivery`]: the device's `/tool/fetch` from `source`
/// ([`upload`]), or an SFTP upload of the cached file `<cache_dir>/<relative_path>` (its
/// SHA-256 checked against the precheck's first). Either way the file is then checked in
/// `/file` (size, version, architecture) and a wrong one removed.
#[tracing::instrument(skip_all, fields(target = %pre.target_version))]
pub async fn upload_via(
    files: &Files<'_>,
    pre: &FirmwarePrecheck,
    source: &PackageSource,
    cache_dir: &Path,
) -> Result<Uploaded> {
    if pre.delivery == PackageDelivery::Fetch {
        return fetch_package(files.client(), pre, source).await;
    }
    let client = files.client();
    let pkg = package_of(pre, "upload")?;
    let name = pkg.file_name.clone();
    if let Some(done) = already_uploaded(client, pre, &pkg).await? {
        return Ok(done);
    }
    let path = cache_dir.join(&pkg.relative_path);
    let bytes = cache_error(&path, tokio::fs::read(&path).await)?;
    if hex::encode(Sha256::digest(&bytes)) != pkg.sha256 {
        return Err(NetopsError::PackageMismatch {
            file: name,
            detail: "the cached file changed since the precheck".into(),
        });
    }
    files.put_over_ssh(&name, &bytes).await?;
    crash_point("fetched");
    check_uploaded(client, pre, &pkg, name).await
}

/// The package already on the device from an earlier attempt, if it checks out; a file of
/// that name that does not is removed (it is fetched or uploaded again).
async fn already_uploaded(
    client: &Client,
    pre: &FirmwarePrecheck,
    pkg: &CachedPackage,
) -> Result<Option<Uploaded>> {
    let name = &pkg.file_name;
    if let Some(row) = file_row(client, name).await? {
        if check_row(&row, pre, pkg).is_none() {
            return Ok(Some(Uploaded {
                file_name: name.clone(),
                size: pkg.size,
                fetched: false,
            }));
        }
        crate::device::remove_file_named(client, name).await?;
    }
    Ok(None)
}

/// The device's `/tool/fetch` of the package (see [`upload`]).
async fn fetch_package(
    client: &Client,
    pre: &FirmwarePrecheck,
    source: &PackageSource,
) -> Result<Uploaded> {
    let pkg = package_of(pre, "upload")?;
    let name = pkg.file_name.clone();
    if let Some(done) = already_uploaded(client, pre, &pkg).await? {
        return Ok(done);
    }
    let url = format!(
        "{}/{}",
        source.base_url.trim_end_matches('/'),
        pkg.relative_path
    );
    const PATH: &str = "/tool/fetch";
    client
        .run_with_timeout(
            Command::new(PATH).attr("url", &url).attr("dst-path", &name),
            source.timeout,
        )
        .await
        .map_err(|e| NetopsError::device(PATH, e))?;
    crash_point("fetched");
    check_uploaded(client, pre, &pkg, name).await
}

/// The uploaded package as `/file` lists it: there, and the expected size, version and
/// architecture (a wrong file is removed and reported).
async fn check_uploaded(
    client: &Client,
    pre: &FirmwarePrecheck,
    pkg: &CachedPackage,
    name: String,
) -> Result<Uploaded> {
    let row = crate::device::wait_for_file(client, &name, Duration::from_secs(5)).await?;
    let row = match row {
        Some(_) => file_row(client, &name).await?,
        None => None,
    };
    let Some(row) = row else {
        return Err(NetopsError::PackageMismatch {
            file: name,
            detail: "not in /file after the fetch finished".into(),
        });
    };
    if let Some(detail) = check_row(&row, pre, pkg) {
        crate::device::remove_file_named(client, &name).await?;
        return Err(NetopsError::PackageMismatch { file: name, detail });
    }
    Ok(Uploaded {
        file_name: name,
        size: pkg.size,
        fetched: true,
    })
}

/// Install result: the reboot that installs the package has started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallStarted {
    /// Version before.
    pub from_version: String,
    /// Target version.
    pub target_version: String,
    /// Device clock just before the reboot.
    pub started_at: DeviceTime,
    /// The device already ran the target version (a resumed step): no reboot was done.
    pub already_current: bool,
}

/// Install: reboot so that RouterOS installs the uploaded package. If the device already
/// runs the target (the reboot of an earlier attempt installed it), does nothing.
#[tracing::instrument(skip_all, fields(target = %pre.target_version))]
pub async fn install(client: &Client, pre: &FirmwarePrecheck) -> Result<InstallStarted> {
    let pkg = package_of(pre, "install")?;
    let res = client
        .resources()
        .await
        .map_err(|e| NetopsError::device("/system/resource/print", e))?;
    let (now, _) = device_clock(client).await?;
    let current = version_text(&res.version);
    if current == pre.target_version {
        return Ok(InstallStarted {
            from_version: pre.current_version.clone(),
            target_version: pre.target_version.clone(),
            started_at: now,
            already_current: true,
        });
    }
    if file_row(client, &pkg.file_name).await?.is_none() {
        return Err(NetopsError::WrongState {
            step: "install",
            change: format!("firmware {}", pre.target_version),
            reason: format!("{} is not on the device: upload it first", pkg.file_name),
        });
    }
    client
        .reboot()
        .await
        .map_err(|e| NetopsError::device("/system/reboot", e))?;
    crash_point("reboot_requested");
    wait_closed(client, Duration::from_secs(30)).await;
    Ok(InstallStarted {
        from_version: current,
        target_version: pre.target_version.clone(),
        started_at: now,
        already_current: false,
    })
}

/// How long to wait for a device to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwaitOptions {
    /// Give up after this long ([`NetopsError::NotBack`], retryable).
    pub within: Duration,
    /// Pause between connection attempts.
    pub retry_every: Duration,
}

/// The device is back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Returned {
    /// Version it runs.
    pub version: String,
    /// When it booted (device clock).
    pub boot_time: DeviceTime,
}

/// Waits for the device to come back from the install reboot (or, when the install found
/// the target already running, just reaches it) and checks its version: back on the old
/// version is [`NetopsError::UpgradeFailed`].
#[tracing::instrument(skip_all, fields(target = %started.target_version))]
pub async fn await_version(
    config: &Config,
    started: &InstallStarted,
    opts: &AwaitOptions,
) -> Result<Returned> {
    // Already current: the reboot of an earlier install attempt (whose worker died before
    // journaling it) installed the target, and no reboot is coming: just check the version.
    let client = if started.already_current {
        connect_within(config, opts.within, opts.retry_every).await?
    } else {
        await_reboot(config, started.started_at, opts.within, opts.retry_every).await?
    };
    let res = client
        .resources()
        .await
        .map_err(|e| NetopsError::device("/system/resource/print", e))?;
    let (now, _) = device_clock(&client).await?;
    client.close().await;
    let version = version_text(&res.version);
    if version != started.target_version {
        return Err(NetopsError::UpgradeFailed {
            expected: started.target_version.clone(),
            actual: version,
        });
    }
    Ok(Returned {
        version,
        boot_time: now.minus(res.uptime),
    })
}

/// RouterBOARD firmware step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RouterboardFirmware {
    /// No RouterBOARD firmware (CHR, x86).
    NotRouterboard,
    /// `current-firmware` equals `upgrade-firmware`.
    UpToDate {
        /// Firmware version.
        current: String,
    },
    /// `/system/routerboard/upgrade` ran and the device is rebooting to apply it.
    UpgradeStarted {
        /// Firmware before.
        from: String,
        /// Firmware expected after the reboot.
        to: String,
        /// Device clock before the reboot.
        started_at: DeviceTime,
    },
}

/// Optional RouterBOARD firmware upgrade after a RouterOS upgrade: if `upgrade-firmware`
/// differs from `current-firmware`, stage it and reboot (MT-RB). Idempotent: once current,
/// reports [`RouterboardFirmware::UpToDate`].
pub async fn routerboard_upgrade(client: &Client) -> Result<RouterboardFirmware> {
    let rb = client
        .routerboard()
        .await
        .map_err(|e| NetopsError::device("/system/routerboard/print", e))?;
    let Some(rb) = rb.filter(|r| r.routerboard) else {
        return Ok(RouterboardFirmware::NotRouterboard);
    };
    let current = rb.current_firmware.clone().unwrap_or_default();
    if !rb.upgrade_pending() {
        return Ok(RouterboardFirmware::UpToDate { current });
    }
    let to = rb.upgrade_firmware.clone().unwrap_or_default();
    client
        .routerboard_upgrade()
        .await
        .map_err(|e| NetopsError::device("/system/routerboard/upgrade", e))?;
    crash_point("routerboard_staged");
    let (now, _) = device_clock(client).await?;
    client
        .reboot()
        .await
        .map_err(|e| NetopsError::device("/system/reboot", e))?;
    crash_point("reboot_requested");
    wait_closed(client, Duration::from_secs(30)).await;
    Ok(RouterboardFirmware::UpgradeStarted {
        from: current,
        to,
        started_at: now,
    })
}

/// Waits for the RouterBOARD firmware reboot and checks `current-firmware`; a no-op for
/// the other states.
pub async fn await_routerboard(
    config: &Config,
    step: &RouterboardFirmware,
    opts: &AwaitOptions,
) -> Result<RouterboardFirmware> {
    let RouterboardFirmware::UpgradeStarted { to, started_at, .. } = step else {
        return Ok(step.clone());
    };
    let client = await_reboot(config, *started_at, opts.within, opts.retry_every).await?;
    let rb = client
        .routerboard()
        .await
        .map_err(|e| NetopsError::device("/system/routerboard/print", e))?;
    client.close().await;
    let current = rb.and_then(|r| r.current_firmware).unwrap_or_default();
    if &current != to {
        return Err(NetopsError::UpgradeFailed {
            expected: format!("RouterBOARD firmware {to}"),
            actual: format!("RouterBOARD firmware {current}"),
        });
    }
    Ok(RouterboardFirmware::UpToDate { current })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let v7: routeros::Version = "7.19.4".parse().unwrap();
        assert_eq!(
            package_names(&v7, "arm64"),
            vec!["routeros-7.19.4-arm64.npk"]
        );
        assert_eq!(package_names(&v7, "x86_64")[0], "routeros-7.19.4.npk");
        let v6: routeros::Version = "6.49.13".parse().unwrap();
        assert_eq!(
            package_names(&v6, "mipsbe"),
            vec!["routeros-mipsbe-6.49.13.npk"]
        );
    }
}

//! `firmware_upgrade` v1: one device to a target RouterOS version: precheck, pre-upgrade
//! snapshot, upload (device-side fetch from the firmware cache, or an SFTP upload where
//! fetch is not allowed and the device has SSH access), install, await the version after
//! the reboot, and optionally the RouterBOARD firmware (a second reboot).

use std::sync::Arc;

use netledger_domain::device::SnapshotReason;
use netledger_domain::workflow::card::{FirmwareInput, FirmwareOutput};
use netledger_engine::{Ctx, Finish, StepError};

use super::adapter::{NetopsDeps, SnapshotRecorded, device_step, resolve_step, step_error};
use crate::ChangeId;
use crate::firmware::{
    self, FirmwareAction, FirmwarePrecheck, FirmwareTarget, InstallStarted, PackageDelivery,
    PackageSource, RouterboardFirmware,
};

/// Refuses a package the tenant's own events did not pin: its last `FirmwarePackageCached`
/// for the version and file must carry the SHA-256 precheck computed from the cached file
/// (a file put there by anything but the tenant's upload, or changed since, is refused before
/// any device fetches or installs it).
async fn check_pinned(
    d: &NetopsDeps,
    tenant: netledger_domain::TenantId,
    pre: &FirmwarePrecheck,
) -> Result<(), StepError> {
    let Some(pkg) = &pre.package else {
        return Ok(());
    };
    let mut tx = netledger_store::begin_tenant(&d.app, tenant)
        .await
        .map_err(StepError::retryable)?;
    let pin =
        netledger_store::firmware::pinned(&mut tx, tenant, &pre.target_version, &pkg.file_name)
            .await
            .map_err(StepError::retryable)?;
    tx.commit().await.map_err(StepError::retryable)?;
    match pin {
        None => Err(StepError::fatal(format!(
            "{} of RouterOS {} was never uploaded by this tenant: upload it with PUT \
             /api/v1/firmware/{}/{}",
            pkg.file_name, pre.target_version, pre.target_version, pkg.file_name
        ))),
        Some(p) if p.sha256 != pkg.sha256 => {
            tracing::warn!(%tenant, file = %pkg.file_name, pinned = %p.sha256, found = %pkg.sha256, "cached firmware does not match its pin");
            Err(StepError::fatal(format!(
                "the cached {} has SHA-256 {}, not the {} this tenant uploaded: refusing to \
                 install it (upload the package again)",
                pkg.file_name, pkg.sha256, p.sha256
            )))
        }
        Some(_) => Ok(()),
    }
}

/// `<firmware_base_url>/d/<token>`: where `device` may fetch the prechecked package.
async fn download_base(
    d: &NetopsDeps,
    tenant: netledger_domain::TenantId,
    device: netledger_domain::DeviceId,
    pre: &FirmwarePrecheck,
) -> Result<String, StepError> {
    let Some(pkg) = &pre.package else {
        return Ok(d.firmware_base_url.clone());
    };
    let key = super::DownloadKey::load_or_create(&d.firmware_cache)
        .await
        .map_err(StepError::retryable)?;
    let ttl = i64::try_from(d.options.fetch_timeout.as_secs()).unwrap_or(i64::MAX / 2) + 120;
    let token = key
        .mint(&super::DownloadGrant {
            tenant,
            device,
            version: pre.target_version.clone(),
            file_name: pkg.file_name.clone(),
            sha256: pkg.sha256.clone(),
            expires: d.clock.now().unix_timestamp().saturating_add(ttl),
        })
        .ok_or_else(|| StepError::fatal("cannot sign a firmware download token"))?;
    Ok(format!(
        "{}/d/{token}",
        d.firmware_base_url.trim_end_matches('/')
    ))
}

pub(super) async fn firmware_upgrade(
    mut ctx: Ctx,
    input: FirmwareInput,
    d: Arc<NetopsDeps>,
) -> Result<Finish<FirmwareOutput>, StepError> {
    let tenant = ctx.tenant();
    let wf = ctx.workflow_id();
    let corr = ctx.correlation_id();
    let target = resolve_step(&mut ctx, &d, input.device_id).await?;
    // Only the tenant's own part of the cache, and only what its own upload event pinned.
    let fw = FirmwareTarget {
        version: input.version.clone(),
        cache_dir: netledger_store::firmware::tenant_dir(&d.firmware_cache, tenant),
    };
    let pre: FirmwarePrecheck = device_step(&mut ctx, &d, "precheck", || async {
        let pre = d
            .with_files(tenant, &target, async |f| {
                firmware::precheck_via(f, &fw, d.options.firmware_fetch).await
            })
            .await?;
        check_pinned(&d, tenant, &pre).await?;
        Ok(pre)
    })
    .await?;
    if pre.action == FirmwareAction::AlreadyCurrent {
        return Ok(Finish::succeeded(FirmwareOutput::AlreadyCurrent {
            version: input.version,
            already_current: true,
        }));
    }
    if ctx.cancelled() {
        return Ok(Finish::cancelled(
            "cancelled before the device was changed",
            FirmwareOutput::NotStarted {},
        ));
    }
    let id = ChangeId::parse(format!("fw-{}", wf.as_uuid().simple()))
        .map_err(|e| StepError::fatal(e.to_string()))?;
    let snap: SnapshotRecorded = device_step(&mut ctx, &d, "snapshot", || {
        d.snapshot(tenant, &target, wf, corr, &id, SnapshotReason::PrePush)
    })
    .await?;
    let _: firmware::Uploaded = device_step(&mut ctx, &d, "upload", || async {
        // A download token for this device and package, minted per attempt and valid a
        // little longer than the fetch may take: the package server refuses anything else.
        let base_url = match pre.delivery {
            PackageDelivery::Fetch => download_base(&d, tenant, target.device_id, &pre).await?,
            PackageDelivery::Sftp => d.firmware_base_url.clone(),
        };
        let source = PackageSource {
            base_url,
            timeout: d.options.fetch_timeout,
        };
        d.with_files(tenant, &target, async |f| {
            firmware::upload_via(f, &pre, &source, &fw.cache_dir).await
        })
        .await
    })
    .await?;
    if ctx.cancelled() {
        return Ok(Finish::cancelled(
            "cancelled before the install (package uploaded)",
            FirmwareOutput::NotStarted {},
        ));
    }
    let started: InstallStarted = device_step(&mut ctx, &d, "install", || {
        d.with_client(tenant, &target, async |c| firmware::install(c, &pre).await)
    })
    .await?;
    let awaited: Result<firmware::Returned, StepError> =
        device_step(&mut ctx, &d, "await_version", || async {
            let cfg = d.config(tenant, &target).await?;
            firmware::await_version(&cfg, &started, &d.options.await_reboot)
                .await
                .map_err(step_error)
        })
        .await;
    let back = match awaited {
        Ok(b) => b,
        Err(e) => {
            return Ok(Finish::failed(
                &e.to_string(),
                FirmwareOutput::Failed {
                    pre_commit: snap.commit,
                    target: input.version,
                },
            ));
        }
    };
    let mut rb_out = None;
    if input.routerboard {
        let rb: RouterboardFirmware = device_step(&mut ctx, &d, "routerboard_upgrade", || {
            d.with_client(tenant, &target, async |c| {
                firmware::routerboard_upgrade(c).await
            })
        })
        .await?;
        let rb = if matches!(rb, RouterboardFirmware::UpgradeStarted { .. }) {
            device_step(&mut ctx, &d, "await_routerboard", || async {
                let cfg = d.config(tenant, &target).await?;
                firmware::await_routerboard(&cfg, &rb, &d.options.await_reboot)
                    .await
                    .map_err(step_error)
            })
            .await?
        } else {
            rb
        };
        rb_out = Some(rb);
    }
    let routerboard = rb_out
        .map(|rb| serde_json::to_value(rb).map_err(StepError::fatal))
        .transpose()?;
    // upgraded: the pre-upgrade backup (encrypted, archived) leaves the device
    // (before RouterOS 7.13 the backup could not be read back: the device copy is the only one)
    let keep: Vec<String> = if snap.backup_blob.is_none() {
        vec![format!("{}.backup", id.backup_stem())]
    } else {
        Vec::new()
    };
    super::config_push::cleanup_ids(&mut ctx, &d, &target, std::slice::from_ref(&id), &keep).await;
    Ok(Finish::succeeded(FirmwareOutput::Upgraded {
        version: back.version,
        pre_commit: snap.commit,
        routerboard,
    }))
}

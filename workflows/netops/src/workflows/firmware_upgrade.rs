//! `firmware_upgrade` v1: one device to a target RouterOS version: precheck, pre-upgrade
//! snapshot, upload (device-side fetch from the firmware cache), install, await the version
//! after the reboot, and optionally the RouterBOARD firmware (a second reboot).

use std::sync::Arc;

use netledger_domain::device::SnapshotReason;
use netledger_domain::workflow::card::{FirmwareInput, FirmwareOutput};
use netledger_engine::{Ctx, Finish, StepError};

use super::adapter::{NetopsDeps, SnapshotRecorded, device_step, resolve_step, step_error};
use crate::ChangeId;
use crate::firmware::{
    self, FirmwareAction, FirmwarePrecheck, FirmwareTarget, InstallStarted, PackageSource,
    RouterboardFirmware,
};

pub(super) async fn firmware_upgrade(
    mut ctx: Ctx,
    input: FirmwareInput,
    d: Arc<NetopsDeps>,
) -> Result<Finish<FirmwareOutput>, StepError> {
    let tenant = ctx.tenant();
    let wf = ctx.workflow_id();
    let corr = ctx.correlation_id();
    let target = resolve_step(&mut ctx, &d, input.device_id).await?;
    let fw = FirmwareTarget {
        version: input.version.clone(),
        cache_dir: d.firmware_cache.clone(),
    };
    let pre: FirmwarePrecheck = device_step(&mut ctx, &d, "precheck", || {
        d.with_client(tenant, &target, async |c| firmware::precheck(c, &fw).await)
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
    let source = PackageSource {
        base_url: d.firmware_base_url.clone(),
        timeout: d.options.fetch_timeout,
    };
    let _: firmware::Uploaded = device_step(&mut ctx, &d, "upload", || {
        d.with_client(tenant, &target, async |c| {
            firmware::upload(c, &pre, &source).await
        })
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

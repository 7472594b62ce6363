//! `backup` v1: an on-demand snapshot of one device (export archived, backup encrypted and
//! stored as a blob, `ConfigSnapshotRecorded` appended), then step `cleanup` removes the
//! device's copy of the (password-encrypted) backup.

use std::sync::Arc;

use netledger_domain::device::SnapshotReason;
use netledger_domain::workflow::card::{BackupInput, BackupOutput};
use netledger_engine::{Ctx, Finish, StepError};

use super::adapter::{NetopsDeps, SnapshotRecorded, device_step, resolve_step};
use crate::ChangeId;

pub(super) async fn backup(
    mut ctx: Ctx,
    input: BackupInput,
    d: Arc<NetopsDeps>,
) -> Result<Finish<BackupOutput>, StepError> {
    let tenant = ctx.tenant();
    let wf = ctx.workflow_id();
    let corr = ctx.correlation_id();
    let target = resolve_step(&mut ctx, &d, input.device_id).await?;
    let id = ChangeId::parse(format!("bk-{}", wf.as_uuid().simple()))
        .map_err(|e| StepError::fatal(e.to_string()))?;
    let snap: SnapshotRecorded = device_step(&mut ctx, &d, "snapshot", || {
        d.snapshot(tenant, &target, wf, corr, &id, SnapshotReason::OnDemand)
    })
    .await?;
    // the backup is archived (sealed): the device copy is not needed
    // (before RouterOS 7.13 the backup could not be read back: the device copy is the only one)
    let keep: Vec<String> = if snap.backup_blob.is_none() {
        vec![format!("{}.backup", id.backup_stem())]
    } else {
        Vec::new()
    };
    super::config_push::cleanup_ids(&mut ctx, &d, &target, std::slice::from_ref(&id), &keep).await;
    Ok(Finish::succeeded(BackupOutput {
        commit: snap.commit,
        sha256: snap.sha256,
        changed: snap.changed,
        backup_blob: snap.backup_blob,
    }))
}

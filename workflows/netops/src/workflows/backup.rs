//! `backup` v1: an on-demand snapshot of one device (export archived, backup encrypted and
//! stored as a blob, `ConfigSnapshotRecorded` appended).

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
    Ok(Finish::succeeded(BackupOutput {
        commit: snap.commit,
        sha256: snap.sha256,
        changed: snap.changed,
        backup_blob: snap.backup_blob,
    }))
}

//! `backup` v1: an on-demand snapshot of one device (export archived, backup encrypted and
//! stored as a blob, `ConfigSnapshotRecorded` appended).

use std::sync::Arc;

use netledger_domain::DeviceId;
use netledger_domain::device::SnapshotReason;
use netledger_engine::{Ctx, Finish, StepError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::adapter::{NetopsDeps, SnapshotRecorded, device_step, resolve_step};
use crate::ChangeId;

/// Input of `backup` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInput {
    /// The device.
    pub device_id: DeviceId,
}

pub(super) async fn backup(mut ctx: Ctx, d: Arc<NetopsDeps>) -> Result<Finish, StepError> {
    let input: BackupInput = ctx.input()?;
    let tenant = ctx.tenant();
    let wf = ctx.workflow_id();
    let target = resolve_step(&mut ctx, &d, input.device_id).await?;
    let id = ChangeId::parse(format!("bk-{}", wf.as_uuid().simple()))
        .map_err(|e| StepError::fatal(e.to_string()))?;
    let snap: SnapshotRecorded = device_step(&mut ctx, &d, "snapshot", || {
        d.snapshot(tenant, &target, wf, &id, SnapshotReason::OnDemand)
    })
    .await?;
    Ok(Finish::succeeded(json!({
        "commit": snap.commit, "sha256": snap.sha256, "changed": snap.changed,
        "backup_blob": snap.backup_blob,
    })))
}

//! `config_restore` v1: puts one device back at the configuration it had before a committed
//! `config_push` (the push's own pre-change snapshot), unless the device was changed after
//! that push, in which case it refuses and leaves the device alone. The `rollout` workflow
//! starts one per committed device when its failure threshold halts it with
//! `rollback_on_halt` (`docs/push.md`, "Rollouts").
//!
//! Steps: `push_record` (what the push journaled: its pre-push snapshot, its armed timer, the
//! normalised hash of what it committed), `resolve`, `restore` (out-of-band check, then the
//! push's own "restore now" rollback: `/system/backup/load` of the snapshot backup still on
//! the device, reboot, hash confirmed), `verify` (a fresh snapshot, archived, compared with
//! the pre-push snapshot by normalised hash and by the archive's content hash).
//!
//! Owns: the restore decision ([`decide`]) and what it journals. Does not own: the device
//! operations (`crate::push::rollback`), the archive, the rollout's bookkeeping.

use std::sync::Arc;

use crate::files::Files;
use netledger_domain::device::SnapshotReason;
use netledger_domain::workflow::card::{
    ConfigPush, ConfigRestore, RestoreInput, RestoreOutput, WorkflowCard,
};
use netledger_domain::workflow::{
    Outcome, WorkflowFinished, WorkflowStarted, WorkflowStepCompleted,
};
use netledger_domain::{DeviceId, EventType, TenantId, WorkflowId};
use netledger_engine::{Ctx, Finish, RetryPolicy, StepError, StepOptions};
use netledger_store::{Direction, EventReader};
use routeros::menus::{ExportOptions, Sensitive};
use serde::{Deserialize, Serialize};

use super::PushInput;
use super::adapter::{
    NetopsDeps, SealedSecret, SnapshotRecorded, device_step, resolve_step, step_error,
};
use crate::{Armed, ChangeId, NetopsError, RollbackMethod, RolledBack, Snapshot};

/// The definition's kind (the card's).
pub const RESTORE_KIND: &str = ConfigRestore::KIND;

/// What the push journaled that the restore needs (step `push_record`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushRecord {
    /// The push's change id.
    pub change_id: ChangeId,
    /// The pre-push snapshot: backup file on the device and the normalised hash to reach.
    pub pre: Snapshot,
    /// Archive commit of the pre-push export.
    pub pre_commit: String,
    /// The archive's content hash of the pre-push export.
    pub pre_archive_sha256: String,
    /// The push's armed timer (last extension), which its rollback reads.
    pub armed: Armed,
    /// Normalised hash of the configuration the push committed (its `post_snapshot`);
    /// `None` when that snapshot failed.
    pub committed_sha256: Option<String>,
    /// The archived (sealed) pre-push backup blob: uploaded again when the device's copy was
    /// cleaned up.
    #[serde(default)]
    pub pre_backup_blob: Option<String>,
    /// The pre-push backup's password, sealed.
    #[serde(default)]
    pub pre_backup_password: Option<SealedSecret>,
}

/// What the restore step should do, given the device's configuration now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Already at the pre-push snapshot: nothing to do.
    AlreadyAtSnapshot,
    /// Exactly what the push committed: restore the snapshot.
    Restore,
    /// Anything else: changed after the push; refuse with this reason.
    Refuse(String),
}

/// The restore decision: the device's normalised configuration hash now against the
/// pre-push snapshot's and the one recorded right after the push committed.
pub fn decide(record: &PushRecord, current_sha256: &str) -> Decision {
    if current_sha256 == record.pre.normalised_sha256 {
        return Decision::AlreadyAtSnapshot;
    }
    match &record.committed_sha256 {
        Some(c) if c == current_sha256 => Decision::Restore,
        Some(c) => Decision::Refuse(format!(
            "the configuration was changed after the push committed (normalised sha256 \
             {current_sha256}, the push left {c}): restoring the pre-push snapshot would undo \
             that change too; left alone"
        )),
        None => Decision::Refuse(
            "the push recorded no post-push snapshot, so a later out-of-band change cannot be \
             told apart from its own; left alone, restore it by hand"
                .to_owned(),
        ),
    }
}

/// Output of step `restore`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum RestoreStep {
    /// The device held what the push committed; it was restored.
    Restored {
        /// How the push's rollback got it there.
        rolled_back: RolledBack,
    },
    /// The device already was at the pre-push snapshot (a previous attempt of this step
    /// restored it, or someone did by hand).
    AlreadyAtSnapshot,
    /// Changed after the push: left alone.
    Refused {
        /// Why.
        reason: String,
        /// Normalised hash of the configuration found.
        current_sha256: String,
    },
}

/// Reads the push's journal: refused (inner `Err`) when it is not a committed `config_push`
/// of `device` with a pre-push snapshot and an armed timer.
async fn push_record(
    d: &NetopsDeps,
    tenant: TenantId,
    device: DeviceId,
    push: WorkflowId,
) -> Result<Result<PushRecord, String>, StepError> {
    let events = EventReader::tenant(d.app.clone(), tenant)
        .read_stream(&push.stream(), 1, Direction::Forward, 10_000)
        .await
        .map_err(|e| StepError::retryable(format!("read the journal of push {push}: {e}")))?;
    let mut kind_ok = false;
    let mut device_ok = false;
    let mut outcome = None;
    let mut pre: Option<SnapshotRecorded> = None;
    let mut post: Option<SnapshotRecorded> = None;
    let mut armed: Option<Armed> = None;
    for e in &events {
        match e.event_type.as_str() {
            WorkflowStarted::TYPE => {
                let s: WorkflowStarted = decode(push, &e.payload)?;
                kind_ok = s.kind == ConfigPush::KIND;
                device_ok = serde_json::from_value::<PushInput>(s.input)
                    .is_ok_and(|i| i.device_id == device);
            }
            WorkflowStepCompleted::TYPE => {
                let s: WorkflowStepCompleted = decode(push, &e.payload)?;
                match s.step.as_str() {
                    "snapshot" => pre = Some(decode(push, &s.output)?),
                    "post_snapshot" => post = Some(decode(push, &s.output)?),
                    "arm" => armed = Some(decode(push, &s.output)?),
                    x if x.starts_with("extend-") => armed = Some(decode(push, &s.output)?),
                    _ => {}
                }
            }
            WorkflowFinished::TYPE => {
                let f: WorkflowFinished = decode(push, &e.payload)?;
                outcome = Some(f.outcome);
            }
            _ => {}
        }
    }
    if !kind_ok || !device_ok {
        return Ok(Err(format!(
            "workflow {push} is not a config_push of device {device}"
        )));
    }
    if outcome != Some(Outcome::Committed) {
        return Ok(Err(format!(
            "push {push} did not commit ({}): there is nothing of it to restore",
            outcome.map_or_else(|| "still running".to_owned(), |o| format!("{o:?}"))
        )));
    }
    let (Some(pre), Some(armed)) = (pre, armed) else {
        return Ok(Err(format!(
            "push {push} journaled no pre-push snapshot or armed timer"
        )));
    };
    Ok(Ok(PushRecord {
        change_id: pre.snapshot.change_id.clone(),
        pre_backup_blob: pre.backup_blob.clone(),
        pre_backup_password: pre.backup_password.clone(),
        pre_commit: pre.commit,
        pre_archive_sha256: pre.sha256,
        pre: pre.snapshot,
        armed,
        committed_sha256: post.map(|p| p.snapshot.normalised_sha256),
    }))
}

/// The JSON text of a unit-variant enum (`restored_now`).
fn enum_text<T: Serialize>(v: &T) -> Result<String, StepError> {
    match serde_json::to_value(v).map_err(StepError::fatal)? {
        serde_json::Value::String(s) => Ok(s),
        other => Err(StepError::fatal(format!("not a unit variant: {other}"))),
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    push: WorkflowId,
    v: &serde_json::Value,
) -> Result<T, StepError> {
    T::deserialize(v)
        .map_err(|e| StepError::fatal(format!("the journal of push {push} does not decode: {e}")))
}

/// Normalised sha256 of the running configuration (export to a temporary file named after
/// `id`, removed afterwards).
async fn configuration_sha256(files: &Files<'_>, id: &ChangeId) -> Result<String, NetopsError> {
    let client = files.client();
    let prefix = crate::device::storage_prefix(client).await?;
    let opts = ExportOptions {
        file: format!("{prefix}{}", id.export_stem()),
        sensitive: Sensitive::Hide,
        terse: false,
        verbose: false,
    };
    let sha = crate::push::normalised_sha256(&files.export(&opts).await?)?;
    // a leftover temporary export is harmless; the next restore or cleanup removes it
    let _ = crate::device::remove_file_named(client, &format!("{prefix}{}.rsc", id.export_stem()))
        .await;
    Ok(sha)
}

fn refused(device: DeviceId, push: WorkflowId, reason: &str) -> Finish<RestoreOutput> {
    Finish::failed(
        &format!("restore refused: {reason}"),
        RestoreOutput::Refused {
            reason: reason.to_owned(),
            device_id: device,
            push_workflow_id: push,
        },
    )
}

fn failed(device: DeviceId, push: WorkflowId, reason: &str) -> Finish<RestoreOutput> {
    Finish::failed(
        &format!("restore failed: {reason}"),
        RestoreOutput::Failed {
            reason: reason.to_owned(),
            device_id: device,
            push_workflow_id: push,
        },
    )
}

/// The `config_restore` v1 definition's function.
pub(super) async fn config_restore(
    mut ctx: Ctx,
    input: RestoreInput,
    d: Arc<NetopsDeps>,
) -> Result<Finish<RestoreOutput>, StepError> {
    let tenant = ctx.tenant();
    let wf = ctx.workflow_id();
    let corr = ctx.correlation_id();
    let (device, push) = (input.device_id, input.push_workflow_id);
    let record: Result<PushRecord, String> = ctx
        .step("push_record", || push_record(&d, tenant, device, push))
        .await?;
    let record = match record {
        Ok(r) => r,
        Err(reason) => return Ok(refused(device, push, &reason)),
    };
    let target = resolve_step(&mut ctx, &d, device).await?;
    let id = ChangeId::parse(format!("rs-{}", wf.as_uuid().simple()))
        .map_err(|e| StepError::fatal(e.to_string()))?;
    let opts = d.options.clone();
    let restored: Result<RestoreStep, StepError> = ctx
        .step_with(
            "restore",
            StepOptions::default()
                .retry(RetryPolicy::attempts(10))
                .timeout(opts.step_timeout),
            || async {
                let sha = d
                    .with_files(tenant, &target, async |f| {
                        configuration_sha256(f, &id).await
                    })
                    .await?;
                match decide(&record, &sha) {
                    Decision::AlreadyAtSnapshot => Ok(RestoreStep::AlreadyAtSnapshot),
                    Decision::Refuse(reason) => Ok(RestoreStep::Refused {
                        reason,
                        current_sha256: sha,
                    }),
                    Decision::Restore => {
                        // the push cleaned up its files: put the archived backup back
                        // when the device's copy is gone, then load it
                        let bytes = d.archived_backup(tenant, device, &record).await?;
                        if let Some(bytes) = &bytes {
                            d.with_files(tenant, &target, async |f| {
                                crate::push::upload_backup_via(f, &record.pre, bytes).await
                            })
                            .await?;
                        }
                        let password = d
                            .backup_password(
                                tenant,
                                device,
                                record.pre_backup_blob.as_deref(),
                                record.pre_backup_password.as_ref(),
                            )
                            .await?;
                        let (cfg, ssh) = d.access(tenant, &target).await?;
                        let r = crate::push::restore_snapshot_via(
                            &cfg,
                            ssh.as_ref(),
                            &record.pre,
                            &opts.rollback,
                            password.as_ref(),
                        )
                        .await
                        .map_err(step_error)?;
                        Ok(RestoreStep::Restored { rolled_back: r })
                    }
                }
            },
        )
        .await;
    let method = match restored {
        Ok(RestoreStep::Refused { reason, .. }) => return Ok(refused(device, push, &reason)),
        Ok(RestoreStep::AlreadyAtSnapshot) => RollbackMethod::AlreadyAtSnapshot,
        Ok(RestoreStep::Restored { rolled_back }) if rolled_back.matches_snapshot => {
            rolled_back.method
        }
        Ok(RestoreStep::Restored { rolled_back }) => {
            return Ok(failed(
                device,
                push,
                &format!(
                    "the push's change is no longer marked as applied on the device, nothing \
                     was restored (normalised sha256 {})",
                    rolled_back.normalised_sha256
                ),
            ));
        }
        Err(e) => return Ok(failed(device, push, &e.to_string())),
    };
    // From a fresh connection: a snapshot of the result, archived like any other, compared
    // with the pre-push snapshot (normalised hash) and its archived text (content hash).
    let after: Result<SnapshotRecorded, StepError> = device_step(&mut ctx, &d, "verify", || {
        d.snapshot(tenant, &target, wf, corr, &id, SnapshotReason::PostPush)
    })
    .await;
    // the uploaded pre-push backup and this restore's own snapshot leave the device
    super::config_push::cleanup_ids(
        &mut ctx,
        &d,
        &target,
        &[record.change_id.clone(), id.clone()],
        &[],
    )
    .await;
    let after = match after {
        Ok(a) => a,
        Err(e) => {
            return Ok(failed(
                device,
                push,
                &format!("could not verify the restore: {e}"),
            ));
        }
    };
    if after.snapshot.normalised_sha256 != record.pre.normalised_sha256
        || after.sha256 != record.pre_archive_sha256
    {
        return Ok(failed(
            device,
            push,
            &format!(
                "the device is not at the pre-push snapshot after the restore (normalised \
                 sha256 {} expected {}; archived {} expected {})",
                after.snapshot.normalised_sha256,
                record.pre.normalised_sha256,
                after.sha256,
                record.pre_archive_sha256
            ),
        ));
    }
    Ok(Finish::rolled_back(
        &format!(
            "restored to the configuration before push {push} (change {})",
            record.change_id
        ),
        RestoreOutput::Restored {
            method: enum_text(&method)?,
            device_id: device,
            push_workflow_id: push,
            change_id: record.change_id.as_str().to_owned(),
            pre_commit: record.pre_commit,
            post_restore_commit: after.commit,
            normalised_sha256: after.snapshot.normalised_sha256,
        },
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn record(committed: Option<&str>) -> PushRecord {
        let t = crate::DeviceTime::parse("2026-01-02", "03:04:05")
            .unwrap()
            .0;
        let id = ChangeId::parse("ro-1").unwrap();
        PushRecord {
            change_id: id.clone(),
            pre: Snapshot {
                change_id: id.clone(),
                backup_file: "netledger-snap-ro-1.backup".into(),
                export_sha256: "e".into(),
                normalised_sha256: "pre".into(),
                backup_sha256: None,
                backup_size: None,
                device_version: "7.16.2".into(),
                taken_at: t,
                encrypted: false,
            },
            pre_commit: "c".into(),
            pre_archive_sha256: "a".into(),
            armed: Armed {
                change_id: id.clone(),
                scheduler_name: id.scheduler_name(),
                backup_file: "netledger-snap-ro-1.backup".into(),
                armed_at: t,
                fires_at_device_time: t,
                date_style: crate::DateStyle::Iso,
                timer_effective: true,
            },
            committed_sha256: committed.map(str::to_owned),
            pre_backup_blob: None,
            pre_backup_password: None,
        }
    }

    #[test]
    fn restores_only_what_the_push_left() {
        assert_eq!(decide(&record(Some("post")), "post"), Decision::Restore);
        assert_eq!(
            decide(&record(Some("post")), "pre"),
            Decision::AlreadyAtSnapshot
        );
        assert!(matches!(
            decide(&record(Some("post")), "other"),
            Decision::Refuse(r) if r.contains("changed after the push")
        ));
        assert!(matches!(
            decide(&record(None), "post"),
            Decision::Refuse(r) if r.contains("no post-push snapshot")
        ));
    }
}

//! `config_push` v1: one configuration change on one device, two-phase: probe, scheduler
//! gate, pre-push snapshot, validate, arm the device-side rollback timer, apply, verify
//! (extending the timer between attempts), then commit or roll back, and a post-push
//! snapshot. From `arm` on, every way out goes through commit or rollback.

use std::sync::Arc;

use netledger_domain::device::SnapshotReason;
use netledger_domain::workflow::card::{PushInput, PushOutput};
use netledger_engine::{Ctx, Finish, RetryPolicy, StepError, StepOptions};

use super::adapter::{
    NetopsDeps, SnapshotRecorded, Target, device_step, redact_step_error, resolve_step, step_error,
};
use crate::{
    Applied, ArmOptions, Armed, Change, ChangeId, Committed, DeviceProbe, RolledBack,
    SchedulerGate, Validated, Verification,
};

/// Why a push ends in a rollback.
struct RollbackCause {
    reason: String,
    cancelled: bool,
}

impl RollbackCause {
    /// Step `step` failed with `e`: a [`StepError::Cancelled`] is a cancel the push had not
    /// seen yet (it arrived while the step's attempt was interrupted by a crash, and the
    /// engine refused to run the step again), so the push unwinds as cancelled.
    fn failed(step: &str, e: &StepError) -> Self {
        match e {
            StepError::Cancelled => Self {
                reason: format!("cancelled during {step}"),
                cancelled: true,
            },
            e => Self {
                reason: format!("{step} failed: {e}"),
                cancelled: false,
            },
        }
    }
}

pub(super) async fn config_push(
    mut ctx: Ctx,
    input: PushInput,
    d: Arc<NetopsDeps>,
) -> Result<Finish<PushOutput>, StepError> {
    let tenant = ctx.tenant();
    let wf = ctx.workflow_id();
    let corr = ctx.correlation_id();
    let id =
        ChangeId::parse(input.change_id.clone()).map_err(|e| StepError::fatal(e.to_string()))?;
    // The input's script is masked (it is journaled); the steps that need the real one
    // (validate, apply) decrypt it in memory and keep its secrets out of their errors.
    let real = async || {
        d.real_script(tenant, &input.script, input.sealed_script)
            .await
    };
    let policy = input.policy.clone().unwrap_or_default();
    let target = resolve_step(&mut ctx, &d, input.device_id).await?;
    let probe: DeviceProbe = device_step(&mut ctx, &d, "probe", || {
        d.with_client(tenant, &target, async |c| crate::probe(c).await)
    })
    .await?;
    let allow = input.allow_without_timer;
    let gate: Result<SchedulerGate, String> = ctx
        .step("scheduler_gate", || {
            let probe = probe.clone();
            async move { Ok(crate::require_scheduler(&probe, allow).map_err(|e| e.to_string())) }
        })
        .await?;
    let gate = match gate {
        Ok(g) => g,
        Err(reason) => {
            return Ok(Finish::failed(
                &reason,
                PushOutput::Refused {
                    stage: "scheduler_gate".to_owned(),
                },
            ));
        }
    };
    if ctx.cancelled() {
        return Ok(Finish::cancelled(
            "cancelled before the device was changed",
            PushOutput::NotStarted {},
        ));
    }
    // Any Netledger rollback timer on the device (another push's, left armed by a failed
    // rollback or a crash) could fire later and revert this change: refuse, and record the
    // condition on the device stream for an operator to resolve.
    let timers: Result<(), String> = device_step(&mut ctx, &d, "timer_gate", || async {
        let own = id.scheduler_name();
        let found: Vec<String> = d
            .with_client(tenant, &target, async |c| {
                crate::device::rollback_timers(c).await
            })
            .await?
            .into_iter()
            .filter(|t| *t != own)
            .collect();
        let reason = crate::NetopsError::ForeignRollbackTimer {
            step: "arm",
            change: id.to_string(),
            timers: found.clone(),
        }
        .to_string();
        d.timer_condition(
            tenant,
            target.device_id,
            wf,
            corr,
            "timer_gate",
            &found,
            "refused_arm",
            &reason,
        )
        .await?;
        Ok(if found.is_empty() {
            Ok(())
        } else {
            Err(reason)
        })
    })
    .await?;
    if let Err(reason) = timers {
        return Ok(Finish::failed(
            &reason,
            PushOutput::Refused {
                stage: "timer_gate".to_owned(),
            },
        ));
    }
    let snap: SnapshotRecorded = device_step(&mut ctx, &d, "snapshot", || {
        d.snapshot(tenant, &target, wf, corr, &id, SnapshotReason::PrePush)
    })
    .await?;
    if ctx.cancelled() {
        return Ok(Finish::cancelled(
            "cancelled before the device was changed",
            PushOutput::NotStarted {},
        ));
    }
    let validated: Validated = device_step(&mut ctx, &d, "validate", || async {
        let archive = d.archive.clone();
        let commit = snap.commit.clone();
        let device = target.device_id;
        let export = tokio::task::spawn_blocking(move || archive.read(tenant, device, &commit))
            .await
            .map_err(|e| StepError::retryable(format!("archive task: {e}")))?
            .map_err(|e| StepError::retryable(format!("read the snapshot export: {e}")))?;
        let real = real().await?;
        let change = Change::new(id.clone(), real.script.as_str());
        d.with_files(tenant, &target, async |f| {
            crate::push::validate_via(f, &probe, &change, &export, &policy).await
        })
        .await
        .map_err(|e| redact_step_error(e, &real.secrets))
    })
    .await?;
    if ctx.cancelled() {
        return Ok(Finish::cancelled(
            "cancelled before the device was changed",
            PushOutput::NotStarted {},
        ));
    }
    let opts = d.options.clone();
    let arm = ArmOptions {
        window: opts.verify.reachable_within * 2 + opts.arm_margin,
        allow_without_timer: gate.overridden,
    };
    let mut armed: Armed = device_step(&mut ctx, &d, "arm", || async {
        let password = snap.password(&d, tenant, target.device_id).await?;
        d.with_files(tenant, &target, async |f| {
            crate::push::arm_via(f, &snap.snapshot, &arm, password.as_ref()).await
        })
        .await
    })
    .await?;
    // From here on, every way out goes through commit or rollback.
    let cause = 'push: {
        if ctx.cancelled() {
            break 'push RollbackCause {
                reason: "cancelled after arm".into(),
                cancelled: true,
            };
        }
        let applied: Result<Applied, StepError> = device_step(&mut ctx, &d, "apply", || async {
            let real = real().await?;
            let change = Change::new(id.clone(), real.script.as_str());
            d.with_files(tenant, &target, async |f| {
                crate::push::apply_via(f, &change, &armed).await
            })
            .await
            .map_err(|e| redact_step_error(e, &real.secrets))
        })
        .await;
        if let Err(e) = applied {
            break 'push RollbackCause::failed("apply", &e);
        }
        let mut verified = None;
        for attempt in 1..=opts.verify_attempts.max(1) {
            if ctx.cancelled() {
                break 'push RollbackCause {
                    reason: "cancelled after apply".into(),
                    cancelled: true,
                };
            }
            if attempt > 1 {
                let window = arm.window;
                let extended: Result<Armed, StepError> =
                    device_step(&mut ctx, &d, &format!("extend-{attempt}"), || {
                        d.with_client(tenant, &target, async |c| {
                            crate::extend(c, &armed, window).await
                        })
                    })
                    .await;
                match extended {
                    Ok(a) => armed = a,
                    Err(e @ StepError::Cancelled) => {
                        break 'push RollbackCause::failed("extend", &e);
                    }
                    Err(e) => {
                        break 'push RollbackCause {
                            reason: format!("could not extend the rollback timer: {e}"),
                            cancelled: false,
                        };
                    }
                }
            }
            let v: Result<Verification, StepError> = ctx
                .step_with(
                    &format!("verify-{attempt}"),
                    StepOptions::default()
                        .retry(RetryPolicy::none())
                        .timeout(opts.step_timeout),
                    || async {
                        let (cfg, ssh) = d.access(tenant, &target).await?;
                        crate::push::verify_via(
                            &cfg,
                            ssh.as_ref(),
                            &validated,
                            &input.checks,
                            &opts.verify,
                        )
                        .await
                        .map_err(step_error)
                    },
                )
                .await;
            match v {
                Ok(Verification::Verified(v)) => {
                    verified = Some(v);
                    break;
                }
                Ok(Verification::Failed(f)) => {
                    break 'push RollbackCause {
                        reason: format!("verification failed: {:?}", f.reason),
                        cancelled: false,
                    };
                }
                Err(e) if attempt == opts.verify_attempts.max(1) => {
                    break 'push RollbackCause::failed("verify", &e);
                }
                Err(_) => {}
            }
        }
        if ctx.cancelled() {
            break 'push RollbackCause {
                reason: "cancelled after verify".into(),
                cancelled: true,
            };
        }
        let committed: Result<Committed, StepError> = device_step(&mut ctx, &d, "commit", || {
            d.with_files(tenant, &target, async |f| {
                crate::push::commit_via(f, &validated, &armed).await
            })
        })
        .await;
        match committed {
            Ok(k) => {
                let post = post_snapshot(&mut ctx, &d, &target, &id).await;
                cleanup_step(&mut ctx, &d, &target, &id, &snap).await;
                let verified = verified
                    .map(|v| serde_json::to_value(v).map_err(StepError::fatal))
                    .transpose()?;
                return Ok(Finish::committed(PushOutput::Committed {
                    change_id: id.as_str().to_owned(),
                    pre_commit: snap.commit,
                    post_commit: post,
                    verified,
                    disarmed_now: k.disarmed_now,
                }));
            }
            Err(e) => RollbackCause::failed("commit", &e),
        }
    };
    // Acknowledge any cancel before unwinding: a cancel the push has not looked at yet (one
    // that made a step above return `Cancelled`, or one that arrived with a failure) would
    // otherwise refuse the rollback, and the change and its timer would stay on the device.
    let _ = ctx.cancelled();
    // The rollback must confirm the timer gone (disarmed, or fired and confirmed) before
    // the device is released: until then the push keeps owning it (the next queued
    // workflow would otherwise start while this timer can still revert it). A failed
    // attempt records the condition on the device stream, waits durably and tries again;
    // a cancel does not end the wait.
    let mut attempt = 1u32;
    let rolled: RolledBack = loop {
        let name = if attempt == 1 {
            "rollback".to_owned()
        } else {
            format!("rollback-{attempt}")
        };
        let r: Result<RolledBack, StepError> = ctx
            .step_with(
                &name,
                StepOptions::default()
                    .retry(RetryPolicy::attempts(10))
                    .timeout(opts.step_timeout),
                || async {
                    let (cfg, ssh) = d.access(tenant, &target).await?;
                    let password = snap.password(&d, tenant, target.device_id).await?;
                    crate::push::rollback_via(
                        &cfg,
                        ssh.as_ref(),
                        &snap.snapshot,
                        &armed,
                        &opts.rollback,
                        password.as_ref(),
                    )
                    .await
                    .map_err(step_error)
                },
            )
            .await;
        match r {
            Ok(r) => break r,
            Err(e) => {
                let detail = format!(
                    "{}; then the rollback failed (attempt {attempt}): {e}; the push keeps the \
                     device until its timer {} is confirmed gone",
                    cause.reason, armed.scheduler_name
                );
                tracing::warn!(change = %id, %detail, "rollback not confirmed; keeping the device");
                if attempt == 1 {
                    let timers = vec![armed.scheduler_name.clone()];
                    ctx.step("timer_condition", || {
                        d.timer_condition(
                            tenant,
                            target.device_id,
                            wf,
                            corr,
                            "timer_condition",
                            &timers,
                            "rollback_unconfirmed",
                            &detail,
                        )
                    })
                    .await?;
                }
                // a cancel cannot release the device now: acknowledge it and keep waiting
                let mut k = 0u32;
                loop {
                    let _ = ctx.cancelled();
                    let timer = if k == 0 {
                        format!("rollback-wait-{attempt}")
                    } else {
                        format!("rollback-wait-{attempt}-{k}")
                    };
                    match ctx.sleep(&timer, opts.rollback_recheck).await {
                        Err(StepError::Cancelled) => k += 1,
                        r => {
                            r?;
                            break;
                        }
                    }
                }
                attempt += 1;
            }
        }
    };
    if attempt > 1 {
        // the timer is confirmed gone: the condition this push recorded is resolved
        ctx.step("timer_cleared", || {
            d.timer_condition(
                tenant,
                target.device_id,
                wf,
                corr,
                "timer_cleared",
                &[],
                "",
                "",
            )
        })
        .await?;
    }
    let post = post_snapshot(&mut ctx, &d, &target, &id).await;
    cleanup_step(&mut ctx, &d, &target, &id, &snap).await;
    let output = PushOutput::RolledBack {
        change_id: id.as_str().to_owned(),
        pre_commit: snap.commit,
        post_commit: post,
        rollback: serde_json::to_value(rolled).map_err(StepError::fatal)?,
    };
    if cause.cancelled {
        Ok(Finish::cancelled(
            &format!("{}; rolled back", cause.reason),
            output,
        ))
    } else {
        Ok(Finish::rolled_back(&cause.reason, output))
    }
}

/// The change id of a push's `post_push` snapshot (`<id>-post`).
pub(super) fn post_id(id: &ChangeId) -> Option<ChangeId> {
    ChangeId::parse(format!(
        "{}-post",
        &id.as_str()[..id.as_str().len().min(59)]
    ))
    .ok()
}

/// Step `cleanup` (after commit or rollback, when the push's timer is gone): removes what
/// the push and its `post_snapshot` put on the device (`crate::push::cleanup_changes`).
/// Journaled and idempotent (a re-run skips what is gone). Its failure does not change the
/// push's outcome: it is logged, and the files are encrypted or hold no secret. The
/// encrypted pre-push backup stays when it could not be archived (RouterOS before 7.13):
/// it is the only copy `config_restore` can load.
async fn cleanup_step(
    ctx: &mut Ctx,
    d: &NetopsDeps,
    target: &Target,
    id: &ChangeId,
    snap: &SnapshotRecorded,
) {
    let mut ids = vec![id.clone()];
    ids.extend(post_id(id));
    let keep = if snap.backup_blob.is_none() {
        vec![format!("{}.backup", id.backup_stem())]
    } else {
        Vec::new()
    };
    cleanup_ids(ctx, d, target, &ids, &keep).await;
}

/// Step `cleanup` over `ids` (the first names the log lines), keeping `keep`.
pub(super) async fn cleanup_ids(
    ctx: &mut Ctx,
    d: &NetopsDeps,
    target: &Target,
    ids: &[ChangeId],
    keep: &[String],
) {
    let tenant = ctx.tenant();
    let Some(id) = ids.first() else {
        return;
    };
    let r: Result<crate::Cleaned, StepError> = device_step(ctx, d, "cleanup", || {
        d.with_client(tenant, target, async |c| {
            crate::cleanup_changes(c, ids, keep).await
        })
    })
    .await;
    match r {
        Ok(c) if !c.kept_for_timer.is_empty() => {
            tracing::warn!(change = %id, kept = ?c.kept_for_timer, "cleanup kept files a rollback timer still needs");
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(change = %id, error = %e, "cleanup of the push's device files failed")
        }
    }
}

/// The `post_push` snapshot; its failure does not change the outcome (the commit is named in
/// the output when it worked).
async fn post_snapshot(
    ctx: &mut Ctx,
    d: &NetopsDeps,
    target: &Target,
    id: &ChangeId,
) -> Option<String> {
    let tenant = ctx.tenant();
    let wf = ctx.workflow_id();
    let corr = ctx.correlation_id();
    let post_id = post_id(id)?;
    let r: Result<SnapshotRecorded, StepError> = device_step(ctx, d, "post_snapshot", || {
        d.snapshot(tenant, target, wf, corr, &post_id, SnapshotReason::PostPush)
    })
    .await;
    r.ok().map(|s| s.commit)
}

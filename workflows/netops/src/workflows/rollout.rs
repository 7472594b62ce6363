//! `rollout` v1: one child workflow per device (`config_push` or `firmware_upgrade`),
//! canaries first one at a time, then batches of `batch_size` with `parallelism` children at
//! once; failures reaching `failure_threshold` halt it; operator pause/resume are the
//! engine's own signals, a cancel stops starting devices and waits for those in flight.
//! A change rollout halted by the threshold with `rollback_on_halt` then restores every
//! device whose push committed in it, one `config_restore` child per device
//! ([`super::restore`]), `parallelism` at once. A firmware rollout with `rollback_on_halt`
//! is refused before it starts (`check_rollout`, in the domain's [`Rollout`] decision).
//! Appends `RolloutCreated`, `RolloutDeviceFinished`, `RolloutDeviceRestored`,
//! `RolloutStateChanged` to `rollout-<id>`, with the workflow's correlation id.
//!
//! The rollout of a change request (`change_id` set, started by the `change_request`
//! workflow): its pushes carry the change id `cr-<request uuid, simple>` onto the devices and
//! its `allow_without_timer`. With `window_end`, at every boundary between batch entries
//! (canaries included) it checks once, in journaled step `window-check-<n>`, whether the
//! window is still open; when it is not, it pauses (`RolloutStateChanged` paused, and
//! `ChangeRequestPaused` on the request's stream) until signal [`WINDOW_CONTINUE`]
//! `{"pause": n}` or a cancel.

use std::collections::BTreeMap;
use std::sync::Arc;

use netledger_domain::change::ChangeCommand;
use netledger_domain::change::rfc3339;
use netledger_domain::workflow::card::{
    ConfigPush, ConfigRestore, FirmwareInput, FirmwareUpgrade, PushInput, RestoreInput,
    RestoreOutput, RolloutDeviceResult, RolloutInput, RolloutOutput, WINDOW_CONTINUE,
    WindowContinue,
};
use netledger_domain::workflow::{
    Outcome, RestoreResult, Rollout, RolloutCommand, RolloutCreated, RolloutDeviceFinished,
    RolloutDeviceRestored, RolloutState, RolloutStateChanged, RolloutTarget,
};
use netledger_domain::{
    Actor, ChangeRequestId, DecodeError, DeviceId, EventEnum, EventMetadata, EventType,
    ExpectedVersion, NewEvent, RolloutId, WorkflowId,
};
use netledger_engine::{Ctx, Finish, StartOptions, StepError, signals};
use netledger_store::StoreError;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use super::COMPONENT;
use super::adapter::NetopsDeps;
use super::change_stream::ChangeWriter;

/// The input of one device's child workflow.
enum Child {
    Push(PushInput),
    Firmware(FirmwareInput),
}

#[derive(Debug, Deserialize)]
struct ChildFinished {
    workflow_id: WorkflowId,
    outcome: Outcome,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    output: Value,
}

/// Who appends to the rollout stream: the tenant, the rollout workflow (causation) and its
/// correlation id.
#[derive(Debug, Clone, Copy)]
struct Origin {
    tenant: netledger_domain::TenantId,
    wf: WorkflowId,
    correlation: Uuid,
}

async fn append(
    d: &NetopsDeps,
    o: Origin,
    rollout: RolloutId,
    expected: ExpectedVersion,
    events: Vec<(&'static str, Value)>,
) -> Result<(), StepError> {
    let (ctx_tenant, wf) = (o.tenant, o.wf);
    let metadata = EventMetadata {
        actor: Actor::system(COMPONENT),
        causation_id: *wf.as_uuid(),
        correlation_id: o.correlation,
    };
    let mut out = Vec::new();
    for (i, (t, payload)) in events.into_iter().enumerate() {
        // A fixed id per (workflow, event, payload): a step re-run after a crash between
        // this append and its journal entry is refused as a duplicate (recorded once).
        let id = super::step_event_id(wf, &[t, &i.to_string(), &payload.to_string()]);
        out.push(NewEvent::new(id, t, 1, payload, metadata.clone()).map_err(StepError::fatal)?);
    }
    match d
        .store
        .append(ctx_tenant, &rollout.stream(), expected, out)
        .await
    {
        // appended by an earlier attempt of this step
        Ok(_) | Err(StoreError::DuplicateEvent { .. }) => Ok(()),
        // created by an earlier attempt of this step
        Err(StoreError::Conflict { .. }) if expected == ExpectedVersion::NoStream => Ok(()),
        Err(e) => Err(StepError::retryable(format!(
            "append to {}: {e}",
            rollout.stream()
        ))),
    }
}

/// A change request's maintenance window, as the rollout checks it at batch boundaries.
struct Window {
    origin: Origin,
    rid: RolloutId,
    end: OffsetDateTime,
    change: Option<ChangeRequestId>,
}

impl Window {
    /// At the boundary before batch entry `index` (`next` names it: `batch 2`, `canary 3`):
    /// whether the window is still open, decided once in journaled step
    /// `window-check-<index>` (so a replay sees the same answer whatever the clock says
    /// then). Closed: the rollout pauses (`RolloutStateChanged` paused; `ChangeRequestPaused`
    /// on the request's stream) and waits for [`WINDOW_CONTINUE`] naming this pause, then
    /// records the resume; or a cancel, which ends the rollout `cancelled` (returned as the
    /// stop).
    async fn boundary(
        &self,
        ctx: &mut Ctx,
        d: &Arc<NetopsDeps>,
        index: usize,
        next: &str,
        pauses: &mut u32,
    ) -> Result<Option<(RolloutState, String)>, StepError> {
        let end = self.end;
        let open = ctx
            .step(&format!("window-check-{index}"), || {
                let clock = d.clock.clone();
                async move { Ok(clock.now() < end) }
            })
            .await?;
        if open {
            return Ok(None);
        }
        *pauses += 1;
        let pause = *pauses;
        let reason = format!(
            "the maintenance window ended at {}; paused before {next}",
            rfc3339(end)
        );
        let (origin, rid, change) = (self.origin, self.rid, self.change);
        let paused_key = format!("window-pause-{pause}");
        ctx.step(&paused_key, || {
            let d = d.clone();
            let reason = reason.clone();
            let key = paused_key.clone();
            async move {
                let ev = vec![state_event(RolloutState::Paused, Some(reason.clone()))];
                append(&d, origin, rid, ExpectedVersion::Any, ev).await?;
                if let Some(change) = change {
                    writer(origin, change)
                        .decide(&d, &key, &ChangeCommand::Pause { reason })
                        .await?;
                }
                Ok(())
            }
        })
        .await?;
        loop {
            match ctx
                .wait_signal::<WindowContinue>(WINDOW_CONTINUE, None)
                .await
            {
                Ok(Some(c)) if c.pause == pause => break,
                Ok(_) => continue,
                Err(StepError::Cancelled) => {
                    ctx.cancelled();
                    return Ok(Some((
                        RolloutState::Cancelled,
                        format!("cancelled by an operator while paused ({reason})"),
                    )));
                }
                // a payload that is not `{"pause": n}`: not a continue of this pause
                Err(StepError::Fatal(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        let resumed_key = format!("window-resume-{pause}");
        ctx.step(&resumed_key, || {
            let d = d.clone();
            let key = resumed_key.clone();
            async move {
                let ev = vec![state_event(
                    RolloutState::Running,
                    Some(format!("continued after pause {pause}")),
                )];
                append(&d, origin, rid, ExpectedVersion::Any, ev).await?;
                if let Some(change) = change {
                    writer(origin, change)
                        .decide(&d, &key, &ChangeCommand::Resume { pause })
                        .await?;
                }
                Ok(())
            }
        })
        .await?;
        Ok(None)
    }
}

fn writer(origin: Origin, change: ChangeRequestId) -> ChangeWriter {
    ChangeWriter {
        tenant: origin.tenant,
        workflow: origin.wf,
        correlation: origin.correlation,
        change,
    }
}

fn state_event(state: RolloutState, reason: Option<String>) -> (&'static str, Value) {
    (
        RolloutStateChanged::TYPE,
        json!(RolloutStateChanged { state, reason }),
    )
}

/// The `rollout` v1 definition's function.
pub(super) async fn rollout(
    mut ctx: Ctx,
    input: RolloutInput,
    d: Arc<NetopsDeps>,
) -> Result<Finish<RolloutOutput>, StepError> {
    let tenant = ctx.tenant();
    let wf = ctx.workflow_id();
    let origin = Origin {
        tenant,
        wf,
        correlation: ctx.correlation_id(),
    };
    let rid = input.rollout_id;
    let created = RolloutCreated {
        name: input.name.clone(),
        target: input.target.clone(),
        canaries: input.canaries.clone(),
        devices: input.devices.clone(),
        batch_size: input.batch_size,
        parallelism: input.parallelism,
        failure_threshold: input.failure_threshold,
        rollback_on_halt: input.rollback_on_halt,
        workflow_id: wf,
    };
    // The rollout aggregate decides the creation (after `check_rollout`): `RolloutCreated`
    // and the state `running`.
    let creation = Rollout::default()
        .decide(&RolloutCommand::Create(created))
        .map_err(StepError::fatal)?
        .iter()
        .map(|e| Ok((e.event_type(), e.payload()?)))
        .collect::<Result<Vec<_>, DecodeError>>()
        .map_err(StepError::fatal)?;
    ctx.step("rollout_created", || {
        let d = d.clone();
        let ev = creation.clone();
        async move { append(&d, origin, rid, ExpectedVersion::NoStream, ev).await }
    })
    .await?;

    // (batch, devices, parallelism): canaries one per batch 0, then numbered batches.
    let mut batches: Vec<(u32, Vec<DeviceId>, usize)> =
        input.canaries.iter().map(|c| (0, vec![*c], 1)).collect();
    let size = usize::try_from(input.batch_size).unwrap_or(usize::MAX);
    let par = usize::try_from(input.parallelism).unwrap_or(usize::MAX);
    for (i, chunk) in input.devices.chunks(size).enumerate() {
        batches.push((
            u32::try_from(i + 1).unwrap_or(u32::MAX),
            chunk.to_vec(),
            par,
        ));
    }
    // the id the pushes carry onto the devices: the change request's when there is one
    let change_id = match input.change_id {
        Some(c) => format!("cr-{}", c.as_uuid().simple()),
        None => format!("ro-{}", rid.as_uuid().simple()),
    };
    let child_input = |device: DeviceId| match &input.target {
        RolloutTarget::ChangeSet {
            script,
            sealed_script,
        } => Child::Push(PushInput {
            device_id: device,
            change_id: change_id.clone(),
            script: script.clone(),
            sealed_script: *sealed_script,
            policy: input.policy.clone(),
            checks: input.checks.clone(),
            allow_without_timer: input.allow_without_timer,
        }),
        RolloutTarget::Firmware { version } => Child::Firmware(FirmwareInput {
            device_id: device,
            version: version.clone(),
            routerboard: input.routerboard,
        }),
    };

    let mut failures = 0u32;
    let mut results: BTreeMap<String, RolloutDeviceResult> = BTreeMap::new();
    // (device, its push) in the order the pushes committed: what a rollback restores
    let mut committed: Vec<(DeviceId, WorkflowId)> = Vec::new();
    let mut stop: Option<(RolloutState, String)> = None;
    let mut pauses = 0u32;
    let mut canary = 0u32;
    for (index, (batch, devices, par)) in batches.into_iter().enumerate() {
        if batch == 0 {
            canary += 1;
        }
        if stop.is_none() && ctx.cancelled() {
            stop = Some((RolloutState::Cancelled, "cancelled by an operator".into()));
        }
        if stop.is_some() {
            break;
        }
        if index > 0
            && let Some(end) = input.window_end
        {
            let next = if batch == 0 {
                format!("canary {canary}")
            } else {
                format!("batch {batch}")
            };
            let w = Window {
                origin,
                rid,
                end,
                change: input.change_id,
            };
            if let Some(s) = w.boundary(&mut ctx, &d, index, &next, &mut pauses).await? {
                stop = Some(s);
                break;
            }
        }
        let mut pending = devices.into_iter();
        let mut in_flight: BTreeMap<WorkflowId, DeviceId> = BTreeMap::new();
        loop {
            if stop.is_none() && ctx.cancelled() {
                stop = Some((RolloutState::Cancelled, "cancelled by an operator".into()));
            }
            while stop.is_none() && in_flight.len() < par {
                let Some(device) = pending.next() else { break };
                let opts = StartOptions::new(Actor::system(COMPONENT))
                    .rollout(rid)
                    .queue_if_busy(true);
                let name = format!("start-{device}");
                let child_id = match child_input(device) {
                    Child::Push(i) => ctx.start_child::<ConfigPush>(&name, i, opts, true).await?,
                    Child::Firmware(i) => {
                        ctx.start_child::<FirmwareUpgrade>(&name, i, opts, true)
                            .await?
                    }
                };
                in_flight.insert(child_id, device);
            }
            if in_flight.is_empty() {
                break;
            }
            let finished: Option<ChildFinished> =
                match ctx.wait_signal(signals::CHILD_FINISHED, None).await {
                    Ok(f) => f,
                    Err(StepError::Cancelled) => {
                        ctx.cancelled();
                        continue;
                    }
                    Err(e) => return Err(e),
                };
            let Some(f) = finished else { continue };
            let Some(device) = in_flight.remove(&f.workflow_id) else {
                continue;
            };
            let ok = matches!(f.outcome, Outcome::Committed | Outcome::Succeeded);
            if !ok {
                failures += 1;
            }
            if f.outcome == Outcome::Committed {
                committed.push((device, f.workflow_id));
            }
            results.insert(
                device.to_string(),
                RolloutDeviceResult {
                    workflow_id: f.workflow_id,
                    outcome: f.outcome,
                    reason: f.reason.clone(),
                },
            );
            let ev = vec![(
                RolloutDeviceFinished::TYPE,
                json!(RolloutDeviceFinished {
                    device_id: device,
                    workflow_id: f.workflow_id,
                    batch,
                    outcome: f.outcome,
                }),
            )];
            ctx.step(&format!("finished-{device}"), || {
                let d = d.clone();
                let ev = ev.clone();
                async move { append(&d, origin, rid, ExpectedVersion::Any, ev).await }
            })
            .await?;
            if stop.is_none() && failures >= input.failure_threshold {
                stop = Some((
                    RolloutState::Halted,
                    format!(
                        "{failures} device(s) failed, threshold {}",
                        input.failure_threshold
                    ),
                ));
            }
        }
    }
    let rollback = matches!(stop, Some((RolloutState::Halted, _)))
        && input.rollback_on_halt
        && matches!(input.target, RolloutTarget::ChangeSet { .. });
    if !rollback {
        let (state, reason) = stop
            .clone()
            .map_or((RolloutState::Completed, None), |(s, r)| (s, Some(r)));
        ctx.step("rollout_finished", || {
            let d = d.clone();
            let ev = vec![state_event(state, reason.clone())];
            async move { append(&d, origin, rid, ExpectedVersion::Any, ev).await }
        })
        .await?;
        let output = RolloutOutput {
            failures,
            devices: results,
            rollback: None,
        };
        return Ok(match stop {
            None => Finish::succeeded(output),
            Some((RolloutState::Cancelled, r)) => Finish::cancelled(&r, output),
            Some((_, r)) => Finish::failed(&r, output),
        });
    }
    let halt = stop.map(|(_, r)| r).unwrap_or_default();
    let rolled = restore_committed(&mut ctx, &d, rid, par, &halt, &committed).await?;
    let reverted = results
        .values()
        .filter(|r| r.outcome == Outcome::RolledBack)
        .count();
    let reason = rolled.summary(&halt, reverted);
    let _ = ctx.cancelled();
    ctx.step("rollout_finished", || {
        let d = d.clone();
        let ev = vec![state_event(RolloutState::Halted, Some(reason.clone()))];
        async move { append(&d, origin, rid, ExpectedVersion::Any, ev).await }
    })
    .await?;
    let all_restored = rolled.all_restored(reverted);
    let output = RolloutOutput {
        failures,
        devices: results,
        rollback: Some(rolled.devices),
    };
    Ok(if all_restored {
        Finish::rolled_back(&reason, output)
    } else {
        Finish::failed(&reason, output)
    })
}

/// What the rollback of a halted rollout did, per device (by device id text).
struct Rollback {
    devices: BTreeMap<String, RolloutDeviceRestored>,
    restored: Vec<DeviceId>,
    refused: Vec<(DeviceId, String)>,
    failed: Vec<(DeviceId, String)>,
}

impl Rollback {
    /// The change is undone everywhere it took effect: no committed device was refused or
    /// failed its restore, and something was brought back — a committed device restored, or
    /// a failed device whose own push rolled it back (`reverted`: a canary that failed
    /// verification and was reverted by its push, with nothing committed, is a rolled-back
    /// rollout too).
    fn all_restored(&self, reverted: usize) -> bool {
        (!self.restored.is_empty() || reverted > 0)
            && self.refused.is_empty()
            && self.failed.is_empty()
    }

    /// The rollout's final reason: the halt, then what the rollback did (`reverted`: failed
    /// devices whose own push rolled back).
    fn summary(&self, halt: &str, reverted: usize) -> String {
        let total = self.restored.len() + self.refused.len() + self.failed.len();
        if total == 0 && reverted > 0 {
            return format!(
                "{halt}; no device had committed; the push of {reverted} failed device(s) \
                 rolled back on its own"
            );
        }
        if total == 0 {
            return format!("{halt}; no device had committed, nothing to roll back");
        }
        let mut s = format!(
            "{halt}; rolled back {} of {total} committed device(s)",
            self.restored.len()
        );
        for (what, list) in [("refused", &self.refused), ("failed", &self.failed)] {
            if !list.is_empty() {
                let names: Vec<String> = list.iter().map(|(d, r)| format!("{d} ({r})")).collect();
                s.push_str(&format!("; restore {what} on {}", names.join(", ")));
            }
        }
        s
    }
}

/// The rollback of a change rollout halted by its threshold: one `config_restore` child per
/// device whose push committed (`par` at once), each started once (journaled step
/// `restore-<device>`, idempotency key `child:<rollout workflow>:restore-<device>`), each
/// result appended as `RolloutDeviceRestored`. An operator cancel does not stop it: the
/// restores are the safety net (the cancel is acknowledged and the rollback finishes).
async fn restore_committed(
    ctx: &mut Ctx,
    d: &Arc<NetopsDeps>,
    rid: RolloutId,
    par: usize,
    halt: &str,
    committed: &[(DeviceId, WorkflowId)],
) -> Result<Rollback, StepError> {
    let origin = Origin {
        tenant: ctx.tenant(),
        wf: ctx.workflow_id(),
        correlation: ctx.correlation_id(),
    };
    let mut out = Rollback {
        devices: BTreeMap::new(),
        restored: Vec::new(),
        refused: Vec::new(),
        failed: Vec::new(),
    };
    if committed.is_empty() {
        return Ok(out);
    }
    let _ = ctx.cancelled();
    let halted = format!(
        "{halt}; rolling back {} committed device(s)",
        committed.len()
    );
    ctx.step("rollout_halted", || {
        let d = d.clone();
        let ev = vec![state_event(RolloutState::Halted, Some(halted.clone()))];
        async move { append(&d, origin, rid, ExpectedVersion::Any, ev).await }
    })
    .await?;
    let mut pending = committed.iter().copied();
    let mut in_flight: BTreeMap<WorkflowId, (DeviceId, WorkflowId)> = BTreeMap::new();
    loop {
        let _ = ctx.cancelled();
        while in_flight.len() < par {
            let Some((device, push)) = pending.next() else {
                break;
            };
            let input = RestoreInput {
                device_id: device,
                push_workflow_id: push,
            };
            let opts = StartOptions::new(Actor::system(COMPONENT))
                .rollout(rid)
                .queue_if_busy(true);
            let child = ctx
                .start_child::<ConfigRestore>(&format!("restore-{device}"), input, opts, true)
                .await?;
            in_flight.insert(child, (device, push));
        }
        if in_flight.is_empty() {
            return Ok(out);
        }
        let finished: Option<ChildFinished> =
            match ctx.wait_signal(signals::CHILD_FINISHED, None).await {
                Ok(f) => f,
                Err(StepError::Cancelled) => continue,
                Err(e) => return Err(e),
            };
        let Some(f) = finished else { continue };
        let Some((device, push)) = in_flight.remove(&f.workflow_id) else {
            continue;
        };
        let reason = f.reason.clone().unwrap_or_default();
        let output = RestoreOutput::deserialize(&f.output).ok();
        let result = match (f.outcome, output) {
            (Outcome::RolledBack, _) => RestoreResult::Restored,
            (_, Some(RestoreOutput::Refused { .. })) => RestoreResult::Refused,
            _ => RestoreResult::Failed,
        };
        match result {
            RestoreResult::Restored => out.restored.push(device),
            RestoreResult::Refused => out.refused.push((device, reason.clone())),
            RestoreResult::Failed => out.failed.push((device, reason.clone())),
        }
        let ev = RolloutDeviceRestored {
            device_id: device,
            workflow_id: f.workflow_id,
            push_workflow_id: push,
            result,
            reason: (result != RestoreResult::Restored).then_some(reason),
        };
        out.devices.insert(device.to_string(), ev.clone());
        let _ = ctx.cancelled();
        ctx.step(&format!("restored-{device}"), || {
            let d = d.clone();
            let ev = vec![(RolloutDeviceRestored::TYPE, json!(ev))];
            async move { append(&d, origin, rid, ExpectedVersion::Any, ev).await }
        })
        .await?;
    }
}

//! `rollout` v1: one child workflow per device (`config_push` or `firmware_upgrade`),
//! canaries first one at a time, then batches of `batch_size` with `parallelism` children at
//! once; failures reaching `failure_threshold` halt it; operator pause/resume are the
//! engine's own signals, a cancel stops starting devices and waits for those in flight.
//! A change rollout halted by the threshold with `rollback_on_halt` then restores every
//! device whose push committed in it, one `config_restore` child per device
//! ([`super::restore`]), `parallelism` at once. A firmware rollout with `rollback_on_halt`
//! is refused before it starts ([`check_rollout`]).
//! Appends `RolloutCreated`, `RolloutDeviceFinished`, `RolloutDeviceRestored`,
//! `RolloutStateChanged` to `rollout-<id>`.

use std::collections::BTreeMap;
use std::sync::Arc;

use netledger_domain::workflow::{
    Outcome, RestoreResult, RolloutCreated, RolloutDeviceFinished, RolloutDeviceRestored,
    RolloutState, RolloutStateChanged, RolloutTarget, check_rollout,
};
use netledger_domain::{
    Actor, DeviceId, EventMetadata, EventType, ExpectedVersion, NewEvent, RolloutId, WorkflowId,
};
use netledger_engine::{Ctx, Finish, StartOptions, StepError, signals};
use netledger_store::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::COMPONENT;
use super::adapter::NetopsDeps;
use super::restore::{RESTORE_KIND, RestoreInput};
use crate::{HealthChecks, Policy};

/// Input of `rollout` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutInput {
    /// The rollout (its stream is `rollout-<id>`).
    pub rollout_id: RolloutId,
    /// Operator-facing name.
    pub name: String,
    /// What it deploys.
    pub target: RolloutTarget,
    /// Canaries, one at a time, first.
    #[serde(default)]
    pub canaries: Vec<DeviceId>,
    /// The other devices, in order.
    pub devices: Vec<DeviceId>,
    /// Devices per batch (from 1).
    pub batch_size: u32,
    /// Children at once within a batch (from 1).
    pub parallelism: u32,
    /// Failed devices at which the rollout halts (from 1).
    pub failure_threshold: u32,
    /// A change rollout halted by the threshold restores the devices whose push committed
    /// (`config_restore`); refused for a firmware rollout (see docs/push.md).
    #[serde(default)]
    pub rollback_on_halt: bool,
    /// Policy of each config push.
    #[serde(default)]
    pub policy: Option<Policy>,
    /// Health checks of each config push.
    #[serde(default)]
    pub checks: HealthChecks,
    /// Firmware: also upgrade RouterBOARD firmware.
    #[serde(default)]
    pub routerboard: bool,
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

async fn append(
    d: &NetopsDeps,
    ctx_tenant: netledger_domain::TenantId,
    wf: WorkflowId,
    rollout: RolloutId,
    expected: ExpectedVersion,
    events: Vec<(&'static str, Value)>,
) -> Result<(), StepError> {
    let metadata = EventMetadata {
        actor: Actor::system(COMPONENT),
        causation_id: *wf.as_uuid(),
        correlation_id: *wf.as_uuid(),
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

fn state_event(state: RolloutState, reason: Option<String>) -> (&'static str, Value) {
    (
        RolloutStateChanged::TYPE,
        json!(RolloutStateChanged { state, reason }),
    )
}

/// The `rollout` v1 definition's function.
pub(super) async fn rollout(mut ctx: Ctx, d: Arc<NetopsDeps>) -> Result<Finish, StepError> {
    let input: RolloutInput = ctx.input()?;
    check_rollout(
        &input.target,
        input.batch_size,
        input.parallelism,
        input.failure_threshold,
        input.rollback_on_halt,
    )
    .map_err(StepError::fatal)?;
    let tenant = ctx.tenant();
    let wf = ctx.workflow_id();
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
    ctx.step("rollout_created", || {
        let d = d.clone();
        let ev = vec![
            (RolloutCreated::TYPE, json!(created)),
            state_event(RolloutState::Running, None),
        ];
        async move { append(&d, tenant, wf, rid, ExpectedVersion::NoStream, ev).await }
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
    let change_id = format!("ro-{}", rid.as_uuid().simple());
    let child_input = |device: DeviceId| match &input.target {
        RolloutTarget::ChangeSet { script } => (
            "config_push",
            json!({ "device_id": device, "change_id": change_id, "script": script,
                    "policy": input.policy, "checks": input.checks }),
        ),
        RolloutTarget::Firmware { version } => (
            "firmware_upgrade",
            json!({ "device_id": device, "version": version, "routerboard": input.routerboard }),
        ),
    };

    let mut failures = 0u32;
    let mut results: BTreeMap<String, Value> = BTreeMap::new();
    // (device, its push) in the order the pushes committed: what a rollback restores
    let mut committed: Vec<(DeviceId, WorkflowId)> = Vec::new();
    let mut stop: Option<(RolloutState, String)> = None;
    for (batch, devices, par) in batches {
        if stop.is_some() {
            break;
        }
        let mut pending = devices.into_iter();
        let mut in_flight: BTreeMap<WorkflowId, DeviceId> = BTreeMap::new();
        loop {
            if stop.is_none() && ctx.cancelled() {
                stop = Some((RolloutState::Cancelled, "cancelled by an operator".into()));
            }
            while stop.is_none() && in_flight.len() < par {
                let Some(device) = pending.next() else { break };
                let (kind, child) = child_input(device);
                let opts = StartOptions::new(Actor::system(COMPONENT))
                    .devices([device])
                    .rollout(rid)
                    .queue_if_busy(true);
                let child_id = ctx
                    .start_child(&format!("start-{device}"), kind, child, opts, true)
                    .await?;
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
                json!({ "workflow_id": f.workflow_id, "outcome": f.outcome, "reason": f.reason }),
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
                async move { append(&d, tenant, wf, rid, ExpectedVersion::Any, ev).await }
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
            async move { append(&d, tenant, wf, rid, ExpectedVersion::Any, ev).await }
        })
        .await?;
        let output = json!({ "failures": failures, "devices": results });
        return Ok(match stop {
            None => Finish::succeeded(output),
            Some((RolloutState::Cancelled, r)) => Finish::cancelled(&r, output),
            Some((_, r)) => Finish::failed(&r, output),
        });
    }
    let halt = stop.map(|(_, r)| r).unwrap_or_default();
    let rolled = restore_committed(&mut ctx, &d, rid, par, &halt, &committed).await?;
    let reason = rolled.summary(&halt);
    let _ = ctx.cancelled();
    ctx.step("rollout_finished", || {
        let d = d.clone();
        let ev = vec![state_event(RolloutState::Halted, Some(reason.clone()))];
        async move { append(&d, tenant, wf, rid, ExpectedVersion::Any, ev).await }
    })
    .await?;
    let output = json!({ "failures": failures, "devices": results, "rollback": rolled.devices });
    Ok(if rolled.all_restored() {
        Finish::rolled_back(&reason, output)
    } else {
        Finish::failed(&reason, output)
    })
}

/// What the rollback of a halted rollout did, per device (by device id text).
struct Rollback {
    devices: BTreeMap<String, Value>,
    restored: Vec<DeviceId>,
    refused: Vec<(DeviceId, String)>,
    failed: Vec<(DeviceId, String)>,
}

impl Rollback {
    /// At least one device restored and none refused or failed.
    fn all_restored(&self) -> bool {
        !self.restored.is_empty() && self.refused.is_empty() && self.failed.is_empty()
    }

    /// The rollout's final reason: the halt, then what the rollback did.
    fn summary(&self, halt: &str) -> String {
        let total = self.restored.len() + self.refused.len() + self.failed.len();
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
    let tenant = ctx.tenant();
    let wf = ctx.workflow_id();
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
        async move { append(&d, tenant, wf, rid, ExpectedVersion::Any, ev).await }
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
                .devices([device])
                .rollout(rid)
                .queue_if_busy(true);
            let child = ctx
                .start_child(
                    &format!("restore-{device}"),
                    RESTORE_KIND,
                    json!(input),
                    opts,
                    true,
                )
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
        let result = match (f.outcome, f.output.get("result").and_then(Value::as_str)) {
            (Outcome::RolledBack, _) => RestoreResult::Restored,
            (_, Some("refused")) => RestoreResult::Refused,
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
        out.devices.insert(device.to_string(), json!(ev));
        let _ = ctx.cancelled();
        ctx.step(&format!("restored-{device}"), || {
            let d = d.clone();
            let ev = vec![(RolloutDeviceRestored::TYPE, json!(ev))];
            async move { append(&d, tenant, wf, rid, ExpectedVersion::Any, ev).await }
        })
        .await?;
    }
}

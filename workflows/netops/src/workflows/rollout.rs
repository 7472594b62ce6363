//! `rollout` v1: one child workflow per device (`config_push` or `firmware_upgrade`),
//! canaries first one at a time, then batches of `batch_size` with `parallelism` children at
//! once; failures reaching `failure_threshold` halt it; operator pause/resume are the
//! engine's own signals, a cancel stops starting devices and waits for those in flight.
//! Appends `RolloutCreated`, `RolloutDeviceFinished`, `RolloutStateChanged` to `rollout-<id>`.

use std::collections::BTreeMap;
use std::sync::Arc;

use netledger_domain::workflow::{
    Outcome, RolloutCreated, RolloutDeviceFinished, RolloutState, RolloutStateChanged,
    RolloutTarget,
};
use netledger_domain::{
    Actor, DeviceId, EventMetadata, EventType, ExpectedVersion, NewEvent, RolloutId, WorkflowId,
};
use netledger_engine::{Ctx, Finish, StartOptions, StepError, signals};
use netledger_store::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{COMPONENT, NetopsDeps};
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
    /// Recorded in `RolloutCreated`; v1 does not undo committed devices (see docs/push.md).
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
    if input.batch_size == 0 || input.parallelism == 0 || input.failure_threshold == 0 {
        return Err(StepError::fatal(
            "batch_size, parallelism and failure_threshold must be at least 1",
        ));
    }
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
    Ok(match stop {
        None => Finish::succeeded(output),
        Some((RolloutState::Cancelled, r)) => Finish::cancelled(&r, output),
        Some((_, r)) => Finish::failed(&r, output),
    })
}

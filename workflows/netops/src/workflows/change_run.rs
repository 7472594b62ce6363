//! `change_request` v1: the run of an approved change request (card [`ChangeRun`]). Records
//! on the request's stream (`change-<id>`, through [`super::change_stream`]) that it is
//! scheduled, waits for the request's maintenance window (a durable timer), starts its
//! `rollout` child with the request's plan, waits for it, and records how it ended.
//!
//! Steps: `scheduled` (`ChangeRequestScheduled`; a request that is no longer approved, say
//! cancelled or withdrawn, ends the run `cancelled` having started nothing); with a window,
//! timer `window_start`, then `window_check` (a window that ended before the change could
//! start: `ChangeRequestFinished` cancelled, no rollout); `started` (`ChangeRequestStarted`
//! with the rollout's id); `rollout` (the child, notify); on a cancel while it runs,
//! `cancel_rollout` (the child's cancel signal), then still waiting for the child's end;
//! `finished` (`ChangeRequestFinished` with the rollout's outcome: succeeded -> completed,
//! rolled_back -> rolled_back, cancelled -> cancelled, failed -> failed).
//!
//! Everything it starts and appends carries the request's uuid as correlation id. It owns no
//! device (the rollout's children lock them).

use std::sync::Arc;

use netledger_domain::change::{By, ChangeCommand, ChangeState, rfc3339};
use netledger_domain::workflow::card::{
    ChangeRunAction, ChangeRunInput, ChangeRunOutput, HealthChecks, Policy, Rollout, RolloutInput,
};
use netledger_domain::workflow::{Outcome, RolloutTarget};
use netledger_domain::{Actor, RolloutId, WorkflowId};
use netledger_engine::{Ctx, Finish, StartOptions, StepError, signals};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::COMPONENT;
use super::adapter::NetopsDeps;
use super::change_stream::ChangeWriter;

/// What step `scheduled` found.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Scheduled {
    /// Scheduled (now, or by an earlier attempt of this run).
    Go,
    /// The request is not approved any more: nothing starts.
    Stop {
        /// Why.
        reason: String,
    },
}

#[derive(Debug, Deserialize)]
struct ChildFinished {
    workflow_id: WorkflowId,
    outcome: Outcome,
    #[serde(default)]
    reason: Option<String>,
}

fn ended(
    state: ChangeState,
    rollout_id: Option<RolloutId>,
    reason: Option<String>,
) -> Finish<ChangeRunOutput> {
    let output = ChangeRunOutput {
        state,
        rollout_id,
        reason: reason.clone(),
    };
    let why = reason.unwrap_or_default();
    match state {
        ChangeState::Completed => Finish::succeeded(output),
        ChangeState::RolledBack => Finish::rolled_back(&why, output),
        ChangeState::Cancelled => Finish::cancelled(&why, output),
        _ => Finish::failed(&why, output),
    }
}

/// The rollout of the request: its plan over its frozen devices (the first `canaries` go
/// first), the request's change id, window end and timer override.
fn rollout_input(input: &ChangeRunInput, rollout_id: RolloutId) -> RolloutInput {
    let canaries = usize::try_from(input.plan.canaries)
        .unwrap_or(usize::MAX)
        .min(input.devices.len());
    let (target, routerboard) = match &input.action {
        ChangeRunAction::Script {
            script,
            sealed_script,
        } => (
            RolloutTarget::ChangeSet {
                script: script.clone(),
                sealed_script: *sealed_script,
            },
            false,
        ),
        ChangeRunAction::Firmware {
            version,
            routerboard,
        } => (
            RolloutTarget::Firmware {
                version: version.clone(),
            },
            *routerboard,
        ),
    };
    RolloutInput {
        rollout_id,
        name: input.name.clone(),
        target,
        canaries: input.devices[..canaries].to_vec(),
        devices: input.devices[canaries..].to_vec(),
        batch_size: input.plan.batch_size,
        parallelism: input.plan.parallelism,
        failure_threshold: input.plan.failure_threshold,
        rollback_on_halt: input.plan.rollback_on_halt,
        // an approved high-risk request that accepted the violations may store and run code
        policy: input.elevated.then(|| Policy {
            elevated: true,
            ..Policy::default()
        }),
        checks: HealthChecks::default(),
        routerboard,
        change_id: Some(input.change_id),
        window_end: input.window.as_ref().map(|w| w.end),
        allow_without_timer: input.allow_without_timer,
    }
}

/// The `change_request` v1 definition's function.
pub(super) async fn change_run(
    mut ctx: Ctx,
    input: ChangeRunInput,
    d: Arc<NetopsDeps>,
) -> Result<Finish<ChangeRunOutput>, StepError> {
    let me = ctx.workflow_id();
    let correlation = *input.change_id.as_uuid();
    let w = ChangeWriter {
        tenant: ctx.tenant(),
        workflow: me,
        correlation,
        change: input.change_id,
    };
    if ctx.cancelled() {
        let why = "the run was cancelled before it was scheduled".to_owned();
        return Ok(ended(ChangeState::Cancelled, None, Some(why)));
    }

    let by = By::user(input.requested_by.clone());
    let scheduled = ctx
        .step("scheduled", || {
            let d = d.clone();
            let by = by.clone();
            async move {
                let state = w.load(&d).await?;
                let go = match state.state {
                    ChangeState::Approved => true,
                    ChangeState::Submitted => state.emergency(),
                    ChangeState::Scheduled => state.workflow_id == Some(me),
                    _ => false,
                };
                if !go {
                    let reason = match state.state {
                        ChangeState::Scheduled | ChangeState::Running => format!(
                            "the change request is {} by another run ({}); this run started \
                             nothing",
                            state.state,
                            state
                                .workflow_id
                                .map_or_else(|| "unknown".to_owned(), |w| w.to_string())
                        ),
                        s => format!("the change request is {s}; nothing was started"),
                    };
                    return Ok(Scheduled::Stop { reason });
                }
                if state.state != ChangeState::Scheduled {
                    let command = ChangeCommand::Schedule {
                        by,
                        workflow_id: me,
                    };
                    w.decide(&d, "scheduled", &command).await?;
                }
                Ok(Scheduled::Go)
            }
        })
        .await?;
    if let Scheduled::Stop { reason } = scheduled {
        return Ok(ended(ChangeState::Cancelled, None, Some(reason)));
    }

    if let Some(window) = input.window.clone() {
        match ctx.sleep_until("window_start", window.start).await {
            Ok(()) => {}
            Err(StepError::Cancelled) => {
                ctx.cancelled();
                return finish(&mut ctx, &d, w, None, ChangeState::Cancelled, cancelled()).await;
            }
            Err(e) => return Err(e),
        }
        let reason = format!(
            "the maintenance window {}–{} ({}) ended before the change could start",
            rfc3339(window.start),
            rfc3339(window.end),
            window.time_zone
        );
        let end = window.end;
        let open = ctx
            .step("window_check", || {
                let d = d.clone();
                let reason = reason.clone();
                async move {
                    if d.clock.now() <= end {
                        return Ok(true);
                    }
                    let command = ChangeCommand::Finish {
                        state: ChangeState::Cancelled,
                        reason: Some(reason),
                    };
                    w.decide(&d, "window_check", &command).await?;
                    Ok(false)
                }
            })
            .await?;
        if !open {
            return Ok(ended(ChangeState::Cancelled, None, Some(reason)));
        }
    }
    if ctx.cancelled() {
        return finish(&mut ctx, &d, w, None, ChangeState::Cancelled, cancelled()).await;
    }

    // the rollout's id: made once (the step's output is journaled; a re-run of the step
    // after its append finds the id it recorded)
    let fresh = RolloutId::from_uuid(Uuid::now_v7());
    let rollout_id = ctx
        .step("started", || {
            let d = d.clone();
            async move {
                let state = w
                    .decide(&d, "started", &ChangeCommand::Start { rollout_id: fresh })
                    .await?;
                Ok(state.rollout_id.unwrap_or(fresh))
            }
        })
        .await?;
    if ctx.cancelled() {
        let state = ChangeState::Cancelled;
        return finish(&mut ctx, &d, w, Some(rollout_id), state, cancelled()).await;
    }
    let options = StartOptions::new(Actor::system(COMPONENT))
        .rollout(rollout_id)
        .correlation_id(correlation);
    let child = ctx
        .start_child::<Rollout>("rollout", rollout_input(&input, rollout_id), options, true)
        .await?;

    let mut cancel_sent = false;
    let done = loop {
        if !cancel_sent && ctx.cancelled() {
            ctx.cancel_workflow(
                "cancel_rollout",
                child,
                "the change request was cancelled while its rollout ran",
            )
            .await?;
            cancel_sent = true;
        }
        match ctx
            .wait_signal::<ChildFinished>(signals::CHILD_FINISHED, None)
            .await
        {
            Ok(Some(f)) if f.workflow_id == child => break f,
            Ok(_) | Err(StepError::Cancelled) => continue,
            Err(e) => return Err(e),
        }
    };
    let state = match done.outcome {
        Outcome::Succeeded | Outcome::Committed => ChangeState::Completed,
        Outcome::RolledBack => ChangeState::RolledBack,
        Outcome::Cancelled => ChangeState::Cancelled,
        Outcome::Failed => ChangeState::Failed,
    };
    let reason = match state {
        ChangeState::Completed => None,
        _ => Some(
            done.reason
                .unwrap_or_else(|| format!("the rollout ended {state}")),
        ),
    };
    finish(&mut ctx, &d, w, Some(rollout_id), state, reason).await
}

fn cancelled() -> Option<String> {
    Some("the change request was cancelled".to_owned())
}

/// Step `finished`: `ChangeRequestFinished` (nothing when the request was cancelled before
/// its rollout started: the aggregate decides), then the run's end.
async fn finish(
    ctx: &mut Ctx,
    d: &Arc<NetopsDeps>,
    w: ChangeWriter,
    rollout_id: Option<RolloutId>,
    state: ChangeState,
    reason: Option<String>,
) -> Result<Finish<ChangeRunOutput>, StepError> {
    let command = ChangeCommand::Finish {
        state,
        reason: reason.clone(),
    };
    ctx.step("finished", || {
        let d = d.clone();
        let command = command.clone();
        async move { w.decide(&d, "finished", &command).await.map(|_| ()) }
    })
    .await?;
    Ok(ended(state, rollout_id, reason))
}

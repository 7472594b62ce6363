//! Given/when/then tests of the change request aggregate: every transition and every refusal.

use time::macros::datetime;
use uuid::Uuid;

use super::*;
use crate::testing::given;

const AUTHOR: &str = "author";
const ANN: &str = "approver-ann";
const BOB: &str = "approver-bob";

fn id() -> ChangeRequestId {
    ChangeRequestId::from_uuid(Uuid::from_u128(7))
}

fn dev(n: u128) -> DeviceId {
    DeviceId::from_uuid(Uuid::from_u128(n))
}

fn wf() -> WorkflowId {
    WorkflowId::from_uuid(Uuid::from_u128(99))
}

fn ro() -> RolloutId {
    RolloutId::from_uuid(Uuid::from_u128(98))
}

fn now() -> OffsetDateTime {
    datetime!(2026-12-06 12:00 UTC)
}

fn content(risk: RiskLevel) -> ChangeContent {
    ChangeContent {
        title: "NTP servers".into(),
        reason: "CHG-1: new NTP pool".into(),
        ticket: Some("CHG-1".into()),
        target: ChangeTarget::Devices {
            device_ids: vec![dev(1), dev(2)],
        },
        action: ChangeAction::Script {
            script: "/system ntp client\nset enabled=yes\n".into(),
        },
        plan: RolloutPlan::default(),
        risk,
        window: None,
        overrides: Overrides::default(),
        emergency: false,
        emergency_reason: None,
    }
}

fn created(risk: RiskLevel) -> ChangeEvent {
    ChangeRequestCreated {
        change_request_id: id(),
        author: AUTHOR.into(),
        content: content(risk),
        sealed_script: None,
    }
    .into()
}

fn preview(d: DeviceId, violations: &[&str]) -> DevicePreviewSummary {
    DevicePreviewSummary {
        device_id: d,
        changed_lines: 2,
        violations: violations.iter().map(|v| (*v).to_owned()).collect(),
        note: None,
    }
}

fn submit(by: &str) -> ChangeCommand {
    ChangeCommand::Submit {
        by: By::user(by),
        devices: vec![dev(1), dev(2)],
        previews: vec![preview(dev(1), &[]), preview(dev(2), &[])],
        policy: ApprovalPolicy::default(),
        restore_script: None,
        now: now(),
    }
}

fn submitted(required: u32) -> ChangeEvent {
    ChangeRequestSubmitted {
        devices: vec![dev(1), dev(2)],
        previews: vec![preview(dev(1), &[]), preview(dev(2), &[])],
        required_approvals: required,
        restore_script: None,
    }
    .into()
}

fn approved(by: &str) -> ChangeEvent {
    ChangeRequestApproved {
        by: by.into(),
        comment: None,
        retrospective: false,
    }
    .into()
}

fn approve(by: &str) -> ChangeCommand {
    ChangeCommand::Approve {
        by: By::user(by),
        comment: None,
    }
}

fn scheduled() -> ChangeEvent {
    ChangeRequestScheduled {
        workflow_id: wf(),
        by: AUTHOR.into(),
        window: None,
    }
    .into()
}

fn started() -> ChangeEvent {
    ChangeRequestStarted { rollout_id: ro() }.into()
}

/// The history of a low-risk request in `state` (one approval needed).
fn history(state: ChangeState) -> Vec<ChangeEvent> {
    use ChangeState as S;
    let mut h = vec![created(RiskLevel::Low)];
    let steps: Vec<ChangeEvent> = vec![submitted(1), approved(ANN), scheduled(), started()];
    let n = match state {
        S::Draft => 0,
        S::Submitted => 1,
        S::Approved => 2,
        S::Scheduled => 3,
        S::Running => 4,
        S::Rejected => {
            h.push(submitted(1));
            h.push(
                ChangeRequestRejected {
                    by: ANN.into(),
                    comment: "no".into(),
                }
                .into(),
            );
            return h;
        }
        S::Withdrawn => {
            h.push(ChangeRequestWithdrawn { reason: None }.into());
            return h;
        }
        S::Completed | S::Failed | S::RolledBack | S::Cancelled => {
            h.extend(steps);
            h.push(
                ChangeRequestFinished {
                    state,
                    reason: None,
                }
                .into(),
            );
            return h;
        }
    };
    h.extend(steps.into_iter().take(n));
    h
}

fn illegal(command: &'static str, state: ChangeState, allowed: &[ChangeState]) -> ChangeRefusal {
    ChangeRefusal::IllegalTransition {
        command,
        state,
        allowed: allowed.to_vec(),
    }
}

#[test]
fn the_histories_reach_their_states() {
    for s in ChangeState::ALL {
        assert_eq!(given::<ChangeRequest>(history(s)).state().state, s, "{s}");
    }
}

#[test]
fn create_once_with_valid_content() {
    let after = given::<ChangeRequest>([])
        .when(ChangeCommand::Create {
            id: id(),
            by: By::user(AUTHOR),
            content: content(RiskLevel::Low),
            sealed_script: None,
        })
        .then([created(RiskLevel::Low)]);
    assert_eq!(after.state, ChangeState::Draft);
    assert_eq!(after.author, AUTHOR);
    given::<ChangeRequest>([created(RiskLevel::Low)])
        .when(ChangeCommand::Create {
            id: id(),
            by: By::user(AUTHOR),
            content: content(RiskLevel::Low),
            sealed_script: None,
        })
        .then_refused(ChangeRefusal::AlreadyExists);
    let mut c = content(RiskLevel::Low);
    c.title = "  ".into();
    given::<ChangeRequest>([])
        .when(ChangeCommand::Create {
            id: id(),
            by: By::user(AUTHOR),
            content: c,
            sealed_script: None,
        })
        .then_refused(ChangeRefusal::Invalid(
            "title must be one line of 1-200 characters (no control characters)".into(),
        ));
}

#[test]
fn content_rules() {
    let refused = |f: &dyn Fn(&mut ChangeContent), msg: &str| {
        let mut c = content(RiskLevel::Low);
        f(&mut c);
        let e = validate_content(&c).unwrap_err();
        assert!(e.to_string().contains(msg), "{e} lacks {msg}");
    };
    refused(&|c| c.reason = " ".into(), "reason is required");
    refused(
        &|c| {
            c.target = ChangeTarget::Devices { device_ids: vec![] };
        },
        "at least one device",
    );
    refused(
        &|c| {
            c.target = ChangeTarget::Tags {
                tags: vec![],
                matching: TagMatch::All,
            };
        },
        "target.tags",
    );
    refused(
        &|c| {
            c.action = ChangeAction::Script {
                script: "\n".into(),
            };
        },
        "action.script is empty",
    );
    refused(
        &|c| {
            c.action = ChangeAction::Firmware {
                version: "7.16; rm".into(),
                routerboard: false,
            };
            c.plan.rollback_on_halt = false;
        },
        "not a RouterOS version",
    );
    refused(
        &|c| {
            c.action = ChangeAction::Firmware {
                version: "7.16.2".into(),
                routerboard: false,
            };
        },
        "rollback_on_halt applies to script changes",
    );
    refused(
        &|c| {
            c.action = ChangeAction::Restore {
                device_id: dev(1),
                commit: "abcdef0".into(),
            };
        },
        "exactly the device it restores",
    );
    refused(
        &|c| {
            c.target = ChangeTarget::Devices {
                device_ids: vec![dev(1)],
            };
            c.action = ChangeAction::Restore {
                device_id: dev(1),
                commit: "HEAD".into(),
            };
        },
        "not a config history version",
    );
    refused(&|c| c.plan.batch_size = 0, "at least 1");
    refused(&|c| c.plan.parallelism = 101, "at most 100");
    refused(
        &|c| {
            c.window = Some(MaintenanceWindow {
                start: now(),
                end: now(),
                time_zone: "UTC".into(),
            });
        },
        "window.end must be after window.start",
    );
    refused(
        &|c| {
            c.window = Some(MaintenanceWindow {
                start: now(),
                end: now() + time::Duration::hours(1),
                time_zone: "Europe/Am sterdam".into(),
            });
        },
        "not a time zone name",
    );
    refused(&|c| c.emergency = true, "needs emergency_reason");
    refused(&|c| c.ticket = Some("a\nb".into()), "ticket");
    let mut ok = content(RiskLevel::High);
    ok.target = ChangeTarget::Tenant {};
    ok.emergency = true;
    ok.emergency_reason = Some("core down".into());
    assert_eq!(validate_content(&ok), Ok(()));
}

#[test]
fn only_the_author_edits_and_an_edit_returns_to_draft() {
    let mut c = content(RiskLevel::Low);
    c.title = "NTP servers (v2)".into();
    let after = given::<ChangeRequest>(history(ChangeState::Draft))
        .when(ChangeCommand::Edit {
            by: By::user(AUTHOR),
            content: c.clone(),
            if_version: Some(1),
            sealed_script: None,
        })
        .then([ChangeRequestEdited {
            content: c.clone(),
            previous_state: ChangeState::Draft,
            sealed_script: None,
        }
        .into()]);
    assert_eq!(
        after.content.as_ref().map(|c| c.title.as_str()),
        Some("NTP servers (v2)")
    );
    // the same content in draft changes nothing
    given::<ChangeRequest>(history(ChangeState::Draft))
        .when(ChangeCommand::Edit {
            by: By::user(AUTHOR),
            content: content(RiskLevel::Low),
            if_version: None,
            sealed_script: None,
        })
        .then([]);
    given::<ChangeRequest>(history(ChangeState::Draft))
        .when(ChangeCommand::Edit {
            by: By::user(ANN),
            content: c.clone(),
            if_version: None,
            sealed_script: None,
        })
        .then_refused(ChangeRefusal::NotAuthor("edit"));
    given::<ChangeRequest>(history(ChangeState::Draft))
        .when(ChangeCommand::Edit {
            by: By::user(AUTHOR),
            content: c.clone(),
            if_version: Some(5),
            sealed_script: None,
        })
        .then_refused(ChangeRefusal::VersionMismatch { current: 1 });
    // a rejected request: edited back to draft, the rejection cleared
    let after = given::<ChangeRequest>(history(ChangeState::Rejected))
        .when(ChangeCommand::Edit {
            by: By::user(AUTHOR),
            content: c.clone(),
            if_version: None,
            sealed_script: None,
        })
        .then([ChangeRequestEdited {
            content: c.clone(),
            previous_state: ChangeState::Rejected,
            sealed_script: None,
        }
        .into()]);
    assert_eq!((after.state, after.rejection), (ChangeState::Draft, None));
    for s in [
        ChangeState::Scheduled,
        ChangeState::Running,
        ChangeState::Completed,
        ChangeState::Withdrawn,
    ] {
        given::<ChangeRequest>(history(s))
            .when(ChangeCommand::Edit {
                by: By::user(AUTHOR),
                content: c.clone(),
                if_version: None,
                sealed_script: None,
            })
            .then_refused(illegal(
                "edit",
                s,
                &[
                    ChangeState::Draft,
                    ChangeState::Submitted,
                    ChangeState::Approved,
                    ChangeState::Rejected,
                ],
            ));
    }
}

#[test]
fn an_edit_after_an_approval_invalidates_every_approval() {
    let mut h = vec![created(RiskLevel::High), submitted(2), approved(ANN)];
    let mut c = content(RiskLevel::High);
    c.reason = "CHG-1: new NTP pool, second server".into();
    let after = given::<ChangeRequest>(h.clone())
        .when(ChangeCommand::Edit {
            by: By::user(AUTHOR),
            content: c.clone(),
            if_version: None,
            sealed_script: None,
        })
        .then([
            ChangeRequestEdited {
                content: c.clone(),
                previous_state: ChangeState::Submitted,
                sealed_script: None,
            }
            .into(),
            ChangeRequestApprovalsInvalidated {
                approvers: vec![ANN.into()],
                reason: "the request was edited after it was approved".into(),
            }
            .into(),
        ]);
    assert_eq!(after.state, ChangeState::Draft);
    assert!(after.approvals.is_empty());
    // after re-submission, ann may approve again and two approvals are needed again
    h.extend([
        ChangeRequestEdited {
            content: c,
            previous_state: ChangeState::Submitted,
            sealed_script: None,
        }
        .into(),
        ChangeRequestApprovalsInvalidated {
            approvers: vec![ANN.into()],
            reason: "x".into(),
        }
        .into(),
        submitted(2),
    ]);
    let after = given::<ChangeRequest>(h.clone())
        .when(approve(ANN))
        .then([approved(ANN)]);
    assert_eq!(
        (after.state, after.missing_approvals()),
        (ChangeState::Submitted, 1)
    );
    h.push(approved(ANN));
    let after = given::<ChangeRequest>(h)
        .when(approve(BOB))
        .then([approved(BOB)]);
    assert_eq!(after.state, ChangeState::Approved);
}

#[test]
fn an_edit_of_an_approved_request_returns_it_to_draft_without_its_approvals() {
    let mut c = content(RiskLevel::Low);
    c.plan.batch_size = 2;
    let after = given::<ChangeRequest>(history(ChangeState::Approved))
        .when(ChangeCommand::Edit {
            by: By::user(AUTHOR),
            content: c.clone(),
            if_version: Some(3),
            sealed_script: None,
        })
        .then([
            ChangeRequestEdited {
                content: c,
                previous_state: ChangeState::Approved,
                sealed_script: None,
            }
            .into(),
            ChangeRequestApprovalsInvalidated {
                approvers: vec![ANN.into()],
                reason: "the request was edited after it was approved".into(),
            }
            .into(),
        ]);
    assert_eq!(after.state, ChangeState::Draft);
    assert!(after.approvals.is_empty());
}

#[test]
fn submit_freezes_the_devices_and_the_required_approvals() {
    let after = given::<ChangeRequest>(history(ChangeState::Draft))
        .when(submit(AUTHOR))
        .then([submitted(1)]);
    assert_eq!(after.state, ChangeState::Submitted);
    assert_eq!(after.devices, vec![dev(1), dev(2)]);
    assert_eq!(after.missing_approvals(), 1);
    // high risk: two under the default policy
    given::<ChangeRequest>([created(RiskLevel::High)])
        .when(submit(AUTHOR))
        .then([submitted(2)]);
    given::<ChangeRequest>(history(ChangeState::Draft))
        .when(submit(ANN))
        .then_refused(ChangeRefusal::NotAuthor("submit"));
    given::<ChangeRequest>([])
        .when(submit(AUTHOR))
        .then_refused(ChangeRefusal::NotFound);
    for s in [
        ChangeState::Submitted,
        ChangeState::Approved,
        ChangeState::Running,
    ] {
        given::<ChangeRequest>(history(s))
            .when(submit(AUTHOR))
            .then_refused(illegal("submit", s, &[ChangeState::Draft]));
    }
}

#[test]
fn submit_refusals() {
    let with = |devices: Vec<DeviceId>| ChangeCommand::Submit {
        by: By::user(AUTHOR),
        devices,
        previews: vec![],
        policy: ApprovalPolicy::default(),
        restore_script: None,
        now: now(),
    };
    given::<ChangeRequest>(history(ChangeState::Draft))
        .when(with(vec![]))
        .then_refused(ChangeRefusal::Invalid(
            "the target matches no device; pick devices or tags that exist".into(),
        ));
    given::<ChangeRequest>(history(ChangeState::Draft))
        .when(with(vec![dev(1), dev(1)]))
        .then_refused(ChangeRefusal::Invalid(
            "the target lists a device more than once".into(),
        ));
    // a window that ended
    let mut c = content(RiskLevel::Low);
    c.window = Some(MaintenanceWindow {
        start: now() - time::Duration::hours(2),
        end: now() - time::Duration::hours(1),
        time_zone: "UTC".into(),
    });
    given::<ChangeRequest>([ChangeRequestCreated {
        change_request_id: id(),
        author: AUTHOR.into(),
        content: c,
        sealed_script: None,
    }
    .into()])
    .when(with(vec![dev(1)]))
    .then_refused(ChangeRefusal::WindowEnded("2026-12-06T11:00:00Z".into()));
    // a bad policy
    given::<ChangeRequest>(history(ChangeState::Draft))
        .when(ChangeCommand::Submit {
            by: By::user(AUTHOR),
            devices: vec![dev(1)],
            previews: vec![],
            policy: ApprovalPolicy {
                low: 0,
                medium: 1,
                high: 1,
            },
            restore_script: None,
            now: now(),
        })
        .then_refused(ChangeRefusal::Invalid(
            "approvals.low must be between 1 and 10 (got 0)".into(),
        ));
}

#[test]
fn policy_violations_block_submission_unless_accepted_at_high_risk() {
    let violating = |h: Vec<ChangeEvent>| {
        given::<ChangeRequest>(h).when(ChangeCommand::Submit {
            by: By::user(AUTHOR),
            devices: vec![dev(1), dev(2)],
            previews: vec![
                preview(dev(1), &[]),
                preview(dev(2), &["line 1: /user is a forbidden menu"]),
            ],
            policy: ApprovalPolicy::default(),
            restore_script: None,
            now: now(),
        })
    };
    let refusal = ChangeRefusal::PolicyViolations {
        devices: 1,
        first: format!("{}: line 1: /user is a forbidden menu", dev(2)),
    };
    violating(vec![created(RiskLevel::Low)]).then_refused(refusal.clone());
    // accepted but not at high risk: still refused
    let mut c = content(RiskLevel::Medium);
    c.overrides.accept_policy_violations = true;
    let make = |c: ChangeContent| -> Vec<ChangeEvent> {
        vec![
            ChangeRequestCreated {
                change_request_id: id(),
                author: AUTHOR.into(),
                content: c,
                sealed_script: None,
            }
            .into(),
        ]
    };
    violating(make(c.clone())).then_refused(refusal);
    // high risk + accepted: submitted, and the approvals needed grow with the risk
    c.risk = RiskLevel::High;
    let after = violating(make(c)).then_ok();
    assert_eq!(after.required_approvals, 2);
    assert_eq!(after.previews[1].violations.len(), 1);
}

#[test]
fn a_restore_needs_its_computed_script() {
    let mut c = content(RiskLevel::Medium);
    c.target = ChangeTarget::Devices {
        device_ids: vec![dev(1)],
    };
    c.action = ChangeAction::Restore {
        device_id: dev(1),
        commit: "0123456789abcdef".into(),
    };
    let h = vec![ChangeEvent::from(ChangeRequestCreated {
        change_request_id: id(),
        author: AUTHOR.into(),
        content: c,
        sealed_script: None,
    })];
    let submit = |script: Option<&str>, note: Option<&str>| ChangeCommand::Submit {
        by: By::user(AUTHOR),
        devices: vec![dev(1)],
        previews: vec![DevicePreviewSummary {
            device_id: dev(1),
            changed_lines: 3,
            violations: vec![],
            note: note.map(str::to_owned),
        }],
        policy: ApprovalPolicy::default(),
        restore_script: script.map(str::to_owned),
        now: now(),
    };
    given::<ChangeRequest>(h.clone())
        .when(submit(
            None,
            Some("/ip firewall filter: entries without identity"),
        ))
        .then_refused(ChangeRefusal::Invalid(
            "the restore script could not be computed: /ip firewall filter: entries without \
             identity"
                .into(),
        ));
    given::<ChangeRequest>(h.clone())
        .when(submit(Some(""), None))
        .then_refused(ChangeRefusal::Invalid(
            "the device is at that version already: nothing to restore".into(),
        ));
    let after = given::<ChangeRequest>(h)
        .when(submit(Some("/system identity\nset name=r1\n"), None))
        .then_ok();
    assert_eq!(
        after.restore_script.as_deref(),
        Some("/system identity\nset name=r1\n")
    );
}

#[test]
fn four_eyes_the_author_never_approves_and_nobody_approves_twice() {
    given::<ChangeRequest>(history(ChangeState::Submitted))
        .when(approve(AUTHOR))
        .then_refused(ChangeRefusal::OwnRequest("approve"));
    let h = vec![created(RiskLevel::High), submitted(2), approved(ANN)];
    given::<ChangeRequest>(h.clone())
        .when(approve(ANN))
        .then_refused(ChangeRefusal::AlreadyApproved(ANN.into()));
    let after = given::<ChangeRequest>(history(ChangeState::Submitted))
        .when(ChangeCommand::Approve {
            by: By::user(ANN),
            comment: Some("looks right".into()),
        })
        .then([ChangeRequestApproved {
            by: ANN.into(),
            comment: Some("looks right".into()),
            retrospective: false,
        }
        .into()]);
    assert_eq!(after.state, ChangeState::Approved);
    for s in [
        ChangeState::Draft,
        ChangeState::Approved,
        ChangeState::Rejected,
    ] {
        given::<ChangeRequest>(history(s))
            .when(approve(BOB))
            .then_refused(illegal("approve", s, &[ChangeState::Submitted]));
    }
}

#[test]
fn a_rejection_needs_a_comment_and_another_person() {
    let after = given::<ChangeRequest>(history(ChangeState::Submitted))
        .when(ChangeCommand::Reject {
            by: By::user(BOB),
            comment: "wrong NTP server".into(),
        })
        .then([ChangeRequestRejected {
            by: BOB.into(),
            comment: "wrong NTP server".into(),
        }
        .into()]);
    assert_eq!(after.state, ChangeState::Rejected);
    // an approved request can still be rejected by another approver before it runs
    given::<ChangeRequest>(history(ChangeState::Approved))
        .when(ChangeCommand::Reject {
            by: By::user(BOB),
            comment: "not tonight".into(),
        })
        .then_ok();
    given::<ChangeRequest>(history(ChangeState::Submitted))
        .when(ChangeCommand::Reject {
            by: By::user(BOB),
            comment: " ".into(),
        })
        .then_refused(ChangeRefusal::Invalid(
            "a rejection needs a comment saying why".into(),
        ));
    given::<ChangeRequest>(history(ChangeState::Submitted))
        .when(ChangeCommand::Reject {
            by: By::user(AUTHOR),
            comment: "changed my mind".into(),
        })
        .then_refused(ChangeRefusal::OwnRequest("reject"));
    given::<ChangeRequest>(history(ChangeState::Running))
        .when(ChangeCommand::Reject {
            by: By::user(BOB),
            comment: "x".into(),
        })
        .then_refused(illegal(
            "reject",
            ChangeState::Running,
            &[ChangeState::Submitted, ChangeState::Approved],
        ));
}

#[test]
fn the_author_withdraws_before_it_is_scheduled() {
    for s in [
        ChangeState::Draft,
        ChangeState::Submitted,
        ChangeState::Approved,
        ChangeState::Rejected,
    ] {
        let after = given::<ChangeRequest>(history(s))
            .when(ChangeCommand::Withdraw {
                by: By::user(AUTHOR),
                reason: Some("superseded".into()),
            })
            .then([ChangeRequestWithdrawn {
                reason: Some("superseded".into()),
            }
            .into()]);
        assert_eq!(after.state, ChangeState::Withdrawn);
        assert!(after.state.is_final());
    }
    given::<ChangeRequest>(history(ChangeState::Draft))
        .when(ChangeCommand::Withdraw {
            by: By::user(ANN),
            reason: None,
        })
        .then_refused(ChangeRefusal::NotAuthor("withdraw"));
    given::<ChangeRequest>(history(ChangeState::Scheduled))
        .when(ChangeCommand::Withdraw {
            by: By::user(AUTHOR),
            reason: None,
        })
        .then_refused(illegal(
            "withdraw",
            ChangeState::Scheduled,
            &[
                ChangeState::Draft,
                ChangeState::Submitted,
                ChangeState::Approved,
                ChangeState::Rejected,
            ],
        ));
}

#[test]
fn scheduling_needs_the_approvals() {
    let schedule = ChangeCommand::Schedule {
        by: By::user(AUTHOR),
        workflow_id: wf(),
    };
    let after = given::<ChangeRequest>(history(ChangeState::Approved))
        .when(schedule.clone())
        .then([scheduled()]);
    assert_eq!(
        (after.state, after.workflow_id),
        (ChangeState::Scheduled, Some(wf()))
    );
    given::<ChangeRequest>(history(ChangeState::Submitted))
        .when(schedule.clone())
        .then_refused(ChangeRefusal::NotApproved { missing: 1 });
    given::<ChangeRequest>(history(ChangeState::Draft))
        .when(schedule.clone())
        .then_refused(illegal(
            "start",
            ChangeState::Draft,
            &[ChangeState::Approved],
        ));
    given::<ChangeRequest>(history(ChangeState::Scheduled))
        .when(schedule)
        .then_refused(illegal(
            "start",
            ChangeState::Scheduled,
            &[ChangeState::Approved],
        ));
}

#[test]
fn the_run_records_start_pause_resume_and_its_end() {
    let after = given::<ChangeRequest>(history(ChangeState::Scheduled))
        .when(ChangeCommand::Start { rollout_id: ro() })
        .then([started()]);
    assert_eq!(after.state, ChangeState::Running);
    // repeated by a re-run step: nothing new
    given::<ChangeRequest>(history(ChangeState::Running))
        .when(ChangeCommand::Start { rollout_id: ro() })
        .then([]);
    given::<ChangeRequest>(history(ChangeState::Approved))
        .when(ChangeCommand::Start { rollout_id: ro() })
        .then_refused(illegal(
            "record the rollout start of",
            ChangeState::Approved,
            &[ChangeState::Scheduled],
        ));
    let paused: ChangeEvent = ChangeRequestPaused {
        pause: 1,
        reason: "window ended".into(),
    }
    .into();
    let after = given::<ChangeRequest>(history(ChangeState::Running))
        .when(ChangeCommand::Pause {
            reason: "window ended".into(),
        })
        .then([paused.clone()]);
    assert_eq!(after.paused, Some(1));
    let mut h = history(ChangeState::Running);
    h.push(paused);
    // paused already: nothing new
    given::<ChangeRequest>(h.clone())
        .when(ChangeCommand::Pause { reason: "x".into() })
        .then([]);
    given::<ChangeRequest>(h.clone())
        .when(ChangeCommand::Resume { pause: 2 })
        .then_refused(ChangeRefusal::NotPaused(2));
    let after = given::<ChangeRequest>(h.clone())
        .when(ChangeCommand::Resume { pause: 1 })
        .then([ChangeRequestResumed { pause: 1 }.into()]);
    assert_eq!(after.paused, None);
    h.push(ChangeRequestResumed { pause: 1 }.into());
    // the next pause is number 2
    given::<ChangeRequest>(h)
        .when(ChangeCommand::Pause {
            reason: "again".into(),
        })
        .then([ChangeRequestPaused {
            pause: 2,
            reason: "again".into(),
        }
        .into()]);
    for end in [
        ChangeState::Completed,
        ChangeState::Failed,
        ChangeState::RolledBack,
        ChangeState::Cancelled,
    ] {
        let after = given::<ChangeRequest>(history(ChangeState::Running))
            .when(ChangeCommand::Finish {
                state: end,
                reason: Some("why".into()),
            })
            .then([ChangeRequestFinished {
                state: end,
                reason: Some("why".into()),
            }
            .into()]);
        assert_eq!(after.state, end);
        // a re-run of the finishing step adds nothing
        given::<ChangeRequest>(history(end))
            .when(ChangeCommand::Finish {
                state: end,
                reason: None,
            })
            .then([]);
    }
    // the window passed before the start: a scheduled request ends cancelled
    given::<ChangeRequest>(history(ChangeState::Scheduled))
        .when(ChangeCommand::Finish {
            state: ChangeState::Cancelled,
            reason: Some("window ended".into()),
        })
        .then_ok();
    given::<ChangeRequest>(history(ChangeState::Running))
        .when(ChangeCommand::Finish {
            state: ChangeState::Approved,
            reason: None,
        })
        .then_refused(ChangeRefusal::Invalid(
            "a run ends completed, failed, rolled_back or cancelled, not approved".into(),
        ));
    given::<ChangeRequest>(history(ChangeState::Approved))
        .when(ChangeCommand::Finish {
            state: ChangeState::Completed,
            reason: None,
        })
        .then_refused(illegal(
            "finish",
            ChangeState::Approved,
            &[ChangeState::Scheduled, ChangeState::Running],
        ));
}

#[test]
fn cancel_before_the_run_ends_it_and_while_running_asks_the_rollout() {
    let cancel = ChangeCommand::Cancel {
        by: By::user(ANN),
        reason: "freeze".into(),
    };
    for s in [ChangeState::Approved, ChangeState::Scheduled] {
        let after = given::<ChangeRequest>(history(s))
            .when(cancel.clone())
            .then([ChangeRequestCancelled {
                by: ANN.into(),
                reason: "freeze".into(),
            }
            .into()]);
        assert_eq!(after.state, ChangeState::Cancelled);
    }
    let after = given::<ChangeRequest>(history(ChangeState::Running))
        .when(cancel.clone())
        .then([ChangeRequestCancelRequested {
            by: ANN.into(),
            reason: "freeze".into(),
        }
        .into()]);
    assert_eq!(
        (after.state, after.cancel_requested),
        (ChangeState::Running, true)
    );
    let mut h = history(ChangeState::Running);
    h.push(
        ChangeRequestCancelRequested {
            by: ANN.into(),
            reason: "freeze".into(),
        }
        .into(),
    );
    given::<ChangeRequest>(h).when(cancel.clone()).then([]);
    // the run of a request cancelled while scheduled ends without a second event
    let mut h = history(ChangeState::Scheduled);
    h.push(
        ChangeRequestCancelled {
            by: ANN.into(),
            reason: "freeze".into(),
        }
        .into(),
    );
    given::<ChangeRequest>(h)
        .when(ChangeCommand::Finish {
            state: ChangeState::Cancelled,
            reason: None,
        })
        .then([]);
    given::<ChangeRequest>(history(ChangeState::Submitted))
        .when(cancel)
        .then_refused(illegal(
            "cancel",
            ChangeState::Submitted,
            &[
                ChangeState::Approved,
                ChangeState::Scheduled,
                ChangeState::Running,
            ],
        ));
}

#[test]
fn break_glass_runs_without_approval_and_is_reviewed_after() {
    let mut c = content(RiskLevel::High);
    c.emergency = true;
    c.emergency_reason = Some("core link down".into());
    let mut h = vec![
        ChangeEvent::from(ChangeRequestCreated {
            change_request_id: id(),
            author: AUTHOR.into(),
            content: c,
            sealed_script: None,
        }),
        submitted(2),
    ];
    // starts from submitted, without approvals
    given::<ChangeRequest>(h.clone())
        .when(ChangeCommand::Schedule {
            by: By::user(AUTHOR),
            workflow_id: wf(),
        })
        .then([scheduled()]);
    h.extend([scheduled(), started()]);
    let s = given::<ChangeRequest>(h.clone());
    assert!(s.state().review_pending());
    // approvals after the run are retrospective reviews; still not by the author
    s.when(approve(AUTHOR))
        .then_refused(ChangeRefusal::OwnRequest("approve"));
    let after =
        given::<ChangeRequest>(h.clone())
            .when(approve(ANN))
            .then([ChangeRequestApproved {
                by: ANN.into(),
                comment: None,
                retrospective: true,
            }
            .into()]);
    assert!(after.review_pending());
    h.push(
        ChangeRequestApproved {
            by: ANN.into(),
            comment: None,
            retrospective: true,
        }
        .into(),
    );
    given::<ChangeRequest>(h.clone())
        .when(approve(ANN))
        .then_refused(ChangeRefusal::AlreadyApproved(ANN.into()));
    h.push(
        ChangeRequestApproved {
            by: BOB.into(),
            comment: Some("fine".into()),
            retrospective: true,
        }
        .into(),
    );
    let s = given::<ChangeRequest>(h.clone());
    assert!(!s.state().review_pending());
    assert_eq!(s.state().state, ChangeState::Running);
    s.when(approve("carol"))
        .then_refused(ChangeRefusal::AlreadyReviewed);
}

#[test]
fn the_refusal_names_the_state_and_the_allowed_ones() {
    let e = illegal("approve", ChangeState::Draft, &[ChangeState::Submitted]);
    assert_eq!(
        e.to_string(),
        "cannot approve a change request that is draft; allowed only when submitted"
    );
}

#[test]
fn events_round_trip_through_the_enum() {
    use crate::event::EventEnum;
    let mut events = history(ChangeState::Running);
    events.extend([
        ChangeRequestPaused {
            pause: 1,
            reason: "w".into(),
        }
        .into(),
        ChangeRequestResumed { pause: 1 }.into(),
        ChangeRequestCancelRequested {
            by: ANN.into(),
            reason: "r".into(),
        }
        .into(),
        ChangeRequestFinished {
            state: ChangeState::Cancelled,
            reason: None,
        }
        .into(),
    ]);
    for e in events {
        let payload = e.payload().unwrap();
        let back = ChangeEvent::decode_stored(crate::event::StoredEvent {
            position: 1,
            event_type: e.event_type(),
            schema_version: e.schema_version(),
            payload: &payload,
        })
        .unwrap();
        assert_eq!(back, e);
    }
}

#[test]
fn switching_off_the_rollback_timer_needs_approval_at_risk_high() {
    // Issue #15 item 5: the override is for approvers to accept, like policy violations:
    // never in a break-glass run (which starts without approval), only at risk high.
    let mut c = content(RiskLevel::Medium);
    c.overrides.allow_without_timer = true;
    let e = validate_content(&c).unwrap_err();
    assert!(e.to_string().contains("needs risk high"), "{e}");
    c.risk = RiskLevel::High;
    c.emergency = true;
    c.emergency_reason = Some("outage".into());
    let e = validate_content(&c).unwrap_err();
    assert!(e.to_string().contains("emergency"), "{e}");
    c.emergency = false;
    c.emergency_reason = None;
    assert!(validate_content(&c).is_ok());
}

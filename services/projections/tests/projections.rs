//! Projection tests against a real PostgreSQL: a fresh database per test with the real
//! migrations and roles. Projectors run as `netledger_system`, queries as `netledger_app`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::Duration;

use netledger_domain::change::{
    ChangeAction, ChangeContent, ChangeRequestApproved, ChangeRequestCreated,
    ChangeRequestFinished, ChangeRequestRejected, ChangeRequestScheduled, ChangeRequestStarted,
    ChangeRequestSubmitted, ChangeState, ChangeTarget, Overrides, RiskLevel, RolloutPlan,
};
use netledger_domain::device::{
    ConfigDriftDetected, ConfigSnapshotRecorded, DeviceCameOnline, DeviceFacts, DeviceName,
    DevicePollingResumed, DevicePollingSuspended, DeviceRegistered, DeviceRemoved,
    DeviceRollbackTimersCleared, DeviceRollbackTimersFound, DeviceTagsSet, DeviceUpdated,
    DeviceVersionChanged, DeviceWentOffline, Endpoint, Host, SnapshotReason, Tag, Transport,
};
use netledger_domain::workflow::{
    FailureClass, Outcome, RestoreResult, RolloutCreated, RolloutDeviceFinished,
    RolloutDeviceRestored, RolloutState, RolloutStateChanged, RolloutTarget, WorkflowFinished,
    WorkflowSignalled, WorkflowStarted, WorkflowStepCompleted, WorkflowStepFailed,
    WorkflowStepStarted, WorkflowTimerScheduled,
};
use netledger_domain::{
    Actor, ChangeRequestId, DeviceId, EventId, EventMetadata, EventType, ExpectedVersion, NewEvent,
    RecordedEvent, RolloutId, StreamName, TenantId, WorkflowId,
};
use netledger_projections::query::{
    self, AuditQuery, BreakerState, ConfigVersionKind, ConfigVersionQuery, DeviceQuery,
    DeviceStatus, RolloutDeviceQuery, RolloutQuery, StepState, WorkflowRunQuery, WorkflowRunState,
};
use netledger_projections::{
    BatchOutcome, PROJECTORS, ProjectionError, ReplayOptions, RunOptions, apply_events, catch_up,
    checkpoint, dump, lag, replay, replay_with,
};
use netledger_store::{EventReader, EventStore, Pools, StoreOptions, begin_tenant};
use netledger_testkit::{WorkloadSpec, fill};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

struct Db {
    owner: PgPool,
    app: PgPool,
    system: PgPool,
    store: EventStore,
}

async fn db(owner: PgPool) -> Db {
    let pools = Pools::connect(&owner.connect_options(), None, None, 4)
        .await
        .unwrap();
    let store = EventStore::start(pools.app.clone(), StoreOptions::default());
    Db {
        owner,
        app: pools.app,
        system: pools.system,
        store,
    }
}

fn user() -> Actor {
    Actor::User {
        id: Uuid::from_u128(7),
    }
}

fn ev<E: EventType>(payload: &E) -> NewEvent {
    NewEvent::from_typed(
        payload,
        EventMetadata::for_command(Actor::system("poller"), Uuid::new_v4()),
    )
    .unwrap()
}

fn ev_by<E: EventType>(payload: &E, actor: Actor) -> NewEvent {
    NewEvent::from_typed(payload, EventMetadata::for_command(actor, Uuid::new_v4())).unwrap()
}

impl Db {
    async fn append(&self, tenant: TenantId, stream: &StreamName, events: Vec<NewEvent>) {
        self.store
            .append(tenant, stream, ExpectedVersion::Any, events)
            .await
            .unwrap();
    }

    async fn events(&self) -> Vec<RecordedEvent> {
        EventReader::system(self.system.clone(), None)
            .read_all(0, 100_000)
            .await
            .unwrap()
    }

    /// Applies every stored event to every projector (one batch each).
    async fn project_all(&self) {
        let events = self.events().await;
        for p in PROJECTORS {
            let outcome = apply_events(&self.system, p, &events).await.unwrap();
            assert!(matches!(outcome, BatchOutcome::Applied { .. }), "{p}");
        }
    }
}

/// A few change requests in each tenant (the workload generator writes none): one that ran
/// to completion, one rejected, one draft. Returns the number of events appended.
async fn change_requests(db: &Db, tenants: &[TenantId]) -> u64 {
    let content = |title: &str| ChangeContent {
        title: title.into(),
        reason: "maintenance".into(),
        ticket: None,
        target: ChangeTarget::Tenant {},
        action: ChangeAction::Script {
            script: "/system ntp client\nset enabled=yes\n".into(),
        },
        plan: RolloutPlan::default(),
        risk: RiskLevel::Low,
        window: None,
        overrides: Overrides::default(),
        emergency: false,
        emergency_reason: None,
    };
    let author = Uuid::from_u128(7).to_string();
    let mut appended = 0;
    for t in tenants {
        let (ran, rejected, draft) = (
            ChangeRequestId::new_random(),
            ChangeRequestId::new_random(),
            ChangeRequestId::new_random(),
        );
        let created = |id, title: &str| {
            ev_by(
                &ChangeRequestCreated {
                    change_request_id: id,
                    author: author.clone(),
                    content: content(title),
                    sealed_script: None,
                },
                user(),
            )
        };
        let submitted = || {
            ev_by(
                &ChangeRequestSubmitted {
                    devices: vec![DeviceId::new_random()],
                    previews: vec![],
                    required_approvals: 1,
                    restore_script: None,
                },
                user(),
            )
        };
        let streams = [
            (
                ran,
                vec![
                    created(ran, "ran"),
                    submitted(),
                    ev(&ChangeRequestApproved {
                        by: "approver".into(),
                        comment: None,
                        retrospective: false,
                    }),
                    ev(&ChangeRequestScheduled {
                        workflow_id: WorkflowId::new_random(),
                        by: author.clone(),
                        window: None,
                    }),
                    ev(&ChangeRequestStarted {
                        rollout_id: RolloutId::new_random(),
                    }),
                    ev(&ChangeRequestFinished {
                        state: ChangeState::Completed,
                        reason: None,
                    }),
                ],
            ),
            (
                rejected,
                vec![
                    created(rejected, "rejected"),
                    submitted(),
                    ev(&ChangeRequestRejected {
                        by: "approver".into(),
                        comment: "no".into(),
                    }),
                ],
            ),
            (draft, vec![created(draft, "draft")]),
        ];
        for (id, events) in streams {
            appended += events.len() as u64;
            db.append(*t, &id.stream(), events).await;
        }
    }
    appended
}

fn registered(id: DeviceId, name: &str, tags: &[&str]) -> DeviceRegistered {
    DeviceRegistered {
        device_id: id,
        name: DeviceName::parse(name).unwrap(),
        endpoint: Endpoint {
            host: Host::parse("10.0.0.1").unwrap(),
            port: 8728,
            transport: Transport::Plain,
            ssh: None,
        },
        username: "admin".into(),
        credentials_key_id: "k1".into(),
        tags: tags.iter().map(|t| Tag::parse(t).unwrap()).collect(),
        poll_interval_secs: 60,
        ssh_client_key: None,
    }
}

fn facts(version: &str) -> DeviceFacts {
    DeviceFacts {
        identity: "core".into(),
        version: version.into(),
        board_name: "CCR2004".into(),
        architecture: "arm64".into(),
        routerboard_firmware: Some("7.15".into()),
    }
}

fn snapshot(sha: &str, changed: bool) -> ConfigSnapshotRecorded {
    ConfigSnapshotRecorded {
        commit: format!("commit-{sha}"),
        sha256: sha.into(),
        changed,
        reason: SnapshotReason::Scheduled,
        routeros_version: "7.15".into(),
        workflow_id: None,
    }
}

fn recorded_at(events: &[RecordedEvent], stream: &StreamName, event_type: &str) -> OffsetDateTime {
    events
        .iter()
        .rev()
        .find(|e| &e.stream == stream && e.event_type == event_type)
        .unwrap()
        .recorded_at
}

/// Issue #15 item 3: the rollback-timer condition is a field of the device's detail from
/// `DeviceRollbackTimersFound` (first time kept, latest details) until
/// `DeviceRollbackTimersCleared`, and a replay folds the same.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn the_rollback_timer_condition_folds_into_the_detail(pool: PgPool) {
    let db = db(pool).await;
    let t = TenantId::new_random();
    let d = DeviceId::new_random();
    let (w1, w2) = (WorkflowId::new_random(), WorkflowId::new_random());
    db.append(
        t,
        &d.stream(),
        vec![ev_by(&registered(d, "core-1", &[]), user())],
    )
    .await;
    db.project_all().await;
    let fresh = query::device_detail(&db.app, t, d).await.unwrap().unwrap();
    assert_eq!(fresh.rollback_timers, None);

    let found = |w: WorkflowId, timers: &[&str], source: &str| DeviceRollbackTimersFound {
        timers: timers.iter().map(|s| (*s).to_owned()).collect(),
        workflow_id: w,
        source: source.to_owned(),
        detail: format!("found by {w}"),
    };
    db.append(
        t,
        &d.stream(),
        vec![ev(&found(
            w1,
            &["netledger-rollback-a"],
            "rollback_unconfirmed",
        ))],
    )
    .await;
    db.project_all().await;
    let first = query::device_detail(&db.app, t, d)
        .await
        .unwrap()
        .unwrap()
        .rollback_timers
        .expect("the condition is in the detail");
    assert_eq!(first.timers, ["netledger-rollback-a"]);
    assert_eq!(first.source, "rollback_unconfirmed");
    assert_eq!(first.workflow_id, *w1.as_uuid());

    db.append(
        t,
        &d.stream(),
        vec![ev(&found(
            w2,
            &["netledger-rollback-a", "netledger-rollback-b"],
            "refused_arm",
        ))],
    )
    .await;
    db.project_all().await;
    let second = query::device_detail(&db.app, t, d)
        .await
        .unwrap()
        .unwrap()
        .rollback_timers
        .unwrap();
    assert_eq!(second.timers.len(), 2);
    assert_eq!(second.source, "refused_arm");
    assert_eq!(second.workflow_id, *w2.as_uuid());
    assert_eq!(second.since, first.since, "since: when it was first found");

    db.append(
        t,
        &d.stream(),
        vec![ev(&DeviceRollbackTimersCleared { workflow_id: w2 })],
    )
    .await;
    db.project_all().await;
    let cleared = query::device_detail(&db.app, t, d).await.unwrap().unwrap();
    assert_eq!(cleared.rollback_timers, None);
    assert_eq!(cleared.stream_version, 4);
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn device_events_fold_into_the_list_and_the_detail(pool: PgPool) {
    let db = db(pool).await;
    let t = TenantId::new_random();
    let (a, b, c) = (
        DeviceId::new_random(),
        DeviceId::new_random(),
        DeviceId::new_random(),
    );
    db.append(
        t,
        &a.stream(),
        vec![ev_by(
            &registered(a, "core-1", &["site:ber", "role:core"]),
            user(),
        )],
    )
    .await;
    db.append(
        t,
        &b.stream(),
        vec![ev_by(&registered(b, "edge-2", &["site:ber"]), user())],
    )
    .await;
    db.append(
        t,
        &c.stream(),
        vec![ev_by(&registered(c, "access-3", &[]), user())],
    )
    .await;
    db.append(
        t,
        &a.stream(),
        vec![
            ev(&DeviceCameOnline {
                facts: facts("7.15 (stable)"),
            }),
            ev(&DeviceVersionChanged {
                from: "7.15 (stable)".into(),
                to: "7.16 (stable)".into(),
            }),
            ev(&snapshot("s1", true)),
            ev(&ConfigDriftDetected {
                expected_sha256: "s1".into(),
                found_sha256: "s2".into(),
                commit: "commit-s2".into(),
                ..Default::default()
            }),
        ],
    )
    .await;
    // b: online, then offline with the breaker open; an unknown event type changes only
    // the stream position and the time of the last event.
    db.append(
        t,
        &b.stream(),
        vec![
            ev(&DeviceCameOnline {
                facts: facts("7.14"),
            }),
            ev(&DeviceWentOffline {
                reason: "timeout".into(),
            }),
            ev(&DevicePollingSuspended {
                consecutive_failures: 5,
                retry_at: OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000),
                last_error: "timeout".into(),
            }),
            NewEvent::new(
                EventId::new_random(),
                "DeviceSomethingNew",
                1,
                serde_json::json!({"x": 1}),
                EventMetadata::for_command(Actor::system("poller"), Uuid::new_v4()),
            )
            .unwrap(),
        ],
    )
    .await;
    // c: renamed, tags set, then removed.
    db.append(
        t,
        &c.stream(),
        vec![
            ev_by(
                &DeviceUpdated {
                    name: Some(DeviceName::parse("access-9").unwrap()),
                    endpoint: None,
                    poll_interval_secs: Some(300),
                },
                user(),
            ),
            ev_by(
                &DeviceTagsSet {
                    tags: [Tag::parse("site:muc").unwrap()].into(),
                },
                user(),
            ),
            ev_by(
                &DeviceRemoved {
                    reason: "decommissioned".into(),
                },
                user(),
            ),
        ],
    )
    .await;
    // Events of a stream that was never registered are skipped.
    let ghost = DeviceId::new_random();
    db.append(
        t,
        &ghost.stream(),
        vec![ev(&DeviceCameOnline {
            facts: facts("7.1"),
        })],
    )
    .await;
    db.project_all().await;
    let events = db.events().await;

    let list = query::list_devices(&db.app, t, &DeviceQuery::default())
        .await
        .unwrap();
    let names: Vec<&str> = list.items.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        ["core-1", "edge-2"],
        "removed devices are left out by default"
    );
    let all = query::list_devices(
        &db.app,
        t,
        &DeviceQuery {
            include_removed: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let names: Vec<&str> = all.items.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["access-9", "core-1", "edge-2"]);

    let core = &list.items[0];
    assert_eq!(core.status, DeviceStatus::Online);
    assert_eq!(core.routeros_version.as_deref(), Some("7.16 (stable)"));
    assert_eq!(core.tags, ["role:core", "site:ber"]);
    assert_eq!(core.breaker, BreakerState::Closed);
    // Drift proves the device answered: last seen is the drift event.
    assert_eq!(
        core.last_seen_at,
        Some(recorded_at(&events, &a.stream(), "ConfigDriftDetected"))
    );

    let edge = query::device_detail(&db.app, t, b).await.unwrap().unwrap();
    assert_eq!(edge.status, DeviceStatus::Offline);
    assert_eq!(edge.offline_reason.as_deref(), Some("timeout"));
    assert_eq!(edge.breaker.state, BreakerState::Open);
    assert_eq!(edge.breaker.consecutive_failures, Some(5));
    assert_eq!(edge.stream_version, 5);
    // Going offline, tripping the breaker or an unknown type does not prove it answered.
    assert_eq!(
        edge.last_seen_at,
        Some(recorded_at(&events, &b.stream(), "DeviceCameOnline"))
    );
    assert_eq!(
        edge.last_event_at,
        recorded_at(&events, &b.stream(), "DeviceSomethingNew")
    );
    assert_eq!(
        edge.facts.as_ref().unwrap().routeros_version.as_deref(),
        Some("7.14")
    );

    let core = query::device_detail(&db.app, t, a).await.unwrap().unwrap();
    let snap = core.last_snapshot.unwrap();
    assert_eq!(
        (snap.commit.as_str(), snap.sha256.as_str()),
        ("commit-s2", "s2")
    );
    assert!(core.last_drift_at.is_some());

    let removed = query::device_detail(&db.app, t, c).await.unwrap().unwrap();
    assert_eq!(removed.poll_interval_secs, 300);
    assert_eq!(removed.removed_reason.as_deref(), Some("decommissioned"));
    assert!(
        query::device_detail(&db.app, t, ghost)
            .await
            .unwrap()
            .is_none()
    );

    // Filters: tag (through the tag index, after the rename), status, search; pagination.
    let tagged = query::list_devices(
        &db.app,
        t,
        &DeviceQuery {
            tag: Some("site:ber".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(tagged.items.len(), 2);
    let muc = query::list_devices(
        &db.app,
        t,
        &DeviceQuery {
            tag: Some("site:muc".into()),
            include_removed: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        muc.items
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>(),
        ["access-9"]
    );
    let offline = query::list_devices(
        &db.app,
        t,
        &DeviceQuery {
            status: Some(DeviceStatus::Offline),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(offline.items.iter().map(|d| d.id).collect::<Vec<_>>(), [b]);
    let search = query::list_devices(
        &db.app,
        t,
        &DeviceQuery {
            search: Some("DGE".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(search.items.iter().map(|d| d.id).collect::<Vec<_>>(), [b]);
    let page1 = query::list_devices(
        &db.app,
        t,
        &DeviceQuery {
            include_removed: true,
            limit: Some(2),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(page1.items.len(), 2);
    let page2 = query::list_devices(
        &db.app,
        t,
        &DeviceQuery {
            include_removed: true,
            limit: Some(2),
            cursor: page1.next_cursor.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        page2
            .items
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>(),
        ["edge-2"]
    );
    assert_eq!(page2.next_cursor, None);
    let bad = query::list_devices(
        &db.app,
        t,
        &DeviceQuery {
            cursor: Some("nonsense".into()),
            ..Default::default()
        },
    )
    .await;
    assert!(
        matches!(bad, Err(ProjectionError::BadCursor { .. })),
        "{bad:?}"
    );

    // The tag index follows renames and tag changes: one row per (device, tag).
    let tags: Vec<(String, String)> = sqlx::query_as(
        "SELECT tag, name FROM rm_device_tags WHERE tenant_id = $1 ORDER BY tag, name",
    )
    .bind(t.as_uuid())
    .fetch_all(&db.owner)
    .await
    .unwrap();
    assert_eq!(
        tags,
        [
            ("role:core".into(), "core-1".into()),
            ("site:ber".into(), "core-1".into()),
            ("site:ber".into(), "edge-2".into()),
            ("site:muc".into(), "access-9".into()),
        ]
    );

    // Resumed polling closes the breaker and proves the device answered.
    db.append(t, &b.stream(), vec![ev(&DevicePollingResumed {})])
        .await;
    catch_up(&db.system, Some("devices"), 100).await.unwrap();
    let edge = query::device_detail(&db.app, t, b).await.unwrap().unwrap();
    assert_eq!(edge.breaker.state, BreakerState::Closed);
    assert_eq!(edge.last_seen_at, Some(edge.last_event_at));
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn config_versions_are_listed_newest_first(pool: PgPool) {
    let db = db(pool).await;
    let t = TenantId::new_random();
    let d = DeviceId::new_random();
    let wf = WorkflowId::new_random();
    db.append(t, &d.stream(), vec![ev(&registered(d, "core-1", &[]))])
        .await;
    db.append(
        t,
        &d.stream(),
        vec![
            ev(&snapshot("a", true)),
            ev(&snapshot("a", false)),
            ev(&ConfigSnapshotRecorded {
                reason: SnapshotReason::PrePush,
                workflow_id: Some(wf),
                ..snapshot("b", true)
            }),
            ev(&ConfigDriftDetected {
                expected_sha256: "b".into(),
                found_sha256: "c".into(),
                commit: "commit-c".into(),
                ..Default::default()
            }),
        ],
    )
    .await;
    db.project_all().await;
    let page = query::config_versions(&db.app, t, d, &ConfigVersionQuery::default())
        .await
        .unwrap();
    let seen: Vec<(i64, ConfigVersionKind, &str)> = page
        .items
        .iter()
        .map(|v| (v.stream_version, v.kind, v.sha256.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (5, ConfigVersionKind::Drift, "c"),
            (4, ConfigVersionKind::Snapshot, "b"),
            (3, ConfigVersionKind::Snapshot, "a"),
            (2, ConfigVersionKind::Snapshot, "a"),
        ]
    );
    assert_eq!(page.items[0].expected_sha256.as_deref(), Some("b"));
    assert_eq!(page.items[1].workflow_id, Some(wf));
    assert_eq!(page.items[1].reason, SnapshotReason::PrePush);
    let changed = query::config_versions(
        &db.app,
        t,
        d,
        &ConfigVersionQuery {
            changed_only: true,
            limit: Some(2),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        changed
            .items
            .iter()
            .map(|v| v.stream_version)
            .collect::<Vec<_>>(),
        [5, 4]
    );
    let rest = query::config_versions(
        &db.app,
        t,
        d,
        &ConfigVersionQuery {
            changed_only: true,
            limit: Some(2),
            cursor: changed.next_cursor,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        rest.items
            .iter()
            .map(|v| v.stream_version)
            .collect::<Vec<_>>(),
        [2]
    );
    assert!(rest.next_cursor.is_none());
}

fn started(kind: &str, devices: Vec<DeviceId>) -> WorkflowStarted {
    WorkflowStarted {
        kind: kind.into(),
        definition_version: 3,
        input: serde_json::json!({"script": "/ip dns set servers=1.1.1.1"}),
        idempotency_key: Some("k-1".into()),
        devices,
        rollout_id: None,
    }
}

fn step_started(step: &str, attempt: u32) -> WorkflowStepStarted {
    WorkflowStepStarted {
        step: step.into(),
        attempt,
    }
}

fn step_done(step: &str, attempt: u32) -> WorkflowStepCompleted {
    WorkflowStepCompleted {
        step: step.into(),
        attempt,
        output: serde_json::json!({"ok": true}),
    }
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn workflow_journals_fold_into_runs_and_steps(pool: PgPool) {
    let db = db(pool).await;
    let t = TenantId::new_random();
    let (d1, d2) = (DeviceId::new_random(), DeviceId::new_random());
    let (push, backup, stuck) = (
        WorkflowId::new_random(),
        WorkflowId::new_random(),
        WorkflowId::new_random(),
    );
    let retry_at = OffsetDateTime::UNIX_EPOCH + time::Duration::days(21_000);
    db.append(
        t,
        &push.stream(),
        vec![
            ev(&started("config_push", vec![d1])),
            ev(&step_started("snapshot", 1)),
            ev(&step_done("snapshot", 1)),
            ev(&step_started("apply", 1)),
            ev(&WorkflowStepFailed {
                step: "apply".into(),
                attempt: 1,
                error: "device did not answer".into(),
                class: FailureClass::Retryable,
                retry_at: Some(retry_at),
            }),
        ],
    )
    .await;
    db.append(
        t,
        &backup.stream(),
        vec![
            ev(&started("backup", vec![d2])),
            ev(&step_started("export", 1)),
        ],
    )
    .await;
    db.append(
        t,
        &stuck.stream(),
        vec![
            ev(&started("firmware_upgrade", vec![d1, d2])),
            ev(&WorkflowTimerScheduled {
                name: "await".into(),
                fire_at: retry_at,
            }),
            ev(&WorkflowSignalled {
                signal: "pause".into(),
                payload: serde_json::json!({}),
            }),
        ],
    )
    .await;
    // A journal event for a workflow that never started is skipped.
    db.append(
        t,
        &WorkflowId::new_random().stream(),
        vec![ev(&step_started("x", 1))],
    )
    .await;
    db.project_all().await;

    let run = query::workflow_run_detail(&db.app, t, push)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.run.state, WorkflowRunState::Retrying);
    assert_eq!(run.run.wake_at, Some(retry_at));
    assert_eq!(run.run.failed_attempts, 1);
    assert_eq!(run.run.steps_completed, 1);
    assert_eq!(run.run.devices, [d1]);
    assert_eq!(run.run.definition_version, 3);
    assert_eq!(run.input["script"], "/ip dns set servers=1.1.1.1");
    let steps: Vec<(&str, StepState, u32)> = run
        .steps
        .iter()
        .map(|s| (s.step.as_str(), s.state, s.attempts))
        .collect();
    assert_eq!(
        steps,
        [
            ("snapshot", StepState::Completed, 1),
            ("apply", StepState::Retrying, 1)
        ]
    );

    // The retry succeeds and the run commits.
    db.append(
        t,
        &push.stream(),
        vec![
            ev(&step_started("apply", 2)),
            ev(&step_done("apply", 2)),
            ev(&WorkflowFinished {
                outcome: Outcome::Committed,
                reason: None,
                output: serde_json::json!({"commit": "abc"}),
            }),
        ],
    )
    .await;
    catch_up(&db.system, Some("workflows"), 2).await.unwrap();
    let run = query::workflow_run_detail(&db.app, t, push)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.run.state, WorkflowRunState::Committed);
    assert_eq!(run.run.outcome, Some(Outcome::Committed));
    assert!(run.run.finished_at.is_some() && run.run.wake_at.is_none());
    assert_eq!(run.output, Some(serde_json::json!({"commit": "abc"})));
    let steps = query::workflow_steps(&db.app, t, push).await.unwrap();
    assert_eq!(steps[1].state, StepState::Completed);
    assert_eq!(steps[1].attempts, 2);
    assert_eq!(
        steps[1].last_error.as_deref(),
        Some("device did not answer")
    );

    let waiting = query::workflow_run_detail(&db.app, t, stuck)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(waiting.run.state, WorkflowRunState::Waiting);
    assert_eq!(waiting.run.last_signal.as_deref(), Some("pause"));
    // The timer fires: running again.
    db.append(
        t,
        &stuck.stream(),
        vec![
            NewEvent::new(
                EventId::new_random(),
                "WorkflowTimerFired",
                1,
                serde_json::json!({"name": "await"}),
                EventMetadata::for_command(Actor::system("worker"), Uuid::new_v4()),
            )
            .unwrap(),
        ],
    )
    .await;
    catch_up(&db.system, Some("workflows"), 100).await.unwrap();
    let woke = query::workflow_run_detail(&db.app, t, stuck)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(woke.run.state, WorkflowRunState::Running);
    assert_eq!(woke.run.wake_at, None);

    // Newest first; filters by device, kind and state; pagination.
    let all = query::list_workflow_runs(&db.app, t, &WorkflowRunQuery::default())
        .await
        .unwrap();
    assert_eq!(
        all.items.iter().map(|r| r.id).collect::<Vec<_>>(),
        [stuck, backup, push]
    );
    let of_d1 = query::list_workflow_runs(
        &db.app,
        t,
        &WorkflowRunQuery {
            device: Some(d1),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        of_d1.items.iter().map(|r| r.id).collect::<Vec<_>>(),
        [stuck, push]
    );
    let of_d2_running = query::list_workflow_runs(
        &db.app,
        t,
        &WorkflowRunQuery {
            device: Some(d2),
            state: Some(WorkflowRunState::Running),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        of_d2_running.items.iter().map(|r| r.id).collect::<Vec<_>>(),
        [stuck, backup]
    );
    let backups = query::list_workflow_runs(
        &db.app,
        t,
        &WorkflowRunQuery {
            kind: Some("backup".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        backups.items.iter().map(|r| r.id).collect::<Vec<_>>(),
        [backup]
    );
    let committed = query::list_workflow_runs(
        &db.app,
        t,
        &WorkflowRunQuery {
            state: Some(WorkflowRunState::Committed),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        committed.items.iter().map(|r| r.id).collect::<Vec<_>>(),
        [push]
    );
    let first = query::list_workflow_runs(
        &db.app,
        t,
        &WorkflowRunQuery {
            limit: Some(2),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let second = query::list_workflow_runs(
        &db.app,
        t,
        &WorkflowRunQuery {
            limit: Some(2),
            cursor: first.next_cursor.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        second.items.iter().map(|r| r.id).collect::<Vec<_>>(),
        [push]
    );
    assert!(second.next_cursor.is_none());
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn rollouts_track_progress_per_device(pool: PgPool) {
    let db = db(pool).await;
    let t = TenantId::new_random();
    let devices: Vec<DeviceId> = (0..7).map(|_| DeviceId::new_random()).collect();
    let (r1, r2) = (RolloutId::new_random(), RolloutId::new_random());
    let finished = |d: DeviceId, batch: u32, outcome: Outcome| {
        ev(&RolloutDeviceFinished {
            device_id: d,
            workflow_id: WorkflowId::new_random(),
            batch,
            outcome,
        })
    };
    db.append(
        t,
        &r1.stream(),
        vec![
            ev_by(
                &RolloutCreated {
                    name: "dns".into(),
                    target: RolloutTarget::Firmware {
                        version: "7.16.2".into(),
                    },
                    canaries: devices[..2].to_vec(),
                    // A device listed twice is placed once.
                    devices: [&devices[2..], &devices[2..3]].concat(),
                    batch_size: 2,
                    parallelism: 1,
                    failure_threshold: 2,
                    rollback_on_halt: true,
                    workflow_id: WorkflowId::new_random(),
                },
                user(),
            ),
            finished(devices[0], 0, Outcome::Committed),
            finished(devices[1], 0, Outcome::Failed),
        ],
    )
    .await;
    db.append(
        t,
        &r2.stream(),
        vec![ev(&RolloutCreated {
            name: "second".into(),
            target: RolloutTarget::ChangeSet {
                script: "/system identity set name=x".into(),
                sealed_script: None,
            },
            canaries: vec![],
            devices: devices[..1].to_vec(),
            batch_size: 10,
            parallelism: 1,
            failure_threshold: 1,
            rollback_on_halt: false,
            workflow_id: WorkflowId::new_random(),
        })],
    )
    .await;
    db.project_all().await;
    // A device that finishes again (its retry succeeded) is counted once, by its latest
    // outcome; the live projector loads only the rows the batch names.
    db.append(
        t,
        &r1.stream(),
        vec![
            finished(devices[1], 0, Outcome::Committed),
            finished(devices[2], 1, Outcome::RolledBack),
            ev(&RolloutStateChanged {
                state: RolloutState::Paused,
                reason: Some("look".into()),
            }),
            ev(&RolloutStateChanged {
                state: RolloutState::Halted,
                reason: Some("threshold".into()),
            }),
        ],
    )
    .await;
    catch_up(&db.system, Some("rollouts"), 100).await.unwrap();

    let r = query::rollout_detail(&db.app, t, r1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.state, RolloutState::Halted);
    assert_eq!(r.reason.as_deref(), Some("threshold"));
    assert!(r.finished_at.is_some());
    assert_eq!(r.target_version.as_deref(), Some("7.16.2"));
    let p = &r.progress;
    assert_eq!(
        (
            p.total,
            p.canaries,
            p.finished,
            p.pending,
            p.succeeded,
            p.failed,
            p.rolled_back
        ),
        (7, 2, 3, 4, 2, 0, 1)
    );
    assert_eq!(p.current_batch, Some(1));

    let page = query::rollout_devices(
        &db.app,
        t,
        r1,
        &RolloutDeviceQuery {
            limit: Some(4),
            cursor: None,
        },
    )
    .await
    .unwrap();
    let placed: Vec<(DeviceId, u32, Option<Outcome>)> = page
        .items
        .iter()
        .map(|d| (d.device_id, d.batch, d.outcome))
        .collect();
    assert_eq!(
        placed,
        [
            (devices[0], 0, Some(Outcome::Committed)),
            (devices[1], 0, Some(Outcome::Committed)),
            (devices[2], 1, Some(Outcome::RolledBack)),
            (devices[3], 1, None),
        ]
    );
    let rest = query::rollout_devices(
        &db.app,
        t,
        r1,
        &RolloutDeviceQuery {
            limit: Some(4),
            cursor: page.next_cursor,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        rest.items
            .iter()
            .map(|d| (d.device_id, d.batch))
            .collect::<Vec<_>>(),
        [(devices[4], 2), (devices[5], 2), (devices[6], 3)]
    );

    let list = query::list_rollouts(&db.app, t, &RolloutQuery::default())
        .await
        .unwrap();
    assert_eq!(
        list.items.iter().map(|r| r.id).collect::<Vec<_>>(),
        [r2, r1]
    );
    let running = query::list_rollouts(
        &db.app,
        t,
        &RolloutQuery {
            state: Some(RolloutState::Running),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(running.items.iter().map(|r| r.id).collect::<Vec<_>>(), [r2]);
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_rolled_back_rollout_shows_its_restored_devices(pool: PgPool) {
    let db = db(pool).await;
    let t = TenantId::new_random();
    let d: Vec<DeviceId> = (0..4).map(|_| DeviceId::new_random()).collect();
    let push: Vec<WorkflowId> = (0..4).map(|_| WorkflowId::new_random()).collect();
    let rid = RolloutId::new_random();
    let finished = |i: usize, outcome: Outcome| {
        ev(&RolloutDeviceFinished {
            device_id: d[i],
            workflow_id: push[i],
            batch: 1,
            outcome,
        })
    };
    db.append(
        t,
        &rid.stream(),
        vec![
            ev(&RolloutCreated {
                name: "undo".into(),
                target: RolloutTarget::ChangeSet {
                    script: "/system identity set name=x".into(),
                    sealed_script: None,
                },
                canaries: vec![],
                devices: d.clone(),
                batch_size: 4,
                parallelism: 4,
                failure_threshold: 1,
                rollback_on_halt: true,
                workflow_id: WorkflowId::new_random(),
            }),
            finished(0, Outcome::Committed),
            finished(1, Outcome::Committed),
            finished(2, Outcome::Failed),
            ev(&RolloutStateChanged {
                state: RolloutState::Halted,
                reason: Some("1 device(s) failed, threshold 1; rolling back 2".into()),
            }),
        ],
    )
    .await;
    db.project_all().await;
    // Live: the projector loads only the rows the restore events name.
    let restore = WorkflowId::new_random();
    db.append(
        t,
        &rid.stream(),
        vec![
            ev(&RolloutDeviceRestored {
                device_id: d[0],
                workflow_id: restore,
                push_workflow_id: push[0],
                result: RestoreResult::Restored,
                reason: None,
            }),
            ev(&RolloutDeviceRestored {
                device_id: d[1],
                workflow_id: WorkflowId::new_random(),
                push_workflow_id: push[1],
                result: RestoreResult::Refused,
                reason: Some("changed out of band".into()),
            }),
            ev(&RolloutStateChanged {
                state: RolloutState::Halted,
                reason: Some("rolled back 1 of 2".into()),
            }),
        ],
    )
    .await;
    catch_up(&db.system, Some("rollouts"), 100).await.unwrap();
    let r = query::rollout_detail(&db.app, t, rid)
        .await
        .unwrap()
        .unwrap();
    let p = &r.progress;
    assert_eq!(
        (p.finished, p.succeeded, p.failed, p.rolled_back, p.pending),
        (3, 1, 1, 1, 1)
    );
    assert_eq!(r.reason.as_deref(), Some("rolled back 1 of 2"));
    let rows = query::rollout_devices(&db.app, t, rid, &RolloutDeviceQuery::default())
        .await
        .unwrap();
    let got: Vec<(Option<Outcome>, Option<WorkflowId>)> = rows
        .items
        .iter()
        .map(|x| (x.outcome, x.workflow_id))
        .collect();
    assert_eq!(
        got,
        [
            (Some(Outcome::RolledBack), Some(restore)),
            (Some(Outcome::Committed), Some(push[1])),
            (Some(Outcome::Failed), Some(push[2])),
            (None, None),
        ]
    );
    // A replay from position 0 gives the same rows.
    let live = dump(&db.system, Some("rollouts")).await.unwrap();
    replay(&db.system, Some("rollouts")).await.unwrap();
    assert_eq!(dump(&db.system, Some("rollouts")).await.unwrap(), live);
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn the_audit_feed_filters_and_pages(pool: PgPool) {
    let db = db(pool).await;
    let t = TenantId::new_random();
    let d = DeviceId::new_random();
    let w = WorkflowId::new_random();
    let user_stream = StreamName::parse("user-1").unwrap();
    db.append(
        t,
        &d.stream(),
        vec![ev_by(&registered(d, "core-1", &[]), user())],
    )
    .await;
    db.append(
        t,
        &w.stream(),
        vec![
            ev(&started("backup", vec![d])),
            ev(&step_started("export", 1)),
        ],
    )
    .await;
    db.append(
        t,
        &d.stream(),
        vec![ev(&DeviceWentOffline {
            reason: "timeout".into(),
        })],
    )
    .await;
    db.append(
        t,
        &user_stream,
        vec![
            NewEvent::new(
                EventId::new_random(),
                "UserInvited",
                1,
                serde_json::json!({"email": "a@example.org"}),
                EventMetadata::for_command(user(), Uuid::new_v4()),
            )
            .unwrap(),
        ],
    )
    .await;
    db.project_all().await;

    let feed = query::audit_feed(&db.app, t, &AuditQuery::default())
        .await
        .unwrap();
    let types: Vec<&str> = feed.items.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "UserInvited",
            "DeviceWentOffline",
            "WorkflowStepStarted",
            "WorkflowStarted",
            "DeviceRegistered"
        ]
    );
    assert_eq!(feed.items[1].summary, "went offline: timeout");
    assert_eq!(feed.items[4].summary, "registered core-1 at 10.0.0.1:8728");
    assert_eq!(feed.items[0].summary, "UserInvited");
    let by = |q: AuditQuery| {
        let app = db.app.clone();
        async move {
            query::audit_feed(&app, t, &q)
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|e| e.event_type)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        by(AuditQuery {
            stream: Some(d.stream().to_string()),
            ..Default::default()
        })
        .await,
        ["DeviceWentOffline", "DeviceRegistered"]
    );
    assert_eq!(
        by(AuditQuery {
            category: Some("workflow".into()),
            ..Default::default()
        })
        .await,
        ["WorkflowStepStarted", "WorkflowStarted"]
    );
    assert_eq!(
        by(AuditQuery {
            event_type: Some("WorkflowStarted".into()),
            ..Default::default()
        })
        .await,
        ["WorkflowStarted"]
    );
    assert_eq!(
        by(AuditQuery {
            actor: Some(format!("user:{}", Uuid::from_u128(7))),
            ..Default::default()
        })
        .await,
        ["UserInvited", "DeviceRegistered"]
    );
    assert_eq!(
        by(AuditQuery {
            actor: Some("system:poller".into()),
            category: Some("device".into()),
            ..Default::default()
        })
        .await,
        ["DeviceWentOffline"]
    );
    // A correlation id: what one command caused; a time range: what was recorded in it.
    assert_eq!(
        by(AuditQuery {
            correlation_id: Some(feed.items[0].correlation_id),
            ..Default::default()
        })
        .await,
        ["UserInvited"]
    );
    let until_first = by(AuditQuery {
        to: Some(feed.items[4].recorded_at),
        ..Default::default()
    })
    .await;
    assert_eq!(
        until_first.last().map(String::as_str),
        Some("DeviceRegistered")
    );
    assert!(
        !until_first.iter().any(|t| t == "UserInvited"),
        "{until_first:?}"
    );
    let since_last = by(AuditQuery {
        from: Some(feed.items[0].recorded_at),
        ..Default::default()
    })
    .await;
    assert_eq!(since_last.first().map(String::as_str), Some("UserInvited"));
    assert!(
        !since_last.iter().any(|t| t == "DeviceRegistered"),
        "{since_last:?}"
    );
    let first = query::audit_feed(
        &db.app,
        t,
        &AuditQuery {
            limit: Some(3),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let rest = query::audit_feed(
        &db.app,
        t,
        &AuditQuery {
            limit: Some(3),
            cursor: first.next_cursor.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(rest.items.len(), 2);
    assert!(rest.next_cursor.is_none());
    assert!(rest.items[0].position < first.items[2].position);
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn redelivered_events_change_nothing(pool: PgPool) {
    let db = db(pool).await;
    let spec = WorkloadSpec::small(600, 11);
    let filled = fill(&db.store, &spec).await.unwrap();
    change_requests(&db, &filled.tenants).await;
    let events = db.events().await;
    let (first, second) = events.split_at(events.len() / 2);
    for p in PROJECTORS {
        apply_events(&db.system, p, first).await.unwrap();
        apply_events(&db.system, p, second).await.unwrap();
    }
    let once = dump(&db.system, None).await.unwrap();
    assert!(
        once.values().all(|rows| !rows.is_empty()),
        "every table has rows"
    );

    // Re-delivering a batch: the checkpoint skips it.
    for p in PROJECTORS {
        let again = apply_events(&db.system, p, first).await.unwrap();
        assert!(
            matches!(again, BatchOutcome::Applied { applied: 0, .. }),
            "{p}: {again:?}"
        );
    }
    assert_eq!(dump(&db.system, None).await.unwrap(), once);

    // Even with the checkpoints wound back to 0, the rows' positions skip the events
    // already folded into them.
    sqlx::query("UPDATE subscription_checkpoints SET position = 0")
        .execute(&db.owner)
        .await
        .unwrap();
    for p in PROJECTORS {
        apply_events(&db.system, p, first).await.unwrap();
        apply_events(&db.system, p, &events).await.unwrap();
    }
    assert_eq!(dump(&db.system, None).await.unwrap(), once);
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_failed_batch_leaves_no_partial_writes(pool: PgPool) {
    let db = db(pool).await;
    let t = TenantId::new_random();
    let w = WorkflowId::new_random();
    db.append(
        t,
        &w.stream(),
        vec![ev(&started("noop", vec![])), ev(&step_started("boom", 1))],
    )
    .await;
    // A real database failure in the middle of the batch: the run row is written first,
    // then the step insert breaks a check constraint.
    sqlx::raw_sql("ALTER TABLE rm_workflow_steps ADD CONSTRAINT boom CHECK (step <> 'boom')")
        .execute(&db.owner)
        .await
        .unwrap();
    let events = db.events().await;
    let failed = apply_events(&db.system, "workflows", &events).await;
    assert!(
        matches!(failed, Err(ProjectionError::Database { .. })),
        "{failed:?}"
    );
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_workflow_runs")
        .fetch_one(&db.owner)
        .await
        .unwrap();
    assert_eq!(
        runs, 0,
        "the run row written before the failure was rolled back"
    );
    assert_eq!(checkpoint(&db.system, "workflows").await.unwrap(), 0);

    // A replay that fails leaves every read model as it was, including the ones that
    // folded everything.
    apply_events(&db.system, "audit", &events).await.unwrap();
    let before = dump(&db.system, None).await.unwrap();
    assert!(replay(&db.system, None).await.is_err());
    assert_eq!(dump(&db.system, None).await.unwrap(), before);
    assert_eq!(checkpoint(&db.system, "devices").await.unwrap(), 0);

    sqlx::raw_sql("ALTER TABLE rm_workflow_steps DROP CONSTRAINT boom")
        .execute(&db.owner)
        .await
        .unwrap();
    apply_events(&db.system, "workflows", &events)
        .await
        .unwrap();
    let steps = query::workflow_steps(&db.app, t, w).await.unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(checkpoint(&db.system, "workflows").await.unwrap(), 2);
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn newer_schema_versions_stop_the_projector(pool: PgPool) {
    let db = db(pool).await;
    let t = TenantId::new_random();
    let d = DeviceId::new_random();
    db.append(t, &d.stream(), vec![ev(&registered(d, "core-1", &[]))])
        .await;
    db.append(
        t,
        &d.stream(),
        vec![
            NewEvent::new(
                EventId::new_random(),
                DeviceTagsSet::TYPE,
                2,
                serde_json::json!({"tags": ["a"], "colour": "red"}),
                EventMetadata::for_command(user(), Uuid::new_v4()),
            )
            .unwrap(),
        ],
    )
    .await;
    let events = db.events().await;
    let err = apply_events(&db.system, "devices", &events)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Upgrade this process"), "{err}");
    assert_eq!(checkpoint(&db.system, "devices").await.unwrap(), 0);
    // The audit feed does not decode payloads and goes on.
    apply_events(&db.system, "audit", &events).await.unwrap();
    assert_eq!(checkpoint(&db.system, "audit").await.unwrap(), 2);
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn tenants_see_only_their_rows_and_the_app_cannot_write(pool: PgPool) {
    let db = db(pool).await;
    let spec = WorkloadSpec {
        tenants: 2,
        ..WorkloadSpec::small(500, 3)
    };
    let filled = fill(&db.store, &spec).await.unwrap();
    change_requests(&db, &filled.tenants).await;
    db.project_all().await;
    let (a, b) = (filled.tenants[0], filled.tenants[1]);
    let tables: Vec<String> = dump(&db.system, None).await.unwrap().into_keys().collect();
    assert_eq!(tables.len(), 11);
    for table in &tables {
        let mut tx = begin_tenant(&db.app, a).await.unwrap();
        let (mine, others): (i64, i64) = sqlx::query_as(&format!(
            "SELECT count(*) FILTER (WHERE tenant_id = $1), count(*) FILTER (WHERE tenant_id <> $1) FROM {table}"
        ))
        .bind(a.as_uuid())
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        assert!(mine > 0, "{table}: tenant A sees its rows");
        assert_eq!(others, 0, "{table}: tenant A sees none of B's rows");
        tx.commit().await.unwrap();
        // No tenant set: nothing.
        let unset: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&db.app)
            .await
            .unwrap();
        assert_eq!(unset, 0, "{table}");
        for write in [
            format!("DELETE FROM {table}"),
            format!("UPDATE {table} SET tenant_id = tenant_id"),
            format!("INSERT INTO {table} SELECT * FROM {table}"),
        ] {
            let mut tx = begin_tenant(&db.app, a).await.unwrap();
            let err = sqlx::query(&write).execute(&mut *tx).await.unwrap_err();
            assert!(
                err.to_string().contains("permission denied"),
                "{write}: {err}"
            );
        }
    }
    // The query functions see only the tenant's rows too.
    let devices_a = query::list_devices(
        &db.app,
        a,
        &DeviceQuery {
            limit: Some(500),
            include_removed: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let devices_b = query::list_devices(
        &db.app,
        b,
        &DeviceQuery {
            limit: Some(500),
            include_removed: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(devices_a.items.len(), 12);
    assert_eq!(devices_b.items.len(), 12);
    let one_of_b = devices_b.items[0].id;
    assert!(
        query::device_detail(&db.app, a, one_of_b)
            .await
            .unwrap()
            .is_none()
    );
    let feed_a = query::audit_feed(
        &db.app,
        a,
        &AuditQuery {
            limit: Some(500),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let a_positions: BTreeSet<i64> = EventReader::tenant(db.app.clone(), a)
        .read_all(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.position)
        .collect();
    assert!(
        feed_a
            .items
            .iter()
            .all(|e| a_positions.contains(&e.position))
    );

    // The system role writes read models only: never events or the log head.
    let err = sqlx::query("UPDATE event_log_head SET last_position = last_position")
        .execute(&db.system)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
    let err = sqlx::query("DELETE FROM events")
        .execute(&db.system)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn replay_gives_the_same_read_models_as_the_live_projectors(pool: PgPool) {
    let db = db(pool).await;
    // The live projectors run in their own pool, as another process would.
    let live_pool = Pools::connect(&db.owner.connect_options(), None, None, 8)
        .await
        .unwrap()
        .system;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let live = tokio::spawn(netledger_projections::run(
        live_pool.clone(),
        RunOptions {
            batch: 64,
            poll_interval: Duration::from_millis(50),
        },
        shutdown,
    ));
    let spec = WorkloadSpec::small(3_000, 42);
    let filled = fill(&db.store, &spec).await.unwrap();
    assert!(filled.events >= 2_500, "{filled:?}");
    let changes = change_requests(&db, &filled.tenants).await;
    wait_caught_up(&db.system).await;
    let live_dump = dump(&db.system, None).await.unwrap();
    let counts: Vec<usize> = live_dump.values().map(Vec::len).collect();
    assert!(counts.iter().all(|n| *n > 0), "{counts:?}");

    // Replay while the live projectors keep running: they wait for the rebuild to commit.
    let report = replay(&db.system, None).await.unwrap();
    assert_eq!(report.events, filled.events + changes);
    assert_eq!(report.per_projector.len(), PROJECTORS.len());
    assert_eq!(dump(&db.system, None).await.unwrap(), live_dump);
    // The rebuilt tables carry the same row-level security and grants.
    let tenant = filled.tenants[0];
    for table in live_dump.keys() {
        let mut tx = begin_tenant(&db.app, tenant).await.unwrap();
        let others: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {table} WHERE tenant_id <> $1"
        ))
        .bind(tenant.as_uuid())
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        assert_eq!(others, 0, "{table}");
        let err = sqlx::query(&format!("DELETE FROM {table}"))
            .execute(&mut *tx)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("permission denied"),
            "{table}: {err}"
        );
    }

    // Small batches and early flushes (rows written mid-rebuild, finished runs dropped from
    // memory) give the same rows too.
    let small = replay_with(
        &db.system,
        None,
        ReplayOptions {
            batch: 97,
            flush_rows: 7,
        },
    )
    .await
    .unwrap();
    assert_eq!(small.events, filled.events + changes);
    assert_eq!(dump(&db.system, None).await.unwrap(), live_dump);

    // More events after the replay: the live projectors go on from the replay's checkpoint.
    let more = fill(&db.store, &WorkloadSpec::small(400, 43))
        .await
        .unwrap();
    wait_caught_up(&db.system).await;
    let live_dump = dump(&db.system, None).await.unwrap();
    let report = replay(&db.system, Some("devices")).await.unwrap();
    assert_eq!(report.per_projector.len(), 1);
    assert!(
        report.events > 0 && report.events < filled.events + changes + more.events,
        "{report:?}"
    );
    assert_eq!(dump(&db.system, None).await.unwrap(), live_dump);
    let full = replay(&db.system, None).await.unwrap();
    assert_eq!(full.events, filled.events + changes + more.events);
    assert_eq!(dump(&db.system, None).await.unwrap(), live_dump);

    stop.send(true).unwrap();
    live.await.unwrap().unwrap();
}

async fn wait_caught_up(system: &PgPool) {
    for _ in 0..400 {
        let lags = lag(system).await.unwrap();
        if lags.iter().all(|l| l.events_behind == 0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "projectors did not catch up: {:?}",
        lag(system).await.unwrap()
    );
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn lag_counts_events_and_seconds_behind(pool: PgPool) {
    let db = db(pool).await;
    let t = TenantId::new_random();
    let d = DeviceId::new_random();
    let w = WorkflowId::new_random();
    db.append(t, &d.stream(), vec![ev(&registered(d, "core-1", &[]))])
        .await;
    let none = lag(&db.system).await.unwrap();
    assert_eq!(
        none.iter()
            .map(|l| l.projector.as_str())
            .collect::<Vec<_>>(),
        PROJECTORS
    );
    assert!(
        none.iter()
            .all(|l| l.checkpoint == 0 && l.head == 1 && l.events_behind == 1)
    );
    tokio::time::sleep(Duration::from_millis(30)).await;
    let later = lag(&db.system).await.unwrap();
    assert!(later.iter().all(|l| l.seconds_behind >= 0.03), "{later:?}");

    db.append(
        t,
        &w.stream(),
        vec![ev(&started("noop", vec![d])), ev(&step_started("noop", 1))],
    )
    .await;
    catch_up(&db.system, None, 100).await.unwrap();
    let caught_up = lag(&db.system).await.unwrap();
    // A projector of one category moves to the head it read up to, past other categories.
    assert!(
        caught_up
            .iter()
            .all(|l| l.checkpoint == 3 && l.events_behind == 0 && l.seconds_behind == 0.0),
        "{caught_up:?}"
    );
    db.append(t, &w.stream(), vec![ev(&step_done("noop", 1))])
        .await;
    let behind = lag(&db.system).await.unwrap();
    assert!(
        behind.iter().all(|l| l.events_behind == 1 && l.head == 4),
        "{behind:?}"
    );
}

/// Names in the audit feed are as they were at each event: a user, an API key and a device
/// renamed later keep their old names on earlier entries, in the live fold (names given in
/// an earlier batch and in the same batch) and after a replay.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn the_audit_feed_names_actors_and_subjects_as_they_were(pool: PgPool) {
    let db = db(pool).await;
    let t = TenantId::new_random();
    let d = DeviceId::new_random();
    let ana = Uuid::new_v4();
    let key = Uuid::new_v4();
    let as_ana = Actor::User { id: ana };
    let identity = |ty: &str, payload: serde_json::Value, actor: Actor| {
        NewEvent::new(
            EventId::new_random(),
            ty,
            1,
            payload,
            EventMetadata::for_command(actor, Uuid::new_v4()),
        )
        .unwrap()
    };
    let user_stream = StreamName::parse(&format!("user-{ana}")).unwrap();
    let tenant_stream = StreamName::parse(&format!("tenant-{t}")).unwrap();
    db.append(
        t,
        &user_stream,
        vec![identity(
            "UserCreated",
            serde_json::json!({"user_id": ana, "email": "ana@example.org",
                               "display_name": "Ana", "role": "operator"}),
            Actor::system("bootstrap"),
        )],
    )
    .await;
    db.append(
        t,
        &tenant_stream,
        vec![identity(
            "ApiKeyCreated",
            serde_json::json!({"key_id": key, "name": "ci-pipeline", "scopes": ["devices:read"],
                               "prefix": "nl_abc", "expires_at": null}),
            as_ana.clone(),
        )],
    )
    .await;
    // First batch: the names above, then a registration by Ana.
    db.append(
        t,
        &d.stream(),
        vec![ev_by(&registered(d, "edge-1", &[]), as_ana.clone())],
    )
    .await;
    db.project_all().await;
    // Second batch: renames and events on both sides of them (names from the table and
    // from the batch itself).
    db.append(
        t,
        &d.stream(),
        vec![ev_by(
            &DeviceTagsSet {
                tags: BTreeSet::new(),
            },
            Actor::ApiKey { id: key },
        )],
    )
    .await;
    db.append(
        t,
        &user_stream,
        vec![identity(
            "UserUpdated",
            serde_json::json!({"display_name": "Ana Lopez", "role": null, "disabled": null}),
            as_ana.clone(),
        )],
    )
    .await;
    db.append(
        t,
        &d.stream(),
        vec![ev_by(
            &DeviceUpdated {
                name: Some(DeviceName::parse("edge-9").unwrap()),
                endpoint: None,
                poll_interval_secs: None,
            },
            as_ana.clone(),
        )],
    )
    .await;
    db.append(
        t,
        &d.stream(),
        vec![ev(&DeviceWentOffline {
            reason: "timeout".into(),
        })],
    )
    .await;
    db.project_all().await;

    let entries = |db: &Db| {
        let app = db.app.clone();
        async move {
            let mut items = query::audit_feed(&app, t, &AuditQuery::default())
                .await
                .unwrap()
                .items;
            items.reverse();
            items
                .into_iter()
                .map(|e| (e.event_type, e.actor_name, e.subject, e.subject_name))
                .collect::<Vec<_>>()
        }
    };
    let device = Some(format!("device:{d}"));
    let s = |v: &str| Some(v.to_owned());
    let expected = vec![
        (
            "UserCreated".to_owned(),
            None,
            s(&format!("user:{ana}")),
            s("Ana <ana@example.org>"),
        ),
        (
            "ApiKeyCreated".to_owned(),
            s("Ana <ana@example.org>"),
            s(&format!("api_key:{key}")),
            s("ci-pipeline"),
        ),
        (
            "DeviceRegistered".to_owned(),
            s("Ana <ana@example.org>"),
            device.clone(),
            s("edge-1"),
        ),
        (
            "DeviceTagsSet".to_owned(),
            s("ci-pipeline"),
            device.clone(),
            s("edge-1"),
        ),
        (
            "UserUpdated".to_owned(),
            s("Ana Lopez <ana@example.org>"),
            s(&format!("user:{ana}")),
            s("Ana Lopez <ana@example.org>"),
        ),
        (
            "DeviceUpdated".to_owned(),
            s("Ana Lopez <ana@example.org>"),
            device.clone(),
            s("edge-9"),
        ),
        (
            "DeviceWentOffline".to_owned(),
            None,
            device.clone(),
            s("edge-9"),
        ),
    ];
    assert_eq!(entries(&db).await, expected);

    // The subject filter gives what was done to the device, whoever did it.
    let about = query::audit_feed(
        &db.app,
        t,
        &AuditQuery {
            subject: device.clone(),
            ..AuditQuery::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(about.items.len(), 4);

    // A replay folds the same names.
    replay(&db.system, Some("audit")).await.unwrap();
    assert_eq!(entries(&db).await, expected);
}

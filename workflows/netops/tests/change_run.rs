//! The `change_request` workflow end to end, through the engine against a real PostgreSQL
//! (fresh database per test) and devsim over real sockets, with the test clock where time
//! matters: a change outside its window waits and never starts once the window passed; a
//! window that closes mid-rollout pauses it at a batch boundary until `window_continue`; a
//! halted change rollout restores its committed device and the request ends `rolled_back`,
//! with every event of the chain correlated to the request; cancelling a running change
//! cancels its rollout (the device in flight finishes, the next never starts).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use netledger_domain::change::{
    ApprovalPolicy, By, ChangeAction, ChangeCommand, ChangeContent, ChangeEvent, ChangeRequest,
    ChangeState, ChangeTarget, MaintenanceWindow, Overrides, RiskLevel, RolloutPlan,
};
use netledger_domain::clock::Clock;
use netledger_domain::workflow::Outcome;
use netledger_domain::workflow::card::{ChangeRun, ChangeRunAction, ChangeRunInput};
use netledger_domain::{
    Actor, Aggregate, ChangeRequestId, DeviceId, EventEnum, EventId, EventMetadata,
    ExpectedVersion, RolloutId, WorkflowId,
};
use netledger_engine::{StartOptions, TaskState, WorkerOptions};
use netledger_netops::push::normalised_sha256;
use netledger_netops::workflows::WINDOW_CONTINUE;
use netledger_store::{Direction, EventReader};
use serde_json::{Value, json};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use support::{Env, env_full};

const CHANGE: &str =
    "/ip pool\nadd name=pool-nl ranges=10.77.0.10-10.77.0.20\n/system identity\nset name=pushed\n";

/// An environment whose worker's lease outlasts any clock jump of these tests (a jump past
/// a lease would hand a running workflow to a takeover, which is not what they test).
async fn env(owner: PgPool, n: usize) -> Env {
    env_full(
        owner,
        n,
        "change-run-test",
        |_| {},
        |o: &mut WorkerOptions| {
            o.lease = Duration::from_secs(24 * 3600);
        },
    )
    .await
}

fn plan(canaries: u32, batch_size: u32, rollback_on_halt: bool) -> RolloutPlan {
    RolloutPlan {
        canaries,
        batch_size,
        parallelism: 1,
        failure_threshold: 1,
        rollback_on_halt,
    }
}

impl Env {
    async fn register_all(&self, n: usize) -> Vec<DeviceId> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            out.push(self.register(i).await);
        }
        out
    }

    /// An approved change request in the store, built through the aggregate: created by
    /// `author`, submitted, approved by `approver` (every event correlated to the request).
    async fn approved_request(
        &self,
        devices: &[DeviceId],
        plan: RolloutPlan,
        window: Option<MaintenanceWindow>,
    ) -> ChangeRequestId {
        let id = ChangeRequestId::from_uuid(Uuid::new_v4());
        let content = ChangeContent {
            title: "pool for the lab".into(),
            reason: "tests".into(),
            ticket: None,
            target: ChangeTarget::Devices {
                device_ids: devices.to_vec(),
            },
            action: ChangeAction::Script {
                script: CHANGE.into(),
            },
            plan,
            risk: RiskLevel::Low,
            window,
            overrides: Overrides::default(),
            emergency: false,
            emergency_reason: None,
        };
        let commands = [
            ChangeCommand::Create {
                id,
                by: By::user("author"),
                content,
                sealed_script: None,
            },
            ChangeCommand::Submit {
                by: By::user("author"),
                devices: devices.to_vec(),
                previews: vec![],
                policy: ApprovalPolicy::default(),
                restore_script: None,
                now: self.clock.now(),
            },
            ChangeCommand::Approve {
                by: By::user("approver"),
                comment: None,
            },
        ];
        let mut state = ChangeRequest::default();
        for command in &commands {
            let events = state.decide(command).unwrap();
            let metadata = EventMetadata {
                actor: Actor::system("test"),
                causation_id: Uuid::new_v4(),
                correlation_id: *id.as_uuid(),
            };
            let new = events
                .iter()
                .map(|e| e.to_new_event(EventId::new_v7(), metadata.clone()).unwrap())
                .collect();
            self.deps
                .store
                .append(
                    self.tenant,
                    &id.stream(),
                    ExpectedVersion::Exact(state.version),
                    new,
                )
                .await
                .unwrap();
            for e in &events {
                state.evolve(e);
            }
        }
        assert_eq!(state.state, ChangeState::Approved);
        id
    }

    /// Starts the request's run as the API does: idempotency key `change:<id>:run:<submission>`,
    /// correlation id the request's uuid.
    async fn start_run(
        &self,
        id: ChangeRequestId,
        devices: &[DeviceId],
        plan: RolloutPlan,
        window: Option<MaintenanceWindow>,
    ) -> WorkflowId {
        let input = ChangeRunInput {
            change_id: id,
            name: "pool for the lab".into(),
            devices: devices.to_vec(),
            action: ChangeRunAction::Script {
                script: CHANGE.into(),
                sealed_script: None,
            },
            plan,
            window,
            allow_without_timer: false,
            elevated: false,
            requested_by: "approver".into(),
        };
        self.engine
            .start::<ChangeRun>(
                self.tenant,
                input,
                StartOptions::new(Actor::system("test"))
                    .idempotency_key(format!("change:{id}:run:1"))
                    .correlation_id(*id.as_uuid()),
            )
            .await
            .unwrap()
            .workflow_id
    }

    /// The request folded from its stream.
    async fn request(&self, id: ChangeRequestId) -> ChangeRequest {
        let events = EventReader::tenant(self.pools.app.clone(), self.tenant)
            .read_stream(&id.stream(), 1, Direction::Forward, 10_000)
            .await
            .unwrap();
        let decoded: Vec<ChangeEvent> = events
            .iter()
            .map(|e| ChangeEvent::decode(e).unwrap())
            .collect();
        ChangeRequest::fold(&decoded)
    }

    /// Workflows of the tenant, by kind.
    async fn workflows(&self) -> BTreeMap<String, Vec<WorkflowId>> {
        let mut out: BTreeMap<String, Vec<WorkflowId>> = BTreeMap::new();
        for e in EventReader::tenant(self.pools.app.clone(), self.tenant)
            .read_all(0, 100_000)
            .await
            .unwrap()
        {
            if e.event_type == "WorkflowStarted" {
                let id = e.stream.as_str().trim_start_matches("workflow-");
                out.entry(e.payload["kind"].as_str().unwrap().to_owned())
                    .or_default()
                    .push(WorkflowId::from_uuid(id.parse().unwrap()));
            }
        }
        out
    }

    /// Waits (up to 60 s) until `f` holds of the stream.
    async fn until_stream(
        &self,
        stream: &netledger_domain::StreamName,
        what: &str,
        f: impl Fn(&[(String, Value)]) -> bool,
    ) -> Vec<(String, Value)> {
        for _ in 0..600 {
            let s = self.stream(stream).await;
            if f(&s) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{what}: {:?}", self.stream(stream).await);
    }

    fn changes(&self, i: usize, change: &str) -> u32 {
        self.fleet
            .device(i)
            .unwrap()
            .change_counts()
            .get(change)
            .copied()
            .unwrap_or(0)
    }

    fn normalised(&self, i: usize) -> String {
        normalised_sha256(&self.fleet.device(i).unwrap().export(false)).unwrap()
    }

    async fn output(&self, wf: WorkflowId) -> (Outcome, Value, String) {
        let (outcome, journal) = self.finish(wf).await;
        let (_, fin) = journal
            .iter()
            .find(|(t, _)| t == "WorkflowFinished")
            .unwrap();
        let reason = fin["reason"].as_str().unwrap_or("").to_owned();
        (outcome, fin["output"].clone(), reason)
    }
}

fn change_id(id: ChangeRequestId) -> String {
    format!("cr-{}", id.as_uuid().simple())
}

fn types(stream: &[(String, Value)]) -> Vec<&str> {
    stream.iter().map(|(t, _)| t.as_str()).collect()
}

fn window(start: OffsetDateTime, end: OffsetDateTime) -> MaintenanceWindow {
    MaintenanceWindow {
        start,
        end,
        time_zone: "Europe/Amsterdam".into(),
    }
}

fn steps(journal: &[(String, Value)]) -> Vec<String> {
    journal
        .iter()
        .filter(|(t, _)| t == "WorkflowStepCompleted")
        .map(|(_, p)| p["step"].as_str().unwrap().to_owned())
        .collect()
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_change_outside_its_window_waits_and_never_starts_once_it_passed(owner: PgPool) {
    let e = env(owner, 2).await;
    let devices = e.register_all(2).await;
    let now = e.clock.now();
    let w = window(
        now + time::Duration::hours(1),
        now + time::Duration::hours(2),
    );
    let p = plan(0, 1, false);
    let id = e.approved_request(&devices, p, Some(w.clone())).await;
    let run = e.start_run(id, &devices, p, Some(w.clone())).await;

    // scheduled, and asleep until the window opens (lease released, runnable at the start)
    let mut asleep = false;
    for _ in 0..600 {
        let s = e.engine.status(e.tenant, run).await.unwrap().unwrap();
        // (the task row keeps microseconds)
        let at_start = s
            .runnable_at
            .is_some_and(|t| (t - w.start).abs() < time::Duration::milliseconds(1));
        if s.lease_owner.is_none() && at_start {
            asleep = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(asleep, "{:?}", e.journal(run).await);
    let request = e.request(id).await;
    assert_eq!(request.state, ChangeState::Scheduled);
    assert_eq!(request.workflow_id, Some(run));
    assert!(request.rollout_id.is_none());
    assert_eq!(
        e.workflows().await.keys().collect::<Vec<_>>(),
        ["change_request"]
    );

    // the window passes while it sleeps: it wakes, finds it over, and starts nothing
    e.clock.advance(Duration::from_secs(3 * 3600));
    let (outcome, output, reason) = e.output(run).await;
    assert_eq!(outcome, Outcome::Cancelled);
    assert_eq!(output["state"], "cancelled");
    assert!(output["rollout_id"].is_null());
    assert!(
        reason.contains("the maintenance window")
            && reason.contains("(Europe/Amsterdam) ended before the change could start"),
        "{reason}"
    );
    let request = e.request(id).await;
    assert_eq!(request.state, ChangeState::Cancelled);
    assert_eq!(request.final_reason.as_deref(), Some(reason.as_str()));
    assert_eq!(
        types(&e.stream(&id.stream()).await),
        [
            "ChangeRequestCreated",
            "ChangeRequestSubmitted",
            "ChangeRequestApproved",
            "ChangeRequestScheduled",
            "ChangeRequestFinished"
        ]
    );
    assert_eq!(steps(&e.journal(run).await), ["scheduled", "window_check"]);
    assert_eq!(
        e.workflows().await.keys().collect::<Vec<_>>(),
        ["change_request"]
    );
    for i in 0..2 {
        assert!(e.fleet.device(i).unwrap().change_counts().is_empty());
    }
    e.stop().await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_window_closing_mid_rollout_pauses_it_at_the_next_batch_boundary(owner: PgPool) {
    let e = env(owner, 3).await;
    let devices = e.register_all(3).await;
    // device 0's push takes a while: the window closes while batch 1 runs
    e.fleet.device(0).unwrap().edit_faults(|x| x.delay_ms = 60);
    let now = e.clock.now();
    let w = window(
        now - time::Duration::minutes(5),
        now + time::Duration::hours(1),
    );
    let p = plan(0, 1, false);
    let id = e.approved_request(&devices, p, Some(w.clone())).await;
    let run = e.start_run(id, &devices, p, Some(w.clone())).await;

    let started = e
        .until_stream(&id.stream(), "the rollout started", |s| {
            s.iter().any(|(t, _)| t == "ChangeRequestStarted")
        })
        .await;
    let rid: RolloutId = serde_json::from_value(
        started
            .iter()
            .find(|(t, _)| t == "ChangeRequestStarted")
            .unwrap()
            .1["rollout_id"]
            .clone(),
    )
    .unwrap();
    let created = e
        .until_stream(&rid.stream(), "the rollout was created", |s| !s.is_empty())
        .await;
    let rollout: WorkflowId = serde_json::from_value(created[0].1["workflow_id"].clone()).unwrap();
    let first = format!("start-{}", devices[0]);
    for _ in 0..600 {
        if steps(&e.journal(rollout).await).contains(&first) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        e.stream(&rid.stream())
            .await
            .iter()
            .all(|(t, _)| t != "RolloutDeviceFinished"),
        "batch 1 is still running"
    );
    e.clock.advance(Duration::from_secs(2 * 3600));
    let done = e
        .until_stream(&rid.stream(), "batch 1 finished", |s| {
            s.iter().any(|(t, _)| t == "RolloutDeviceFinished")
        })
        .await;
    let (_, f) = done
        .iter()
        .find(|(t, _)| t == "RolloutDeviceFinished")
        .unwrap();
    let push: WorkflowId = serde_json::from_value(f["workflow_id"].clone()).unwrap();
    assert_eq!(f["outcome"], "committed", "{:?}", e.journal(push).await);

    let paused = e
        .until_stream(&rid.stream(), "the rollout paused", |s| {
            s.last()
                .is_some_and(|(t, p)| t == "RolloutStateChanged" && p["state"] == "paused")
        })
        .await;
    let reason = paused.last().unwrap().1["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        reason.starts_with("the maintenance window ended at ")
            && reason.ends_with("; paused before batch 2"),
        "{reason}"
    );
    // The run records the request's pause after it sees the rollout's: wait for it.
    e.until_stream(&id.stream(), "the request paused", |s| {
        s.last().is_some_and(|(t, _)| t == "ChangeRequestPaused")
    })
    .await;
    let request = e.request(id).await;
    assert_eq!(request.state, ChangeState::Running);
    assert_eq!(request.paused, Some(1));
    let change = e.stream(&id.stream()).await;
    let (t, p) = change.last().unwrap();
    assert_eq!(t, "ChangeRequestPaused");
    assert_eq!(p["pause"], 1);
    assert_eq!(p["reason"], json!(reason));

    // batch 1 finished; batch 2 does not start while paused, nor for a continue of
    // another pause
    let cr = change_id(id);
    assert_eq!(e.changes(0, &cr), 1);
    e.engine
        .signal(
            e.tenant,
            rollout,
            WINDOW_CONTINUE,
            json!({ "pause": 2 }),
            Actor::system("test"),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!((e.changes(1, &cr), e.changes(2, &cr)), (0, 0));
    assert!(!steps(&e.journal(rollout).await).contains(&format!("start-{}", devices[1])));
    assert_eq!(e.request(id).await.paused, Some(1));

    // continue: batch 2 runs, and (the window still closed) it pauses again before batch 3
    e.engine
        .signal(
            e.tenant,
            rollout,
            WINDOW_CONTINUE,
            json!({ "pause": 1 }),
            Actor::system("test"),
        )
        .await
        .unwrap();
    e.until_stream(&id.stream(), "paused a second time", |s| {
        s.last()
            .is_some_and(|(t, p)| t == "ChangeRequestPaused" && p["pause"] == 2)
    })
    .await;
    assert_eq!(
        (e.changes(1, &cr), e.changes(2, &cr)),
        (1, 0),
        "batch 2 ran, batch 3 waits"
    );
    e.engine
        .signal(
            e.tenant,
            rollout,
            WINDOW_CONTINUE,
            json!({ "pause": 2 }),
            Actor::system("test"),
        )
        .await
        .unwrap();

    let (outcome, output, _) = e.output(run).await;
    assert_eq!(outcome, Outcome::Succeeded);
    assert_eq!(output["state"], "completed");
    assert_eq!(output["rollout_id"], json!(rid));
    let request = e.request(id).await;
    assert_eq!(request.state, ChangeState::Completed);
    assert_eq!(request.paused, None);
    assert_eq!(
        types(&e.stream(&id.stream()).await)[3..],
        [
            "ChangeRequestScheduled",
            "ChangeRequestStarted",
            "ChangeRequestPaused",
            "ChangeRequestResumed",
            "ChangeRequestPaused",
            "ChangeRequestResumed",
            "ChangeRequestFinished"
        ]
    );
    let states: Vec<String> = e
        .stream(&rid.stream())
        .await
        .iter()
        .filter(|(t, _)| t == "RolloutStateChanged")
        .map(|(_, p)| p["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        states,
        [
            "running",
            "paused",
            "running",
            "paused",
            "running",
            "completed"
        ]
    );
    for i in 0..3 {
        assert_eq!(e.changes(i, &cr), 1, "device {i}: the change once");
    }
    e.stop().await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_halted_change_rolls_back_and_every_event_carries_the_request_id(owner: PgPool) {
    let e = env(owner, 2).await;
    let devices = e.register_all(2).await;
    let before = e.normalised(0);
    // the canary (device 0) commits; device 1 fails: threshold 1 halts, device 0 is restored
    e.fleet
        .device(1)
        .unwrap()
        .edit_faults(|x| x.reject_login = true);
    let p = plan(1, 1, true);
    let id = e.approved_request(&devices, p, None).await;
    let run = e.start_run(id, &devices, p, None).await;
    let (outcome, output, reason) = e.output(run).await;
    assert_eq!(outcome, Outcome::RolledBack, "{reason}");
    assert_eq!(output["state"], "rolled_back");
    assert!(reason.contains("rolled back 1 of 1"), "{reason}");
    let request = e.request(id).await;
    assert_eq!(request.state, ChangeState::RolledBack);
    assert_eq!(request.final_reason.as_deref(), Some(reason.as_str()));
    let cr = change_id(id);
    assert_eq!(e.changes(0, &cr), 1);
    assert_eq!(e.normalised(0), before, "device 0 is back");
    assert_eq!(e.changes(1, &cr), 0);

    // the chain: one run, its rollout, two pushes, one restore; every event of theirs (and
    // of the request, the rollout and the snapshots they recorded) carries the request's id
    let workflows = e.workflows().await;
    let count = |k: &str| workflows.get(k).map_or(0, Vec::len);
    assert_eq!(
        (
            count("change_request"),
            count("rollout"),
            count("config_push"),
            count("config_restore")
        ),
        (1, 1, 2, 1),
        "{workflows:?}"
    );
    let correlation = *id.as_uuid();
    let events = EventReader::tenant(e.pools.app.clone(), e.tenant)
        .read_all(0, 100_000)
        .await
        .unwrap();
    let mut checked: BTreeMap<String, usize> = BTreeMap::new();
    for ev in &events {
        let stream = ev.stream.as_str();
        let category = stream.split('-').next().unwrap().to_owned();
        if category == "device" && ev.event_type != "ConfigSnapshotRecorded" {
            continue; // the registration, before the request existed
        }
        assert_eq!(
            ev.metadata.correlation_id, correlation,
            "{stream} {} ({})",
            ev.event_type, ev.payload
        );
        *checked.entry(category).or_default() += 1;
    }
    let categories: BTreeSet<&str> = checked.keys().map(String::as_str).collect();
    assert_eq!(
        categories,
        BTreeSet::from(["change", "device", "rollout", "workflow"]),
        "{checked:?}"
    );
    // and the store finds them by correlation id
    let by_correlation: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE tenant_id = $1 AND correlation_id = $2",
    )
    .bind(e.tenant.as_uuid())
    .bind(correlation)
    .fetch_one(&e.pools.system)
    .await
    .unwrap();
    assert_eq!(
        usize::try_from(by_correlation).unwrap(),
        checked.values().sum::<usize>()
    );
    let snapshots = checked.get("device").copied().unwrap_or(0);
    assert!(
        snapshots >= 3,
        "pre, post and restore snapshots: {snapshots}"
    );
    assert_eq!(
        e.engine.status(e.tenant, run).await.unwrap().unwrap().state,
        TaskState::Finished
    );
    e.stop().await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn cancelling_a_running_change_cancels_its_rollout(owner: PgPool) {
    let e = env(owner, 2).await;
    let devices = e.register_all(2).await;
    e.fleet.device(0).unwrap().edit_faults(|x| x.delay_ms = 60);
    let p = plan(0, 1, false);
    let id = e.approved_request(&devices, p, None).await;
    let run = e.start_run(id, &devices, p, None).await;
    let started = e
        .until_stream(&id.stream(), "the rollout started", |s| {
            s.iter().any(|(t, _)| t == "ChangeRequestStarted")
        })
        .await;
    let rid: RolloutId =
        serde_json::from_value(started.last().unwrap().1["rollout_id"].clone()).unwrap();
    let created = e
        .until_stream(&rid.stream(), "the rollout was created", |s| !s.is_empty())
        .await;
    let rollout: WorkflowId = serde_json::from_value(created[0].1["workflow_id"].clone()).unwrap();
    let first = format!("start-{}", devices[0]);
    for _ in 0..600 {
        if steps(&e.journal(rollout).await).contains(&first) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // as the API does: the request records the cancel, then its run is cancelled
    let state = e.request(id).await;
    let events = state
        .decide(&ChangeCommand::Cancel {
            by: By::user("approver"),
            reason: "stop".into(),
        })
        .unwrap();
    let metadata = EventMetadata {
        actor: Actor::system("test"),
        causation_id: Uuid::new_v4(),
        correlation_id: *id.as_uuid(),
    };
    let new = events
        .iter()
        .map(|ev| {
            ev.to_new_event(EventId::new_v7(), metadata.clone())
                .unwrap()
        })
        .collect();
    e.deps
        .store
        .append(
            e.tenant,
            &id.stream(),
            ExpectedVersion::Exact(state.version),
            new,
        )
        .await
        .unwrap();
    e.engine
        .cancel(e.tenant, run, "stop", Actor::system("test"))
        .await
        .unwrap();

    let (outcome, output, reason) = e.output(run).await;
    assert_eq!(outcome, Outcome::Cancelled, "{reason}");
    assert_eq!(output["state"], "cancelled");
    assert_eq!(output["rollout_id"], json!(rid));
    let journal = e.journal(run).await;
    assert!(
        steps(&journal).contains(&"cancel_rollout".to_owned()),
        "{journal:?}"
    );
    let (r_outcome, _) = e.finish(rollout).await;
    assert_eq!(r_outcome, Outcome::Cancelled);
    let request = e.request(id).await;
    assert_eq!(request.state, ChangeState::Cancelled);
    assert!(request.cancel_requested);
    // the device in flight finished its push; the other was never started
    let cr = change_id(id);
    assert_eq!(e.changes(0, &cr), 1);
    assert_eq!(e.changes(1, &cr), 0);
    assert_eq!(
        e.workflows().await.get("config_push").map_or(0, Vec::len),
        1
    );
    e.stop().await;
}

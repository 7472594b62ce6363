//! Change control over HTTP against a real PostgreSQL (a fresh database per test with the
//! real migrations) and a real git config history: the change request lifecycle with
//! four-eyes approval, previews from archived configurations, refusals as problems, the
//! tenant's change policy refusing direct pushes, break-glass with retrospective review,
//! the timeline and read-your-writes. No worker runs: where the run would append events
//! (`ChangeRequestScheduled`, `ChangeRequestStarted`) the test appends them itself.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use axum::http::{Method, StatusCode, header};
use netledger_domain::change::{ChangeEvent, ChangeRequestScheduled, ChangeRequestStarted};
use netledger_domain::clock::Clock;
use netledger_domain::identity::Role;
use netledger_domain::{
    ChangeRequestId, DeviceId, EventEnum, EventMetadata, ExpectedVersion, RolloutId, WorkflowId,
};
use netledger_store::{Direction, EventReader};
use serde_json::{Value, json};
use sqlx::PgPool;

mod support;
use support::{App, PASSWORD, Reply, app, app_with, change_content as content, config};

impl App {
    /// Registers a device (tag `edge`) and, with `config`, archives its export.
    async fn device(&self, name: &str, config: Option<&str>) -> (String, Option<String>) {
        let id = self.register_device(name).await;
        let commit = config.map(|export| {
            self.archive
                .record(
                    self.tenant,
                    id.parse::<DeviceId>().unwrap(),
                    export,
                    &netledger_archive::SnapshotMeta {
                        actor: netledger_domain::Actor::system("test"),
                        reason: netledger_domain::device::SnapshotReason::OnDemand,
                        causation_id: uuid::Uuid::new_v4(),
                        correlation_id: uuid::Uuid::new_v4(),
                        at: self.clock.now(),
                        routeros_version: "7.16".into(),
                        workflow_id: None,
                    },
                )
                .unwrap()
                .commit
        });
        (id, commit)
    }

    /// The event types of a change request's stream, in order.
    async fn change_events(&self, id: &str) -> Vec<String> {
        let stream = id.parse::<ChangeRequestId>().unwrap().stream();
        EventReader::tenant(self.state.pools().app.clone(), self.tenant)
            .read_stream(&stream, 1, Direction::Forward, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }

    /// Appends what the run's steps would (no worker runs here).
    async fn run_steps(&self, id: &str, events: Vec<ChangeEvent>) {
        let cid: ChangeRequestId = id.parse().unwrap();
        let version = self.change_events(id).await.len() as u64;
        let meta = EventMetadata::for_command(
            netledger_domain::Actor::system("change-run"),
            *cid.as_uuid(),
        );
        let events = events
            .iter()
            .map(|e| {
                e.to_new_event(netledger_domain::EventId::new_v7(), meta.clone())
                    .unwrap()
            })
            .collect();
        self.state
            .store()
            .append(
                self.tenant,
                &cid.stream(),
                ExpectedVersion::Exact(version),
                events,
            )
            .await
            .unwrap();
    }
}

const EXPORT: &str = "# by RouterOS 7.16\n/system identity\nset name=r1\n";

fn assert_illegal(r: &Reply, state: &str, allowed: &[&str]) {
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert!(r.is_problem());
    assert_eq!(r.body["state"], state, "{:?}", r.body);
    assert_eq!(r.body["allowed_states"], json!(allowed), "{:?}", r.body);
    let d = r.detail();
    assert!(d.contains(state), "{d}");
    for a in allowed {
        assert!(d.contains(a), "{d}");
    }
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn lifecycle_with_previews_four_eyes_and_invalidating_edits(pool: PgPool) {
    let app = app(pool).await;
    let (author_id, author) = app.named_user("olga", Role::Operator).await;
    let (ann_id, ann) = app.named_user("ann", Role::Approver).await;
    let (bob_id, bob) = app.named_user("bob", Role::Approver).await;
    let (_, viewer) = app.named_user("vic", Role::Viewer).await;
    let (d1, commit) = app.device("edge-1", Some(EXPORT)).await;
    let (d2, _) = app.device("edge-2", None).await;

    // Create: 201, Location, ETag.
    let body = content(
        "rename",
        &[&d1, &d2],
        "/system identity\nset name=r2",
        "medium",
    );
    let r = app
        .post("/api/v1/change-requests", &author, body.clone())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let id = r.body["change_request_id"].as_str().unwrap().to_owned();
    assert_eq!(
        r.headers[header::LOCATION],
        format!("/api/v1/change-requests/{id}").as_str()
    );
    assert_eq!(r.headers[header::ETAG], "\"1\"");
    assert_eq!(r.body["state"], "draft");
    assert_eq!(r.body["author"], author_id.as_str());
    assert_eq!(r.body["author_name"], "olga");
    assert_eq!(r.body["positions"][0]["stream"], format!("change-{id}"));
    // The viewer reads it; they cannot write.
    let got = app
        .get(&format!("/api/v1/change-requests/{id}"), &viewer)
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["title"], "rename");
    let denied = app.post("/api/v1/change-requests", &viewer, body).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);

    // Preview: the archived config against the expected result; no archive for d2.
    let p = app
        .get(&format!("/api/v1/change-requests/{id}/preview"), &viewer)
        .await;
    assert_eq!(p.status, StatusCode::OK, "{:?}", p.body);
    let devs = p.body["devices"].as_array().unwrap();
    assert_eq!(devs.len(), 2);
    assert_eq!(devs[0]["device_id"], d1.as_str());
    assert_eq!(devs[0]["device_name"], "edge-1");
    assert_eq!(devs[0]["base_commit"], commit.unwrap().as_str());
    let diff = devs[0]["diff"].as_str().unwrap();
    assert!(
        diff.contains("-set name=r1") && diff.contains("+set name=r2"),
        "{diff}"
    );
    assert!(devs[0]["changed_lines"].as_u64().unwrap() >= 2);
    assert!(devs[0]["violations"].as_array().unwrap().is_empty());
    assert!(
        devs[1]["note"]
            .as_str()
            .unwrap()
            .contains("no archived configuration"),
        "{:?}",
        devs[1]
    );
    assert_eq!(p.body["frozen"], false);

    // Submit: the target is frozen, the policy says one approval at medium.
    let s = app
        .post(
            &format!("/api/v1/change-requests/{id}/submit"),
            &author,
            json!({}),
        )
        .await;
    assert_eq!(s.status, StatusCode::OK, "{:?}", s.body);
    assert_eq!(s.body["state"], "submitted");
    assert_eq!(s.body["devices"], json!([d1, d2]));
    assert_eq!(s.body["required_approvals"], 1);
    assert_eq!(
        s.body["previews"][0]["changed_lines"],
        devs[0]["changed_lines"]
    );

    // Four eyes: the author cannot approve (403), an approver can.
    let own = app
        .post(
            &format!("/api/v1/change-requests/{id}/approve"),
            &author,
            json!({}),
        )
        .await;
    assert_eq!(own.status, StatusCode::FORBIDDEN, "{:?}", own.body);
    let a = app
        .post(
            &format!("/api/v1/change-requests/{id}/approve"),
            &ann,
            json!({"comment": "looks right"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let cr = &a.body["change_request"];
    assert_eq!(cr["state"], "approved");
    assert_eq!(cr["approvals"][0]["by"], ann_id.as_str());
    assert_eq!(cr["approvals"][0]["by_name"], "ann");
    assert_eq!(cr["approvals"][0]["comment"], "looks right");
    assert!(cr["approvals"][0]["at"].is_string());
    assert!(
        a.body["run"].is_null(),
        "no window: nothing starts by itself"
    );
    let version = cr["version"].as_u64().unwrap();

    // Illegal transitions name the state and the allowed ones.
    let again = app
        .post(
            &format!("/api/v1/change-requests/{id}/submit"),
            &author,
            json!({}),
        )
        .await;
    assert_illegal(&again, "approved", &["draft"]);

    // Edit: If-Match required (428), a stale one 412; the edit invalidates the approval.
    let edited = content(
        "rename (high)",
        &[&d1, &d2],
        "/system identity\nset name=r2",
        "high",
    );
    let uri = format!("/api/v1/change-requests/{id}");
    let r = app
        .call(
            Method::PATCH,
            &uri,
            Some(&author),
            Some(edited.clone()),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_REQUIRED, "{:?}", r.body);
    let r = app
        .call(
            Method::PATCH,
            &uri,
            Some(&author),
            Some(edited.clone()),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{:?}", r.body);
    assert_eq!(r.body["current_version"], version);
    // Only the author edits.
    let etag = format!("\"{version}\"");
    let r = app
        .call(
            Method::PATCH,
            &uri,
            Some(&ann),
            Some(edited.clone()),
            &[("if-match", etag.as_str())],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    let r = app
        .call(
            Method::PATCH,
            &uri,
            Some(&author),
            Some(edited.clone()),
            &[("if-match", etag.as_str())],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["state"], "draft");
    assert_eq!(r.body["approvals"], json!([]));
    let w = &r.body["positions"][0];
    assert_eq!(
        w["last_position"].as_i64().unwrap() - w["first_position"].as_i64().unwrap(),
        1,
        "two events: the edit and the invalidation"
    );
    let events = app.change_events(&id).await;
    assert_eq!(
        &events[events.len() - 2..],
        ["ChangeRequestEdited", "ChangeRequestApprovalsInvalidated"]
    );

    // Submit again: high risk needs two approvals, from two people.
    let s = app
        .post(
            &format!("/api/v1/change-requests/{id}/submit"),
            &author,
            json!({}),
        )
        .await;
    assert_eq!(s.status, StatusCode::OK, "{:?}", s.body);
    assert_eq!(s.body["required_approvals"], 2);
    let a1 = app
        .post(
            &format!("/api/v1/change-requests/{id}/approve"),
            &ann,
            json!({}),
        )
        .await;
    assert_eq!(a1.body["change_request"]["state"], "submitted");
    assert_eq!(a1.body["change_request"]["missing_approvals"], 1);
    let twice = app
        .post(
            &format!("/api/v1/change-requests/{id}/approve"),
            &ann,
            json!({}),
        )
        .await;
    assert_eq!(twice.status, StatusCode::CONFLICT, "{:?}", twice.body);
    assert!(twice.is_problem());
    // Not approved yet: start refuses with 409 (missing approvals).
    let early = app
        .post(
            &format!("/api/v1/change-requests/{id}/start"),
            &author,
            json!({}),
        )
        .await;
    assert_eq!(early.status, StatusCode::CONFLICT, "{:?}", early.body);
    let a2 = app
        .post(
            &format!("/api/v1/change-requests/{id}/approve"),
            &bob,
            json!({}),
        )
        .await;
    assert_eq!(a2.status, StatusCode::OK, "{:?}", a2.body);
    assert_eq!(a2.body["change_request"]["state"], "approved");

    // Start (an approver): the run starts; a second start is a retry of the same run.
    let st = app
        .post(
            &format!("/api/v1/change-requests/{id}/start"),
            &bob,
            json!({}),
        )
        .await;
    assert_eq!(st.status, StatusCode::ACCEPTED, "{:?}", st.body);
    let wf = st.body["workflow_id"].as_str().unwrap().to_owned();
    let st2 = app
        .post(
            &format!("/api/v1/change-requests/{id}/start"),
            &author,
            json!({}),
        )
        .await;
    assert_eq!(st2.status, StatusCode::OK, "{:?}", st2.body);
    assert_eq!(st2.body["workflow_id"], wf.as_str());
    assert_eq!(st2.body["existed"], true);
    netledger_projections::catch_up(&app.state.pools().system, None, 500)
        .await
        .unwrap();
    let run = app.get(&format!("/api/v1/workflows/{wf}"), &viewer).await;
    assert_eq!(run.body["run"]["kind"], "change_request", "{:?}", run.body);
    assert_eq!(run.body["input"]["change_id"], id.as_str());
    assert_eq!(run.body["input"]["requested_by"], bob_id.as_str());

    // Cancel before the run scheduled it: cancelled, and the run is told to stop.
    let c = app
        .post(
            &format!("/api/v1/change-requests/{id}/cancel"),
            &author,
            json!({"reason": "not tonight"}),
        )
        .await;
    assert_eq!(c.status, StatusCode::OK, "{:?}", c.body);
    assert_eq!(c.body["change_request"]["state"], "cancelled");
    assert_eq!(c.body["workflow_id"], wf.as_str());
    assert!(c.body["signal_position"].is_i64());
    let w = app
        .post(
            &format!("/api/v1/change-requests/{id}/withdraw"),
            &author,
            json!({}),
        )
        .await;
    assert_illegal(
        &w,
        "cancelled",
        &["draft", "submitted", "approved", "rejected"],
    );

    // The timeline: its events and the run's start (correlated), with actors.
    let t = app
        .get(
            &format!("/api/v1/change-requests/{id}/timeline?limit=500"),
            &viewer,
        )
        .await;
    assert_eq!(t.status, StatusCode::OK, "{:?}", t.body);
    let items = t.body["items"].as_array().unwrap();
    let types: Vec<&str> = items
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types[0], "ChangeRequestCreated");
    for ty in [
        "ChangeRequestSubmitted",
        "ChangeRequestApproved",
        "ChangeRequestApprovalsInvalidated",
        "WorkflowStarted",
        "ChangeRequestCancelled",
    ] {
        assert!(types.contains(&ty), "{ty} missing from {types:?}");
    }
    let positions: Vec<i64> = items
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    let approved: Vec<&Value> = items
        .iter()
        .filter(|e| e["event_type"] == "ChangeRequestApproved")
        .collect();
    assert_eq!(
        approved[0]["actor"]["id"],
        ann_id.as_str(),
        "{:?}",
        approved[0]
    );
    assert_eq!(approved[0]["actor_name"], "ann");
    assert_eq!(items[0]["actor_name"], "olga");
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn policy_violations_block_submission_and_rejection_needs_a_comment(pool: PgPool) {
    let app = app(pool).await;
    let (_, author) = app.named_user("olga", Role::Operator).await;
    let (_, ann) = app.named_user("ann", Role::Approver).await;
    let (d1, _) = app.device("edge-1", Some(EXPORT)).await;
    let script = "/user\nadd name=backdoor group=full password=x";
    let r = app
        .post(
            "/api/v1/change-requests",
            &author,
            content("users", &[&d1], script, "low"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let id = r.body["change_request_id"].as_str().unwrap().to_owned();
    let s = app
        .post(
            &format!("/api/v1/change-requests/{id}/submit"),
            &author,
            json!({}),
        )
        .await;
    assert_eq!(s.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", s.body);
    assert!(s.is_problem());
    assert!(s.detail().contains("policy violations"), "{}", s.detail());
    assert_eq!(s.body["violations"][0]["device_id"], d1.as_str());
    assert!(
        !s.body["violations"][0]["violations"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Raised to high with the violations accepted explicitly: it goes to the approvers.
    let mut high = content("users", &[&d1], script, "high");
    high["overrides"] = json!({"accept_policy_violations": true});
    let e = app
        .call(
            Method::PATCH,
            &format!("/api/v1/change-requests/{id}"),
            Some(&author),
            Some(high),
            &[("if-match", "*")],
        )
        .await;
    assert_eq!(e.status, StatusCode::OK, "{:?}", e.body);
    let s = app
        .post(
            &format!("/api/v1/change-requests/{id}/submit"),
            &author,
            json!({}),
        )
        .await;
    assert_eq!(s.status, StatusCode::OK, "{:?}", s.body);
    assert_eq!(s.body["required_approvals"], 2);
    assert!(
        !s.body["previews"][0]["violations"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Reject needs a comment; the author cannot reject their own.
    let no = app
        .post(
            &format!("/api/v1/change-requests/{id}/reject"),
            &ann,
            json!({}),
        )
        .await;
    assert_eq!(no.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", no.body);
    let blank = app
        .post(
            &format!("/api/v1/change-requests/{id}/reject"),
            &ann,
            json!({"comment": "  "}),
        )
        .await;
    assert_eq!(blank.status, StatusCode::UNPROCESSABLE_ENTITY);
    let rj = app
        .post(
            &format!("/api/v1/change-requests/{id}/reject"),
            &ann,
            json!({"comment": "no backdoors"}),
        )
        .await;
    assert_eq!(rj.status, StatusCode::OK, "{:?}", rj.body);
    assert_eq!(rj.body["state"], "rejected");
    assert_eq!(rj.body["rejection"]["comment"], "no backdoors");
    assert_eq!(rj.body["rejection"]["by_name"], "ann");
    let ap = app
        .post(
            &format!("/api/v1/change-requests/{id}/approve"),
            &ann,
            json!({}),
        )
        .await;
    assert_illegal(&ap, "rejected", &["submitted"]);
    // An operator cannot approve at all (no changes:approve).
    let op = app
        .post(
            &format!("/api/v1/change-requests/{id}/approve"),
            &author,
            json!({}),
        )
        .await;
    assert_eq!(op.status, StatusCode::FORBIDDEN);
    assert_eq!(op.body["required_permission"], "changes:approve");
    // Withdrawn by its author.
    let w = app
        .post(
            &format!("/api/v1/change-requests/{id}/withdraw"),
            &author,
            json!({"reason": "dropped"}),
        )
        .await;
    assert_eq!(w.status, StatusCode::OK, "{:?}", w.body);
    assert_eq!(w.body["state"], "withdrawn");
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn direct_pushes_are_refused_in_a_change_controlled_tenant(pool: PgPool) {
    let app = app(pool).await;
    let (_, op) = app.named_user("olga", Role::Operator).await;
    let uri = format!("/api/v1/tenants/{}/change-policy", app.tenant);
    let p = app.get(&uri, &op).await;
    assert_eq!(p.status, StatusCode::OK, "{:?}", p.body);
    assert_eq!(p.body["change_control"], "required", "the bootstrap tenant");
    assert_eq!(
        p.body["approvals"],
        json!({"low": 1, "medium": 1, "high": 2})
    );
    let (d1, _) = app.device("edge-1", None).await;
    let (d2, _) = app.device("edge-2", None).await;
    let (d3, _) = app.device("edge-3", None).await;
    let push = json!({"device_id": d1, "script": "/system identity set name=x"});
    let fw = json!({"device_id": d2, "version": "7.19.4"});
    let ro =
        json!({"name": "fw", "target": {"kind": "firmware", "version": "7.19.4"}, "devices": [d3]});
    for (path, body) in [
        ("/api/v1/workflows/config-push", &push),
        ("/api/v1/workflows/firmware-upgrade", &fw),
        ("/api/v1/rollouts", &ro),
    ] {
        let r = app.post(path, &op, body.clone()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {:?}", r.body);
        assert!(r.is_problem());
        assert!(
            r.detail().contains(
                "change-controlled: open a change request (POST /api/v1/change-requests)"
            ),
            "{}",
            r.detail()
        );
    }
    // Backups stay direct.
    let b = app
        .post("/api/v1/workflows/backup", &op, json!({"device_id": d1}))
        .await;
    assert_eq!(b.status, StatusCode::CREATED, "{:?}", b.body);

    // The policy: only tenants:write sets it; bad counts are 422; If-Match is checked.
    let denied = app
        .call(
            Method::PUT,
            &uri,
            Some(&op),
            Some(json!({"change_control": "optional"})),
            &[],
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let bad = app
        .call(
            Method::PUT,
            &uri,
            Some(&app.admin),
            Some(json!({"change_control": "required", "approvals": {"low": 2, "medium": 1, "high": 2}})),
            &[],
        )
        .await;
    assert_eq!(
        bad.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        bad.body
    );
    let stale = app
        .call(
            Method::PUT,
            &uri,
            Some(&app.admin),
            Some(json!({"change_control": "optional"})),
            &[("if-match", "\"999\"")],
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    let etag = p.headers[header::ETAG].to_str().unwrap().to_owned();
    let set = app
        .call(
            Method::PUT,
            &uri,
            Some(&app.admin),
            Some(json!({"change_control": "optional", "approvals": {"low": 1, "medium": 2, "high": 3}})),
            &[("if-match", etag.as_str())],
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);
    assert_eq!(
        set.body["events"][0]["stream"],
        format!("tenant-{}", app.tenant)
    );
    let p = app.get(&uri, &op).await;
    assert_eq!(p.body["change_control"], "optional");
    assert_eq!(p.body["approvals"]["medium"], 2);
    // The tenant's own ETag moved with it.
    let t = app
        .get(&format!("/api/v1/tenants/{}", app.tenant), &app.admin)
        .await;
    assert_eq!(t.headers[header::ETAG], p.headers[header::ETAG]);

    // Optional: direct calls work as before.
    for (path, body) in [
        ("/api/v1/workflows/firmware-upgrade", &fw),
        ("/api/v1/rollouts", &ro),
    ] {
        let r = app.post(path, &op, body.clone()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{path}: {:?}", r.body);
    }
    let d4 = app.device("edge-4", None).await.0;
    let r = app
        .post(
            "/api/v1/workflows/config-push",
            &op,
            json!({"device_id": d4, "script": "/system identity set name=x"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn emergency_runs_without_approval_and_is_overdue_until_reviewed(pool: PgPool) {
    let mut c = config();
    c.change_review_grace = Duration::from_secs(3600);
    let app = app_with(pool, c, None).await;
    let (_, op) = app.named_user("olga", Role::Operator).await;
    let (_, ann) = app.named_user("ann", Role::Approver).await;
    let (d1, _) = app.device("edge-1", Some(EXPORT)).await;
    let mut body = content("hotfix", &[&d1], "/system identity\nset name=hot", "low");
    body["emergency"] = json!(true);
    let r = app.post("/api/v1/change-requests", &op, body.clone()).await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "needs a reason: {:?}",
        r.body
    );
    body["emergency_reason"] = json!("core link down");
    let r = app.post("/api/v1/change-requests", &op, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let id = r.body["change_request_id"].as_str().unwrap().to_owned();
    let s = app
        .post(
            &format!("/api/v1/change-requests/{id}/submit"),
            &op,
            json!({}),
        )
        .await;
    assert_eq!(s.status, StatusCode::OK, "{:?}", s.body);
    // Without approval only changes:write may start it (break-glass), not an approver.
    let r = app
        .post(
            &format!("/api/v1/change-requests/{id}/start"),
            &ann,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    let st = app
        .post(
            &format!("/api/v1/change-requests/{id}/start"),
            &op,
            json!({}),
        )
        .await;
    assert_eq!(st.status, StatusCode::ACCEPTED, "{:?}", st.body);
    let wf: WorkflowId = st.body["workflow_id"].as_str().unwrap().parse().unwrap();
    // The run's steps (no worker here): scheduled, started.
    app.run_steps(
        &id,
        vec![
            ChangeRequestScheduled {
                workflow_id: wf,
                by: "olga".into(),
                window: None,
            }
            .into(),
            ChangeRequestStarted {
                rollout_id: RolloutId::new_random(),
            }
            .into(),
        ],
    )
    .await;
    let g = app
        .get(&format!("/api/v1/change-requests/{id}"), &ann)
        .await;
    assert_eq!(g.body["state"], "running");
    assert_eq!(g.body["emergency"], true);
    assert_eq!(g.body["review_pending"], true);
    assert_eq!(g.body["review_overdue"], false, "within the grace period");
    netledger_projections::catch_up(&app.state.pools().system, None, 500)
        .await
        .unwrap();
    let list = app
        .get("/api/v1/change-requests?review_overdue=true", &ann)
        .await;
    assert_eq!(list.status, StatusCode::OK, "{:?}", list.body);
    assert_eq!(list.body["items"], json!([]));

    app.clock.advance(Duration::from_secs(2 * 3600));
    // Access tokens live 15 minutes: sign in again after the jump.
    let ann = app.login("ann@example.net", PASSWORD).await;
    let op = app.login("olga@example.net", PASSWORD).await;
    let g = app
        .get(&format!("/api/v1/change-requests/{id}"), &ann)
        .await;
    assert_eq!(g.body["review_overdue"], true);
    let list = app
        .get("/api/v1/change-requests?review_overdue=true", &ann)
        .await;
    let items = list.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{:?}", list.body);
    assert_eq!(items[0]["change_request_id"], id.as_str());
    assert_eq!(items[0]["emergency"], true);
    assert_eq!(items[0]["review_overdue"], true);
    let emergencies = app
        .get("/api/v1/change-requests?emergency=true", &ann)
        .await;
    assert_eq!(emergencies.body["items"].as_array().unwrap().len(), 1);

    // The retrospective review clears it; the author cannot review their own.
    let own = app
        .post(
            &format!("/api/v1/change-requests/{id}/approve"),
            &op,
            json!({}),
        )
        .await;
    assert_eq!(own.status, StatusCode::FORBIDDEN);
    let rev = app
        .post(
            &format!("/api/v1/change-requests/{id}/approve"),
            &ann,
            json!({"comment": "justified"}),
        )
        .await;
    assert_eq!(rev.status, StatusCode::OK, "{:?}", rev.body);
    let cr = &rev.body["change_request"];
    assert_eq!(cr["approvals"][0]["retrospective"], true);
    assert_eq!(cr["review_pending"], false);
    assert_eq!(cr["review_overdue"], false);
    let last = rev.body["change_request"]["positions"][0]["last_position"]
        .as_i64()
        .unwrap();
    // Read-your-writes: the list waits for the projector to pass the approval.
    let system = app.state.pools().system.clone();
    let projector = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        netledger_projections::catch_up(&system, None, 500)
            .await
            .unwrap();
    });
    let list = app
        .get(
            &format!("/api/v1/change-requests?review_overdue=true&min_position={last}"),
            &ann,
        )
        .await;
    projector.await.unwrap();
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.headers.get("netledger-projection-behind").is_none());
    assert_eq!(list.body["items"], json!([]));
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn reads_with_min_position_say_when_the_projection_is_behind(pool: PgPool) {
    let mut c = config();
    c.projection_wait = Duration::from_millis(100);
    let app = app_with(pool, c, None).await;
    let (_, op) = app.named_user("olga", Role::Operator).await;
    let (d1, _) = app.device("edge-1", None).await;
    let r = app
        .post(
            "/api/v1/change-requests",
            &op,
            content("later", &[&d1], "/system identity\nset name=x", "low"),
        )
        .await;
    let last = r.body["positions"][0]["last_position"].as_i64().unwrap();
    // No projector ran: every read model is behind; the reads answer with what there is.
    for path in [
        "/api/v1/change-requests",
        "/api/v1/devices",
        "/api/v1/workflows",
        "/api/v1/rollouts",
    ] {
        let l = app.get(&format!("{path}?min_position={last}"), &op).await;
        assert_eq!(l.status, StatusCode::OK, "{path}: {:?}", l.body);
        assert_eq!(l.headers["netledger-projection-behind"], "true", "{path}");
    }
    netledger_projections::catch_up(&app.state.pools().system, None, 500)
        .await
        .unwrap();
    let l = app
        .get(&format!("/api/v1/change-requests?min_position={last}"), &op)
        .await;
    assert!(l.headers.get("netledger-projection-behind").is_none());
    assert_eq!(l.body["items"][0]["title"], "later");
    let d = app
        .get(&format!("/api/v1/devices/{d1}?min_position={last}"), &op)
        .await;
    assert_eq!(d.status, StatusCode::OK, "{:?}", d.body);
    assert!(d.headers.get("netledger-projection-behind").is_none());
    // Config versions and the audit feed wait too (the admin reads the audit).
    for (path, token) in [
        (format!("/api/v1/devices/{d1}/configs"), &op),
        ("/api/v1/audit/feed".to_owned(), &app.admin),
    ] {
        let caught = app.get(&format!("{path}?min_position={last}"), token).await;
        assert_eq!(caught.status, StatusCode::OK, "{path}: {:?}", caught.body);
        assert!(
            caught.headers.get("netledger-projection-behind").is_none(),
            "{path}"
        );
        let ahead = app
            .get(&format!("{path}?min_position={}", last + 1000), token)
            .await;
        assert_eq!(ahead.status, StatusCode::OK, "{path}: {:?}", ahead.body);
        assert_eq!(
            ahead.headers["netledger-projection-behind"], "true",
            "{path}"
        );
    }
    let bad = app
        .get("/api/v1/change-requests?min_position=-1", &op)
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn windows_restores_targets_by_tag_and_continue_after_a_pause(pool: PgPool) {
    use netledger_domain::change::{ChangeRequestPaused, ChangeRequestResumed};
    use netledger_domain::workflow::card;
    let app = app(pool).await;
    let (_, op) = app.named_user("olga", Role::Operator).await;
    let (ann_id, ann) = app.named_user("ann", Role::Approver).await;
    let (d1, v1) = app.device("edge-1", Some(EXPORT)).await;
    let (d2, _) = app.device("edge-2", None).await;
    let device: DeviceId = d1.parse().unwrap();
    netledger_projections::catch_up(&app.state.pools().system, None, 500)
        .await
        .unwrap();

    // Targets by tag (any/all) and the whole tenant resolve from the device read model.
    let mut by_tag = content("tags", &[&d1], "/system identity\nset name=t", "low");
    by_tag["target"] = json!({"kind": "tags", "tags": ["edge", "core"], "match": "any"});
    let id = app
        .post("/api/v1/change-requests", &op, by_tag.clone())
        .await
        .body["change_request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let p = app
        .get(&format!("/api/v1/change-requests/{id}/preview"), &op)
        .await;
    let listed: Vec<&str> = p.body["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["edge-1", "edge-2"], "{:?}", p.body);
    let mut all = by_tag.clone();
    all["target"] = json!({"kind": "tags", "tags": ["edge", "core"], "match": "all"});
    let e = app
        .call(
            Method::PATCH,
            &format!("/api/v1/change-requests/{id}"),
            Some(&op),
            Some(all),
            &[("if-match", "*")],
        )
        .await;
    assert_eq!(e.status, StatusCode::OK, "{:?}", e.body);
    let s = app
        .post(
            &format!("/api/v1/change-requests/{id}/submit"),
            &op,
            json!({}),
        )
        .await;
    assert_eq!(s.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", s.body);
    assert!(s.detail().contains("matches no device"), "{}", s.detail());
    let mut tenant = by_tag;
    tenant["target"] = json!({"kind": "tenant"});
    app.call(
        Method::PATCH,
        &format!("/api/v1/change-requests/{id}"),
        Some(&op),
        Some(tenant),
        &[("if-match", "*")],
    )
    .await;
    let s = app
        .post(
            &format!("/api/v1/change-requests/{id}/submit"),
            &op,
            json!({}),
        )
        .await;
    assert_eq!(s.status, StatusCode::OK, "{:?}", s.body);
    assert_eq!(s.body["devices"], json!([d1, d2]));
    assert_eq!(s.body["previews"][1]["device_id"], d2.as_str());

    // Restore as a change: back to the first archived version.
    let rename = "# by RouterOS 7.16\n/system identity\nset name=r2\n";
    app.archive
        .record(
            app.tenant,
            device,
            rename,
            &netledger_archive::SnapshotMeta {
                actor: netledger_domain::Actor::system("test"),
                reason: netledger_domain::device::SnapshotReason::OnDemand,
                causation_id: uuid::Uuid::new_v4(),
                correlation_id: uuid::Uuid::new_v4(),
                at: app.clock.now(),
                routeros_version: "7.16".into(),
                workflow_id: None,
            },
        )
        .unwrap();
    let v1 = v1.unwrap();
    let mut restore = content("restore", &[&d1], "x", "medium");
    restore["action"] = json!({"kind": "restore", "device_id": d1, "commit": v1});
    let rid = app.post("/api/v1/change-requests", &op, restore).await.body["change_request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let p = app
        .get(&format!("/api/v1/change-requests/{rid}/preview"), &op)
        .await;
    assert_eq!(p.status, StatusCode::OK, "{:?}", p.body);
    let diff = p.body["devices"][0]["diff"].as_str().unwrap();
    assert!(
        diff.contains("-set name=r2") && diff.contains("+set name=r1"),
        "{:?}",
        p.body
    );
    let s = app
        .post(
            &format!("/api/v1/change-requests/{rid}/submit"),
            &op,
            json!({}),
        )
        .await;
    assert_eq!(s.status, StatusCode::OK, "{:?}", s.body);

    // A window: the approval that completes it starts the run at once (the run waits for
    // the window); the author's start afterwards is a retry of the same run.
    let now = app.clock.now();
    let fmt = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let mut windowed = content("night", &[&d1], "/system identity\nset name=n", "low");
    windowed["window"] = json!({
        "start": fmt(now + time::Duration::hours(1)),
        "end": fmt(now + time::Duration::hours(3)),
        "time_zone": "Europe/Amsterdam",
    });
    let wid = app
        .post("/api/v1/change-requests", &op, windowed)
        .await
        .body["change_request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let s = app
        .post(
            &format!("/api/v1/change-requests/{wid}/submit"),
            &op,
            json!({}),
        )
        .await;
    assert_eq!(s.status, StatusCode::OK, "{:?}", s.body);
    let a = app
        .post(
            &format!("/api/v1/change-requests/{wid}/approve"),
            &ann,
            json!({}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.body["change_request"]["state"], "approved");
    let wf = a.body["run"]["workflow_id"].as_str().unwrap().to_owned();
    assert_eq!(a.body["run"]["existed"], false);
    let st = app
        .post(
            &format!("/api/v1/change-requests/{wid}/start"),
            &op,
            json!({}),
        )
        .await;
    assert_eq!(st.status, StatusCode::OK, "{:?}", st.body);
    assert_eq!(st.body["workflow_id"], wf.as_str());
    netledger_projections::catch_up(&app.state.pools().system, None, 500)
        .await
        .unwrap();
    let run = app.get(&format!("/api/v1/workflows/{wf}"), &op).await;
    assert_eq!(run.body["input"]["requested_by"], ann_id.as_str());
    assert_eq!(run.body["input"]["window"]["time_zone"], "Europe/Amsterdam");

    // The run scheduled it and started a rollout, which paused at the window's end.
    let rollout = RolloutId::new_random();
    let cid: ChangeRequestId = wid.parse().unwrap();
    let rollout_wf = app
        .state
        .engine()
        .unwrap()
        .start::<card::Rollout>(
            app.tenant,
            card::RolloutInput {
                rollout_id: rollout,
                name: "night".into(),
                target: netledger_domain::workflow::RolloutTarget::ChangeSet {
                    script: "/system identity\nset name=n".into(),
                    sealed_script: None,
                },
                canaries: vec![],
                devices: vec![device],
                batch_size: 1,
                parallelism: 1,
                failure_threshold: 1,
                rollback_on_halt: false,
                policy: None,
                checks: card::HealthChecks::default(),
                routerboard: false,
                change_id: Some(cid),
                window_end: None,
                allow_without_timer: false,
            },
            netledger_engine::StartOptions::new(netledger_domain::Actor::system("test"))
                .rollout(rollout),
        )
        .await
        .unwrap()
        .workflow_id;
    app.run_steps(
        &wid,
        vec![
            ChangeRequestScheduled {
                workflow_id: wf.parse().unwrap(),
                by: ann_id.clone(),
                window: None,
            }
            .into(),
            ChangeRequestStarted {
                rollout_id: rollout,
            }
            .into(),
            ChangeRequestPaused {
                pause: 1,
                reason: "maintenance window ended".into(),
            }
            .into(),
        ],
    )
    .await;
    let g = app
        .get(&format!("/api/v1/change-requests/{wid}"), &op)
        .await;
    assert_eq!(g.body["paused"], true);
    assert_eq!(g.body["pause"], 1);
    let denied = app
        .post(
            &format!("/api/v1/change-requests/{wid}/continue"),
            &op,
            json!({}),
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let go = app
        .post(
            &format!("/api/v1/change-requests/{wid}/continue"),
            &ann,
            json!({}),
        )
        .await;
    assert_eq!(go.status, StatusCode::OK, "{:?}", go.body);
    assert_eq!(go.body["workflow_id"], rollout_wf.to_string().as_str());
    let journal = EventReader::tenant(app.state.pools().app.clone(), app.tenant)
        .read_stream(&rollout_wf.stream(), u64::MAX, Direction::Backward, 1)
        .await
        .unwrap();
    assert_eq!(journal[0].event_type, "WorkflowSignalled");
    assert_eq!(journal[0].payload["signal"], "window_continue");
    assert_eq!(journal[0].payload["payload"], json!({"pause": 1}));
    app.run_steps(&wid, vec![ChangeRequestResumed { pause: 1 }.into()])
        .await;
    let again = app
        .post(
            &format!("/api/v1/change-requests/{wid}/continue"),
            &ann,
            json!({}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{:?}", again.body);

    // Cancel while running: recorded, and the run is told to stop.
    let c = app
        .post(
            &format!("/api/v1/change-requests/{wid}/cancel"),
            &ann,
            json!({"reason": "too late"}),
        )
        .await;
    assert_eq!(c.status, StatusCode::OK, "{:?}", c.body);
    assert_eq!(c.body["change_request"]["state"], "running");
    assert_eq!(c.body["change_request"]["cancel_requested"], true);
    assert_eq!(c.body["workflow_id"], wf.as_str());
    let run_journal = EventReader::tenant(app.state.pools().app.clone(), app.tenant)
        .read_stream(
            &wf.parse::<WorkflowId>().unwrap().stream(),
            u64::MAX,
            Direction::Backward,
            1,
        )
        .await
        .unwrap();
    assert_eq!(run_journal[0].payload["signal"], "cancel");
    assert_eq!(
        run_journal[0].metadata.correlation_id,
        *cid.as_uuid(),
        "the run carries the request's id as correlation id"
    );
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn the_demo_approver_is_created_once_in_the_first_tenant(pool: PgPool) {
    use netledger_api::accounts::{DemoUserOutcome, bootstrap_demo_user};
    let app = app(pool).await;
    let email = "approver@netledger.local";
    let created = bootstrap_demo_user(&app.state, email, "Demo approver", Role::Approver, PASSWORD)
        .await
        .unwrap();
    match created {
        DemoUserOutcome::Created { tenant_id, .. } => {
            assert_eq!(tenant_id, *app.tenant.as_uuid());
        }
        other => panic!("{other:?}"),
    }
    let again = bootstrap_demo_user(&app.state, email, "Demo approver", Role::Approver, PASSWORD)
        .await
        .unwrap();
    assert_eq!(again, DemoUserOutcome::AlreadyExists);
    let token = app.login(email, PASSWORD).await;
    let me = app.get("/api/v1/auth/me", &token).await;
    assert_eq!(me.body["role"], "approver", "{:?}", me.body);
    assert_eq!(me.body["tenant_id"], app.tenant.to_string().as_str());
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_request_edited_after_its_run_started_gets_a_new_run_when_approved_again(pool: PgPool) {
    let app = app(pool).await;
    let (_, op) = app.named_user("olga", Role::Operator).await;
    let (_, ann) = app.named_user("ann", Role::Approver).await;
    let (d1, _) = app.device("edge-1", Some(EXPORT)).await;
    let now = app.clock.now();
    let fmt = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let mut windowed = content("night", &[&d1], "/system identity\nset name=n", "low");
    windowed["window"] = json!({
        "start": fmt(now + time::Duration::hours(1)),
        "end": fmt(now + time::Duration::hours(3)),
        "time_zone": "UTC",
    });
    let id = app
        .post("/api/v1/change-requests", &op, windowed.clone())
        .await
        .body["change_request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let first = approval_round(&app, &op, &ann, &id).await;
    // Edited before its run scheduled it (no worker runs here): a draft again.
    windowed["reason"] = json!("the fleet needs it, on the second night");
    let e = app
        .call(
            Method::PATCH,
            &format!("/api/v1/change-requests/{id}"),
            Some(&op),
            Some(windowed),
            &[("if-match", "*")],
        )
        .await;
    assert_eq!(e.status, StatusCode::OK, "{:?}", e.body);
    assert_eq!(e.body["state"], "draft");
    // Approved again: a run of its own, not the first round's.
    let second = approval_round(&app, &op, &ann, &id).await;
    assert_ne!(first, second);
}

/// Submits request `id` (as `op`) and approves it (as `ann`); the approval of a request with a
/// window starts a new run: its workflow id.
async fn approval_round(app: &support::App, op: &str, ann: &str, id: &str) -> String {
    let s = app
        .post(
            &format!("/api/v1/change-requests/{id}/submit"),
            op,
            json!({}),
        )
        .await;
    assert_eq!(s.status, StatusCode::OK, "{:?}", s.body);
    let a = app
        .post(
            &format!("/api/v1/change-requests/{id}/approve"),
            ann,
            json!({}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.body["run"]["existed"], false, "{:?}", a.body);
    a.body["run"]["workflow_id"].as_str().unwrap().to_owned()
}

/// Issue #15 item 5: switching off the rollback timer is its own permission
/// (`workflows:without_timer`, tenant admins), and in a change-controlled tenant only an
/// approved (never an emergency) change request at risk high carries it.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn switching_off_the_rollback_timer_needs_its_own_permission_and_approval(pool: PgPool) {
    let app = app(pool).await;
    let (_, op) = app.named_user("olga", Role::Operator).await;
    let (_, ta) = app.named_user("tina", Role::TenantAdmin).await;
    let (d1, _) = app.device("edge-1", None).await;
    let (d2, _) = app.device("edge-2", None).await;
    let without_timer = |d: &str| json!({"device_id": d, "script": "/system identity set name=x", "allow_without_timer": true});

    // Change-controlled (the bootstrap tenant): a direct push is refused even to an admin.
    let r = app
        .post("/api/v1/workflows/config-push", &ta, without_timer(&d1))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    assert!(r.detail().contains("change-controlled"), "{}", r.detail());
    // A change request with the override: the operator may not write one at all ...
    let mut high = content("no timer", &[&d1], "/system identity set name=x", "high");
    high["overrides"] = json!({"allow_without_timer": true});
    let r = app.post("/api/v1/change-requests", &op, high.clone()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    assert!(
        r.detail().contains("workflows:without_timer"),
        "{}",
        r.detail()
    );
    // ... the admin only at risk high and never as an emergency (that would skip approval).
    let mut medium = high.clone();
    medium["risk"] = json!("medium");
    let r = app.post("/api/v1/change-requests", &ta, medium).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    let mut emergency = high.clone();
    emergency["emergency"] = json!(true);
    emergency["emergency_reason"] = json!("outage");
    let r = app.post("/api/v1/change-requests", &ta, emergency).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    let r = app.post("/api/v1/change-requests", &ta, high).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["state"], "draft");

    // Optional change control: the operator still cannot push without the timer; the
    // tenant admin can; a push with the timer stays the operator's.
    app.change_control("optional").await;
    let r = app
        .post("/api/v1/workflows/config-push", &op, without_timer(&d1))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    assert_eq!(r.problem_type(), "urn:netledger:problem:forbidden");
    assert!(
        r.detail().contains("workflows:without_timer"),
        "{}",
        r.detail()
    );
    let r = app
        .post("/api/v1/workflows/config-push", &ta, without_timer(&d1))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = app
        .post(
            "/api/v1/workflows/config-push",
            &op,
            json!({"device_id": d2, "script": "/system identity set name=x"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
}

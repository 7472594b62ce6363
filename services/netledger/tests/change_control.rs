//! Change control end to end, against real processes: `netledger devsim` (two simulated
//! RouterOS 7 devices) and `netledger all` on a fresh PostgreSQL database and a private NATS
//! server, driven over HTTP as a client would.
//!
//! The chain: draft -> submit -> the author's own approval refused -> first approval -> an
//! edit invalidates it -> two approvals (risk high) -> the window opens (a durable timer) ->
//! the rollout's canary fails verification (its access is cut by the change, the device's
//! own timer reverts it) -> the threshold halts the rollout -> rollback on halt -> the
//! request ends `rolled_back`, and its timeline lists the whole chain in order with actors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Windows are planned on the wall clock the platform's processes run on.
#![allow(clippy::disallowed_methods)]

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use support::platform::{ADMIN_EMAIL, ADMIN_PASSWORD, Http, Platform, until};

const CHANGE: &str =
    "/ip pool\nadd name=pool-cr ranges=10.77.0.10-10.77.0.20\n/system identity\nset name=changed\n";

async fn user(api: &Http, admin: &str, email: &str, role: &str) -> (String, String) {
    api.new_user(admin, email, role, &format!("{role}-password-1234"))
        .await
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

async fn get(api: &Http, token: &str, id: &str) -> Value {
    api.ok(
        200,
        "GET",
        &format!("/api/v1/change-requests/{id}"),
        token,
        None,
    )
    .await
}

async fn wait_state(api: &Http, token: &str, id: &str, state: &str, within: Duration) -> Value {
    until(&format!("change request {id} {state}"), within, || async {
        let cr = get(api, token, id).await;
        (cr["state"] == state).then_some(cr)
    })
    .await
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_change_request_goes_from_draft_to_rolled_back_with_its_whole_chain(owner: PgPool) {
    let p = Platform::start(&owner, 2).await;
    let api = &p.api;
    // the author holds approve too (a tenant admin): four-eyes must still refuse them
    let admin = api.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let me = api.ok(200, "GET", "/api/v1/auth/me", &admin, None).await;
    let admin_id = me["id"]
        .as_str()
        .or_else(|| me["user"]["id"].as_str())
        .unwrap()
        .to_owned();
    let (ann_id, ann) = user(api, &admin, "ann@netledger.test", "approver").await;
    let (bob_id, bob) = user(api, &admin, "bob@netledger.test", "approver").await;

    // two devices with an archived configuration (a backup stays a direct call)
    let canary = p.register(&admin, 0, "canary").await;
    let second = p.register(&admin, 1, "second").await;
    for d in [&canary, &second] {
        api.ok(
            201,
            "POST",
            "/api/v1/workflows/backup",
            &admin,
            Some(json!({ "device_id": d })),
        )
        .await;
    }
    for d in [&canary, &second] {
        until("an archived config", Duration::from_secs(90), || async {
            let v = api
                .ok(
                    200,
                    "GET",
                    &format!("/api/v1/devices/{d}/configs"),
                    &admin,
                    None,
                )
                .await;
            (!v["items"].as_array().unwrap().is_empty()).then_some(())
        })
        .await;
    }
    // a direct push is refused: the tenant is change-controlled
    let direct = api
        .call(
            "POST",
            "/api/v1/workflows/config-push",
            Some(&admin),
            Some(json!({ "device_id": canary, "change_id": "direct", "script": CHANGE })),
            &[],
        )
        .await;
    assert_eq!(direct.status, 403, "{:#}", direct.body);
    assert!(
        direct.body["detail"]
            .as_str()
            .unwrap()
            .contains("change request"),
        "{:#}",
        direct.body
    );

    // The canary's access is cut by the change: verification fails, its own timer reverts
    // it. Replies are slowed so the fault can be set between arm (itself a change on the
    // device: the rollback timer) and apply, once the timer is there.
    p.faults(0, json!({ "delay_ms": 100 })).await;
    let control = p.control.clone();
    let cut = tokio::spawn(async move {
        loop {
            let export = control
                .call("GET", "/devices/0/export", None, None, &[])
                .await;
            if export.status == 200 && export.text.contains("netledger-rollback-cr-") {
                let set = control
                    .call(
                        "PUT",
                        "/devices/0/faults",
                        None,
                        Some(json!({ "delay_ms": 100, "cut_access_on_change": true })),
                        &[],
                    )
                    .await;
                assert!(set.status < 300, "{set:?}");
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });

    let now = OffsetDateTime::now_utc();
    let mut content = json!({
        "title": "Address pool for the new VLAN",
        "reason": "CHG-4711: the lab VLAN needs a pool",
        "ticket": "CHG-4711",
        "target": { "kind": "devices", "device_ids": [canary, second] },
        "action": { "kind": "script", "script": CHANGE },
        "plan": { "canaries": 1, "batch_size": 1, "parallelism": 1, "failure_threshold": 1,
                  "rollback_on_halt": true },
        "risk": "high",
        "window": { "start": rfc3339(now + Duration::from_secs(3600)),
                    "end": rfc3339(now + Duration::from_secs(7200)),
                    "time_zone": "Europe/Amsterdam" },
    });
    let created = api
        .ok(
            201,
            "POST",
            "/api/v1/change-requests",
            &admin,
            Some(content.clone()),
        )
        .await;
    let id = created["change_request_id"].as_str().unwrap().to_owned();
    assert_eq!(created["state"], "draft");
    let cr = format!("/api/v1/change-requests/{id}");

    // preview: a diff per device, without touching them
    let preview = api
        .ok(200, "GET", &format!("{cr}/preview"), &admin, None)
        .await;
    let devices = preview["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2, "{preview:#}");
    for d in devices {
        assert!(
            d["diff"].as_str().unwrap().contains("+add name=pool-cr"),
            "{d:#}"
        );
    }

    let submitted = api
        .ok(
            200,
            "POST",
            &format!("{cr}/submit"),
            &admin,
            Some(json!({})),
        )
        .await;
    assert_eq!(submitted["state"], "submitted", "{submitted:#}");
    assert_eq!(submitted["required_approvals"], 2);

    // four eyes: the author cannot approve their own request
    let own = api
        .call(
            "POST",
            &format!("{cr}/approve"),
            Some(&admin),
            Some(json!({ "comment": "mine" })),
            &[],
        )
        .await;
    assert!(matches!(own.status, 403 | 409), "{own:#?}");
    assert!(
        own.body["detail"].as_str().unwrap().contains("four-eyes"),
        "{:#}",
        own.body
    );

    api.ok(
        200,
        "POST",
        &format!("{cr}/approve"),
        &ann,
        Some(json!({ "comment": "pool range checked" })),
    )
    .await;
    // nobody approves twice
    let twice = api
        .call(
            "POST",
            &format!("{cr}/approve"),
            Some(&ann),
            Some(json!({})),
            &[],
        )
        .await;
    assert_eq!(twice.status, 409, "{:#}", twice.body);

    // an edit after the approval invalidates it (the window moves to start soon)
    let version = get(api, &admin, &id).await["version"].as_u64().unwrap();
    let now = OffsetDateTime::now_utc();
    content["window"] = json!({
        "start": rfc3339(now + Duration::from_secs(25)),
        "end": rfc3339(now + Duration::from_secs(3600)),
        "time_zone": "Europe/Amsterdam",
    });
    let patched = api
        .call(
            "PATCH",
            &cr,
            Some(&admin),
            Some(content.clone()),
            &[("if-match", format!("\"{version}\""))],
        )
        .await;
    assert_eq!(patched.status, 200, "{:#}", patched.body);
    assert_eq!(patched.body["state"], "draft");
    assert_eq!(patched.body["approvals"].as_array().unwrap().len(), 0);
    // an edit at an old version is refused
    let stale = api
        .call(
            "PATCH",
            &cr,
            Some(&admin),
            Some(content),
            &[("if-match", format!("\"{version}\""))],
        )
        .await;
    assert_eq!(stale.status, 412, "{:#}", stale.body);

    api.ok(
        200,
        "POST",
        &format!("{cr}/submit"),
        &admin,
        Some(json!({})),
    )
    .await;
    api.ok(200, "POST", &format!("{cr}/approve"), &ann, Some(json!({})))
        .await;
    let one = get(api, &admin, &id).await;
    assert_eq!(one["state"], "submitted");
    api.ok(
        200,
        "POST",
        &format!("{cr}/approve"),
        &bob,
        Some(json!({ "comment": "ok for tonight" })),
    )
    .await;
    // approved with a window: its run is scheduled at once and waits for the window
    let scheduled = wait_state(api, &admin, &id, "scheduled", Duration::from_secs(30)).await;
    assert!(scheduled["rollout_id"].is_null(), "{scheduled:#}");

    // the window opens, the canary fails verification, the rollout halts and rolls back
    let running = wait_state(api, &admin, &id, "running", Duration::from_secs(90)).await;
    tokio::time::timeout(Duration::from_secs(120), cut)
        .await
        .expect("the canary's rollback timer was armed")
        .unwrap();
    let rollout_id = running["rollout_id"].as_str().unwrap().to_owned();
    let done = until("the request to end", Duration::from_secs(400), || async {
        let cr = get(api, &admin, &id).await;
        let s = cr["state"].as_str().unwrap().to_owned();
        (!matches!(s.as_str(), "scheduled" | "running")).then_some(cr)
    })
    .await;
    if done["state"] != "rolled_back" {
        let timeline = api
            .ok(
                200,
                "GET",
                &format!("{cr}/timeline?limit=500"),
                &admin,
                None,
            )
            .await;
        let lines: Vec<String> = timeline["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| format!("{} {} {}", e["stream"], e["event_type"], e["payload"]))
            .collect();
        panic!(
            "the request ended {} ({}); timeline:\n{}",
            done["state"],
            done["reason_final"],
            lines.join("\n")
        );
    }
    let rollout = api
        .ok(
            200,
            "GET",
            &format!("/api/v1/rollouts/{rollout_id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(rollout["state"], "halted", "{rollout:#}");

    // the timeline: the whole chain, in order, with actors
    let timeline = api
        .ok(
            200,
            "GET",
            &format!("{cr}/timeline?limit=500"),
            &admin,
            None,
        )
        .await;
    let items = timeline["items"].as_array().unwrap();
    let positions: Vec<i64> = items
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "in order");
    let user_of = |e: &Value| e["actor"]["id"].as_str().map(str::to_owned);
    let expect: Vec<(&str, Option<&str>)> = vec![
        ("ChangeRequestCreated", Some(&admin_id)),
        ("ChangeRequestSubmitted", Some(&admin_id)),
        ("ChangeRequestApproved", Some(&ann_id)),
        ("ChangeRequestEdited", Some(&admin_id)),
        ("ChangeRequestApprovalsInvalidated", Some(&admin_id)),
        ("ChangeRequestSubmitted", Some(&admin_id)),
        ("ChangeRequestApproved", Some(&ann_id)),
        ("ChangeRequestApproved", Some(&bob_id)),
        ("ChangeRequestScheduled", None),
        ("WorkflowTimerFired", None),
        ("ChangeRequestStarted", None),
        ("RolloutCreated", None),
        ("WorkflowStarted", None),
        ("RolloutDeviceFinished", None),
        ("RolloutStateChanged", None),
        ("ChangeRequestFinished", None),
    ];
    let mut at = 0;
    for (ty, actor) in &expect {
        let found = items[at..]
            .iter()
            .position(|e| {
                e["event_type"] == *ty && actor.is_none_or(|a| user_of(e).as_deref() == Some(a))
            })
            .unwrap_or_else(|| {
                let seen: Vec<String> = items
                    .iter()
                    .map(|e| format!("{} {}", e["event_type"], e["actor"]))
                    .collect();
                panic!(
                    "no {ty} by {actor:?} after entry {at}; timeline:\n{}",
                    seen.join("\n")
                )
            });
        at += found + 1;
    }
    // the per-device workflows and the device events are in it: correlated by the request
    for stream_prefix in ["change-", "workflow-", "rollout-", "device-"] {
        assert!(
            items
                .iter()
                .any(|e| e["stream"].as_str().unwrap().starts_with(stream_prefix)),
            "no {stream_prefix} event in the timeline"
        );
    }
    assert!(
        items
            .iter()
            .all(|e| e["stream"] == format!("change-{id}") || e["correlation_id"] == id.as_str()),
        "every other entry is correlated by the request"
    );
    // the halt came before batch 1: no workflow ever owned the second device
    assert!(
        !items.iter().any(|e| e["event_type"] == "WorkflowStarted"
            && e["payload"]["devices"]
                .as_array()
                .is_some_and(|d| d.iter().any(|d| d == second.as_str()))),
        "the second device was not touched"
    );
}

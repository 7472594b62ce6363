//! `rollback_on_halt` end to end, through the engine against a real PostgreSQL (fresh
//! database per test) and devsim over real sockets: a change rollout halted by its failure
//! threshold restores every device whose push committed (once each, back at the pre-push
//! configuration), refuses a device changed out of band after its push, leaves committed
//! devices alone without the flag, and a firmware rollout with the flag is refused at start.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use netledger_domain::workflow::{Outcome, RolloutRefused, RolloutTarget, check_rollout};
use netledger_domain::{Actor, DeviceId, RolloutId, WorkflowId};
use netledger_engine::StartOptions;
use netledger_netops::push::normalised_sha256;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use support::{Env, env};

const CHANGE: &str =
    "/ip pool\nadd name=pool-nl ranges=10.77.0.10-10.77.0.20\n/system identity\nset name=pushed\n";

impl Env {
    async fn register_all(&self, n: usize) -> Vec<DeviceId> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            out.push(self.register(i).await);
        }
        out
    }

    /// Starts a change rollout over `devices` (no canaries).
    async fn rollout(
        &self,
        rid: RolloutId,
        target: Value,
        devices: &[DeviceId],
        batch_size: u32,
        parallelism: u32,
        rollback_on_halt: bool,
    ) -> WorkflowId {
        support::kinds::start_kind(
            &self.engine,
            self.tenant,
            "rollout",
            json!({
                "rollout_id": rid, "name": "halt", "target": target,
                "devices": devices, "batch_size": batch_size, "parallelism": parallelism,
                "failure_threshold": 2, "rollback_on_halt": rollback_on_halt,
            }),
            StartOptions::new(Actor::system("test")).rollout(rid),
        )
        .await
        .unwrap()
        .workflow_id
    }

    /// `/system/backup/load` commands device `i` received (its recent command log; a push
    /// and a restore stay well inside it).
    fn backup_loads(&self, i: usize) -> usize {
        self.fleet
            .device(i)
            .unwrap()
            .command_log()
            .iter()
            .filter(|l| l.contains("/system/backup/load"))
            .count()
    }

    fn normalised(&self, i: usize) -> String {
        normalised_sha256(&self.fleet.device(i).unwrap().export(false)).unwrap()
    }
}

fn change() -> Value {
    json!({ "kind": "change_set", "script": CHANGE })
}

fn change_id(rid: RolloutId) -> String {
    format!("ro-{}", rid.as_uuid().simple())
}

fn types(stream: &[(String, Value)]) -> Vec<&str> {
    stream.iter().map(|(t, _)| t.as_str()).collect()
}

fn finished_reason(journal: &[(String, Value)]) -> String {
    journal
        .iter()
        .find(|(t, _)| t == "WorkflowFinished")
        .map(|(_, p)| p["reason"].as_str().unwrap_or("").to_owned())
        .unwrap()
}

/// The `RolloutDeviceRestored` payloads of a rollout stream.
fn restored(stream: &[(String, Value)]) -> Vec<Value> {
    stream
        .iter()
        .filter(|(t, _)| t == "RolloutDeviceRestored")
        .map(|(_, p)| p.clone())
        .collect()
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_halted_change_rollout_restores_every_committed_device_once(owner: PgPool) {
    let e = env(owner, 6, "rollout-halt-test").await;
    let devices = e.register_all(6).await;
    let before: Vec<String> = (0..6).map(|i| e.normalised(i)).collect();
    // batch 1 (0, 1) and batch 2 (2, 3) commit; batch 3 (4, 5) fails: threshold 2 halts
    for i in [4, 5] {
        e.fleet
            .device(i)
            .unwrap()
            .edit_faults(|x| x.reject_login = true);
    }
    let rid = RolloutId::from_uuid(Uuid::new_v4());
    let wf = e.rollout(rid, change(), &devices, 2, 2, true).await;
    let (outcome, journal) = e.finish_within(wf, 1200).await;
    assert_eq!(outcome, Outcome::RolledBack, "{journal:?}");
    let reason = finished_reason(&journal);
    assert!(reason.contains("threshold 2"), "{reason}");
    assert!(reason.contains("rolled back 4 of 4"), "{reason}");

    let stream = e.stream(&rid.stream()).await;
    let mut expected = vec!["RolloutCreated", "RolloutStateChanged"];
    expected.extend(["RolloutDeviceFinished"; 6]);
    expected.push("RolloutStateChanged");
    expected.extend(["RolloutDeviceRestored"; 4]);
    expected.push("RolloutStateChanged");
    assert_eq!(types(&stream), expected, "{stream:?}");
    assert_eq!(stream[8].1["state"], "halted");
    assert!(
        stream[8].1["reason"]
            .as_str()
            .unwrap()
            .contains("rolling back 4 committed device(s)")
    );
    assert_eq!(stream[13].1["state"], "halted");
    assert_eq!(stream[13].1["reason"], json!(reason));
    let rows = restored(&stream);
    let got: BTreeSet<String> = rows
        .iter()
        .map(|r| r["device_id"].as_str().unwrap().to_owned())
        .collect();
    let want: BTreeSet<String> = devices[..4].iter().map(ToString::to_string).collect();
    assert_eq!(got, want, "one restore per committed device");
    for r in &rows {
        assert_eq!(r["result"], "restored", "{r}");
        assert!(r["reason"].is_null(), "{r}");
        // each restore workflow restored once on the device, then verified
        let (o, j) = e
            .finish_within(
                WorkflowId::from_uuid(r["workflow_id"].as_str().unwrap().parse().unwrap()),
                1200,
            )
            .await;
        assert_eq!(o, Outcome::RolledBack, "{j:?}");
        let done: Vec<&str> = j
            .iter()
            .filter(|(t, _)| t == "WorkflowStepCompleted")
            .map(|(_, p)| p["step"].as_str().unwrap())
            .collect();
        assert_eq!(
            done,
            ["push_record", "resolve", "restore", "verify", "cleanup"]
        );
    }

    let id = change_id(rid);
    for (i, pre) in before.iter().enumerate().take(4) {
        assert_eq!(
            &e.normalised(i),
            pre,
            "device {i} back at its pre-push config"
        );
        assert_eq!(
            e.fleet.device(i).unwrap().change_counts().get(&id).copied(),
            Some(1),
            "device {i}: the change once"
        );
        assert_eq!(e.backup_loads(i), 1, "device {i}: the restore once");
    }
    for i in [4, 5] {
        assert!(e.fleet.device(i).unwrap().change_counts().is_empty());
        assert_eq!(e.backup_loads(i), 0);
        assert_eq!(e.normalised(i), before[i]);
    }
    e.stop().await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_device_changed_out_of_band_after_its_push_is_refused_not_clobbered(owner: PgPool) {
    let e = env(owner, 4, "rollout-halt-test").await;
    let devices = e.register_all(4).await;
    let before: Vec<String> = (0..4).map(|i| e.normalised(i)).collect();
    // batch 1 (0, 1) commits one after the other; batch 2 (2, 3) fails, slowly, so the
    // technician's change below lands before the rollout halts
    for i in [2, 3] {
        e.fleet.device(i).unwrap().edit_faults(|x| {
            x.reject_login = true;
            x.delay_ms = 700;
        });
    }
    let rid = RolloutId::from_uuid(Uuid::new_v4());
    let wf = e.rollout(rid, change(), &devices, 2, 1, true).await;
    let d1 = json!(devices[1]);
    let mut seen = false;
    for _ in 0..1500 {
        let stream = e.stream(&rid.stream()).await;
        if stream
            .iter()
            .any(|(t, p)| t == "RolloutDeviceFinished" && p["device_id"] == d1)
        {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen, "device 1's push finished");
    assert!(
        restored(&e.stream(&rid.stream()).await).is_empty(),
        "too late: the rollback already started"
    );
    let d = e.fleet.device(1).unwrap();
    d.apply_out_of_band("/ip pool\nadd name=oob ranges=10.88.0.1-10.88.0.2\n")
        .unwrap();
    let changed = e.normalised(1);

    let (outcome, journal) = e.finish_within(wf, 1200).await;
    assert_eq!(outcome, Outcome::Failed, "{journal:?}");
    let reason = finished_reason(&journal);
    assert!(reason.contains("rolled back 1 of 2"), "{reason}");
    assert!(reason.contains("restore refused on"), "{reason}");
    let rows = restored(&e.stream(&rid.stream()).await);
    assert_eq!(rows.len(), 2, "{rows:?}");
    let of = |d: DeviceId| rows.iter().find(|r| r["device_id"] == json!(d)).unwrap();
    assert_eq!(of(devices[0])["result"], "restored");
    let refused = of(devices[1]);
    assert_eq!(refused["result"], "refused");
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains("changed after the push committed"),
        "{refused}"
    );
    // device 1 keeps both the rollout's change and the technician's, untouched
    assert_eq!(e.normalised(1), changed);
    let export = d.export(false);
    assert!(
        export.contains("pool-nl") && export.contains("oob"),
        "{export}"
    );
    assert_eq!(e.backup_loads(1), 0);
    // device 0 is back
    assert_eq!(e.normalised(0), before[0]);
    assert_eq!(e.backup_loads(0), 1);
    e.stop().await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn without_rollback_on_halt_committed_devices_keep_the_change(owner: PgPool) {
    let e = env(owner, 4, "rollout-halt-test").await;
    let devices = e.register_all(4).await;
    let before: Vec<String> = (0..4).map(|i| e.normalised(i)).collect();
    for i in [2, 3] {
        e.fleet
            .device(i)
            .unwrap()
            .edit_faults(|x| x.reject_login = true);
    }
    let rid = RolloutId::from_uuid(Uuid::new_v4());
    let wf = e.rollout(rid, change(), &devices, 2, 2, false).await;
    let (outcome, journal) = e.finish_within(wf, 1200).await;
    assert_eq!(outcome, Outcome::Failed, "{journal:?}");
    assert!(finished_reason(&journal).contains("threshold 2"));
    let stream = e.stream(&rid.stream()).await;
    let mut expected = vec!["RolloutCreated", "RolloutStateChanged"];
    expected.extend(["RolloutDeviceFinished"; 4]);
    expected.push("RolloutStateChanged");
    assert_eq!(types(&stream), expected, "{stream:?}");
    assert_eq!(stream[6].1["state"], "halted");
    let id = change_id(rid);
    for i in [0, 1] {
        assert_ne!(e.normalised(i), before[i], "device {i} keeps the change");
        assert!(e.fleet.device(i).unwrap().export(false).contains("pool-nl"));
        assert_eq!(
            e.fleet.device(i).unwrap().change_counts().get(&id).copied(),
            Some(1)
        );
        assert_eq!(e.backup_loads(i), 0);
    }
    e.stop().await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_firmware_rollout_with_rollback_on_halt_is_refused_at_start(owner: PgPool) {
    let e = env(owner, 1, "rollout-halt-test").await;
    let devices = e.register_all(1).await;
    let version = e.fleet.device(0).unwrap().version().to_string();
    let target = RolloutTarget::Firmware {
        version: "7.19.4".into(),
    };
    // the typed check the API runs before starting the workflow
    assert_eq!(
        check_rollout(&target, 1, 1, 2, true),
        Err(RolloutRefused::FirmwareRollbackOnHalt {
            version: "7.19.4".into()
        })
    );
    // and the workflow itself refuses before creating the rollout or touching a device
    let rid = RolloutId::from_uuid(Uuid::new_v4());
    let wf = e.rollout(rid, json!(target), &devices, 1, 1, true).await;
    let (outcome, journal) = e.finish_within(wf, 1200).await;
    assert_eq!(outcome, Outcome::Failed, "{journal:?}");
    assert!(
        finished_reason(&journal).contains("rollback_on_halt is not supported for a firmware"),
        "{journal:?}"
    );
    assert!(
        !journal.iter().any(|(t, _)| t == "WorkflowStepCompleted"),
        "no step ran: {journal:?}"
    );
    assert!(
        e.stream(&rid.stream()).await.is_empty(),
        "no rollout events"
    );
    assert_eq!(e.fleet.device(0).unwrap().version().to_string(), version);
    e.stop().await;
}

//! The netops workflows through the engine against a real PostgreSQL (fresh database per test)
//! and devsim over real sockets: a push that commits (snapshots archived, events appended,
//! applied once), unreachable after apply (device timer reverts), verify failure (explicit
//! rollback), cancel before apply, a rejected login, an on-demand backup, a firmware upgrade
//! through the served cache.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use netledger_domain::workflow::Outcome;
use netledger_domain::{Actor, DeviceId};
use netledger_engine::StartOptions;
use netledger_store::{Direction, EventReader};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use support::{Env, env, env_versions, env_with};

/// Where a parametrised test runs: the harness's default device (RouterOS 7.16.2, API
/// only), or a device on `version` registered with SSH access (host key pinned), whose file
/// jobs go over SFTP where the API cannot do them (docs/push.md, "File jobs over SSH").
#[derive(Clone, Copy, Debug)]
enum On {
    Default,
    Ssh(&'static str),
}

/// RouterOS 6: no `/file add`, no `/file/read`, no `/import dry-run`.
const V6: On = On::Ssh("6.49.13");
/// 7.0-7.8: no `/file add` either.
const V7_8: On = On::Ssh("7.8");

async fn env_on(owner: PgPool, on: On) -> (Env, DeviceId) {
    env_on_with(owner, on, |_| {}).await
}

/// [`env_on`]; `tweak` adjusts the options of an SSH device's harness only.
async fn env_on_with(
    owner: PgPool,
    on: On,
    tweak: impl FnOnce(&mut netledger_netops::workflows::NetopsOptions),
) -> (Env, DeviceId) {
    match on {
        On::Default => {
            let e = env(owner, 1, "netops-test").await;
            let device = e.register(0).await;
            (e, device)
        }
        On::Ssh(version) => {
            let e = env_versions(owner, &[version], "netops-test", tweak).await;
            let device = e.register_ssh(0).await;
            (e, device)
        }
    }
}

const CHANGE: &str =
    "/ip pool\nadd name=pool-nl ranges=10.77.0.10-10.77.0.20\n/system identity\nset name=pushed\n";

impl Env {
    async fn snapshots(&self, device: DeviceId) -> Vec<String> {
        EventReader::tenant(self.pools.app.clone(), self.tenant)
            .read_stream(&device.stream(), 1, Direction::Forward, 10_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.event_type == "ConfigSnapshotRecorded")
            .map(|e| e.payload["reason"].as_str().unwrap_or("").to_owned())
            .collect()
    }
}

fn steps(journal: &[(String, serde_json::Value)]) -> Vec<String> {
    journal
        .iter()
        .filter(|(t, _)| t == "WorkflowStepCompleted")
        .map(|(_, p)| p["step"].as_str().unwrap().to_owned())
        .collect()
}

/// Files and scheduler entries of the push machinery on a devsim device.
fn leftovers(d: &devsim::Device) -> Vec<String> {
    d.file_names()
        .into_iter()
        .chain(d.scheduler_names())
        .filter(|n| n.contains("netledger-"))
        .collect()
}

/// How many step attempts failed (`WorkflowStepFailed`).
fn failed_steps(journal: &[(String, serde_json::Value)]) -> usize {
    journal
        .iter()
        .filter(|(t, _)| t == "WorkflowStepFailed")
        .count()
}

fn finished_reason(journal: &[(String, serde_json::Value)]) -> String {
    journal
        .iter()
        .find(|(t, _)| t == "WorkflowFinished")
        .map(|(_, p)| p["reason"].as_str().unwrap_or("").to_owned())
        .unwrap()
}

/// The journal never holds the password, the export or backup bytes.
fn no_secrets(journal: &[(String, serde_json::Value)], password: &str) {
    let text = serde_json::to_string(journal).unwrap();
    assert!(!text.contains(password), "password journaled");
    assert!(!text.contains("DEVSIM-BACKUP"), "backup bytes journaled");
    assert!(!text.contains("/ip address"), "export journaled");
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn config_push_commits_once_with_snapshots(owner: PgPool) {
    push_commits_once_with_snapshots(owner, On::Default).await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn config_push_commits_on_routeros_6_over_sftp(owner: PgPool) {
    push_commits_once_with_snapshots(owner, V6).await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn config_push_commits_on_routeros_7_8_over_sftp(owner: PgPool) {
    push_commits_once_with_snapshots(owner, V7_8).await;
}

async fn push_commits_once_with_snapshots(owner: PgPool, on: On) {
    let (e, device) = env_on(owner, on).await;
    let wf = e
        .start(
            "config_push",
            device,
            json!({ "device_id": device, "change_id": "wf-c1", "script": CHANGE }),
        )
        .await;
    let (outcome, journal) = e.finish(wf).await;
    assert_eq!(outcome, Outcome::Committed, "{journal:?}");
    assert_eq!(
        steps(&journal),
        [
            "resolve",
            "probe",
            "scheduler_gate",
            "timer_gate",
            "snapshot",
            "validate",
            "arm",
            "apply",
            "verify-1",
            "commit",
            "post_snapshot",
            "cleanup"
        ]
    );
    let d = e.fleet.device(0).unwrap();
    assert_eq!(d.change_counts().get("wf-c1").copied(), Some(1));
    // the guard line's applied-marker: `/file add` from 7.9; before (no `/file add`), an
    // export written by the change file's guard line; seen on the device after the import
    let marker = match on {
        On::Ssh(_) => "netledger-applied-wf-c1.rsc",
        _ => "netledger-applied-wf-c1.txt",
    };
    let applied = step_output(&journal, "apply");
    assert!(
        applied["applied_file"]
            .as_str()
            .is_some_and(|f| f.ends_with(marker)),
        "{applied}"
    );
    assert_eq!(applied["marker_confirmed"], true, "{applied}");
    // and cleanup removed it
    let cleaned = step_output(&journal, "cleanup");
    assert!(
        cleaned.to_string().contains(marker),
        "cleanup did not remove {marker}: {cleaned}"
    );
    assert!(
        !d.file_names()
            .iter()
            .any(|n| n.contains("netledger-applied-"))
    );
    // issue #15 item 2: the push leaves nothing on the device
    assert!(leftovers(d).is_empty(), "{:?}", leftovers(d));
    assert_eq!(e.snapshots(device).await, ["pre_push", "post_push"]);
    no_secrets(&journal, &e.fleet.manifest()[0].password);
    // both snapshots' backups read back (over SFTP before 7.13) and archived
    let snap = step_output(&journal, "snapshot");
    assert!(snap["backup_blob"].is_string(), "{snap}");
    assert!(
        step_output(&journal, "post_snapshot")["backup_blob"].is_string(),
        "{journal:?}"
    );
    if let On::Ssh(_) = on {
        // no `/import dry-run` before 7.16: validated offline only
        let v = step_output(&journal, "validate");
        assert_eq!(v["device_dry_run"]["result"], "not_supported", "{v}");
    }
    e.stop().await;
}

/// The journaled output of step `step`.
/// Starts a rollout of [`CHANGE`] (`canary` first, then `devices` in batches of `batch`,
/// as many at a time, halting at the first failure) and waits for it to finish.
async fn run_rollout(
    e: &Env,
    rid: netledger_domain::RolloutId,
    name: &str,
    canary: DeviceId,
    devices: &[DeviceId],
    batch: usize,
) -> (Outcome, Vec<(String, serde_json::Value)>) {
    let wf = support::kinds::start_kind(
        &e.engine,
        e.tenant,
        "rollout",
        json!({
            "rollout_id": rid, "name": name, "target": { "kind": "change_set", "script": CHANGE },
            "canaries": [canary], "devices": devices,
            "batch_size": batch, "parallelism": batch, "failure_threshold": 1,
        }),
        StartOptions::new(Actor::system("test")).rollout(rid),
    )
    .await
    .unwrap()
    .workflow_id;
    e.finish(wf).await
}

fn step_output(journal: &[(String, serde_json::Value)], step: &str) -> serde_json::Value {
    journal
        .iter()
        .find(|(t, p)| t == "WorkflowStepCompleted" && p["step"] == step)
        .map(|(_, p)| p["output"].clone())
        .unwrap_or_else(|| panic!("no step {step}: {journal:?}"))
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn unreachable_after_apply_is_rolled_back_by_the_device_timer(owner: PgPool) {
    unreachable_after_apply(owner, On::Default).await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn unreachable_after_apply_on_routeros_6_is_rolled_back_by_the_device_timer(owner: PgPool) {
    unreachable_after_apply(owner, V6).await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn unreachable_after_apply_on_routeros_7_8_is_rolled_back_by_the_device_timer(owner: PgPool) {
    unreachable_after_apply(owner, V7_8).await;
}

/// A device slowed by `delay_ms` per answer over SSH needs more than the harness's
/// 3 s rollback window between arm and commit: each step that moves a file opens an SSH
/// session and SFTP channel too (handshake, subsystem, open/stat/read/close, each delayed).
/// The production window is 2 × 30 s + 60 s.
fn slow_window(o: &mut netledger_netops::workflows::NetopsOptions) {
    o.arm_margin = Duration::from_secs(6);
}

async fn unreachable_after_apply(owner: PgPool, on: On) {
    let (e, device) = env_on_with(owner, on, slow_window).await;
    let d = e.fleet.device(0).unwrap().clone();
    // slow replies: the fault is set between arm (itself a change) and apply
    d.edit_faults(|x| x.delay_ms = 100);
    let wf = e
        .start(
            "config_push",
            device,
            json!({ "device_id": device, "change_id": "wf-cut", "script": CHANGE }),
        )
        .await;
    for _ in 0..2000 {
        if d.export(false).contains("netledger-rollback-wf-cut") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    d.edit_faults(|x| x.cut_access_on_change = true);
    let (outcome, journal) = e.finish(wf).await;
    assert_eq!(outcome, Outcome::RolledBack, "{journal:?}");
    assert!(steps(&journal).contains(&"rollback".to_owned()));
    let reason = finished_reason(&journal);
    assert!(reason.contains("verification failed"), "{reason}");
    let d = e.fleet.device(0).unwrap();
    assert_eq!(d.change_counts().get("wf-cut").copied(), Some(1));
    e.stop().await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn failed_verification_is_rolled_back(owner: PgPool) {
    failed_verification(owner, On::Default).await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn failed_verification_on_routeros_6_is_rolled_back(owner: PgPool) {
    failed_verification(owner, V6).await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn failed_verification_on_routeros_7_8_is_rolled_back(owner: PgPool) {
    failed_verification(owner, V7_8).await;
}

async fn failed_verification(owner: PgPool, on: On) {
    let (e, device) = env_on(owner, on).await;
    // a health check that cannot pass: an interface that does not exist
    let wf = e
        .start(
            "config_push",
            device,
            json!({ "device_id": device, "change_id": "wf-vf", "script": CHANGE,
                    "checks": { "interfaces_running": ["ether99"], "ping": [] } }),
        )
        .await;
    let (outcome, journal) = e.finish(wf).await;
    assert_eq!(outcome, Outcome::RolledBack, "{journal:?}");
    let before = e.snapshots(device).await;
    assert_eq!(before, ["pre_push", "post_push"]);
    assert!(steps(&journal).contains(&"cleanup".to_owned()));
    let d = e.fleet.device(0).unwrap();
    assert!(leftovers(d).is_empty(), "{:?}", leftovers(d));
    e.stop().await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_rejected_login_fails_without_retrying(owner: PgPool) {
    rejected_login(owner, On::Default).await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_rejected_login_on_routeros_6_fails_without_retrying(owner: PgPool) {
    rejected_login(owner, V6).await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_rejected_login_on_routeros_7_8_fails_without_retrying(owner: PgPool) {
    rejected_login(owner, V7_8).await;
}

async fn rejected_login(owner: PgPool, on: On) {
    let (e, device) = env_on(owner, on).await;
    e.fleet
        .device(0)
        .unwrap()
        .edit_faults(|x| x.reject_login = true);
    let wf = e
        .start(
            "config_push",
            device,
            json!({ "device_id": device, "change_id": "wf-login", "script": CHANGE }),
        )
        .await;
    let (outcome, journal) = e.finish(wf).await;
    assert_eq!(outcome, Outcome::Failed, "{journal:?}");
    assert_eq!(
        failed_steps(&journal),
        1,
        "a rejected login is not retried: {journal:?}"
    );
    e.stop().await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn backup_records_an_on_demand_snapshot(owner: PgPool) {
    backup_on_demand(owner, On::Default).await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn backup_on_routeros_6_is_downloaded_over_sftp_and_archived(owner: PgPool) {
    backup_on_demand(owner, V6).await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn backup_on_routeros_7_8_is_downloaded_over_sftp_and_archived(owner: PgPool) {
    backup_on_demand(owner, V7_8).await;
}

async fn backup_on_demand(owner: PgPool, on: On) {
    let (e, device) = env_on(owner, on).await;
    let wf = e
        .start("backup", device, json!({ "device_id": device }))
        .await;
    let (outcome, journal) = e.finish(wf).await;
    assert_eq!(outcome, Outcome::Succeeded, "{journal:?}");
    assert_eq!(e.snapshots(device).await, ["on_demand"]);
    let out = &journal
        .iter()
        .find(|(t, _)| t == "WorkflowFinished")
        .unwrap()
        .1;
    let blob = out["output"]["backup_blob"]
        .as_str()
        .expect("backup read back (7.16: /file/read; 6.x: SFTP)");
    let stored = e.deps.archive.load_blob(e.tenant, blob).unwrap();
    assert!(
        !stored.windows(13).any(|w| w == b"DEVSIM-BACKUP"),
        "encrypted"
    );
    no_secrets(&journal, &e.fleet.manifest()[0].password);
    // archived: the device copy is removed
    let d = e.fleet.device(0).unwrap();
    assert!(leftovers(d).is_empty(), "{:?}", leftovers(d));
    e.stop().await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn firmware_upgrade_through_the_served_cache(owner: PgPool) {
    let e = env(owner, 1, "netops-test").await;
    let device = e.register(0).await; // 7.16.2 arm64
    e.put_firmware("7.19.4", "routeros-7.19.4-arm64.npk", &[b'x'; 4000])
        .await;
    let wf = e
        .start(
            "firmware_upgrade",
            device,
            json!({ "device_id": device, "version": "7.19.4", "routerboard": true }),
        )
        .await;
    let (outcome, journal) = e.finish(wf).await;
    assert_eq!(outcome, Outcome::Succeeded, "{journal:?}");
    assert_eq!(e.fleet.device(0).unwrap().version().to_string(), "7.19.4");
    assert!(steps(&journal).contains(&"await_routerboard".to_owned()));
    e.stop().await;
}

/// The status line of `GET <path>` on the firmware server at `base` (`http://host:port`).
async fn http_status(base: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = vec![0u8; 64];
    let n = s.read(&mut head).await.unwrap();
    String::from_utf8_lossy(&head[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

/// Item 13 of issue 15: a package in the tenant's cache that is not what the tenant's own
/// upload event pinned (changed on disk, or put there by anything but an upload) is refused
/// before any device fetches it; the package server serves nothing without a download
/// token (the old `/<version>/<file>` path is gone) and refuses forged tokens.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn firmware_is_served_only_pinned_and_with_a_token(owner: PgPool) {
    let e = env(owner, 1, "netops-test").await;
    let device = e.register(0).await; // 7.16.2 arm64
    let file = "routeros-7.19.4-arm64.npk";
    e.put_firmware("7.19.4", file, &[b'x'; 4000]).await;
    let base = e.deps.firmware_base_url.clone();
    let path = netledger_store::firmware::tenant_dir(&e.deps.firmware_cache, e.tenant)
        .join("7.19.4")
        .join(file);
    // Tampered after the upload: refused at precheck, the device never fetched it.
    std::fs::write(&path, [b'y'; 4000]).unwrap();
    let wf = e
        .start(
            "firmware_upgrade",
            device,
            json!({ "device_id": device, "version": "7.19.4" }),
        )
        .await;
    let (outcome, journal) = e.finish(wf).await;
    assert_eq!(outcome, Outcome::Failed, "{journal:?}");
    assert!(
        finished_reason(&journal).contains("not the"),
        "{}",
        finished_reason(&journal)
    );
    assert_eq!(e.fleet.device(0).unwrap().version().to_string(), "7.16.2");
    // No unauthenticated path, no forged token.
    assert!(
        http_status(&base, &format!("/7.19.4/{file}"))
            .await
            .contains("404")
    );
    let forged = format!(
        "/d/{}.{}.{}.99999999999.{}/7.19.4/{file}",
        e.tenant.as_uuid().simple(),
        device.as_uuid().simple(),
        "ab".repeat(32),
        "00".repeat(32)
    );
    assert!(http_status(&base, &forged).await.contains("403"));
    e.stop().await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_failed_upgrade_is_failed_with_the_reason(owner: PgPool) {
    let e = env(owner, 1, "netops-test").await;
    let device = e.register(0).await;
    e.put_firmware("7.19.4", "routeros-7.19.4-arm64.npk", &[b'x'; 4000])
        .await;
    e.fleet
        .device(0)
        .unwrap()
        .edit_faults(|x| x.fail_upgrade = true);
    let wf = e
        .start(
            "firmware_upgrade",
            device,
            json!({ "device_id": device, "version": "7.19.4" }),
        )
        .await;
    let (outcome, journal) = e.finish(wf).await;
    assert_eq!(outcome, Outcome::Failed, "{journal:?}");
    assert!(finished_reason(&journal).contains("7.16.2"), "{journal:?}");
    e.stop().await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_slow_device_still_commits(owner: PgPool) {
    slow_device(owner, On::Default).await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_slow_routeros_6_device_still_commits(owner: PgPool) {
    slow_device(owner, V6).await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_slow_routeros_7_8_device_still_commits(owner: PgPool) {
    slow_device(owner, V7_8).await;
}

async fn slow_device(owner: PgPool, on: On) {
    let (e, device) = env_on_with(owner, on, slow_window).await;
    e.fleet.device(0).unwrap().edit_faults(|x| x.delay_ms = 50);
    let wf = e
        .start(
            "config_push",
            device,
            json!({ "device_id": device, "change_id": "wf-slow", "script": CHANGE }),
        )
        .await;
    let (outcome, journal) = e.finish(wf).await;
    assert_eq!(outcome, Outcome::Committed, "{journal:?}");
    assert_eq!(
        e.fleet
            .device(0)
            .unwrap()
            .change_counts()
            .get("wf-slow")
            .copied(),
        Some(1)
    );
    e.stop().await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn cancel_mid_push_rolls_back_or_stops_before_the_change(owner: PgPool) {
    let e = env(owner, 1, "netops-test").await;
    let device = e.register(0).await;
    // slow enough that the cancel lands while the push runs
    e.fleet.device(0).unwrap().edit_faults(|x| x.delay_ms = 30);
    let wf = e
        .start(
            "config_push",
            device,
            json!({ "device_id": device, "change_id": "wf-cancel", "script": CHANGE }),
        )
        .await;
    // cancel once the rollback timer is armed
    for _ in 0..300 {
        if steps(&e.journal(wf).await).contains(&"arm".to_owned()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    e.engine
        .cancel(e.tenant, wf, "operator cancel", Actor::system("test"))
        .await
        .unwrap();
    let (outcome, journal) = e.finish(wf).await;
    let done = steps(&journal);
    assert_eq!(outcome, Outcome::Cancelled, "{journal:?}");
    assert!(done.contains(&"arm".to_owned()));
    assert!(!done.contains(&"commit".to_owned()), "{done:?}");
    assert!(done.contains(&"rollback".to_owned()), "{done:?}");
    let d = e.fleet.device(0).unwrap();
    assert!(d.change_counts().get("wf-cancel").copied().unwrap_or(0) <= 1);
    assert_eq!(
        netledger_netops::push::normalised_sha256(&d.export(false)).unwrap(),
        journal
            .iter()
            .find(|(t, p)| t == "WorkflowStepCompleted" && p["step"] == "snapshot")
            .map(|(_, p)| p["output"]["snapshot"]["normalised_sha256"]
                .as_str()
                .unwrap()
                .to_owned())
            .unwrap(),
        "back at the snapshot"
    );
    e.stop().await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn rollout_pushes_canary_then_batches_and_records_its_stream(owner: PgPool) {
    let e = env(owner, 3, "netops-test").await;
    let devices = [
        e.register(0).await,
        e.register(1).await,
        e.register(2).await,
    ];
    let rid = netledger_domain::RolloutId::from_uuid(Uuid::new_v4());
    let (outcome, journal) =
        run_rollout(&e, rid, "pool", devices[0], &[devices[1], devices[2]], 2).await;
    assert_eq!(outcome, Outcome::Succeeded, "{journal:?}");
    let stream: Vec<(String, serde_json::Value)> =
        EventReader::tenant(e.pools.app.clone(), e.tenant)
            .read_stream(&rid.stream(), 1, Direction::Forward, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|x| (x.event_type.clone(), x.payload.clone()))
            .collect();
    let types: Vec<&str> = stream.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "RolloutCreated",
            "RolloutStateChanged",
            "RolloutDeviceFinished",
            "RolloutDeviceFinished",
            "RolloutDeviceFinished",
            "RolloutStateChanged"
        ]
    );
    // the canary finished first, in batch 0
    assert_eq!(stream[2].1["batch"], 0);
    assert_eq!(stream[2].1["device_id"], json!(devices[0]));
    assert_eq!(stream[5].1["state"], "completed");
    for i in 0..3 {
        let counts = e.fleet.device(i).unwrap().change_counts();
        assert_eq!(
            counts.values().copied().collect::<Vec<_>>(),
            [1],
            "device {i}: {counts:?}"
        );
    }
    e.stop().await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_failed_canary_halts_the_rollout(owner: PgPool) {
    let e = env(owner, 2, "netops-test").await;
    let devices = [e.register(0).await, e.register(1).await];
    e.fleet
        .device(0)
        .unwrap()
        .edit_faults(|x| x.reject_login = true);
    let rid = netledger_domain::RolloutId::from_uuid(Uuid::new_v4());
    let (outcome, journal) = run_rollout(&e, rid, "pool", devices[0], &[devices[1]], 1).await;
    assert_eq!(outcome, Outcome::Failed, "{journal:?}");
    assert!(finished_reason(&journal).contains("threshold 1"));
    let last = EventReader::tenant(e.pools.app.clone(), e.tenant)
        .read_stream(&rid.stream(), 1, Direction::Forward, 100)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(last.payload["state"], "halted");
    assert!(
        e.fleet.device(1).unwrap().change_counts().is_empty(),
        "never started"
    );
    e.stop().await;
}

impl Env {
    /// Event types of the device's stream.
    async fn device_events(&self, device: DeviceId) -> Vec<String> {
        self.stream(&device.stream())
            .await
            .into_iter()
            .map(|(t, _)| t)
            .collect()
    }

    /// The device's folded state: its open rollback-timer condition.
    async fn stale_timers(&self, device: DeviceId) -> Vec<String> {
        let mut tx = netledger_store::begin_tenant(&self.pools.app, self.tenant)
            .await
            .unwrap();
        let st = netledger_store::devices::fold_in(&mut tx, self.tenant, device)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        st.stale_rollback_timers
    }
}

/// Issue #15 item 3: a Netledger rollback timer of another change on the device (left by a
/// push whose rollback failed) refuses the push before anything is written, as a device
/// condition on the device stream and in its state; once it is gone, the next push clears
/// the condition and commits.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_foreign_rollback_timer_refuses_the_push_as_a_device_condition(owner: PgPool) {
    let e = env(owner, 1, "netops-test").await;
    let device = e.register(0).await;
    let d = e.fleet.device(0).unwrap().clone();
    d.apply_out_of_band(
        "/system scheduler\nadd name=netledger-rollback-lost on-event=\":log info x\" \
         start-date=2099-01-01 start-time=00:00:00\n",
    )
    .unwrap();
    let wf = e
        .start(
            "config_push",
            device,
            json!({ "device_id": device, "change_id": "wf-st1", "script": CHANGE }),
        )
        .await;
    let (outcome, journal) = e.finish(wf).await;
    assert_eq!(outcome, Outcome::Failed, "{journal:?}");
    assert!(steps(&journal).contains(&"timer_gate".to_owned()));
    assert!(!steps(&journal).contains(&"snapshot".to_owned()));
    assert!(finished_reason(&journal).contains("netledger-rollback-lost"));
    assert!(d.change_counts().is_empty());
    assert!(
        e.device_events(device)
            .await
            .contains(&"DeviceRollbackTimersFound".to_owned())
    );
    assert_eq!(e.stale_timers(device).await, ["netledger-rollback-lost"]);
    // the operator resolves it (removes the entry after checking the device)
    d.apply_out_of_band("/system scheduler\nremove netledger-rollback-lost\n")
        .unwrap();
    let wf = e
        .start(
            "config_push",
            device,
            json!({ "device_id": device, "change_id": "wf-st2", "script": CHANGE }),
        )
        .await;
    let (outcome, journal) = e.finish(wf).await;
    assert_eq!(outcome, Outcome::Committed, "{journal:?}");
    assert!(
        e.device_events(device)
            .await
            .contains(&"DeviceRollbackTimersCleared".to_owned())
    );
    assert!(e.stale_timers(device).await.is_empty());
    e.stop().await;
}

/// Issue #15 item 3: a rollback that fails (the device refuses to load the backup) does not
/// release the device while the push's timer may still revert it: the push records the
/// condition, keeps the device (another workflow on it is refused), waits and tries again;
/// once the device loads the backup, the push rolls back, clears the condition and cleans up.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_failed_rollback_keeps_the_device_until_the_timer_is_gone(owner: PgPool) {
    let e = env_with(owner, 1, "netops-test", |o| {
        o.rollback_recheck = Duration::from_secs(3600);
    })
    .await;
    let device = e.register(0).await;
    let d = e.fleet.device(0).unwrap().clone();
    d.edit_faults(|x| x.fail_backup_load = true);
    let wf = e
        .start(
            "config_push",
            device,
            json!({ "device_id": device, "change_id": "wf-keep", "script": CHANGE,
                    "checks": { "interfaces_running": ["ether99"], "ping": [] } }),
        )
        .await;
    let mut finished = false;
    for _ in 0..1200 {
        let s = e.engine.status(e.tenant, wf).await.unwrap().unwrap();
        if s.state == netledger_engine::TaskState::Finished {
            finished = true;
            break;
        }
        if steps(&e.journal(wf).await).contains(&"timer_condition".to_owned()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !finished,
        "the push released the device after a failed rollback: {:?}",
        e.journal(wf).await
    );
    assert_eq!(e.stale_timers(device).await, ["netledger-rollback-wf-keep"]);
    let other = support::kinds::start_kind(
        &e.engine,
        e.tenant,
        "backup",
        json!({ "device_id": device }),
        StartOptions::new(Actor::system("test")).devices([device]),
    )
    .await;
    assert!(
        matches!(other, Err(netledger_engine::EngineError::DeviceBusy { .. })),
        "{other:?}"
    );
    // the device can load its backup again; the push's wait ends
    d.edit_faults(|x| x.fail_backup_load = false);
    e.clock.advance(Duration::from_secs(3601));
    let (outcome, journal) = e.finish(wf).await;
    assert_eq!(outcome, Outcome::RolledBack, "{journal:?}");
    let s = steps(&journal);
    for step in ["rollback-2", "timer_cleared", "cleanup"] {
        assert!(s.contains(&step.to_owned()), "{step}: {s:?}");
    }
    assert!(e.stale_timers(device).await.is_empty());
    assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));
    e.stop().await;
}

// ---- RouterOS 6 and 7.0-7.8 over SSH: firmware, trust on first use, refusals ----

/// A v6 device in a network where devices may not fetch from the platform: the package
/// is uploaded over SFTP, installed by the reboot, the version checked.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn firmware_upgrade_on_routeros_6_uploads_the_package_over_sftp(owner: PgPool) {
    firmware_over_sftp(owner, "6.49.7", "6.49.13", "routeros-arm64-6.49.13.npk").await;
}

/// The same on 7.8 (no `/file add` before 7.9), to a 7.12.1 package (v7 file naming).
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn firmware_upgrade_on_routeros_7_8_uploads_the_package_over_sftp(owner: PgPool) {
    firmware_over_sftp(owner, "7.8", "7.12.1", "routeros-7.12.1-arm64.npk").await;
}

async fn firmware_over_sftp(owner: PgPool, from: &'static str, to: &str, package: &str) {
    let e = env_versions(owner, &[from], "netops-test", |o| o.firmware_fetch = false).await;
    let device = e.register_ssh(0).await;
    assert_eq!(e.fleet.device(0).unwrap().version().to_string(), from);
    e.put_firmware(to, package, &[b'x'; 4000]).await;
    let wf = e
        .start(
            "firmware_upgrade",
            device,
            json!({ "device_id": device, "version": to, "routerboard": false }),
        )
        .await;
    let (outcome, journal) = e.finish(wf).await;
    assert_eq!(outcome, Outcome::Succeeded, "{journal:?}");
    assert_eq!(step_output(&journal, "precheck")["delivery"], "sftp");
    assert_eq!(e.fleet.device(0).unwrap().version().to_string(), to);
    let d = e.fleet.device(0).unwrap();
    assert!(
        !d.file_names().iter().any(|n| n.ends_with(".npk")),
        "the package is consumed by the install: {:?}",
        d.file_names()
    );
    e.stop().await;
}

/// Without SSH access the same upgrade is refused before anything is put on the device,
/// naming what to register.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn firmware_without_fetch_or_ssh_is_refused_clearly(owner: PgPool) {
    let e = env_versions(owner, &["6.49.7"], "netops-test", |o| {
        o.firmware_fetch = false
    })
    .await;
    let device = e.register(0).await;
    e.put_firmware("6.49.13", "routeros-arm64-6.49.13.npk", &[b'x'; 4000])
        .await;
    let wf = e
        .start(
            "firmware_upgrade",
            device,
            json!({ "device_id": device, "version": "6.49.13", "routerboard": false }),
        )
        .await;
    let (outcome, journal) = e.finish(wf).await;
    assert_eq!(outcome, Outcome::Failed, "{journal:?}");
    assert!(
        finished_reason(&journal).contains("register SSH access"),
        "{journal:?}"
    );
    assert_eq!(e.fleet.device(0).unwrap().version().to_string(), "6.49.7");
    e.stop().await;
}

/// A v6 device registered without SSH access cannot receive a change file: the push is
/// refused at validate, before arm, saying what to register.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_routeros_6_push_without_ssh_access_is_refused_clearly(owner: PgPool) {
    let e = env_versions(owner, &["6.49.13"], "netops-test", |_| {}).await;
    let device = e.register(0).await;
    let wf = e
        .start(
            "config_push",
            device,
            json!({ "device_id": device, "change_id": "wf-nossh", "script": CHANGE }),
        )
        .await;
    let (outcome, journal) = e.finish(wf).await;
    assert_eq!(outcome, Outcome::Failed, "{journal:?}");
    let reason = finished_reason(&journal);
    assert!(reason.contains("needs RouterOS 7.9"), "{reason}");
    assert!(reason.contains("register SSH access"), "{reason}");
    assert!(!steps(&journal).contains(&"arm".to_owned()), "{journal:?}");
    let d = e.fleet.device(0).unwrap();
    assert_eq!(d.change_counts().get("wf-nossh").copied(), None);
    assert!(
        !d.scheduler_names().iter().any(|n| n.contains("netledger-")),
        "{:?}",
        d.scheduler_names()
    );
    e.stop().await;
}

/// Trust on first use: the first SSH session of a worker step records the key the device
/// presented (`DeviceSshHostKeyPinned`, by `worker`) before using it; a device whose pinned
/// key is not the one it presents fails the step with the mismatch, naming both keys.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn ssh_host_keys_are_recorded_on_first_use_and_a_mismatch_is_fatal(owner: PgPool) {
    use netledger_domain::device::SshHostKey;
    let e = env_versions(owner, &["6.49.13", "6.49.13"], "netops-test", |_| {}).await;
    let tofu = e.register_ssh_with(0, SshHostKey::FirstUse).await;
    let wf = e.start("backup", tofu, json!({ "device_id": tofu })).await;
    let (outcome, journal) = e.finish(wf).await;
    assert_eq!(outcome, Outcome::Succeeded, "{journal:?}");
    let pinned: Vec<serde_json::Value> = e
        .stream(&tofu.stream())
        .await
        .into_iter()
        .filter(|(t, _)| t == "DeviceSshHostKeyPinned")
        .map(|(_, p)| p)
        .collect();
    assert_eq!(pinned.len(), 1, "recorded once: {pinned:?}");
    assert_eq!(
        pinned[0]["fingerprint_sha256"],
        e.fleet.manifest()[0].ssh_host_key_sha256.as_str()
    );
    assert_eq!(pinned[0]["recorded_by"], "worker");
    // a second workflow uses the pinned key (nothing new recorded)
    let wf = e.start("backup", tofu, json!({ "device_id": tofu })).await;
    assert_eq!(e.finish(wf).await.0, Outcome::Succeeded);
    let again = e
        .stream(&tofu.stream())
        .await
        .into_iter()
        .filter(|(t, _)| t == "DeviceSshHostKeyPinned")
        .count();
    assert_eq!(again, 1);

    // device 1 pinned with device 0's key: the wrong one
    let wrong = SshHostKey::pinned(&e.fleet.manifest()[0].ssh_host_key_sha256).unwrap();
    let bad = e.register_ssh_with(1, wrong).await;
    let wf = e.start("backup", bad, json!({ "device_id": bad })).await;
    let (outcome, journal) = e.finish(wf).await;
    assert_eq!(outcome, Outcome::Failed, "{journal:?}");
    assert_eq!(
        failed_steps(&journal),
        1,
        "a host-key mismatch is not retried: {journal:?}"
    );
    let reason = finished_reason(&journal);
    assert!(reason.contains("is pinned"), "{reason}");
    assert!(reason.contains("re-pin"), "{reason}");
    e.stop().await;
}

/// Public-key login: a RouterOS 6 device whose credentials hold an SSH key authorized for
/// its user on the device (so its SSH password login is refused, RouterOS's default) takes
/// a push and a backup over SFTP, its journal holding neither the key nor the password; a
/// device whose credentials hold a key it does not know fails once, naming the key.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn an_ssh_key_in_the_credentials_is_the_ssh_login(owner: PgPool) {
    let e = env_versions(owner, &["6.49.13", "6.49.13"], "netops-test", |_| {}).await;
    let device = e.register_ssh_key(0, "netops-key-0", true).await;
    let wf = e
        .start(
            "config_push",
            device,
            json!({ "device_id": device, "change_id": "wf-key", "script": CHANGE }),
        )
        .await;
    let (outcome, journal) = e.finish(wf).await;
    assert_eq!(outcome, Outcome::Committed, "{journal:?}");
    let d = e.fleet.device(0).unwrap();
    assert_eq!(d.change_counts().get("wf-key").copied(), Some(1));
    assert!(leftovers(d).is_empty(), "{:?}", leftovers(d));
    let wf = e
        .start("backup", device, json!({ "device_id": device }))
        .await;
    let (outcome, journal) = e.finish(wf).await;
    assert_eq!(outcome, Outcome::Succeeded, "{journal:?}");
    no_secrets(&journal, &e.fleet.manifest()[0].password);
    let text = serde_json::to_string(&journal).unwrap();
    assert!(!text.contains("PRIVATE KEY"), "key journaled");

    let unknown = e.register_ssh_key(1, "netops-key-1", false).await;
    let wf = e
        .start("backup", unknown, json!({ "device_id": unknown }))
        .await;
    let (outcome, journal) = e.finish(wf).await;
    assert_eq!(outcome, Outcome::Failed, "{journal:?}");
    assert_eq!(
        failed_steps(&journal),
        1,
        "a refused key is not retried: {journal:?}"
    );
    let reason = finished_reason(&journal);
    let fp = netledger_testkit::ssh_client_key("netops-key-1")
        .unwrap()
        .public
        .fingerprint_sha256;
    let openssh = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(hex::decode(fp).unwrap())
    };
    assert!(
        reason.contains(&format!("with public key SHA256:{openssh}")),
        "{reason}"
    );
    e.stop().await;
}

/// A rollout across a mixed fleet: a RouterOS 6 canary and a 7.8 device with SSH access
/// (their file jobs over SFTP) and a RouterOS 7.16 device (API only); all commit, each
/// applies the change once and keeps none of the push machinery.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_rollout_across_routeros_6_and_7_commits_everywhere(owner: PgPool) {
    let e = env_versions(owner, &["6.49.13", "7.8", "7.16.2"], "netops-test", |_| {}).await;
    let devices = [
        e.register_ssh(0).await,
        e.register_ssh(1).await,
        e.register(2).await,
    ];
    let rid = netledger_domain::RolloutId::from_uuid(Uuid::new_v4());
    let (outcome, journal) = run_rollout(&e, rid, "mixed", devices[0], &devices[1..], 2).await;
    assert_eq!(outcome, Outcome::Succeeded, "{journal:?}");
    let change = format!("ro-{}", rid.as_uuid().simple());
    for i in 0..3 {
        let d = e.fleet.device(i).unwrap();
        assert_eq!(
            d.change_counts().get(&change).copied(),
            Some(1),
            "device {i}"
        );
        assert!(leftovers(d).is_empty(), "{:?}", leftovers(d));
    }
    e.stop().await;
}

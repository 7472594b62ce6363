//! Device operations against devsim over real sockets: the two-phase push with its failure
//! modes (resumed apply, import errors, device dry run, unreachable device reverting by its
//! own timer, failed verification, slow device, rejected login, cancel from every point
//! after arm, device-mode without a scheduler, unconfirmed disarm, a timer that fired before
//! commit) and the firmware upgrade (device-side fetch from a served cache, install reboot,
//! RouterBOARD firmware, failed upgrade, precheck refusals).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use devsim::{Device, Fleet, FleetOptions, ManifestEntry, SystemClock};
use netledger_netops::firmware::{
    self, AwaitOptions, FirmwareAction, FirmwareTarget, PackageSource, RouterboardFirmware,
};
use netledger_netops::{
    ArmOptions, Armed, Change, ChangeId, DeviceDryRun, ErrorClass, HealthChecks, NetopsError,
    PingCheck, Policy, RollbackMethod, RollbackOptions, SnapshotTaken, Validated, Verification,
    VerifyFailure, VerifyOptions,
};
use routeros::{Client, Config, Password};

const CHANGE: &str =
    "/ip pool\nadd name=pool-nl ranges=10.77.0.10-10.77.0.20\n/system identity\nset name=pushed\n";

/// A fleet of v7 devices: 0 = 7.16.2 RB5009 (arm64), 1 = 7.12.1 RB951 (mipsbe),
/// 2 = 7.18.2 CCR2004 (arm64), 3 = 7.19.4 RBD52G (arm), 4 = 7.16.2 CHR (x86_64).
async fn fleet(n: usize) -> Fleet {
    let mut o = FleetOptions::new(n, Arc::new(SystemClock::new()));
    o.v6_share = 0.0;
    o.reboot_time = Duration::from_secs(1);
    o.tick = Some(Duration::from_millis(100));
    Fleet::start(o).await.unwrap()
}

fn cfg(m: &ManifestEntry) -> Config {
    let mut c = Config::new(
        m.api.ip().to_string(),
        m.username.clone(),
        Password::new(m.password.clone()),
    )
    .with_port(m.api.port());
    c.command_timeout = Duration::from_secs(5);
    c.connect_timeout = Duration::from_secs(1);
    c
}

async fn client(m: &ManifestEntry) -> Client {
    netledger_netops::connect(&cfg(m)).await.unwrap()
}

fn id(s: &str) -> ChangeId {
    ChangeId::parse(s).unwrap()
}

fn arm_opts(window_secs: u64) -> ArmOptions {
    ArmOptions {
        window: Duration::from_secs(window_secs),
        allow_without_timer: false,
    }
}

fn verify_opts() -> VerifyOptions {
    VerifyOptions {
        reachable_within: Duration::from_secs(1),
        retry_every: Duration::from_millis(100),
    }
}

fn rollback_opts() -> RollbackOptions {
    RollbackOptions {
        wait_for_device: Duration::from_secs(15),
        reboot_wait: Duration::from_secs(10),
        retry_every: Duration::from_millis(100),
    }
}

/// Probe, scheduler gate, snapshot, validate, arm: everything before apply.
async fn prepare(
    c: &Client,
    change: &Change,
    window_secs: u64,
) -> (SnapshotTaken, Validated, Armed) {
    let probe = netledger_netops::probe(c).await.unwrap();
    netledger_netops::require_scheduler(&probe, false).unwrap();
    let snap = netledger_netops::snapshot(c, &change.id).await.unwrap();
    let validated = netledger_netops::validate(c, &probe, change, &snap.export, &Policy::default())
        .await
        .unwrap();
    let armed = netledger_netops::arm(c, &snap.snapshot, &arm_opts(window_secs))
        .await
        .unwrap();
    (snap, validated, armed)
}

fn applications(d: &Device, change: &str) -> u32 {
    d.change_counts().get(change).copied().unwrap_or(0)
}

/// Normalised export sha256 as the control API sees it (sensitive values hidden).
fn device_sha(d: &Device) -> String {
    netledger_netops::push::normalised_sha256(&d.export(false)).unwrap()
}

/// Serialises a step output and reads it back (journaled outputs must round-trip).
fn journal<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T) {
    let j = serde_json::to_string(v).unwrap();
    let back: T = serde_json::from_str(&j).unwrap();
    assert_eq!(&back, v, "{j}");
}

#[tokio::test]
async fn push_commits_once_and_every_step_is_idempotent() {
    let f = fleet(1).await;
    let m = &f.manifest()[0];
    let d = f.device(0).unwrap().clone();
    let c = client(m).await;
    let change = Change::new(id("c1"), CHANGE);
    let before = device_sha(&d);
    let (snap, validated, armed) = prepare(&c, &change, 60).await;
    // snapshot: export + backup on the device, bytes read back (7.16 has /file/read)
    assert_eq!(snap.snapshot.backup_file, "netledger-snap-c1.backup");
    let backup = snap.backup.as_ref().expect("7.16 reads the backup back");
    assert!(backup.starts_with(b"DEVSIM-BACKUP"));
    assert_eq!(snap.snapshot.backup_size, Some(backup.len() as u64));
    assert_eq!(snap.snapshot.normalised_sha256, before);
    journal(&snap);
    // validate: the device's dry run ran
    assert_eq!(validated.device_dry_run, DeviceDryRun::Passed);
    assert_eq!(validated.plan.commands, 2);
    journal(&validated);
    // arm: an explicit start date/time from the device clock, read back
    assert_eq!(armed.scheduler_name, "netledger-rollback-c1");
    assert!(armed.timer_effective);
    let secs = armed.fires_at_device_time.seconds_since(&armed.armed_at);
    assert!((59..=61).contains(&secs), "{secs}");
    let entry = netledger_netops::device::scheduler_entry(&c, "netledger-rollback-c1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        entry.start_time.as_deref(),
        Some(armed.fires_at_device_time.time_text().as_str())
    );
    assert_eq!(
        entry.on_event,
        "/system backup load name=netledger-snap-c1.backup"
    );
    assert_eq!(entry.interval, Duration::ZERO);
    journal(&armed);
    // arm again (resumed step): same timer, no second entry
    let again = netledger_netops::arm(&c, &snap.snapshot, &arm_opts(60))
        .await
        .unwrap();
    assert_eq!(again.fires_at_device_time, armed.fires_at_device_time);
    assert_eq!(
        applications(&d, "c1"),
        0,
        "arming does not count as applying"
    );
    // apply, then apply again: the second sees the marker and sends nothing
    let a1 = netledger_netops::apply(&c, &change, &armed).await.unwrap();
    assert!(!a1.already_applied && a1.marker_confirmed);
    let a2 = netledger_netops::apply(&c, &change, &armed).await.unwrap();
    assert!(a2.already_applied);
    journal(&a2);
    assert_eq!(applications(&d, "c1"), 1);
    // verify from a fresh connection, with health checks
    let checks = HealthChecks {
        interfaces_running: vec!["ether1".into()],
        ping: vec![PingCheck {
            address: "192.168.88.10".into(),
            count: 2,
            min_received: 2,
        }],
    };
    let v = netledger_netops::verify(&cfg(m), &validated, &checks, &verify_opts())
        .await
        .unwrap();
    let Verification::Verified(ok) = &v else {
        panic!("{v:?}")
    };
    assert_eq!((ok.checked, ok.health_checks), (2, 2));
    journal(&v);
    // commit: disarmed and confirmed; a repeated commit finds it gone and still commits
    let k1 = netledger_netops::commit(&c, &validated, &armed)
        .await
        .unwrap();
    assert!(k1.disarmed_now);
    let k2 = netledger_netops::commit(&c, &validated, &armed)
        .await
        .unwrap();
    assert!(!k2.disarmed_now);
    journal(&k2);
    assert!(
        netledger_netops::device::scheduler_entry(&c, "netledger-rollback-c1")
            .await
            .unwrap()
            .is_none()
    );
    // cleanup removes the change's files; after it a stale apply is refused (no timer)
    let cl = netledger_netops::cleanup(&c, &change.id).await.unwrap();
    assert_eq!(cl.removed.len(), 3, "{:?}", cl.removed);
    let e = netledger_netops::apply(&c, &change, &armed)
        .await
        .unwrap_err();
    assert!(
        matches!(e, NetopsError::WrongState { step: "apply", .. }),
        "{e}"
    );
    assert_eq!(applications(&d, "c1"), 1);
    let cfg_now = d.config();
    assert_eq!(
        cfg_now.setting(&rosconfig::MenuPath::parse("/system identity"), "name"),
        Some("pushed".into())
    );
}

#[tokio::test]
async fn push_without_device_dry_run_or_backup_read_on_7_12() {
    let f = fleet(2).await;
    let m = &f.manifest()[1];
    assert_eq!(m.version, "7.12.1");
    let c = client(m).await;
    let change = Change::new(id("old-1"), CHANGE);
    let (snap, validated, armed) = prepare(&c, &change, 60).await;
    assert_eq!(snap.backup, None, "no /file/read before 7.13");
    assert!(snap.snapshot.backup_size.is_some());
    assert_eq!(
        validated.device_dry_run,
        DeviceDryRun::NotSupported {
            version: "7.12.1".into()
        }
    );
    assert_eq!(armed.date_style, netledger_netops::DateStyle::Iso);
    netledger_netops::apply(&c, &change, &armed).await.unwrap();
    let v = netledger_netops::verify(
        &cfg(m),
        &validated,
        &HealthChecks::default(),
        &verify_opts(),
    )
    .await
    .unwrap();
    assert!(matches!(v, Verification::Verified(_)), "{v:?}");
    netledger_netops::commit(&c, &validated, &armed)
        .await
        .unwrap();
    assert_eq!(applications(f.device(1).unwrap(), "old-1"), 1);
}

#[tokio::test]
async fn a_lost_import_reply_is_resumed_without_a_second_application() {
    let f = fleet(1).await;
    let m = &f.manifest()[0];
    let d = f.device(0).unwrap().clone();
    let c = client(m).await;
    let change = Change::new(id("lost"), CHANGE);
    let (_snap, validated, armed) = prepare(&c, &change, 60).await;
    // replies are slow; the worker "crashes" once the device has executed the import but
    // before the reply reaches it (the step's outcome is never journaled)
    d.edit_faults(|x| x.delay_ms = 300);
    let (cfg2, change2, armed2) = (cfg(m), change.clone(), armed.clone());
    let worker = tokio::spawn(async move {
        let c = Client::connect(&cfg2).await.unwrap();
        netledger_netops::apply(&c, &change2, &armed2).await
    });
    for _ in 0..500 {
        if applications(&d, "lost") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.abort();
    assert!(
        worker.await.unwrap_err().is_cancelled(),
        "the reply was still in flight"
    );
    assert_eq!(applications(&d, "lost"), 1);
    d.edit_faults(|x| x.delay_ms = 0);
    for _ in 0..3 {
        let c = client(m).await;
        let r = netledger_netops::apply(&c, &change, &armed).await.unwrap();
        assert!(r.already_applied);
    }
    assert_eq!(applications(&d, "lost"), 1);
    let v = netledger_netops::verify(
        &cfg(m),
        &validated,
        &HealthChecks::default(),
        &verify_opts(),
    )
    .await
    .unwrap();
    assert!(matches!(v, Verification::Verified(_)), "{v:?}");
    netledger_netops::commit(&c, &validated, &armed)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_failing_import_line_fails_the_push_and_rollback_restores() {
    let f = fleet(2).await;
    let m = &f.manifest()[1]; // 7.12.1: no device dry run to catch it first
    let d = f.device(1).unwrap().clone();
    let c = client(m).await;
    let change = Change::new(
        id("imp"),
        "/system identity\nset name=half-done\n/ip pool\nadd name=race ranges=10.9.9.1\n",
    );
    let (snap, _validated, armed) = prepare(&c, &change, 60).await;
    // a technician adds the same pool between validation and apply
    d.apply_out_of_band("/ip pool\nadd name=race ranges=10.9.9.2\n")
        .unwrap();
    let e = netledger_netops::apply(&c, &change, &armed)
        .await
        .unwrap_err();
    let NetopsError::ImportFailed { message, .. } = &e else {
        panic!("{e:?}")
    };
    assert!(
        message.contains("already exists") && message.contains("(line 4 column 1)"),
        "{message}"
    );
    assert_eq!(e.class(), ErrorClass::Fatal);
    // the first line went in; the caller rolls back to the snapshot (the race pool too:
    // the snapshot predates it)
    assert_eq!(
        d.config()
            .setting(&rosconfig::MenuPath::parse("/system identity"), "name"),
        Some("half-done".into())
    );
    let rb = netledger_netops::rollback(&cfg(m), &snap.snapshot, &armed, &rollback_opts())
        .await
        .unwrap();
    assert_eq!(rb.method, RollbackMethod::RestoredNow);
    assert!(rb.matches_snapshot);
    assert_eq!(device_sha(&d), snap.snapshot.normalised_sha256);
    // resumed apply after the rollback: the marker says "started", nothing is sent again
    let c = client(m).await;
    assert!(
        netledger_netops::apply(&c, &change, &armed)
            .await
            .unwrap()
            .already_applied
    );
    assert_eq!(applications(&d, "imp"), 1);
}

#[tokio::test]
async fn the_device_dry_run_rejects_what_the_offline_check_cannot_see() {
    let f = fleet(1).await;
    let m = &f.manifest()[0];
    let d = f.device(0).unwrap().clone();
    let c = client(m).await;
    let change = Change::new(id("dry"), "/ip pool\nadd name=race ranges=10.9.9.1\n");
    let probe = netledger_netops::probe(&c).await.unwrap();
    assert!(probe.has_import_dry_run);
    let snap = netledger_netops::snapshot(&c, &change.id).await.unwrap();
    d.apply_out_of_band("/ip pool\nadd name=race ranges=10.9.9.2\n")
        .unwrap();
    let e = netledger_netops::validate(&c, &probe, &change, &snap.export, &Policy::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, NetopsError::DryRunRejected { message, .. } if message.contains("already exists")),
        "{e:?}"
    );
    assert_eq!(applications(&d, "dry"), 0);
    // the dry-run file is gone again
    assert!(c.file("netledger-dryrun-dry.rsc").await.unwrap().is_none());
    // policy and no-op refusals happen before anything touches the device
    let e = netledger_netops::validate(
        &c,
        &probe,
        &Change::new(id("pol"), "/ip service\nset api disabled=yes\n"),
        &snap.export,
        &Policy::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, NetopsError::Policy { .. }), "{e:?}");
    let e = netledger_netops::validate(
        &c,
        &probe,
        &Change::new(id("noop"), "/system identity\nset name=devsim-00000\n"),
        &snap.export,
        &Policy::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, NetopsError::NoOp { .. }), "{e:?}");
}

#[tokio::test]
async fn unreachable_after_apply_is_reverted_by_the_device_timer() {
    let f = fleet(1).await;
    let m = &f.manifest()[0];
    let d = f.device(0).unwrap().clone();
    let c = client(m).await;
    let change = Change::new(id("cut"), CHANGE);
    let (snap, validated, armed) = prepare(&c, &change, 3).await;
    d.edit_faults(|x| x.cut_access_on_change = true);
    match netledger_netops::apply(&c, &change, &armed).await {
        Ok(a) => assert!(!a.already_applied),
        Err(e) => assert!(e.is_retryable(), "{e}"),
    }
    assert!(!d.is_reachable());
    let v = netledger_netops::verify(
        &cfg(m),
        &validated,
        &HealthChecks::default(),
        &verify_opts(),
    )
    .await
    .unwrap();
    assert!(
        matches!(
            &v,
            Verification::Failed(f) if matches!(f.reason, VerifyFailure::Unreachable { .. })
        ),
        "{v:?}"
    );
    // the caller rolls back: the device is waited for; its own timer restores the snapshot
    let rb = netledger_netops::rollback(&cfg(m), &snap.snapshot, &armed, &rollback_opts())
        .await
        .unwrap();
    assert_eq!(rb.method, RollbackMethod::DeviceReverted);
    assert!(rb.matches_snapshot);
    assert_eq!(rb.normalised_sha256, snap.snapshot.normalised_sha256);
    assert_eq!(applications(&d, "cut"), 1);
    journal(&rb);
    // rolling back again is harmless
    let rb = netledger_netops::rollback(&cfg(m), &snap.snapshot, &armed, &rollback_opts())
        .await
        .unwrap();
    assert!(matches!(
        rb.method,
        RollbackMethod::DeviceReverted | RollbackMethod::AlreadyAtSnapshot
    ));
}

#[tokio::test]
async fn failed_verification_is_rolled_back_explicitly() {
    let f = fleet(1).await;
    let m = &f.manifest()[0];
    let d = f.device(0).unwrap().clone();
    let c = client(m).await;
    // (a) the change is not what runs: someone undid part of it
    let change = Change::new(id("vf"), CHANGE);
    let (snap, validated, armed) = prepare(&c, &change, 60).await;
    netledger_netops::apply(&c, &change, &armed).await.unwrap();
    d.apply_out_of_band("/system identity\nset name=someone-else\n")
        .unwrap();
    let v = netledger_netops::verify(
        &cfg(m),
        &validated,
        &HealthChecks::default(),
        &verify_opts(),
    )
    .await
    .unwrap();
    let Verification::Failed(fail) = &v else {
        panic!("{v:?}")
    };
    let VerifyFailure::ChangeMissing { missing } = &fail.reason else {
        panic!("{fail:?}")
    };
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(missing[0].contains("name=pushed"), "{missing:?}");
    let rb = netledger_netops::rollback(&cfg(m), &snap.snapshot, &armed, &rollback_opts())
        .await
        .unwrap();
    assert_eq!(rb.method, RollbackMethod::RestoredNow);
    assert_eq!(device_sha(&d), snap.snapshot.normalised_sha256);
    // (b) the change is in but a health check fails (devsim's ether3 is not running)
    let c = client(m).await;
    let change = Change::new(id("vf2"), CHANGE);
    let (snap, validated, armed) = prepare(&c, &change, 60).await;
    netledger_netops::apply(&c, &change, &armed).await.unwrap();
    for checks in [
        HealthChecks {
            interfaces_running: vec!["ether3".into()],
            ping: vec![],
        },
        HealthChecks {
            interfaces_running: vec![],
            ping: vec![PingCheck {
                address: "203.0.113.1".into(),
                count: 2,
                min_received: 1,
            }],
        },
    ] {
        let v = netledger_netops::verify(&cfg(m), &validated, &checks, &verify_opts())
            .await
            .unwrap();
        assert!(
            matches!(&v, Verification::Failed(f) if matches!(f.reason, VerifyFailure::Unhealthy { .. })),
            "{v:?}"
        );
    }
    let rb = netledger_netops::rollback(&cfg(m), &snap.snapshot, &armed, &rollback_opts())
        .await
        .unwrap();
    assert_eq!(rb.method, RollbackMethod::RestoredNow);
    assert_eq!(device_sha(&d), snap.snapshot.normalised_sha256);
}

#[tokio::test]
async fn a_slow_device_still_pushes_and_timeouts_are_retryable() {
    let f = fleet(1).await;
    let m = &f.manifest()[0];
    let d = f.device(0).unwrap().clone();
    d.edit_faults(|x| x.delay_ms = 100);
    let c = client(m).await;
    let change = Change::new(id("slow"), CHANGE);
    let (_snap, validated, armed) = prepare(&c, &change, 60).await;
    netledger_netops::apply(&c, &change, &armed).await.unwrap();
    let v = netledger_netops::verify(
        &cfg(m),
        &validated,
        &HealthChecks::default(),
        &verify_opts(),
    )
    .await
    .unwrap();
    assert!(matches!(v, Verification::Verified(_)), "{v:?}");
    netledger_netops::commit(&c, &validated, &armed)
        .await
        .unwrap();
    assert_eq!(applications(&d, "slow"), 1);
    // slower than the command timeout: a retryable error, not a verdict
    d.edit_faults(|x| x.delay_ms = 700);
    let mut short = cfg(m);
    short.command_timeout = Duration::from_millis(300);
    let e = match Client::connect(&short).await {
        Ok(s) => netledger_netops::probe(&s).await.unwrap_err(),
        Err(e) => NetopsError::Device {
            op: "connect".into(),
            source: Box::new(e),
        },
    };
    assert_eq!(e.class(), ErrorClass::Retryable, "{e}");
}

#[tokio::test]
async fn a_rejected_login_is_fatal_not_retried() {
    let f = fleet(1).await;
    let m = &f.manifest()[0];
    let d = f.device(0).unwrap().clone();
    d.edit_faults(|x| x.reject_login = true);
    let e = netledger_netops::connect(&cfg(m)).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Fatal);
    assert!(format!("{:?}", e).contains("LoginRejected"), "{e:?}");
    // verify does not spin on it either
    let validated = Validated {
        change_id: id("x"),
        plan: netledger_netops::Plan {
            commands: 1,
            expectations: vec![],
            unverifiable: vec![],
        },
        device_dry_run: DeviceDryRun::Passed,
    };
    let logins = |d: &Device| {
        d.command_log()
            .iter()
            .filter(|l| l.contains("/login"))
            .count()
    };
    let before = logins(&d);
    let e = netledger_netops::verify(
        &cfg(m),
        &validated,
        &HealthChecks::default(),
        &VerifyOptions {
            reachable_within: Duration::from_secs(30),
            retry_every: Duration::from_millis(100),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Fatal);
    assert_eq!(
        logins(&d) - before,
        1,
        "one login attempt, not a retry loop"
    );
}

/// Where the caller cancels: after this step.
#[derive(Debug, Clone, Copy)]
enum Point {
    Armed,
    Extended,
    Applied,
    Verified,
}

#[tokio::test]
async fn cancel_rolls_back_from_every_point_after_arm() {
    let f = fleet(1).await;
    let m = &f.manifest()[0];
    let d = f.device(0).unwrap().clone();
    for (i, point) in [
        Point::Armed,
        Point::Extended,
        Point::Applied,
        Point::Verified,
    ]
    .into_iter()
    .enumerate()
    {
        let c = client(m).await;
        let cid = format!("cancel-{i}");
        let change = Change::new(id(&cid), CHANGE);
        let (snap, validated, mut armed) = prepare(&c, &change, 60).await;
        if matches!(point, Point::Extended) {
            armed = netledger_netops::extend(&c, &armed, Duration::from_secs(120))
                .await
                .unwrap();
        }
        if matches!(point, Point::Applied | Point::Verified) {
            netledger_netops::apply(&c, &change, &armed).await.unwrap();
        }
        if matches!(point, Point::Verified) {
            let v = netledger_netops::verify(
                &cfg(m),
                &validated,
                &HealthChecks::default(),
                &verify_opts(),
            )
            .await
            .unwrap();
            assert!(matches!(v, Verification::Verified(_)));
        }
        let rb = netledger_netops::rollback(&cfg(m), &snap.snapshot, &armed, &rollback_opts())
            .await
            .unwrap();
        let expected = match point {
            Point::Armed | Point::Extended => RollbackMethod::NotApplied,
            Point::Applied | Point::Verified => RollbackMethod::RestoredNow,
        };
        assert_eq!(rb.method, expected, "{point:?}");
        assert!(rb.matches_snapshot, "{point:?}");
        assert_eq!(device_sha(&d), snap.snapshot.normalised_sha256, "{point:?}");
        let c = client(m).await;
        assert!(
            netledger_netops::device::scheduler_entry(&c, &armed.scheduler_name)
                .await
                .unwrap()
                .is_none(),
            "{point:?}: no timer left"
        );
        // nothing may apply after a cancel: no timer, so apply is refused or sees the marker
        match netledger_netops::apply(&c, &change, &armed).await {
            Ok(a) => assert!(a.already_applied, "{point:?}"),
            Err(e) => assert!(
                matches!(e, NetopsError::WrongState { .. }),
                "{point:?}: {e}"
            ),
        }
        let expected_count = u32::from(matches!(point, Point::Applied | Point::Verified));
        assert_eq!(applications(&d, &cid), expected_count, "{point:?}");
        netledger_netops::cleanup(&c, &change.id).await.unwrap();
    }
}

#[tokio::test]
async fn a_device_without_scheduler_is_refused_unless_overridden() {
    let f = fleet(1).await;
    let m = &f.manifest()[0];
    let d = f.device(0).unwrap().clone();
    d.set_scheduler_allowed(false);
    let c = client(m).await;
    let probe = netledger_netops::probe(&c).await.unwrap();
    assert!(!probe.device_mode.scheduler);
    assert_eq!(probe.device_mode.mode.as_deref(), Some("home"));
    let e = netledger_netops::require_scheduler(&probe, false).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Refused);
    assert!(e.to_string().contains("override"), "{e}");
    // arm re-checks on the device
    let snap = netledger_netops::snapshot(&c, &id("dm")).await.unwrap();
    let e = netledger_netops::arm(&c, &snap.snapshot, &arm_opts(60))
        .await
        .unwrap_err();
    assert!(matches!(e, NetopsError::SchedulerDisabled { .. }), "{e}");
    // with the (audited) override the push proceeds without an effective timer
    let gate = netledger_netops::require_scheduler(&probe, true).unwrap();
    assert!(gate.overridden && !gate.timer_effective);
    let armed = netledger_netops::arm(
        &c,
        &snap.snapshot,
        &ArmOptions {
            window: Duration::from_secs(60),
            allow_without_timer: true,
        },
    )
    .await
    .unwrap();
    assert!(!armed.timer_effective);
}

#[tokio::test]
async fn an_unconfirmed_disarm_is_not_a_commit() {
    let f = fleet(1).await;
    let m = &f.manifest()[0];
    let d = f.device(0).unwrap().clone();
    let c = client(m).await;
    let change = Change::new(id("dis"), CHANGE);
    let (_snap, validated, armed) = prepare(&c, &change, 60).await;
    netledger_netops::apply(&c, &change, &armed).await.unwrap();
    // the connection dies right before the scheduler remove (login + 1 lookup get through)
    d.edit_faults(|x| x.drop_after_commands = Some(2));
    let flaky = client(m).await;
    let e = netledger_netops::commit(&flaky, &validated, &armed)
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e}");
    d.edit_faults(|x| x.drop_after_commands = None);
    let c = client(m).await;
    assert!(
        netledger_netops::device::scheduler_entry(&c, "netledger-rollback-dis")
            .await
            .unwrap()
            .is_some(),
        "still armed: not committed"
    );
    let k = netledger_netops::commit(&c, &validated, &armed)
        .await
        .unwrap();
    assert!(k.disarmed_now);
}

#[tokio::test]
async fn commit_after_the_timer_fired_is_refused_and_extend_moves_it_later() {
    let f = fleet(1).await;
    let m = &f.manifest()[0];
    let d = f.device(0).unwrap().clone();
    let c = client(m).await;
    // extend: later only
    let change = Change::new(id("ext"), CHANGE);
    let (snap, validated, armed) = prepare(&c, &change, 3).await;
    let longer = netledger_netops::extend(&c, &armed, Duration::from_secs(90))
        .await
        .unwrap();
    assert!(
        longer
            .fires_at_device_time
            .seconds_since(&armed.fires_at_device_time)
            >= 80
    );
    let same = netledger_netops::extend(&c, &longer, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(same.fires_at_device_time, longer.fires_at_device_time);
    let rb = netledger_netops::rollback(&cfg(m), &snap.snapshot, &longer, &rollback_opts())
        .await
        .unwrap();
    assert_eq!(rb.method, RollbackMethod::NotApplied);
    netledger_netops::cleanup(&client(m).await, &change.id)
        .await
        .unwrap();
    let _ = validated;
    // a timer that fires before commit reverts the change; commit then refuses
    let c = client(m).await;
    let change = Change::new(id("late"), CHANGE);
    let (snap, validated, armed) = prepare(&c, &change, 2).await;
    netledger_netops::apply(&c, &change, &armed).await.unwrap();
    c.close().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let c = netledger_netops::device::connect(&cfg(m)).await;
    let c = match c {
        Ok(c) => c,
        Err(_) => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            client(m).await
        }
    };
    let e = netledger_netops::commit(&c, &validated, &armed)
        .await
        .unwrap_err();
    assert!(matches!(e, NetopsError::Reverted { .. }), "{e}");
    assert_eq!(device_sha(&d), snap.snapshot.normalised_sha256);
    // extend now finds no timer
    let e = netledger_netops::extend(&c, &armed, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        matches!(e, NetopsError::WrongState { step: "extend", .. }),
        "{e}"
    );
}

#[tokio::test]
async fn routeros_6_cannot_receive_a_change_file() {
    let mut o = FleetOptions::new(1, Arc::new(SystemClock::new()));
    o.v6_share = 1.0;
    let f = Fleet::start(o).await.unwrap();
    let m = &f.manifest()[0];
    assert!(m.version.starts_with('6'));
    let c = client(m).await;
    let probe = netledger_netops::probe(&c).await.unwrap();
    assert_eq!(probe.date_style, netledger_netops::DateStyle::Legacy);
    let e = netledger_netops::validate(
        &c,
        &probe,
        &Change::new(id("v6"), CHANGE),
        "/ip pool\n",
        &Policy::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, NetopsError::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains("7.9"), "{e}");
}

// ---- firmware ----

/// A temporary directory removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("netops-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Serves `<dir>/<version>/<file>` over HTTP on loopback, as the platform would.
async fn serve_cache(dir: &Path) -> String {
    use axum::extract::{Path as UrlPath, State};
    use axum::http::StatusCode;
    let root = dir.to_path_buf();
    let app = axum::Router::new()
        .route(
            "/{version}/{file}",
            axum::routing::get(
                |State(root): State<std::path::PathBuf>,
                 UrlPath((v, file)): UrlPath<(String, String)>| async move {
                    match std::fs::read(root.join(v).join(file)) {
                        Ok(b) => Ok(b),
                        Err(_) => Err(StatusCode::NOT_FOUND),
                    }
                },
            ),
        )
        .with_state(root);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    format!("http://{addr}")
}

fn put_package(dir: &Path, version: &str, file: &str, len: usize) {
    let d = dir.join(version);
    std::fs::create_dir_all(&d).unwrap();
    let body: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(d.join(file), body).unwrap();
}

fn await_opts() -> AwaitOptions {
    AwaitOptions {
        within: Duration::from_secs(15),
        retry_every: Duration::from_millis(100),
    }
}

#[tokio::test]
async fn firmware_upgrade_with_routerboard_firmware() {
    let f = fleet(1).await;
    let m = &f.manifest()[0]; // 7.16.2 arm64
    let d = f.device(0).unwrap().clone();
    let cache = TempDir::new("cache");
    put_package(cache.path(), "7.19.4", "routeros-7.19.4-arm64.npk", 20_000);
    let base = serve_cache(cache.path()).await;
    let target = FirmwareTarget {
        version: "7.19.4".into(),
        cache_dir: cache.path().to_path_buf(),
    };
    let c = client(m).await;
    let pre = firmware::precheck(&c, &target).await.unwrap();
    assert_eq!(pre.action, FirmwareAction::Upgrade);
    assert_eq!(pre.architecture, "arm64");
    let pkg = pre.package.clone().unwrap();
    assert_eq!(
        (pkg.size, pkg.relative_path.as_str()),
        (20_000, "7.19.4/routeros-7.19.4-arm64.npk")
    );
    journal(&pre);
    let snap = netledger_netops::snapshot(&c, &id("fw-1")).await.unwrap();
    assert!(snap.backup.is_some());
    let src = PackageSource {
        base_url: base,
        timeout: Duration::from_secs(10),
    };
    let up = firmware::upload(&c, &pre, &src).await.unwrap();
    assert!(up.fetched);
    let again = firmware::upload(&c, &pre, &src).await.unwrap();
    assert!(!again.fetched, "already there: not fetched twice");
    let started = firmware::install(&c, &pre).await.unwrap();
    assert!(!started.already_current);
    let back = firmware::await_version(&cfg(m), &started, &await_opts())
        .await
        .unwrap();
    assert_eq!(back.version, "7.19.4");
    assert_eq!(d.version().to_string(), "7.19.4");
    // a resumed install finds the device current and does not reboot it again
    let c = client(m).await;
    assert!(firmware::install(&c, &pre).await.unwrap().already_current);
    // RouterBOARD firmware lags until upgraded and rebooted
    let rb = firmware::routerboard_upgrade(&c).await.unwrap();
    let RouterboardFirmware::UpgradeStarted { from, to, .. } = &rb else {
        panic!("{rb:?}")
    };
    assert_eq!((from.as_str(), to.as_str()), ("7.16.2", "7.19.4"));
    journal(&rb);
    let done = firmware::await_routerboard(&cfg(m), &rb, &await_opts())
        .await
        .unwrap();
    assert_eq!(
        done,
        RouterboardFirmware::UpToDate {
            current: "7.19.4".into()
        }
    );
    let c = client(m).await;
    assert!(matches!(
        firmware::routerboard_upgrade(&c).await.unwrap(),
        RouterboardFirmware::UpToDate { .. }
    ));
    // the package file was consumed by the install
    assert!(c.file("routeros-7.19.4-arm64.npk").await.unwrap().is_none());
}

#[tokio::test]
async fn a_device_back_on_the_old_version_fails_the_upgrade() {
    let f = fleet(1).await;
    let m = &f.manifest()[0];
    let d = f.device(0).unwrap().clone();
    let cache = TempDir::new("cache");
    put_package(cache.path(), "7.19.4", "routeros-7.19.4-arm64.npk", 5_000);
    let base = serve_cache(cache.path()).await;
    let target = FirmwareTarget {
        version: "7.19.4".into(),
        cache_dir: cache.path().to_path_buf(),
    };
    let c = client(m).await;
    let pre = firmware::precheck(&c, &target).await.unwrap();
    firmware::upload(
        &c,
        &pre,
        &PackageSource {
            base_url: base,
            timeout: Duration::from_secs(10),
        },
    )
    .await
    .unwrap();
    d.edit_faults(|x| x.fail_upgrade = true);
    let started = firmware::install(&c, &pre).await.unwrap();
    let e = firmware::await_version(&cfg(m), &started, &await_opts())
        .await
        .unwrap_err();
    let NetopsError::UpgradeFailed { expected, actual } = &e else {
        panic!("{e:?}")
    };
    assert_eq!((expected.as_str(), actual.as_str()), ("7.19.4", "7.16.2"));
    assert_eq!(e.class(), ErrorClass::Fatal);
}

#[tokio::test]
async fn firmware_precheck_refusals() {
    let f = fleet(2).await;
    let cache = TempDir::new("cache");
    let target = |v: &str| FirmwareTarget {
        version: v.into(),
        cache_dir: cache.path().to_path_buf(),
    };
    let m = &f.manifest()[0];
    let c = client(m).await;
    // not in the cache
    let e = firmware::precheck(&c, &target("7.19.4")).await.unwrap_err();
    assert!(
        matches!(&e, NetopsError::PackageMissing { tried } if tried[0].ends_with("7.19.4/routeros-7.19.4-arm64.npk")),
        "{e:?}"
    );
    // already current, and downgrades
    let cur = firmware::precheck(&c, &target("7.16.2")).await.unwrap();
    assert_eq!(cur.action, FirmwareAction::AlreadyCurrent);
    let e = firmware::precheck(&c, &target("7.12")).await.unwrap_err();
    assert!(matches!(e, NetopsError::Downgrade { .. }), "{e:?}");
    // device-mode without fetch
    put_package(cache.path(), "7.19.4", "routeros-7.19.4-arm64.npk", 100);
    f.device(0).unwrap().set_scheduler_allowed(false);
    let e = firmware::precheck(&c, &target("7.19.4")).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Refused, "{e}");
    // more than the device has free (RB951: 128 MiB storage, half free): a sparse file
    let m1 = &f.manifest()[1];
    let dir = cache.path().join("7.19.4");
    let big = std::fs::File::create(dir.join("routeros-7.19.4-mipsbe.npk")).unwrap();
    big.set_len(100 << 20).unwrap();
    let c1 = client(m1).await;
    let e = firmware::precheck(&c1, &target("7.19.4"))
        .await
        .unwrap_err();
    assert!(matches!(e, NetopsError::InsufficientSpace { .. }), "{e:?}");
}

/// Files and scheduler entries of the push machinery on a devsim device.
fn netledger_leftovers(d: &Device) -> Vec<String> {
    d.file_names()
        .into_iter()
        .chain(d.scheduler_names())
        .filter(|n| n.contains("netledger-"))
        .collect()
}

/// Issue #15 item 4: two applies of the same change that both passed their own checks
/// (a worker whose lease expired and the one replaying it) meet at the device: devsim holds
/// both `/import`s until both arrived. The guard line of the change file (consume the apply
/// token, write the marker) lets exactly one import run the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_applies_import_once() {
    let f = fleet(1).await;
    let m = &f.manifest()[0];
    let d = f.device(0).unwrap().clone();
    let c = client(m).await;
    let change = Change::new(id("twice"), CHANGE);
    let (_snap, _validated, armed) = prepare(&c, &change, 60).await;
    let (c1, c2) = (client(m).await, client(m).await);
    d.hold_imports(2);
    let (a, b) = tokio::join!(
        netledger_netops::apply(&c1, &change, &armed),
        netledger_netops::apply(&c2, &change, &armed)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(applications(&d, "twice"), 1, "{a:?} {b:?}");
    assert_eq!(
        u32::from(a.already_applied) + u32::from(b.already_applied),
        1,
        "{a:?} {b:?}"
    );
    // a third apply (a replay) sees the marker
    let again = netledger_netops::apply(&c, &change, &armed).await.unwrap();
    assert!(again.already_applied);
    assert_eq!(applications(&d, "twice"), 1);
}

/// Issue #15 item 3: another change's rollback timer on the device (a push whose rollback
/// failed) refuses snapshot and arm of the next change: that timer could revert it.
#[tokio::test]
async fn a_foreign_rollback_timer_refuses_snapshot_and_arm() {
    let f = fleet(1).await;
    let m = &f.manifest()[0];
    let c = client(m).await;
    let old = Change::new(id("old"), CHANGE);
    let (old_snap, _, old_armed) = prepare(&c, &old, 600).await;
    let next = id("next");
    let e = netledger_netops::snapshot(&c, &next).await.unwrap_err();
    assert!(
        matches!(&e, NetopsError::ForeignRollbackTimer { step: "snapshot", timers, .. }
            if timers == &vec!["netledger-rollback-old".to_owned()]),
        "{e}"
    );
    assert_eq!(e.class(), ErrorClass::Refused);
    // arm of a snapshot taken before the other timer appeared is refused as well
    let e = netledger_netops::arm(
        &c,
        &netledger_netops::Snapshot {
            change_id: next.clone(),
            ..old_snap.snapshot.clone()
        },
        &arm_opts(60),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, NetopsError::ForeignRollbackTimer { step: "arm", .. }),
        "{e}"
    );
    // once the old timer is gone (rolled back), the next change may go on
    netledger_netops::rollback(&cfg(m), &old_snap.snapshot, &old_armed, &rollback_opts())
        .await
        .unwrap();
    let c = client(m).await;
    netledger_netops::snapshot(&c, &next).await.unwrap();
}

/// Issue #15 item 2: an encrypted snapshot backup hides the configuration and the user
/// passwords, needs its password to load (devsim as RouterOS), and after commit or rollback
/// the cleanup (run twice: idempotent) leaves no Netledger file or timer on the device.
#[tokio::test]
async fn cleanup_leaves_nothing_and_backups_are_encrypted() {
    let f = fleet(1).await;
    let m = &f.manifest()[0];
    let d = f.device(0).unwrap().clone();
    let password = Password::new("s3cret-backup-password");
    // a push that commits
    let c = client(m).await;
    let change = Change::new(id("enc"), CHANGE);
    let probe = netledger_netops::probe(&c).await.unwrap();
    let snap = netledger_netops::snapshot_with(&c, &change.id, Some(&password))
        .await
        .unwrap();
    assert!(snap.snapshot.encrypted);
    let bytes = snap.backup.clone().unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains("/ip") && !text.contains("user="), "{text}");
    let validated =
        netledger_netops::validate(&c, &probe, &change, &snap.export, &Policy::default())
            .await
            .unwrap();
    let armed = netledger_netops::arm_with(&c, &snap.snapshot, &arm_opts(60), Some(&password))
        .await
        .unwrap();
    let entry = netledger_netops::device::scheduler_entry(&c, &armed.scheduler_name)
        .await
        .unwrap()
        .unwrap();
    assert!(entry.on_event.contains("password="), "{}", entry.on_event);
    netledger_netops::apply(&c, &change, &armed).await.unwrap();
    // while the timer is armed, cleanup keeps what it needs
    let early = netledger_netops::cleanup(&c, &change.id).await.unwrap();
    assert!(
        early
            .kept_for_timer
            .contains(&"netledger-snap-enc.backup".to_owned()),
        "{early:?}"
    );
    netledger_netops::commit(&c, &validated, &armed)
        .await
        .unwrap();
    let cl = netledger_netops::cleanup(&c, &change.id).await.unwrap();
    assert!(cl.kept_for_timer.is_empty(), "{cl:?}");
    let again = netledger_netops::cleanup(&c, &change.id).await.unwrap();
    assert!(
        again.removed.is_empty() && again.kept_for_timer.is_empty(),
        "{again:?}"
    );
    assert!(
        netledger_leftovers(&d).is_empty(),
        "{:?}",
        netledger_leftovers(&d)
    );

    // a push that rolls back (restore now): the encrypted backup loads only with its password
    let change = Change::new(id("enc2"), "/system identity\nset name=pushed-again\n");
    let before = device_sha(&d);
    let snap = netledger_netops::snapshot_with(&c, &change.id, Some(&password))
        .await
        .unwrap();
    let armed = netledger_netops::arm_with(&c, &snap.snapshot, &arm_opts(60), Some(&password))
        .await
        .unwrap();
    netledger_netops::apply(&c, &change, &armed).await.unwrap();
    c.close().await;
    let wrong = netledger_netops::rollback(&cfg(m), &snap.snapshot, &armed, &rollback_opts())
        .await
        .unwrap_err();
    assert!(format!("{wrong:?}").contains("password"), "{wrong:?}");
    let rb = netledger_netops::rollback_with(
        &cfg(m),
        &snap.snapshot,
        &armed,
        &rollback_opts(),
        Some(&password),
    )
    .await
    .unwrap();
    assert_eq!(rb.method, RollbackMethod::RestoredNow);
    assert_eq!(device_sha(&d), before);
    let c = client(m).await;
    netledger_netops::cleanup(&c, &change.id).await.unwrap();
    netledger_netops::cleanup(&c, &change.id).await.unwrap();
    assert!(
        netledger_leftovers(&d).is_empty(),
        "{:?}",
        netledger_leftovers(&d)
    );
}

#[test]
fn the_guard_line_writes_the_marker_with_a_command_the_version_has() {
    use netledger_netops::change::{Change, ChangeId, DEVICE_SCRIPT_PREAMBLE_LINES};
    use netledger_netops::push::{MarkerWrite, guarded_device_script};
    let c = Change::new(
        ChangeId::parse("g1").unwrap(),
        "/system identity set name=x\n",
    );
    let token = "flash/netledger-armed-g1.txt";
    // 7.9+: unchanged
    let s = guarded_device_script(&c, token, "flash/", MarkerWrite::FileAdd);
    assert_eq!(
        s.lines().nth(1),
        Some(
            "/file remove flash/netledger-armed-g1.txt; /file add name=flash/netledger-applied-g1.txt contents=netledger-change-g1"
        )
    );
    assert_eq!(
        MarkerWrite::FileAdd.marker_file("flash/", &c.id),
        "flash/netledger-applied-g1.txt"
    );
    // before 7.9: an export writes `<stem>.rsc`
    let s = guarded_device_script(&c, token, "flash/", MarkerWrite::Export);
    assert_eq!(
        s.lines().nth(1),
        Some(
            "/file remove flash/netledger-armed-g1.txt; /system identity export file=flash/netledger-applied-g1"
        )
    );
    assert_eq!(
        MarkerWrite::Export.marker_file("flash/", &c.id),
        "flash/netledger-applied-g1.rsc"
    );
    for w in [MarkerWrite::FileAdd, MarkerWrite::Export] {
        let s = guarded_device_script(&c, token, "", w);
        assert_eq!(
            s.lines().nth(DEVICE_SCRIPT_PREAMBLE_LINES),
            Some("/system identity set name=x")
        );
    }
}

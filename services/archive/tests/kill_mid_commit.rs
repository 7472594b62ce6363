//! Kill-mid-commit: the archive's durability order (objects, then the branch; see
//! docs/config-history.md) tested with a real SIGKILL. A child process (this test binary,
//! re-run as `kill_mid_commit_child`) records a snapshot with a crash-point hook
//! (`ArchiveOptions::crash_points`) that kills it at one planned point of the commit; the
//! parent then reopens the archive and checks that it is consistent: the branch names a
//! complete commit (the previous one when the kill came before the branch moved, the new one
//! after), `git fsck --strict` passes, no lock is left behind, and the next commit works.
//! The points are enumerated from a discovery commit, so a point added later is covered too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use netledger_archive::{Archive, ArchiveOptions, SnapshotMeta};
use netledger_domain::device::SnapshotReason;
use netledger_domain::event::Actor;
use netledger_domain::ids::{DeviceId, TenantId};
use time::macros::datetime;
use uuid::Uuid;

const FIRST: &str =
    "/system identity\nset name=before\n/ip pool\nadd name=p1 ranges=10.0.0.1-10.0.0.9\n";
const SECOND: &str = "/system identity\nset name=after\n/ip pool\nadd name=p1 ranges=10.0.0.1-10.0.0.9\nadd name=p2 ranges=10.0.1.1-10.0.1.9\n";
const THIRD: &str = "/system identity\nset name=third\n";
/// The child's instructions: `<root>\t<tenant>\t<device>\t<label>`.
const CHILD_ENV: &str = "NETLEDGER_ARCHIVE_KILL_CHILD";

fn meta() -> SnapshotMeta {
    SnapshotMeta {
        actor: Actor::system("poller"),
        reason: SnapshotReason::Scheduled,
        causation_id: Uuid::new_v4(),
        correlation_id: Uuid::new_v4(),
        at: datetime!(2026-01-02 03:04:05 UTC),
        routeros_version: "7.19.4".to_string(),
        workflow_id: None,
    }
}

fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(args)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn with_hook(hook: Arc<dyn Fn(&str) + Send + Sync>) -> ArchiveOptions {
    ArchiveOptions {
        // the real durability path (a process kill does not lose the page cache either way,
        // but the order of the steps is what is under test)
        fsync: true,
        crash_points: Some(hook),
        ..ArchiveOptions::default()
    }
}

/// The child: records `SECOND` and dies with SIGKILL at the planned crash point. Does
/// nothing when run as an ordinary test.
#[test]
fn kill_mid_commit_child() {
    #[allow(clippy::disallowed_methods)] // reason: the parent test passes the plan this way
    let Ok(plan) = std::env::var(CHILD_ENV) else {
        return;
    };
    let f: Vec<&str> = plan.split('\t').collect();
    let (root, tenant, device, label) = (
        f[0].to_owned(),
        TenantId::from_uuid(f[1].parse().unwrap()),
        DeviceId::from_uuid(f[2].parse().unwrap()),
        f[3].to_owned(),
    );
    let hook: Arc<dyn Fn(&str) + Send + Sync> = Arc::new(move |at: &str| {
        if at == label {
            let me = rustix::process::getpid();
            rustix::process::kill_process(me, rustix::process::Signal::KILL).unwrap();
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    });
    let archive = Archive::open_with(root, with_hook(hook)).unwrap();
    archive.record(tenant, device, SECOND, &meta()).unwrap();
    panic!("the child was not killed at {plan}");
}

#[test]
fn a_commit_killed_at_each_crash_point_leaves_the_archive_consistent() {
    let tenant = TenantId::from_uuid(Uuid::new_v4());
    let device = DeviceId::from_uuid(Uuid::new_v4());
    let first_sha = Archive::prepare(FIRST).unwrap().sha256;
    let second_sha = Archive::prepare(SECOND).unwrap().sha256;

    // Discovery: the crash points of a commit on an existing branch, in order.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s = seen.clone();
    let tmp = tempfile::tempdir().unwrap();
    let a = Archive::open_with(
        tmp.path(),
        with_hook(Arc::new(move |at: &str| {
            s.lock().unwrap().push(at.to_owned())
        })),
    )
    .unwrap();
    a.record(tenant, device, FIRST, &meta()).unwrap();
    seen.lock().unwrap().clear();
    a.record(tenant, device, SECOND, &meta()).unwrap();
    let labels = seen.lock().unwrap().clone();
    assert!(
        labels.iter().any(|l| l == "branch_moved") && labels.len() >= 2,
        "crash points of a commit: {labels:?}"
    );
    let moved_at = labels.iter().position(|l| l == "branch_moved").unwrap();

    let mut failures = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let first = Archive::open(root)
            .unwrap()
            .record(tenant, device, FIRST, &meta())
            .unwrap();
        let status = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "kill_mid_commit_child", "--nocapture"])
            .env(
                CHILD_ENV,
                format!(
                    "{}\t{}\t{}\t{label}",
                    root.display(),
                    tenant.as_uuid(),
                    device.as_uuid()
                ),
            )
            .status()
            .unwrap();
        if status.signal() != Some(9) {
            failures.push(format!("{label}: the child was not killed: {status}"));
            continue;
        }
        // Reopened: the branch names a complete commit, the old one or the new one.
        let archive = Archive::open(root).unwrap();
        let versions = archive.versions(tenant, device).unwrap();
        let head_sha = versions.first().map(|v| v.sha256.clone());
        let (want_sha, want_len) = if i < moved_at {
            (first_sha.clone(), 1)
        } else {
            (second_sha.clone(), 2)
        };
        if head_sha.as_deref() != Some(want_sha.as_str()) || versions.len() != want_len {
            failures.push(format!(
                "{label}: versions {versions:?}, expected {want_len} with head {want_sha}"
            ));
            continue;
        }
        let head = versions[0].commit.clone();
        let text = archive.read(tenant, device, &head).unwrap();
        if Archive::prepare(&text).map(|p| p.sha256).ok().as_deref() != Some(&want_sha) {
            failures.push(format!("{label}: the head's file does not read back"));
        }
        let repo = archive.repo_path(tenant);
        // every object the branch reaches is there and well-formed (unreachable objects
        // from the killed commit are allowed: they are harmless)
        git(&repo, &["fsck", "--strict", "--no-progress"]);
        let resolved = git(&repo, &["rev-parse", "refs/heads/main"]);
        if resolved.trim() != head {
            failures.push(format!("{label}: main is {resolved}, versions say {head}"));
        }
        if repo.join("refs/heads/main.lock").exists() {
            failures.push(format!("{label}: a lock file is left behind"));
        }
        if i < moved_at && head != first.commit {
            failures.push(format!("{label}: head {head}, expected {}", first.commit));
        }
        // and the archive goes on: the next commit lands on that head
        match archive.record(tenant, device, THIRD, &meta()) {
            Ok(r) if r.changed => {
                let parent = git(&repo, &["rev-parse", &format!("{}^", r.commit)]);
                if parent.trim() != head {
                    failures.push(format!("{label}: the next commit's parent is {parent}"));
                }
            }
            other => failures.push(format!("{label}: the next commit: {other:?}")),
        }
    }
    eprintln!("kill-mid-commit: crash points {labels:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

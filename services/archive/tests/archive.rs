//! Config history against real git repositories on disk (libgit2 and the `git` CLI), with
//! the 16 real exports in `shared/routeros-exports`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier};

use netledger_archive::{
    Archive, ArchiveError, ArchiveOptions, Change, Mismatch, Recorded, SnapshotMeta,
};
use netledger_domain::audit::{CheckpointPlace, make_checkpoint};
use netledger_domain::canonical::canonical_json;
use netledger_domain::clock::{Clock, ManualClock};
use netledger_domain::device::SnapshotReason;
use netledger_domain::event::Actor;
use netledger_domain::ids::{DeviceId, TenantId, WorkflowId};
use rosconfig::{Attr, Config, ItemId, MenuPath, RenderOptions, Stmt, Wrap, is_secret};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

fn corpus() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/routeros-exports");
    let mut v: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rsc"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    v.sort();
    assert_eq!(v.len(), 16, "expected the 16 corpus files");
    v
}

fn corpus_file(prefix: &str) -> String {
    corpus()
        .into_iter()
        .find(|(n, _)| n.starts_with(prefix))
        .unwrap()
        .1
}

/// An archive without fsync (speed); one test below uses the defaults.
fn archive(root: &Path) -> Archive {
    Archive::open_with(
        root,
        ArchiveOptions {
            fsync: false,
            ..ArchiveOptions::default()
        },
    )
    .unwrap()
}

fn meta(at: OffsetDateTime) -> SnapshotMeta {
    SnapshotMeta {
        actor: Actor::system("poller"),
        reason: SnapshotReason::Scheduled,
        causation_id: Uuid::new_v4(),
        correlation_id: Uuid::new_v4(),
        at,
        routeros_version: "7.19.4".to_string(),
        workflow_id: None,
    }
}

const T0: OffsetDateTime = datetime!(2025-03-01 10:00:00.123456789 UTC);

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

/// The first `add` entry with a plain, non-secret property other than `name`.
fn first_entry(cfg: &Config) -> Option<(MenuPath, ItemId, String)> {
    for s in &cfg.sections {
        for st in &s.stmts {
            if let Stmt::Add(e) = st
                && let Some(a) = e.attrs.iter().find(|a| {
                    a.value.is_some() && !a.bare && a.key != "name" && !is_secret(&s.path, &a.key)
                })
            {
                return Some((s.path.clone(), e.id, a.key.clone()));
            }
        }
    }
    None
}

fn changed_lines(d: &str) -> (Vec<String>, Vec<String>) {
    let pick = |c: char, skip: &str| {
        d.lines()
            .filter(|l| l.starts_with(c) && !l.starts_with(skip))
            .map(|l| l[1..].to_string())
            .collect::<Vec<_>>()
    };
    (pick('-', "---"), pick('+', "+++"))
}

#[test]
fn every_corpus_export_round_trips_through_git() {
    let dir = tempfile::tempdir().unwrap();
    let a = archive(dir.path());
    let tenant = TenantId::new_random();
    for (i, (name, text)) in corpus().into_iter().enumerate() {
        let device = DeviceId::new_random();
        let at = T0 + Duration::minutes(i as i64);
        let prepared = Archive::prepare(&text).unwrap();
        let first = a.record(tenant, device, &text, &meta(at)).unwrap();
        assert!(first.changed, "{name}");
        assert_eq!(first.sha256, prepared.sha256, "{name}");
        assert_eq!(
            a.read(tenant, device, &first.commit).unwrap(),
            prepared.text,
            "{name}"
        );
        a.verify(tenant, device, &first.commit, &first.sha256)
            .unwrap_or_else(|e| panic!("{name}: {e}"));

        // the same export again: no commit, the commit that holds it
        let again = a
            .record(tenant, device, &text, &meta(at + Duration::seconds(30)))
            .unwrap();
        assert_eq!(
            again,
            Recorded {
                changed: false,
                ..first.clone()
            },
            "{name}"
        );
        let same = a
            .diff(tenant, device, &first.commit, &again.commit)
            .unwrap();
        assert!(same.is_empty(), "{name}: {same:?}");

        // a modified copy (one property of one entry), exported like the device would
        let mut cfg = rosconfig::parse_export(&text).unwrap();
        let (path, id, key) =
            first_entry(&cfg).unwrap_or_else(|| panic!("{name}: no entry to change"));
        cfg.set(&path, id, vec![Attr::new(key.clone(), "changed-value")])
            .unwrap();
        let modified = rosconfig::render(&cfg, &RenderOptions::faithful(Wrap::Terminal(80)));
        let second = a
            .record(tenant, device, &modified, &meta(at + Duration::seconds(40)))
            .unwrap();
        assert!(second.changed, "{name}");
        assert_ne!(second.commit, first.commit, "{name}");
        let d = a
            .diff(tenant, device, &first.commit, &second.commit)
            .unwrap();
        let (minus, plus) = changed_lines(&d.unified);
        assert_eq!((minus.len(), plus.len()), (1, 1), "{name}:\n{}", d.unified);
        assert!(
            plus[0].contains(&format!("{key}=changed-value")),
            "{name}: {plus:?}"
        );
        assert_eq!(d.semantic.len(), 1, "{name}: {}", d.semantic);
        assert_eq!(d.semantic.sections[0].path, path.to_string(), "{name}");
        match &d.semantic.sections[0].changes[0] {
            Change::EntryChanged { changes, .. } => {
                assert_eq!(changes.len(), 1, "{name}");
                assert_eq!(changes[0].key, key, "{name}");
                assert_eq!(changes[0].new.as_deref(), Some("changed-value"), "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
        // and back: the reverse diff is the mirror image
        let back = a
            .diff(tenant, device, &second.commit, &first.commit)
            .unwrap();
        assert_eq!(changed_lines(&back.unified), (plus, minus), "{name}");
        let versions = a.versions(tenant, device).unwrap();
        let commits: Vec<&str> = versions.iter().map(|v| v.commit.as_str()).collect();
        assert_eq!(
            commits,
            [second.commit.as_str(), first.commit.as_str()],
            "{name}"
        );
    }
    // the semantic diff serialises for events and the API
    let v = serde_json::to_value(
        netledger_archive::ConfigDiff::between(
            "/ip pool\nadd name=p ranges=1.1.1.1\n",
            "/ip pool\nadd name=p ranges=1.1.1.2\n",
            "a",
            "b",
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        v["semantic"]["sections"][0]["changes"][0]["kind"],
        "entry_changed"
    );
}

/// Rewrites an export's header as a later export of the same device would print it.
fn with_header_line(text: &str, first_line: &str) -> String {
    let (_, rest) = text.split_once('\n').unwrap();
    format!("{first_line}\n{rest}")
}

fn toggle_line_endings(text: &str) -> String {
    if text.contains("\r\n") {
        text.replace("\r\n", "\n")
    } else {
        text.replace('\n', "\r\n")
    }
}

#[test]
fn header_time_and_line_endings_do_not_make_a_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let a = archive(dir.path());
    let tenant = TenantId::new_random();
    // v6 date format (05: `jan/02/1970`, no clock set), v7 ISO (10, CRLF), early v7 with
    // the old format (09, CRLF, empty software id and serial), v7 LF (16)
    let cases = [
        ("05", "# aug/13/2024 08:15:02 by RouterOS 6.20"),
        ("10", "# 2026-03-01 00:00:01 by RouterOS 7.19.4\r"),
        ("09", "# oct/01/2022 23:59:59 by RouterOS 7.5\r"),
        ("16", "# 2025-12-31 23:59:59 by RouterOS 7.18.2"),
    ];
    for (prefix, header) in cases {
        let text = corpus_file(prefix);
        assert!(
            text.lines().next().unwrap().contains("by RouterOS"),
            "{prefix}"
        );
        let later = with_header_line(&text, header);
        assert_ne!(later, text);
        // another terminal, another export tool: line endings differ too
        let later_other_endings = toggle_line_endings(&later);
        let (p0, p1, p2) = (
            Archive::prepare(&text).unwrap(),
            Archive::prepare(&later).unwrap(),
            Archive::prepare(&later_other_endings).unwrap(),
        );
        assert_eq!(p0, p1, "{prefix}: header time");
        assert_eq!(p0, p2, "{prefix}: line endings");
        assert!(
            !p0.text.contains('\r') && !p0.text.contains("by RouterOS"),
            "{prefix}"
        );
        assert!(!p0.text.contains("software id") && !p0.text.contains("serial number"));

        let device = DeviceId::new_random();
        let r0 = a.record(tenant, device, &text, &meta(T0)).unwrap();
        let r1 = a
            .record(tenant, device, &later, &meta(T0 + Duration::hours(1)))
            .unwrap();
        let r2 = a
            .record(
                tenant,
                device,
                &later_other_endings,
                &meta(T0 + Duration::hours(2)),
            )
            .unwrap();
        assert!(r0.changed && !r1.changed && !r2.changed, "{prefix}");
        assert_eq!(
            (r1.commit.as_str(), r2.commit.as_str()),
            (r0.commit.as_str(), r0.commit.as_str())
        );
        assert_eq!(a.versions(tenant, device).unwrap().len(), 1, "{prefix}");
    }
    // the software id, model and serial lines are hardware facts, not config
    let text = corpus_file("01");
    let other_box = text
        .replace("# software id = 0PWD-M1AN", "# software id = ZZZZ-ZZZZ")
        .replace(
            "# serial number = B8D00CA3CF69",
            "# serial number = 000000000000",
        );
    assert_ne!(other_box, text);
    assert_eq!(
        Archive::prepare(&text).unwrap(),
        Archive::prepare(&other_box).unwrap()
    );
}

#[test]
fn secrets_never_reach_git() {
    let secrets = [
        "hunter2-ppp-secret",
        "wg-private-key-AAAAAAAAAAAAAAAAAAAAAA=",
        "snmp-community-s3cret",
        "wifi-passphrase-letmein",
        "ipsec-psk-xyzzy",
        "user-password-0xDEAD",
    ];
    let export = format!(
        "# 2025-01-02 03:04:05 by RouterOS 7.17\r\n# software id = ABCD-EFGH\r\n#\r\n\
         /interface wireguard\r\nadd listen-port=13231 mtu=1420 name=wg0 private-key=\"{}\"\r\n\
         /interface wifi security\r\nadd authentication-types=wpa2-psk name=sec1 passphrase={}\r\n\
         /ip ipsec identity\r\nadd peer=p1 secret={}\r\n\
         /ppp secret\r\nadd name=alice password={} service=l2tp\r\n\
         /snmp community\r\nset [ find default=yes ] name={}\r\n\
         /user\r\nadd group=full name=bob password={}\r\n",
        secrets[1], secrets[3], secrets[4], secrets[0], secrets[2], secrets[5]
    );
    let dir = tempfile::tempdir().unwrap();
    let a = archive(dir.path());
    let (tenant, device) = (TenantId::new_random(), DeviceId::new_random());
    let r1 = a.record(tenant, device, &export, &meta(T0)).unwrap();
    // a second snapshot where only a secret changed is no change at all
    let rotated = export.replace(secrets[0], "another-secret-value");
    let r2 = a
        .record(tenant, device, &rotated, &meta(T0 + Duration::minutes(5)))
        .unwrap();
    assert!(r1.changed && !r2.changed);
    let stored = a.read(tenant, device, &r1.commit).unwrap();
    assert!(stored.contains("password=MASKED") && stored.contains("private-key=\"MASKED\""));

    // every object in the repository, decompressed, read by libgit2 ...
    let repo = git2::Repository::open_bare(a.repo_path(tenant)).unwrap();
    let odb = repo.odb().unwrap();
    let mut objects = 0;
    odb.foreach(|oid| {
        let obj = odb.read(*oid).unwrap();
        let data = String::from_utf8_lossy(obj.data()).into_owned();
        for s in secrets.iter().chain(["another-secret-value"].iter()) {
            assert!(!data.contains(s), "object {oid} holds {s}");
        }
        objects += 1;
        true
    })
    .unwrap();
    assert!(
        objects >= 4,
        "blob, two trees and a commit at least: {objects}"
    );
    // ... and by git itself
    let all = git(
        &a.repo_path(tenant),
        &["cat-file", "--batch-all-objects", "--batch"],
    );
    assert!(all.contains("MASKED"));
    for s in secrets {
        assert!(!all.contains(s), "git cat-file shows {s}");
    }
}

#[test]
fn history_is_ordinary_git_with_actor_ids_and_reason_in_each_commit() {
    let dir = tempfile::tempdir().unwrap();
    let a = archive(dir.path());
    let (tenant, device) = (TenantId::new_random(), DeviceId::new_random());
    let text = corpus_file("16");
    let m1 = meta(T0);
    let r1 = a.record(tenant, device, &text, &m1).unwrap();
    let workflow = WorkflowId::new_random();
    let user = Uuid::new_v4();
    let m2 = SnapshotMeta {
        actor: Actor::User { id: user },
        reason: SnapshotReason::PostPush,
        workflow_id: Some(workflow),
        routeros_version: "7.18.2".into(),
        ..meta(T0 + Duration::days(1))
    };
    let changed = text.replace("name=bridge", "name=bridge1");
    assert_ne!(changed, text);
    let r2 = a.record(tenant, device, &changed, &m2).unwrap();
    assert!(r2.changed);

    let repo = a.repo_path(tenant);
    assert!(repo.ends_with(format!("{tenant}.git")));
    assert_eq!(
        git(&repo, &["rev-parse", "--is-bare-repository"]).trim(),
        "true"
    );
    assert_eq!(
        git(&repo, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/main"
    );
    git(&repo, &["fsck", "--strict", "--no-dangling"]);
    let log = git(
        &repo,
        &[
            "log",
            "--format=%H%x1f%an%x1f%ae%x1f%at%x1f%ct%x1f%B%x1e",
            "main",
        ],
    );
    let commits: Vec<Vec<&str>> = log
        .split('\x1e')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|c| c.split('\x1f').collect())
        .collect();
    assert_eq!(commits.len(), 2);
    let (newest, oldest) = (&commits[0], &commits[1]);
    assert_eq!(newest[0], r2.commit);
    assert_eq!(oldest[0], r1.commit);
    assert_eq!(newest[1], format!("user:{user}"));
    assert_eq!(oldest[1], "system:poller");
    assert_eq!(
        newest[3],
        m2.at.unix_timestamp().to_string(),
        "author time = meta.at"
    );
    assert_eq!(
        newest[4],
        m2.at.unix_timestamp().to_string(),
        "committer time = meta.at"
    );
    let body = newest[5];
    assert!(
        body.starts_with(&format!("device {device}: post_push snapshot")),
        "{body}"
    );
    for line in [
        format!("Device-Id: {device}"),
        "Reason: post_push".to_string(),
        format!("Actor: user:{user}"),
        format!("Causation-Id: {}", m2.causation_id),
        format!("Correlation-Id: {}", m2.correlation_id),
        format!("Workflow-Id: {workflow}"),
        "RouterOS-Version: 7.18.2".to_string(),
        format!("Content-Sha256: {}", r2.sha256),
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing `{line}` in\n{body}"
        );
    }
    assert!(!oldest[5].contains("Workflow-Id"));
    // git reads the same bytes the archive stored; the event's sha256 is over them
    let shown = git(
        &repo,
        &["show", &format!("{}:devices/{device}.rsc", r2.commit)],
    );
    assert_eq!(shown, a.read(tenant, device, &r2.commit).unwrap());
    assert_eq!(shown, Archive::prepare(&changed).unwrap().text);
    assert_eq!(sha256sum(shown.as_bytes()), r2.sha256);
    // versions carry the exact recording time (git's own has whole seconds)
    let versions = a.versions(tenant, device).unwrap();
    assert_eq!(versions[0].at, m2.at);
    assert_eq!(versions[1].at, m1.at);
    assert_eq!(
        versions[0].summary,
        format!("device {device}: post_push snapshot")
    );
}

/// SHA-256 computed independently of the crate, by coreutils' `sha256sum`.
fn sha256sum(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

#[test]
fn unchanged_snapshot_returns_the_commit_that_last_changed_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let a = archive(dir.path());
    let tenant = TenantId::new_random();
    let (d1, d2) = (DeviceId::new_random(), DeviceId::new_random());
    let x = "/system identity\nset name=x\n";
    let y = "/system identity\nset name=y\n";
    let t = |m: i64| meta(T0 + Duration::minutes(m));
    let c1 = a.record(tenant, d1, x, &t(1)).unwrap();
    let c2 = a.record(tenant, d1, y, &t(2)).unwrap();
    let c3 = a.record(tenant, d1, x, &t(3)).unwrap(); // back to x: a change
    assert!(c1.changed && c2.changed && c3.changed);
    assert_eq!(c1.sha256, c3.sha256);
    let other = a.record(tenant, d2, y, &t(4)).unwrap(); // another device moves the branch
    assert!(other.changed);
    let same = a.record(tenant, d1, x, &t(5)).unwrap();
    assert_eq!(
        same,
        Recorded {
            changed: false,
            ..c3.clone()
        }
    );
    // a fresh instance (another process, nothing cached) finds the same commit
    let fresh = archive(dir.path());
    assert_eq!(fresh.record(tenant, d1, x, &t(6)).unwrap(), same);
    assert_eq!(
        fresh.record(tenant, d2, y, &t(7)).unwrap().commit,
        other.commit
    );
    let log = git(&a.repo_path(tenant), &["rev-list", "--count", "main"]);
    assert_eq!(log.trim(), "4");
}

#[test]
fn versions_as_of_and_diff_between_any_two_versions() {
    let dir = tempfile::tempdir().unwrap();
    let a = archive(dir.path());
    let (tenant, device) = (TenantId::new_random(), DeviceId::new_random());
    assert!(a.versions(tenant, device).unwrap().is_empty());
    assert_eq!(a.as_of(tenant, device, T0).unwrap(), None);
    let texts = [
        "/ip pool\nadd name=p1 ranges=10.0.0.2-10.0.0.9\n",
        "/ip pool\nadd name=p1 ranges=10.0.0.2-10.0.0.99\n",
        "/ip pool\nadd name=p1 ranges=10.0.0.2-10.0.0.99\nadd name=p2 ranges=10.1.0.2-10.1.0.9\n",
    ];
    let times = [T0, T0 + Duration::hours(1), T0 + Duration::hours(2)];
    let rec: Vec<Recorded> = texts
        .iter()
        .zip(times)
        .map(|(t, at)| a.record(tenant, device, t, &meta(at)).unwrap())
        .collect();
    // another device's commits in between are not versions of this one
    a.record(
        tenant,
        DeviceId::new_random(),
        texts[0],
        &meta(T0 + Duration::minutes(90)),
    )
    .unwrap();
    let v = a.versions(tenant, device).unwrap();
    assert_eq!(v.len(), 3);
    for (i, ver) in v.iter().enumerate() {
        let r = &rec[2 - i];
        assert_eq!(
            (&ver.commit, &ver.sha256, ver.at),
            (&r.commit, &r.sha256, times[2 - i])
        );
    }
    let as_of = |at| a.as_of(tenant, device, at).unwrap().map(|v| v.commit);
    assert_eq!(as_of(T0 - Duration::nanoseconds(1)), None);
    assert_eq!(as_of(T0), Some(rec[0].commit.clone()));
    assert_eq!(
        as_of(T0 + Duration::minutes(119)),
        Some(rec[1].commit.clone())
    );
    assert_eq!(as_of(T0 + Duration::days(9)), Some(rec[2].commit.clone()));

    let d = a
        .diff(tenant, device, &rec[0].commit, &rec[2].commit)
        .unwrap();
    assert_eq!(
        changed_lines(&d.unified),
        (
            vec!["add name=p1 ranges=10.0.0.2-10.0.0.9".to_string()],
            vec![
                "add name=p1 ranges=10.0.0.2-10.0.0.99".to_string(),
                "add name=p2 ranges=10.1.0.2-10.1.0.9".to_string()
            ]
        )
    );
    assert_eq!(d.semantic.len(), 2, "{}", d.semantic);
    assert!(
        d.semantic
            .to_string()
            .contains("ranges: 10.0.0.2-10.0.0.9 -> 10.0.0.2-10.0.0.99")
    );
    // abbreviated ids work like git's
    let short = &rec[1].commit[..10];
    assert_eq!(a.read(tenant, device, short).unwrap(), texts[1]);
}

#[test]
fn verify_says_what_differs_between_git_and_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let a = archive(dir.path());
    let (tenant, device, other) = (
        TenantId::new_random(),
        DeviceId::new_random(),
        DeviceId::new_random(),
    );
    let r = a
        .record(tenant, device, "/system identity\nset name=a\n", &meta(T0))
        .unwrap();
    let o = a
        .record(tenant, other, "/system identity\nset name=b\n", &meta(T0))
        .unwrap();
    a.verify(tenant, device, &r.commit, &r.sha256).unwrap();
    // the device's file still holds that content at the later commit too
    a.verify(tenant, device, &o.commit, &r.sha256).unwrap();

    let what = |res: Result<(), ArchiveError>| match res {
        Err(ArchiveError::Mismatch { what, .. }) => what,
        other => panic!("expected a mismatch, got {other:?}"),
    };
    match what(a.verify(tenant, device, &r.commit, &o.sha256)) {
        Mismatch::Sha256 { expected, found } => {
            assert_eq!((expected, found), (o.sha256.clone(), r.sha256.clone()))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        what(a.verify(tenant, other, &r.commit, &o.sha256)),
        Mismatch::FileMissing
    );
    let missing = "0123456789abcdef0123456789abcdef01234567";
    assert_eq!(
        what(a.verify(tenant, device, missing, &r.sha256)),
        Mismatch::CommitMissing
    );
    assert_eq!(
        what(a.verify(TenantId::new_random(), device, &r.commit, &r.sha256)),
        Mismatch::CommitMissing
    );
    // a commit object that exists but never made it onto main (a lost CAS attempt)
    let repo = a.repo_path(tenant);
    let tree = git(&repo, &["rev-parse", &format!("{}^{{tree}}", r.commit)]);
    let dangling = Command::new("git")
        .arg("--git-dir")
        .arg(&repo)
        .args(["commit-tree", tree.trim(), "-m", "not on main"])
        .env("GIT_AUTHOR_NAME", "x")
        .env("GIT_AUTHOR_EMAIL", "x@x.invalid")
        .env("GIT_COMMITTER_NAME", "x")
        .env("GIT_COMMITTER_EMAIL", "x@x.invalid")
        .output()
        .unwrap();
    assert!(dangling.status.success());
    let dangling = String::from_utf8(dangling.stdout)
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(
        what(a.verify(tenant, device, &dangling, &r.sha256)),
        Mismatch::NotOnHistory
    );
    assert!(matches!(
        a.read(tenant, device, &dangling),
        Err(ArchiveError::NotOnHistory { .. })
    ));
    // malformed input is an error of its own, with the reason
    assert!(matches!(
        a.verify(tenant, device, &r.commit, "abc"),
        Err(ArchiveError::BadSha256 { .. })
    ));
    let e = a.verify(tenant, device, "HEAD~1", &r.sha256).unwrap_err();
    assert!(matches!(e, ArchiveError::BadCommitId { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains("hexadecimal"), "{text}");
}

#[test]
fn bad_commit_ids_are_clear_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let a = archive(dir.path());
    let (tenant, device) = (TenantId::new_random(), DeviceId::new_random());
    let r = a
        .record(tenant, device, "/system identity\nset name=a\n", &meta(T0))
        .unwrap();
    for bad in [
        "",
        "abc",
        "zzzz",
        "../../../etc/passwd",
        "main",
        "a".repeat(41).as_str(),
        "ab cd",
        "éééé",
    ] {
        match a.read(tenant, device, bad) {
            Err(ArchiveError::BadCommitId { .. }) => {}
            other => panic!("{bad:?}: {other:?}"),
        }
        assert!(a.diff(tenant, device, &r.commit, bad).is_err());
    }
    // a well-formed id of something that is not a commit: the file's blob
    let blob = git(
        &a.repo_path(tenant),
        &["rev-parse", &format!("{}:devices/{device}.rsc", r.commit)],
    );
    let e = a.read(tenant, device, blob.trim()).unwrap_err();
    assert!(
        matches!(e, ArchiveError::NotACommit { ref kind, .. } if kind == "blob"),
        "{e}"
    );
    let e = a
        .read(tenant, device, "ffffffffffffffffffffffffffffffffffffffff")
        .unwrap_err();
    assert!(matches!(e, ArchiveError::CommitNotFound { .. }), "{e}");
    let e = a
        .read(tenant, DeviceId::new_random(), &r.commit)
        .unwrap_err();
    assert!(matches!(e, ArchiveError::DeviceNotInCommit { .. }), "{e}");
    // an unknown tenant has no history and gets no repository from a read
    let unknown = TenantId::new_random();
    assert!(matches!(
        a.read(unknown, device, &r.commit),
        Err(ArchiveError::CommitNotFound { .. })
    ));
    assert!(!a.repo_path(unknown).exists());
    // export text that does not parse is refused before anything is written
    let e = a
        .record(
            unknown,
            device,
            "/ip address\nadd address=\"unterminated\n",
            &meta(T0),
        )
        .unwrap_err();
    assert!(matches!(e, ArchiveError::Parse { .. }), "{e}");
    for empty in [
        "",
        "\r\n",
        "# 2025-01-02 03:04:05 by RouterOS 7.17\n# software id = X\n#\n",
    ] {
        let e = a.record(unknown, device, empty, &meta(T0)).unwrap_err();
        assert!(matches!(e, ArchiveError::EmptyExport), "{empty:?}: {e}");
    }
    assert!(!a.repo_path(unknown).exists());
}

#[test]
fn concurrent_writers_lose_no_commit_and_keep_history_linear() {
    const THREADS: usize = 8;
    const SNAPSHOTS: usize = 12;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let tenant = TenantId::new_random(); // no repository yet: creating it is part of the race
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (root, barrier) = (root.clone(), barrier.clone());
            std::thread::spawn(move || {
                let a = archive(&root); // its own instance, as another process would have
                let device = DeviceId::new_random();
                barrier.wait();
                let mut out = Vec::new();
                for s in 0..SNAPSHOTS {
                    let text = format!("/system identity\nset name=t{t}-s{s}\n");
                    let r = a
                        .record(
                            tenant,
                            device,
                            &text,
                            &meta(T0 + Duration::seconds(s as i64)),
                        )
                        .unwrap();
                    assert!(r.changed);
                    out.push(r);
                }
                (device, out)
            })
        })
        .collect();
    let results: Vec<(DeviceId, Vec<Recorded>)> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();

    let a = archive(&root);
    let repo = a.repo_path(tenant);
    let total = THREADS * SNAPSHOTS;
    assert_eq!(
        git(&repo, &["rev-list", "--count", "main"]).trim(),
        total.to_string()
    );
    assert_eq!(
        git(&repo, &["rev-list", "--min-parents=2", "main"]).trim(),
        "",
        "no merges"
    );
    assert_eq!(
        git(&repo, &["rev-list", "--max-parents=0", "main"])
            .lines()
            .count(),
        1,
        "one root"
    );
    let on_main: std::collections::HashSet<String> = git(&repo, &["rev-list", "main"])
        .lines()
        .map(str::to_string)
        .collect();
    for (device, recs) in &results {
        for r in recs {
            assert!(on_main.contains(&r.commit), "lost commit {}", r.commit);
            a.verify(tenant, *device, &r.commit, &r.sha256).unwrap();
        }
        // each device's versions are exactly its snapshots, newest first
        let mine: Vec<String> = recs.iter().rev().map(|r| r.commit.clone()).collect();
        let versions: Vec<String> = a
            .versions(tenant, *device)
            .unwrap()
            .into_iter()
            .map(|v| v.commit)
            .collect();
        assert_eq!(versions, mine);
    }
    // the final tree holds every device's last snapshot
    for (device, recs) in &results {
        let head = git(&repo, &["rev-parse", "main"]);
        assert_eq!(
            a.read(tenant, *device, head.trim()).unwrap(),
            a.read(tenant, *device, &recs[SNAPSHOTS - 1].commit)
                .unwrap()
        );
    }
    // no leftovers of the creation race
    let stray: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".init-"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    git(&repo, &["fsck", "--strict"]);
}

#[test]
fn threads_sharing_one_archive_and_another_process_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let shared = archive(dir.path());
    let other = archive(dir.path()); // a second "process" on the same repository
    let tenant = TenantId::new_random();
    let handles: Vec<_> = (0..6)
        .map(|t| {
            let a = if t % 3 == 0 {
                other.clone()
            } else {
                shared.clone()
            };
            std::thread::spawn(move || {
                let device = DeviceId::new_random();
                for s in 0..5 {
                    let text = format!("/system identity\nset name=t{t}-s{s}\n");
                    assert!(a.record(tenant, device, &text, &meta(T0)).unwrap().changed);
                }
                device
            })
        })
        .collect();
    let devices: Vec<DeviceId> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let repo = shared.repo_path(tenant);
    assert_eq!(git(&repo, &["rev-list", "--count", "main"]).trim(), "30");
    assert_eq!(
        git(&repo, &["rev-list", "--min-parents=2", "main"]).trim(),
        ""
    );
    for d in devices {
        assert_eq!(shared.versions(tenant, d).unwrap().len(), 5);
    }
}

fn checkpoint(tenant: TenantId, seq: i64, to: i64) -> netledger_domain::audit::Checkpoint {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    make_checkpoint(
        CheckpointPlace {
            tenant_id: tenant,
            seq,
            from_position: 1,
            to_position: to,
            prev_digest: [0; 32],
        },
        &[],
        "k1",
        &key,
    )
}

#[test]
fn checkpoints_are_published_once_as_canonical_json() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let a = Archive::open_with(
        dir.path(),
        ArchiveOptions {
            fsync: false,
            clock: Some(clock.clone() as Arc<dyn Clock>),
            ..ArchiveOptions::default()
        },
    )
    .unwrap();
    let tenant = TenantId::new_random();
    let cp = checkpoint(tenant, 1, 10);
    let c1 = a
        .publish_checkpoint(tenant, &cp)
        .unwrap()
        .expect("a commit");
    assert_eq!(
        a.publish_checkpoint(tenant, &cp).unwrap(),
        None,
        "idempotent"
    );
    // interleaved with snapshots, and the second checkpoint after them
    let device = DeviceId::new_random();
    a.record(tenant, device, "/system identity\nset name=a\n", &meta(T0))
        .unwrap();
    let cp2 = checkpoint(tenant, 2, 20);
    let c2 = a
        .publish_checkpoint(tenant, &cp2)
        .unwrap()
        .expect("a commit");
    assert_eq!(a.publish_checkpoint(tenant, &cp).unwrap(), None);
    assert_eq!(
        a.checkpoints(tenant).unwrap(),
        vec![cp.clone(), cp2.clone()]
    );

    let repo = a.repo_path(tenant);
    assert_eq!(git(&repo, &["rev-list", "--count", "main"]).trim(), "3");
    let file = git(
        &repo,
        &["show", &format!("{c1}:checkpoints/000000000001.json")],
    );
    assert_eq!(
        file.as_bytes(),
        canonical_json(&serde_json::to_value(&cp).unwrap())
    );
    let back: netledger_domain::audit::Checkpoint = serde_json::from_str(&file).unwrap();
    assert_eq!(back, cp);
    let msg = git(&repo, &["log", "-1", "--format=%B%x1f%ct", &c2]);
    assert!(msg.starts_with("checkpoint 2: positions 1..=20"), "{msg}");
    assert!(
        msg.contains(&format!("Digest: {}", hex::encode(cp2.digest))),
        "{msg}"
    );
    assert!(
        msg.trim_end().ends_with(&T0.unix_timestamp().to_string()),
        "clock time: {msg}"
    );

    // the same sequence number with other content is refused, not overwritten
    let forged = checkpoint(tenant, 1, 11);
    let e = a.publish_checkpoint(tenant, &forged).unwrap_err();
    assert!(
        matches!(e, ArchiveError::CheckpointConflict { seq: 1, .. }),
        "{e}"
    );
    // a checkpoint of another tenant does not go into this repository
    let e = a
        .publish_checkpoint(tenant, &checkpoint(TenantId::new_random(), 3, 30))
        .unwrap_err();
    assert!(matches!(e, ArchiveError::CheckpointTenant { .. }), "{e}");
    assert_eq!(git(&repo, &["rev-list", "--count", "main"]).trim(), "3");
}

#[test]
fn blobs_are_written_atomically_and_verified_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let a = Archive::open(dir.path()).unwrap(); // defaults: fsync on
    let (tenant, device) = (TenantId::new_random(), DeviceId::new_random());
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let sha = a.store_blob(tenant, device, &bytes).unwrap();
    assert_eq!(sha, sha256sum(&bytes));
    let path = dir.path().join(tenant.to_string()).join("blobs").join(&sha);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert_eq!(a.load_blob(tenant, &sha).unwrap(), bytes);
    // storing again is harmless and leaves no temporary files
    assert_eq!(a.store_blob(tenant, device, &bytes).unwrap(), sha);
    let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names, vec![sha.clone()]);
    // another tenant does not see it
    assert!(matches!(
        a.load_blob(TenantId::new_random(), &sha),
        Err(ArchiveError::BlobNotFound { .. })
    ));
    // a damaged file is detected
    let mut damaged = bytes.clone();
    damaged[500] ^= 1;
    std::fs::write(&path, &damaged).unwrap();
    assert!(matches!(
        a.load_blob(tenant, &sha),
        Err(ArchiveError::BlobCorrupt { .. })
    ));
    // names are hashes only: no path traversal
    for bad in ["../x", "", &sha.to_uppercase(), &format!("{sha}0")] {
        assert!(
            matches!(
                a.load_blob(tenant, bad),
                Err(ArchiveError::BadSha256 { .. })
            ),
            "{bad}"
        );
    }
    // and a snapshot through the default (fsync) options works like the others; the
    // archive syncs objects itself (a chain at a time), so libgit2 is told not to
    let r = a
        .record(tenant, device, "/system identity\nset name=a\n", &meta(T0))
        .unwrap();
    a.verify(tenant, device, &r.commit, &r.sha256).unwrap();
    let cfg = git(
        &a.repo_path(tenant),
        &["config", "--bool", "core.fsyncObjectFiles"],
    );
    assert_eq!(cfg.trim(), "false");
    git(&a.repo_path(tenant), &["fsck", "--strict"]);
}

#[test]
fn a_repository_that_asked_libgit2_for_per_object_fsync_is_switched_to_batched_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (tenant, device) = (TenantId::new_random(), DeviceId::new_random());
    let first = Archive::open(dir.path())
        .unwrap()
        .record(tenant, device, "/system identity\nset name=a\n", &meta(T0))
        .unwrap();
    let repo = dir.path().join(format!("{tenant}.git"));
    // as an earlier version created it
    git(
        &repo,
        &["config", "--bool", "core.fsyncObjectFiles", "true"],
    );
    let a = Archive::open(dir.path()).unwrap();
    let second = a
        .record(tenant, device, "/system identity\nset name=b\n", &meta(T0))
        .unwrap();
    assert!(second.changed);
    assert_eq!(
        git(&repo, &["config", "--bool", "core.fsyncObjectFiles"]).trim(),
        "false"
    );
    let versions: Vec<String> = a
        .versions(tenant, device)
        .unwrap()
        .into_iter()
        .map(|v| v.commit)
        .collect();
    assert_eq!(versions, vec![second.commit, first.commit]);
    git(&repo, &["fsck", "--strict"]);
}

#[test]
fn a_failing_commit_among_concurrent_ones_fails_alone() {
    // Threads of one archive hand their commits to one leader, which chains whatever is
    // queued: a refused checkpoint must fail only itself, whatever it is chained with.
    let dir = tempfile::tempdir().unwrap();
    let a = archive(dir.path());
    let tenant = TenantId::new_random();
    assert!(
        a.publish_checkpoint(tenant, &checkpoint(tenant, 1, 10))
            .unwrap()
            .is_some()
    );
    let barrier = Arc::new(Barrier::new(16));
    let handles: Vec<_> = (0..16)
        .map(|t| {
            let (a, barrier) = (a.clone(), barrier.clone());
            std::thread::spawn(move || {
                let device = DeviceId::new_random();
                barrier.wait();
                let mut mine = Vec::new();
                for s in 0..6 {
                    if t % 4 == 0 && s % 2 == 0 {
                        // a different checkpoint under a published sequence number
                        let e = a
                            .publish_checkpoint(tenant, &checkpoint(tenant, 1, 11 + s as i64))
                            .unwrap_err();
                        assert!(
                            matches!(e, ArchiveError::CheckpointConflict { seq: 1, .. }),
                            "{e}"
                        );
                        continue;
                    }
                    let text = format!("/system identity\nset name=t{t}-s{s}\n");
                    let r = a.record(tenant, device, &text, &meta(T0)).unwrap();
                    assert!(r.changed);
                    mine.push(r);
                }
                (device, mine)
            })
        })
        .collect();
    let results: Vec<(DeviceId, Vec<Recorded>)> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    let repo = a.repo_path(tenant);
    let total: usize = results.iter().map(|(_, r)| r.len()).sum();
    assert_eq!(
        git(&repo, &["rev-list", "--count", "main"]).trim(),
        (total + 1).to_string(),
        "every snapshot and the one checkpoint"
    );
    assert_eq!(
        git(&repo, &["rev-list", "--min-parents=2", "main"]).trim(),
        ""
    );
    for (device, recs) in &results {
        for r in recs {
            a.verify(tenant, *device, &r.commit, &r.sha256).unwrap();
        }
        let mine: Vec<String> = recs.iter().rev().map(|r| r.commit.clone()).collect();
        let versions: Vec<String> = a
            .versions(tenant, *device)
            .unwrap()
            .into_iter()
            .map(|v| v.commit)
            .collect();
        assert_eq!(versions, mine);
    }
    let published = a.checkpoints(tenant).unwrap();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0], checkpoint(tenant, 1, 10));
    git(&repo, &["fsck", "--strict"]);
}

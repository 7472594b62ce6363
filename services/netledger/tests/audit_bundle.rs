//! Issue #14, the audit bundle (format v2, docs/auditing.md) end to end: a platform with a
//! polled fleet, an out-of-band change (drift) and a backup; `netledger audit export`; both
//! verifiers (`netledger audit verify` and `tools/audit-verify.py`, written from the format
//! document alone) pass the bundle and fail every tampered copy at the same position or
//! member; the config history in it clones with git; a range export verifies on its own; an
//! export restricted to one device (`--devices`) holds the other device's events as
//! hash-only stubs, verifies in both, and fails in both where a stub is tampered with.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// The harness runs real processes (netledger, python3, git) and reads the clock.
#![allow(clippy::disallowed_methods)]

mod support;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use netledger_domain::audit::{Handover, TrustedKeys};
use netledger_domain::canonical::{
    ContentJson, Placement, canonical_json, chain_hash, content_hash_json, parse_micros,
    unix_micros,
};
use netledger_domain::event::{Actor, EventMetadata, ExpectedVersion, NewEvent};
use netledger_domain::ids::{EventId, StreamName, TenantId};
use netledger_store::audit::{CheckpointSigner, checkpoint_all, checkpoint_all_with};
use netledger_store::{EventStore, StoreOptions};
use support::platform::{
    ADMIN_EMAIL, ADMIN_PASSWORD, Options, Platform, backup_succeeds, database_url, until,
};

type Members = Vec<(String, Vec<u8>)>;

fn read_tar(path: &Path) -> Members {
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = String::from_utf8(e.path_bytes().to_vec()).unwrap();
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).unwrap();
            (name, bytes)
        })
        .collect()
}

/// Writes `members` as a bundle; with `forge_manifest` the manifest's sizes and hashes are
/// recomputed, as a forger would.
fn write_tar(members: &Members, path: &Path, forge_manifest: bool) {
    let mut members = members.clone();
    if forge_manifest {
        let listed: Vec<Value> = members[1..]
            .iter()
            .map(|(name, bytes)| {
                json!({"bytes": bytes.len(), "name": name, "sha256": hex::encode(Sha256::digest(bytes))})
            })
            .collect();
        let mut manifest: Value = serde_json::from_slice(&members[0].1).unwrap();
        manifest["members"] = Value::Array(listed);
        members[0].1 = canonical_json(&manifest);
    }
    let mut tar = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, bytes) in &members {
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, name, bytes.as_slice()).unwrap();
    }
    tar.finish().unwrap();
}

fn member<'a>(members: &'a Members, name: &str) -> &'a [u8] {
    &members.iter().find(|(n, _)| n == name).unwrap().1
}

fn set_member(members: &mut Members, name: &str, bytes: Vec<u8>) {
    members.iter_mut().find(|(n, _)| n == name).unwrap().1 = bytes;
}

fn jsonl(bytes: &[u8]) -> Vec<Value> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

fn to_jsonl(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        out.extend_from_slice(&canonical_json(v));
        out.push(b'\n');
    }
    out
}

/// The verdict's finding: `OK`, `TAMPERED at position N` or `TAMPERED in member NAME`,
/// and the exit code.
fn verdict(out: &std::process::Output) -> (Option<i32>, String) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first = stdout.lines().next().unwrap_or_default();
    let finding = first.split(':').next().unwrap_or_default().to_owned();
    assert!(
        finding == "OK" || finding.starts_with("TAMPERED "),
        "no verdict line: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), finding)
}

fn python_verifier() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tools/audit-verify.py"
    ))
}

/// Both verifiers on `path` with `key` pinned; asserts they agree and returns the finding.
fn verify_both(path: &Path, key: &str) -> (Option<i32>, String) {
    let rust = Command::new(env!("CARGO_BIN_EXE_netledger"))
        .args(["audit", "verify"])
        .arg(path)
        .args(["--trusted-key", key])
        .env("NETLEDGER_LOG", "warn")
        .output()
        .unwrap();
    let python = std::env::var("NETLEDGER_AUDIT_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let py = Command::new(python)
        .arg(python_verifier())
        .arg(path)
        .args(["--trusted-key", key])
        .output()
        .unwrap();
    let (r, p) = (verdict(&rust), verdict(&py));
    assert_eq!(
        r,
        p,
        "the verifiers disagree on {}:\nrust: {}\npython: {}{}",
        path.display(),
        String::from_utf8_lossy(&rust.stdout),
        String::from_utf8_lossy(&py.stdout),
        String::from_utf8_lossy(&py.stderr)
    );
    r
}

/// The content hash (docs/auditing.md §4) of a full event line.
fn content_hash_of(e: &Value) -> [u8; 32] {
    let tenant: TenantId = e["tenant_id"].as_str().unwrap().parse().unwrap();
    let event_id: EventId = e["event_id"].as_str().unwrap().parse().unwrap();
    content_hash_json(
        ContentJson {
            tenant_id: &tenant,
            stream: e["stream"].as_str().unwrap(),
            event_id: &event_id,
            event_type: e["event_type"].as_str().unwrap(),
            schema_version: u32::try_from(e["schema_version"].as_u64().unwrap()).unwrap(),
            metadata: &e["metadata"],
            payload: &e["payload"],
        },
        &mut Vec::new(),
    )
}

/// A full event line as the hash-only stub of §3.1.
fn stub_of(e: &Value) -> Value {
    json!({
        "content_hash": hex::encode(content_hash_of(e)),
        "hash": e["hash"],
        "position": e["position"],
        "prev_hash": e["prev_hash"],
        "recorded_at": e["recorded_at"],
        "stream": e["stream"],
        "tenant_prev_position": e["tenant_prev_position"],
        "version": e["version"],
    })
}

/// The §4 hash of a stub line, from its own fields.
fn stub_hash(stub: &Value) -> String {
    let mut prev = [0u8; 32];
    hex::decode_to_slice(stub["prev_hash"].as_str().unwrap(), &mut prev).unwrap();
    let mut content = [0u8; 32];
    hex::decode_to_slice(stub["content_hash"].as_str().unwrap(), &mut content).unwrap();
    let placement = Placement {
        position: stub["position"].as_i64().unwrap(),
        tenant_prev_position: stub["tenant_prev_position"].as_i64().unwrap(),
        version: stub["version"].as_i64().unwrap(),
        recorded_at_micros: unix_micros(
            parse_micros(stub["recorded_at"].as_str().unwrap()).unwrap(),
        ),
    };
    hex::encode(chain_hash(&prev, placement, &content))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn bundles_verify_with_both_verifiers_and_every_tampering_fails_at_the_same_place(
    owner: PgPool,
) {
    let p = Platform::start_with(
        &owner,
        2,
        Options {
            extra_toml: Some("[audit]\ncheckpoint_interval = \"1s\"\n".to_owned()),
            ..Options::default()
        },
    )
    .await;
    let token = p.api.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let devices = [
        p.register(&token, 0, "edge-0").await,
        p.register(&token, 1, "edge-1").await,
    ];
    until("both devices online", Duration::from_secs(60), || async {
        let page = p.api.ok(200, "GET", "/api/v1/devices", &token, None).await;
        let items = page["items"].as_array().unwrap().clone();
        (items.len() == 2 && items.iter().all(|d| d["status"] == "online")).then_some(())
    })
    .await;
    // An out-of-band change: the poller records drift with a new archived config.
    run(Command::new("curl")
        .args(["-sSf", "-X", "POST", "--data-binary"])
        .arg("/system identity set name=changed-out-of-band\n")
        .arg(format!("{}/devices/0/config", p.control.base())));
    until("drift recorded", Duration::from_secs(60), || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE event_type = 'ConfigDriftDetected'",
        )
        .fetch_one(&owner)
        .await
        .unwrap();
        (n > 0).then_some(())
    })
    .await;
    backup_succeeds(&p.api, &token, &devices[1], "audit-1").await;
    let me = p.api.ok(200, "GET", "/api/v1/auth/me", &token, None).await;
    let tenant = me["tenant_id"].as_str().unwrap().to_owned();
    let url = database_url(&owner);
    // Every event signed, and the newest checkpoint published to git (outside PostgreSQL).
    until(
        "the history signed and published",
        Duration::from_secs(60),
        || async {
            let (head, signed, seq): (i64, Option<i64>, Option<i64>) = sqlx::query_as(
                "SELECT (SELECT max(position) FROM events WHERE tenant_id = $1::uuid), \
                    (SELECT max(to_position) FROM audit_checkpoints WHERE tenant_id = $1::uuid), \
                    (SELECT max(seq) FROM audit_checkpoints WHERE tenant_id = $1::uuid)",
            )
            .bind(&tenant)
            .fetch_one(&owner)
            .await
            .unwrap();
            let published = p
                .data_dir()
                .join("config-history")
                .join(format!("{tenant}.git"));
            let in_git = seq.is_some_and(|s| {
                Command::new("git")
                    .arg("--git-dir")
                    .arg(&published)
                    .args(["cat-file", "-e", &format!("main:checkpoints/{s:012}.json")])
                    .status()
                    .is_ok_and(|st| st.success())
            });
            (signed == Some(head) && seq >= Some(2) && in_git).then_some(())
        },
    )
    .await;

    let work = tempfile::tempdir().unwrap();
    let export = |args: &[&str], out: &Path| {
        run(Command::new(env!("CARGO_BIN_EXE_netledger"))
            .arg("--config")
            .arg(p.config_file())
            .args(["audit", "export", "--tenant", &tenant])
            .args(args)
            .arg("--out")
            .arg(out)
            .env("DATABASE_URL", &url)
            .env("NETLEDGER_LOG", "warn"))
    };
    let bundle = work.path().join("t.nlaudit.tar");
    let said = export(&[], &bundle);
    assert!(said.contains("with its config history"), "{said}");
    let key = std::fs::read_to_string(p.data_dir().join("audit-signing.pub"))
        .unwrap()
        .trim()
        .to_owned();

    // Intact: both verifiers pass.
    assert_eq!(verify_both(&bundle, &key), (Some(0), "OK".to_owned()));
    // The same from the API's download (streamed), as an auditor gets it in the web UI.
    let downloaded = work.path().join("downloaded.nlaudit.tar");
    run(Command::new("curl")
        .args(["-sSf", "-o"])
        .arg(&downloaded)
        .arg("-H")
        .arg(format!("Authorization: Bearer {token}"))
        .arg(format!("{}/api/v1/audit/export", p.api.base())));
    assert_eq!(verify_both(&downloaded, &key), (Some(0), "OK".to_owned()));
    let out = run(Command::new(env!("CARGO_BIN_EXE_netledger"))
        .args(["audit", "verify"])
        .arg(&bundle)
        .args(["--trusted-key", &key]));
    assert!(!out.contains(" 0 config references"), "{out}");

    let members = read_tar(&bundle);
    assert_eq!(
        members.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(),
        [
            "manifest.json",
            "events.jsonl",
            "checkpoints.jsonl",
            "keys.json",
            "external-checkpoint.json",
            "config.bundle"
        ]
    );
    // The config history is an ordinary git bundle: git clones it.
    let git_bundle = work.path().join("config.bundle");
    std::fs::write(&git_bundle, member(&members, "config.bundle")).unwrap();
    let clone = work.path().join("config");
    run(Command::new("git")
        .arg("clone")
        .arg("-q")
        .arg(&git_bundle)
        .arg(&clone));
    for d in &devices {
        assert!(clone.join("devices").join(format!("{d}.rsc")).exists());
    }

    let events = jsonl(member(&members, "events.jsonl"));

    // Time travel through the API: just before and at the drift, the device's config is the
    // one its events named then, and git's text for it hashes to the event's SHA-256.
    let drift = events
        .iter()
        .find(|e| e["event_type"] == "ConfigDriftDetected")
        .unwrap();
    let drift_at = drift["recorded_at"].as_str().unwrap();
    let device = drift["stream"]
        .as_str()
        .unwrap()
        .strip_prefix("device-")
        .unwrap();
    let before_drift = events
        .iter()
        .rfind(|e| {
            e["stream"] == drift["stream"]
                && e["position"].as_i64() < drift["position"].as_i64()
                && e["payload"]["commit"].is_string()
        })
        .unwrap();
    let as_of = |at: &str| {
        let url = format!(
            "/api/v1/devices/{device}/as-of?at={}",
            at.replace(':', "%3A")
        );
        let api = p.api.clone();
        let token = token.clone();
        async move { api.ok(200, "GET", &url, &token, None).await }
    };
    let then = as_of(before_drift["recorded_at"].as_str().unwrap()).await;
    assert_eq!(then["config"]["sha256"], before_drift["payload"]["sha256"]);
    assert_eq!(then["position"], before_drift["position"]);
    let now = as_of(drift_at).await;
    assert_eq!(now["config"]["sha256"], drift["payload"]["found_sha256"]);
    assert_eq!(now["config"]["event_type"], "ConfigDriftDetected");
    assert!(
        now["config_text"]
            .as_str()
            .unwrap()
            .contains("changed-out-of-band")
    );
    assert_eq!(now["name"], "edge-0");
    let fleet = p
        .api
        .ok(
            200,
            "GET",
            &format!("/api/v1/fleet/as-of?at={}", drift_at.replace(':', "%3A")),
            &token,
            None,
        )
        .await;
    assert_eq!(fleet["items"].as_array().unwrap().len(), 2, "{fleet:#}");
    // Reports: the change log names the drift on edge-0, as CSV and as a PDF that renders.
    let report = |kind: &str, format: &str| {
        let out = work.path().join(format!("{kind}.{format}"));
        run(Command::new("curl")
            .args(["-sSf", "-o"])
            .arg(&out)
            .arg("-H")
            .arg(format!("Authorization: Bearer {token}"))
            .arg(format!(
                "{}/api/v1/audit/reports/{kind}?format={format}",
                p.api.base()
            )));
        out
    };
    let csv = std::fs::read_to_string(report("change-log", "csv")).unwrap();
    assert!(csv.starts_with("# Change log\n"), "{csv}");
    let drift_row = csv
        .lines()
        .find(|l| l.contains("drift (out of band)"))
        .unwrap_or_else(|| panic!("{csv}"));
    assert!(drift_row.contains("edge-0"), "{drift_row}");
    for (kind, expect) in [
        ("change-log", "drift (out of band)"),
        ("inventory", "edge-1"),
        ("verification", "result: OK"),
    ] {
        let pdf = report(kind, "pdf");
        let text = run(Command::new("pdftotext").arg(&pdf).arg("-"));
        assert!(text.contains(expect), "{kind}: {text}");
        // Rendered (pdftoppm, grey levels): the first page has ink on it.
        let page = work.path().join(kind);
        run(Command::new("pdftoppm")
            .args(["-gray", "-r", "72", "-f", "1", "-l", "1", "-singlefile"])
            .arg(&pdf)
            .arg(&page));
        let pgm = std::fs::read(page.with_extension("pgm")).unwrap();
        // P5 <width> <height> 255, then one byte per pixel.
        let header_end = pgm
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(2)
            .map(|(i, _)| i + 1)
            .unwrap();
        let dark = pgm[header_end..].iter().filter(|v| **v < 128).count();
        assert!(pgm.starts_with(b"P5"), "{kind}");
        assert!(
            dark > 500,
            "{kind}: {dark} dark pixels on the rendered page"
        );
    }
    // The same from the CLI.
    let cli: Value = serde_json::from_str(&run(Command::new(env!("CARGO_BIN_EXE_netledger"))
        .arg("--config")
        .arg(p.config_file())
        .args([
            "audit", "as-of", "--tenant", &tenant, "--device", device, "--at", drift_at,
        ])
        .env("DATABASE_URL", &url)
        .env("NETLEDGER_LOG", "warn")))
    .unwrap();
    assert_eq!(cli["config"]["sha256"], now["config"]["sha256"]);
    assert_eq!(cli["position"], now["position"]);
    let checkpoints = jsonl(member(&members, "checkpoints.jsonl"));
    let external: Value =
        serde_json::from_slice(member(&members, "external-checkpoint.json")).unwrap();
    let pos = |e: &Value| e["position"].as_i64().unwrap();
    let k = events.len() / 2;
    let tampered = work.path().join("tampered.nlaudit.tar");
    let check = |what: &str, forged: Members, forge_manifest: bool, expected: &str| {
        write_tar(&forged, &tampered, forge_manifest);
        let (code, finding) = verify_both(&tampered, &key);
        assert_eq!(code, Some(1), "{what}: {finding}");
        assert_eq!(finding, expected, "{what}");
        eprintln!("{what}: both verifiers say {finding}");
    };

    // A modified payload.
    let mut forged = members.clone();
    let mut ev = events.clone();
    ev[k]["payload"]["tampered"] = json!(true);
    set_member(&mut forged, "events.jsonl", to_jsonl(&ev));
    check(
        "modified payload",
        forged,
        true,
        &format!("TAMPERED at position {}", pos(&events[k])),
    );

    // A removed event.
    let mut forged = members.clone();
    let mut ev = events.clone();
    ev.remove(k);
    set_member(&mut forged, "events.jsonl", to_jsonl(&ev));
    check(
        "removed event",
        forged,
        true,
        &format!("TAMPERED at position {}", pos(&events[k])),
    );

    // Two events swapped.
    let mut forged = members.clone();
    let mut ev = events.clone();
    ev.swap(k, k + 1);
    set_member(&mut forged, "events.jsonl", to_jsonl(&ev));
    check(
        "swapped events",
        forged,
        true,
        &format!("TAMPERED at position {}", pos(&events[k])),
    );

    // An inserted event (a copy of one, after it).
    let mut forged = members.clone();
    let mut ev = events.clone();
    ev.insert(k + 1, events[k].clone());
    set_member(&mut forged, "events.jsonl", to_jsonl(&ev));
    check(
        "inserted event",
        forged,
        true,
        &format!("TAMPERED at position {}", pos(&events[k])),
    );

    // The tail cut off: the newest checkpoint and its events gone; the copy published
    // outside PostgreSQL still names them.
    let ext_seq = external["checkpoint"]["seq"].as_i64().unwrap();
    let ext_from = external["checkpoint"]["from_position"].as_i64().unwrap();
    let mut forged = members.clone();
    let ev: Vec<Value> = events
        .iter()
        .filter(|e| pos(e) < ext_from)
        .cloned()
        .collect();
    let cps: Vec<Value> = checkpoints
        .iter()
        .filter(|c| c["seq"].as_i64().unwrap() < ext_seq)
        .cloned()
        .collect();
    set_member(&mut forged, "events.jsonl", to_jsonl(&ev));
    set_member(&mut forged, "checkpoints.jsonl", to_jsonl(&cps));
    write_tar(&forged, &tampered, true);
    let (code, finding) = verify_both(&tampered, &key);
    assert_eq!(code, Some(1), "truncated tail: {finding}");
    let at: i64 = finding
        .strip_prefix("TAMPERED at position ")
        .unwrap_or_else(|| panic!("truncated tail: {finding}"))
        .parse()
        .unwrap();
    let ext_to = external["checkpoint"]["to_position"].as_i64().unwrap();
    assert!(
        (ext_from..=ext_to).contains(&at),
        "truncated tail: {finding}"
    );
    eprintln!("truncated tail: both verifiers say {finding}");

    // An altered checkpoint signature.
    let mut forged = members.clone();
    let mut cps = checkpoints.clone();
    let sig = cps[1]["signature"].as_str().unwrap().to_owned();
    let flipped = if sig.starts_with('0') { "1" } else { "0" };
    cps[1]["signature"] = json!(format!("{flipped}{}", &sig[1..]));
    set_member(&mut forged, "checkpoints.jsonl", to_jsonl(&cps));
    check(
        "altered checkpoint signature",
        forged,
        true,
        &format!("TAMPERED at position {}", cps[1]["from_position"]),
    );

    // An altered config text: the newest commit an event names gets a changed file, and
    // the history after it is replayed on the forged commit.
    let last_ref = events
        .iter()
        .rev()
        .find(|e| e["payload"]["commit"].is_string())
        .expect("an event names a config commit");
    let commit = last_ref["payload"]["commit"].as_str().unwrap().to_owned();
    let device = last_ref["stream"]
        .as_str()
        .unwrap()
        .strip_prefix("device-")
        .unwrap();
    let git = |args: &[&str]| {
        run(Command::new("git")
            .arg("-C")
            .arg(&clone)
            .args([
                "-c",
                "user.name=forger",
                "-c",
                "user.email=f@example.invalid",
            ])
            .args(args))
    };
    git(&["checkout", "-q", &commit]);
    let file = clone.join("devices").join(format!("{device}.rsc"));
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("/ip service set telnet disabled=no\n");
    std::fs::write(&file, text).unwrap();
    git(&["commit", "-q", "-a", "--amend", "--no-edit"]);
    let forged_commit = git(&["rev-parse", "HEAD"]).trim().to_owned();
    git(&["rebase", "-q", "--onto", &forged_commit, &commit, "main"]);
    let forged_git = work.path().join("forged.bundle");
    git(&[
        "bundle",
        "create",
        "-q",
        forged_git.to_str().unwrap(),
        "main",
    ]);
    let first_ref = events
        .iter()
        .find(|e| e["payload"]["commit"] == commit.as_str())
        .map(pos)
        .unwrap();
    let mut forged = members.clone();
    set_member(
        &mut forged,
        "config.bundle",
        std::fs::read(&forged_git).unwrap(),
    );
    check(
        "altered config text in the git bundle",
        forged,
        true,
        &format!("TAMPERED at position {first_ref}"),
    );

    // A member changed without the manifest: the manifest names it.
    let mut forged = members.clone();
    let mut keys = member(&members, "keys.json").to_vec();
    keys.extend_from_slice(b" ");
    set_member(&mut forged, "keys.json", keys);
    check(
        "manifest mismatch",
        forged,
        false,
        "TAMPERED in member keys.json",
    );

    // A key the bundle does not hold.
    let stranger = hex::encode(
        ed25519_dalek::SigningKey::from_bytes(&[3; 32])
            .verifying_key()
            .to_bytes(),
    );
    assert_eq!(
        verify_both(&bundle, &stranger),
        (Some(1), "TAMPERED in member keys.json".to_owned())
    );

    // A range from the second checkpoint on verifies on its own against the first's heads.
    let ranged = work.path().join("range.nlaudit.tar");
    let from = checkpoints[1]["from_position"].as_i64().unwrap();
    let said = export(&["--from", &(from + 1).to_string()], &ranged);
    assert!(said.contains(&format!("positions {from}..")), "{said}");
    assert_eq!(verify_both(&ranged, &key), (Some(0), "OK".to_owned()));
    let ranged_events = jsonl(member(&read_tar(&ranged), "events.jsonl"));
    assert_eq!(
        pos(&ranged_events[0]),
        events.iter().map(pos).find(|p| *p >= from).unwrap()
    );

    // Restricted to edge-0 (docs/auditing.md §3.1): edge-1's own stream becomes hash-only
    // stubs, everything else stays in full, and the bundle verifies offline in both.
    let (listed, other) = (devices[0].as_str(), devices[1].as_str());
    let other_stream = format!("device-{other}");
    let filtered = work.path().join("edge-0.nlaudit.tar");
    let said = export(&["--devices", listed], &filtered);
    assert!(said.contains("hash-only stubs"), "{said}");
    assert_eq!(verify_both(&filtered, &key), (Some(0), "OK".to_owned()));
    let fmembers = read_tar(&filtered);
    assert_eq!(
        fmembers.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(),
        members.iter().map(|m| m.0.as_str()).collect::<Vec<_>>()
    );
    let manifest: Value = serde_json::from_slice(member(&fmembers, "manifest.json")).unwrap();
    assert_eq!(manifest["devices"], json!([listed]));
    let fevents_bytes = member(&fmembers, "events.jsonl");
    let fevents = jsonl(fevents_bytes);
    let stubs: Vec<&Value> = fevents
        .iter()
        .filter(|e| e.get("content_hash").is_some())
        .collect();
    let others_full: Vec<&Value> = events
        .iter()
        .filter(|e| e["stream"] == other_stream.as_str() && pos(e) >= pos(&fevents[0]))
        .collect();
    assert!(others_full.len() >= 2, "edge-1 has events");
    // Exactly edge-1's events are stubs, each the stub of the event the platform recorded
    // (its content hash is the one the full event hashes to).
    assert_eq!(stubs.len(), others_full.len());
    for (stub, full) in stubs.iter().zip(&others_full) {
        assert_eq!(**stub, stub_of(full));
    }
    for (f, e) in fevents
        .iter()
        .zip(events.iter().filter(|e| pos(e) >= pos(&fevents[0])))
    {
        if f["stream"] != other_stream.as_str() {
            assert_eq!(f, e, "a full event differs from the unfiltered bundle's");
        }
    }
    // Nothing of edge-1's own stream is left: not its name, not its endpoint. (edge-0,
    // listed, still shows both.) Its endpoint appears only where §3.1 says it may: in the
    // fleet-level stream of the backup workflow that ran on it, which stays in full.
    let fevents_text = String::from_utf8(fevents_bytes.to_vec()).unwrap();
    let registered = |stream: &str| {
        events
            .iter()
            .find(|e| e["stream"] == stream && e["event_type"] == "DeviceRegistered")
            .unwrap()
            .clone()
    };
    let other_registration = registered(&other_stream);
    let other_port = other_registration["payload"]["endpoint"]["port"].clone();
    assert!(other_port.is_u64(), "{other_registration}");
    let listed_registration = registered(&format!("device-{listed}"));
    assert!(fevents_text.contains("\"edge-0\""));
    assert!(
        !fevents_text.contains("\"edge-1\""),
        "edge-1's name is in the events"
    );
    assert!(fevents_text.contains(&format!(
        "\"port\":{}",
        listed_registration["payload"]["endpoint"]["port"]
    )));
    for line in fevents_text
        .lines()
        .filter(|l| l.contains(&format!("\"port\":{other_port}")))
    {
        let e: Value = serde_json::from_str(line).unwrap();
        assert!(
            e["stream"].as_str().unwrap().starts_with("workflow-"),
            "edge-1's endpoint is in a device's events: {line}"
        );
    }
    // The verdict says what was withheld; edge-0's config references are still checked.
    let out = run(Command::new(env!("CARGO_BIN_EXE_netledger"))
        .args(["audit", "verify"])
        .arg(&filtered)
        .args(["--trusted-key", &key]));
    assert!(
        out.contains(&format!(
            "device filter [{listed}]: {} events of other devices withheld as hash-only stubs",
            stubs.len()
        )),
        "{out}"
    );
    assert!(!out.contains(" 0 config references"), "{out}");
    eprintln!("filtered bundle, netledger audit verify: {}", out.trim());
    let py = run(Command::new("python3")
        .arg(python_verifier())
        .arg(&filtered)
        .args(["--trusted-key", &key]));
    assert!(
        py.contains(&format!(
            "{} events of other devices withheld as hash-only stubs",
            stubs.len()
        )),
        "{py}"
    );
    eprintln!("filtered bundle, tools/audit-verify.py: {}", py.trim());
    // The unfiltered bundle's verdict says nothing of a filter.
    let out = run(Command::new(env!("CARGO_BIN_EXE_netledger"))
        .args(["audit", "verify"])
        .arg(&bundle)
        .args(["--trusted-key", &key]));
    assert!(!out.contains("device filter"), "{out}");

    let index = |p: i64| fevents.iter().position(|e| pos(e) == p).unwrap();
    // A stub followed by another event of its stream, for the tampering below.
    let k = index(pos(stubs[0]));
    let next_in_stream = pos(stubs[1]);
    let fcheck = |what: &str, forged_events: Vec<Value>, expected: i64| {
        let mut forged = fmembers.clone();
        set_member(&mut forged, "events.jsonl", to_jsonl(&forged_events));
        check(
            what,
            forged,
            true,
            &format!("TAMPERED at position {expected}"),
        );
    };

    // A stub's content hash altered: its hash no longer follows.
    let mut ev = fevents.clone();
    let content = ev[k]["content_hash"].as_str().unwrap().to_owned();
    let flipped = if content.starts_with('0') { "1" } else { "0" };
    ev[k]["content_hash"] = json!(format!("{flipped}{}", &content[1..]));
    fcheck("altered stub content hash", ev, pos(&fevents[k]));

    // The same with its hash recomputed, as a forger would: the stream's next event no
    // longer links to it.
    let mut ev = fevents.clone();
    ev[k]["content_hash"] = json!(format!("{flipped}{}", &content[1..]));
    ev[k]["hash"] = json!(stub_hash(&ev[k]));
    fcheck("altered stub, hash recomputed", ev, next_in_stream);

    // A stub put back in full (the platform's event, intact): the filter withholds it.
    let mut ev = fevents.clone();
    ev[k] = (*events.iter().find(|e| pos(e) == pos(&fevents[k])).unwrap()).clone();
    fcheck("withheld event in full", ev, pos(&fevents[k]));

    // A listed device's event turned into its (correct) stub: the filter does not withhold
    // it, so its content must be shown.
    let mut ev = fevents.clone();
    let j = fevents
        .iter()
        .position(|e| e["stream"] == format!("device-{listed}").as_str())
        .unwrap();
    ev[j] = stub_of(&fevents[j]);
    fcheck("listed device's event as a stub", ev, pos(&fevents[j]));

    // A stub moved to the listed device's stream.
    let mut ev = fevents.clone();
    ev[k]["stream"] = json!(format!("device-{listed}"));
    fcheck("stub moved to a listed stream", ev, pos(&fevents[k]));

    // The filter removed from the manifest: stubs are then out of place.
    let mut forged = fmembers.clone();
    let mut m = manifest.clone();
    m["devices"] = Value::Null;
    forged[0].1 = canonical_json(&m);
    check(
        "filter removed from the manifest",
        forged,
        true,
        &format!("TAMPERED at position {}", pos(stubs[0])),
    );
    // A malformed filter.
    let mut forged = fmembers.clone();
    let mut m = manifest.clone();
    m["devices"] = json!([listed.to_uppercase()]);
    forged[0].1 = canonical_json(&m);
    check(
        "malformed device filter",
        forged,
        true,
        "TAMPERED in member manifest.json",
    );

    // Both devices listed (comma-separated): nothing is withheld. A range with the filter
    // verifies on its own. An id the tenant has no device for is refused.
    let both = work.path().join("both.nlaudit.tar");
    let said = export(&["--devices", &format!("{listed},{other}")], &both);
    assert!(said.contains(": 0 events of other devices"), "{said}");
    assert_eq!(verify_both(&both, &key), (Some(0), "OK".to_owned()));
    let ranged = work.path().join("range-edge-0.nlaudit.tar");
    export(
        &["--from", &(from + 1).to_string(), "--devices", listed],
        &ranged,
    );
    assert_eq!(verify_both(&ranged, &key), (Some(0), "OK".to_owned()));
    let stranger_device = uuid::Uuid::new_v4().to_string();
    let refused = Command::new(env!("CARGO_BIN_EXE_netledger"))
        .arg("--config")
        .arg(p.config_file())
        .args(["audit", "export", "--tenant", &tenant])
        .args(["--devices", &stranger_device])
        .arg("--out")
        .arg(work.path().join("refused.nlaudit.tar"))
        .env("DATABASE_URL", &url)
        .env("NETLEDGER_LOG", "warn")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains(&stranger_device),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

async fn append_n(store: &EventStore, tenant: TenantId, from: usize, n: usize) {
    for i in from..from + n {
        let e = NewEvent::new(
            EventId::new_v7(),
            "DeviceOnline",
            1,
            json!({"i": i, "ratio": 0.25}),
            EventMetadata::for_command(Actor::system("test"), uuid::Uuid::new_v4()),
        )
        .unwrap();
        let stream = StreamName::parse(&format!("device-{}", i % 3)).unwrap();
        store
            .append(tenant, &stream, ExpectedVersion::Any, vec![e])
            .await
            .unwrap();
    }
}

/// The key in a `keys init` folder: its id, the private key and its hand-over.
fn folder_key(dir: &Path) -> (String, ed25519_dalek::SigningKey, Option<Handover>) {
    let text = std::fs::read_to_string(dir.join("audit-signing.key")).unwrap();
    let id = std::fs::read_to_string(dir.join("audit-key-id")).unwrap();
    let (key, handover) = netledger::roles::audit_key_from_text(&text).unwrap();
    (id.trim().to_owned(), key, handover)
}

async fn export_to(system: &PgPool, keys: &TrustedKeys, tenant: TenantId, out: &Path) {
    let archive = netledger_archive::Archive::open(out.with_extension("archive")).unwrap();
    let mut file = std::fs::File::create(out).unwrap();
    let req = netledger::bundle::ExportRequest {
        tenant,
        from: None,
        to: None,
        created_at: time::OffsetDateTime::UNIX_EPOCH,
    };
    netledger::bundle::export(system, &archive, keys, req, &mut file)
        .await
        .unwrap();
}

/// Signing keys over time: `keys rotate-audit-key` twice; each new key's file carries the
/// old key's hand-over and the checkpointer attaches it. A bundle spanning all three keys
/// verifies with any one of them pinned (the others chain through the hand-overs), by key
/// or by fingerprint, in both verifiers; a checkpoint signed afterwards by a retired key
/// fails at that checkpoint, in both.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn keys_rotated_twice_verify_through_hand_overs_and_a_retired_key_fails(owner: PgPool) {
    let pools = netledger_store::Pools::connect(&owner.connect_options(), None, None, 10)
        .await
        .unwrap();
    let store = EventStore::start(pools.app.clone(), StoreOptions::default());
    let system = pools.system.clone();
    let tenant = TenantId::new_random();
    let work = tempfile::tempdir().unwrap();
    let secrets = work.path().join("secrets");
    let netledger = || Command::new(env!("CARGO_BIN_EXE_netledger"));
    run(netledger()
        .args(["keys", "init", "--out-dir"])
        .arg(&secrets));
    let mut used = Vec::new();
    for round in 0..3 {
        if round > 0 {
            run(netledger()
                .args(["keys", "rotate-audit-key", "--dir"])
                .arg(&secrets));
        }
        let (id, key, handover) = folder_key(&secrets);
        assert_eq!(handover.is_some(), round > 0);
        append_n(&store, tenant, round * 12, 12).await;
        let signer = CheckpointSigner {
            key_id: &id,
            key: &key,
            handover: handover.as_ref(),
        };
        let written = checkpoint_all_with(&system, &signer).await.unwrap();
        assert_eq!(written.len(), 1);
        assert_eq!(written[0].handover.is_some(), round > 0);
        used.push((id, key));
    }
    let trusted =
        TrustedKeys::parse(&std::fs::read_to_string(secrets.join("audit-signing.pub")).unwrap())
            .unwrap();
    let bundle = work.path().join("rotated.nlaudit.tar");
    export_to(&system, &trusted, tenant, &bundle).await;
    let keys_json: Value = serde_json::from_slice(member(&read_tar(&bundle), "keys.json")).unwrap();
    let listed: Vec<(String, Option<i64>)> = keys_json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["key_id"].as_str().unwrap().to_owned(),
                k["last_seq"].as_i64(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (used[0].0.clone(), Some(1)),
            (used[1].0.clone(), Some(2)),
            (used[2].0.clone(), None)
        ]
    );
    for (_, key) in &used {
        let public = key.verifying_key();
        assert_eq!(
            verify_both(&bundle, &hex::encode(public.to_bytes())),
            (Some(0), "OK".to_owned())
        );
        let fp = netledger_domain::audit::fingerprint(&public);
        assert_eq!(verify_both(&bundle, &fp), (Some(0), "OK".to_owned()));
    }

    // The first key, retired two rotations ago, signs again (say it leaked).
    append_n(&store, tenant, 36, 5).await;
    let forged = checkpoint_all(&system, &used[0].0, &used[0].1)
        .await
        .unwrap();
    let forged_from = forged[0].body.from_position;
    let bad = work.path().join("retired.nlaudit.tar");
    export_to(&system, &trusted, tenant, &bad).await;
    let pinned = hex::encode(used[2].1.verifying_key().to_bytes());
    assert_eq!(
        verify_both(&bad, &pinned),
        (Some(1), format!("TAMPERED at position {forged_from}"))
    );
    let out = run_status(
        netledger()
            .args(["audit", "verify"])
            .arg(&bad)
            .args(["--trusted-key", &pinned]),
    );
    assert!(out.contains("outside its validity"), "{out}");
}

fn run_status(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

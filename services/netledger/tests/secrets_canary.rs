//! Issue #15 item 9, end to end: distinct canary secrets are planted everywhere a secret
//! enters the platform (a device's password at registration and in a credentials update,
//! a user's password, an API key, access tokens, and secret values in a change request's
//! script and in a direct push's script), the platform does its work with them (the push
//! reaches the device, the device is backed up, the change is approved and rolled out), and
//! then every place the platform writes to is searched for them: every table of the database
//! (events, read models, idempotency records, ...), every message on NATS, every object of
//! the config archive's git repositories and every other file of the data directory, the
//! platform's log at `debug`, the live event stream, and the answers of every `GET`
//! operation of `openapi/openapi.json`. None may hold a canary, except the one answer that
//! hands a secret out (the new API key's creation, a login's tokens).
//!
//! Each channel is also shown to carry what it should (a non-secret marker that travels with
//! the secrets), so an empty capture cannot pass the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// The harness reads files and runs `git` and `curl` as an auditor would.
#![allow(clippy::disallowed_methods)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use sqlx::{PgPool, Row};

use support::platform::{ADMIN_EMAIL, ADMIN_PASSWORD, Options, Platform, until};

/// The non-secret marker: a name that travels with the secrets through every channel.
const MARKER: &str = "nlcanaryuser";

/// Every answer the test saw, with the secret it may legitimately contain.
#[derive(Default)]
struct Answers(Vec<(String, String, Option<String>)>);

impl Answers {
    fn keep(&mut self, what: &str, text: &str, allowed: Option<&str>) {
        self.0
            .push((what.to_owned(), text.to_owned(), allowed.map(str::to_owned)));
    }
}

/// Fails naming every (canary, place) where a canary was found.
fn assert_clean(channel: &str, texts: &[(String, String)], canaries: &[(&str, String)]) {
    let mut found = Vec::new();
    for (place, text) in texts {
        for (name, secret) in canaries {
            if text.contains(secret.as_str()) {
                found.push(format!("{name} in {place}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "{channel}: canary secrets leaked:\n{}",
        found.join("\n")
    );
}

fn contains_marker(texts: &[(String, String)]) -> bool {
    texts.iter().any(|(_, t)| t.contains(MARKER))
}

/// Every git repository under `dir` (a directory with `HEAD` and `objects/`).
fn git_repos(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    if dir.join("HEAD").is_file() && dir.join("objects").is_dir() {
        out.push(dir.to_owned());
        return;
    }
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            git_repos(&e.path(), out);
        }
    }
}

/// Every regular file under `dir`, outside git object stores, as (path, bytes as text).
fn plain_files(dir: &Path, out: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            if path.file_name().is_some_and(|n| n == "objects") {
                continue;
            }
            plain_files(&path, out);
        } else if t.is_file()
            && let Ok(bytes) = std::fs::read(&path)
        {
            out.push((
                path.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
}

#[allow(clippy::disallowed_methods)] // the wall clock the platform runs on
fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// Registers manifest device `i` as `canary-<i>` with `password`; returns its id.
async fn register(
    p: &Platform,
    admin: &str,
    i: usize,
    password: &str,
    idempotency_key: Option<&str>,
    answers: &mut Answers,
) -> String {
    let m = &p.manifest[i];
    let addr: std::net::SocketAddr = m["api"].as_str().unwrap().parse().unwrap();
    let headers: Vec<(&str, String)> = idempotency_key
        .map(|k| ("idempotency-key", k.to_owned()))
        .into_iter()
        .collect();
    let registered = p
        .api
        .call(
            "POST",
            "/api/v1/devices",
            Some(admin),
            Some(json!({
                "name": format!("canary-{i}"), "host": addr.ip().to_string(),
                "port": addr.port(), "transport": {"mode": "plain"},
                "username": m["username"], "password": password, "poll_interval_secs": 5,
            })),
            &headers,
        )
        .await;
    assert_eq!(registered.status, 201, "{:#}", registered.body);
    answers.keep("POST /devices", &registered.text, None);
    registered.body["device_id"].as_str().unwrap().to_owned()
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn no_canary_secret_reaches_events_read_models_nats_git_logs_or_answers(owner: PgPool) {
    let work = tempfile::tempdir().unwrap();
    let log_path = work.path().join("netledger-all.log");
    let p = Platform::start_with(
        &owner,
        2,
        Options {
            log_file: Some(log_path.clone()),
            // everything Netledger's own crates log, and the libraries' info
            log_filter: Some("info,netledger=debug".to_owned()),
            ..Options::default()
        },
    )
    .await;
    let api = &p.api;
    let mut answers = Answers::default();

    // Every message on the platform's NATS server from here on.
    let nats = async_nats::connect(p.nats_url()).await.unwrap();
    let mut sub = nats.subscribe(">").await.unwrap();
    let messages: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let sink = messages.clone();
    let collector = tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            let mut text = String::from_utf8_lossy(&m.payload).into_owned();
            if let Some(h) = &m.headers {
                for (k, vs) in h.iter() {
                    for v in vs {
                        text.push_str(&format!("\n{k}: {}", v.as_str()));
                    }
                }
            }
            sink.lock().unwrap().push((m.subject.to_string(), text));
        }
    });

    let admin = api.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let me = api.ok(200, "GET", "/api/v1/auth/me", &admin, None).await;
    let tenant = me["tenant_id"].as_str().unwrap().to_owned();

    // The live event stream, as a browser would hold it open, for the whole run.
    let sse_path = work.path().join("sse.txt");
    let mut sse = Command::new("curl")
        .args(["-sN", "--max-time", "600", "-H"])
        .arg(format!("Authorization: Bearer {admin}"))
        .arg(format!(
            "{}/api/v1/events/stream",
            p.api.base().trim_end_matches('/')
        ))
        .stdout(Stdio::from(std::fs::File::create(&sse_path).unwrap()))
        .stderr(Stdio::null())
        .spawn()
        .expect("curl must be installed");

    // --- planting -----------------------------------------------------------------------
    let user_password = "canary-userpw-5d1e0b7a93";
    let (_, approver) = api
        .new_user(
            &admin,
            "canary-approver@netledger.test",
            "approver",
            user_password,
        )
        .await;

    let key = api
        .call(
            "POST",
            "/api/v1/api-keys",
            Some(&admin),
            Some(json!({ "name": "canary-key", "scopes": ["devices:read"] })),
            &[],
        )
        .await;
    assert_eq!(key.status, 201, "{:#}", key.body);
    let key_secret = key.body["secret"]
        .as_str()
        .or_else(|| key.body["key"]["secret"].as_str())
        .unwrap_or_else(|| panic!("no secret in {:#}", key.body))
        .to_owned();
    answers.keep("POST /api-keys", &key.text, Some(&key_secret));
    // the key is used (lookup, cache)
    let listed = api
        .ok(200, "GET", "/api/v1/devices", &key_secret, None)
        .await;
    answers.keep("GET /devices with the key", &listed.to_string(), None);

    // device 0 with its real password, through an idempotent registration
    let device_password = p.manifest[0]["password"].as_str().unwrap().to_owned();
    let d0 = register(
        &p,
        &admin,
        0,
        &device_password,
        Some("canary-register-0"),
        &mut answers,
    )
    .await;
    // device 1 with a wrong password (its logins fail: the errors must not carry it), then
    // another one through a credentials update
    let wrong_password = "canary-wrongpw-0c4f19e2";
    let d1 = register(&p, &admin, 1, wrong_password, None, &mut answers).await;
    let updated_password = "canary-credpw-77ab2e51";
    let etag = until(
        "device 1 in the read model",
        Duration::from_secs(30),
        || async {
            let a = api
                .call(
                    "GET",
                    &format!("/api/v1/devices/{d1}"),
                    Some(&admin),
                    None,
                    &[],
                )
                .await;
            a.headers
                .get("etag")
                .filter(|_| a.status == 200)
                .map(|v| v.to_str().unwrap().to_owned())
        },
    )
    .await;
    let put = api
        .call(
            "PUT",
            &format!("/api/v1/devices/{d1}/credentials"),
            Some(&admin),
            Some(json!({ "username": p.manifest[1]["username"], "password": updated_password })),
            &[("if-match", etag)],
        )
        .await;
    assert!(put.status < 300, "{:#}", put.body);
    answers.keep("PUT /credentials", &put.text, None);

    // an archived configuration of device 0
    api.ok(
        201,
        "POST",
        "/api/v1/workflows/backup",
        &admin,
        Some(json!({ "device_id": d0 })),
    )
    .await;

    // a change request whose script sets secrets, approved by the approver and started
    let cr_ppp = "canary-pppsecret-4e8d21";
    let cr_radius = "canary-radiussecret-b3a7";
    let cr_script = format!(
        "/ppp secret\nadd name={MARKER} password=\"{cr_ppp}\" service=any\n\
         /radius\nadd address=10.66.0.1 service=ppp secret={cr_radius}\n"
    );
    let created = api
        .call(
            "POST",
            "/api/v1/change-requests",
            Some(&admin),
            Some(json!({
                "title": "Canary PPP account",
                "reason": "issue 15 item 9",
                "target": { "kind": "devices", "device_ids": [d0] },
                "action": { "kind": "script", "script": cr_script },
                "risk": "low",
            })),
            &[],
        )
        .await;
    assert_eq!(created.status, 201, "{:#}", created.body);
    answers.keep("POST /change-requests", &created.text, None);
    let cr = created.body["change_request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cr_path = format!("/api/v1/change-requests/{cr}");
    api.ok(
        200,
        "POST",
        &format!("{cr_path}/submit"),
        &admin,
        Some(json!({})),
    )
    .await;
    api.ok(
        200,
        "POST",
        &format!("{cr_path}/approve"),
        &approver,
        Some(json!({ "comment": "checked" })),
    )
    .await;
    let started = api
        .call(
            "POST",
            &format!("{cr_path}/start"),
            Some(&admin),
            Some(json!({})),
            &[],
        )
        .await;
    assert!(started.status < 300, "{:#}", started.body);
    let done = until(
        "the change request to end",
        Duration::from_secs(240),
        || async {
            let v = api.ok(200, "GET", &cr_path, &admin, None).await;
            let s = v["state"].as_str().unwrap_or_default().to_owned();
            matches!(
                s.as_str(),
                "completed" | "failed" | "rolled_back" | "cancelled"
            )
            .then_some(v)
        },
    )
    .await;
    assert_eq!(done["state"], "completed", "{done:#}");

    // a direct push with other secrets (the tenant's policy allows direct pushes)
    let policy_path = format!("/api/v1/tenants/{tenant}/change-policy");
    let policy = api.call("GET", &policy_path, Some(&admin), None, &[]).await;
    assert_eq!(policy.status, 200, "{:#}", policy.body);
    if policy.body["change_control"] != "optional" {
        let etag = policy.headers["etag"].to_str().unwrap().to_owned();
        let set = api
            .call(
                "PUT",
                &policy_path,
                Some(&admin),
                Some(json!({ "change_control": "optional" })),
                &[("if-match", etag)],
            )
            .await;
        assert!(set.status < 300, "{:#}", set.body);
    }
    let push_psk = "canary-ipsecpsk-91f0c6";
    let push_wg = "canary-wgkey-2d5b8e";
    let push_script = format!(
        "/ip ipsec identity\nadd peer={MARKER} secret=\"{push_psk}\"\n\
         /interface wireguard\nadd name=wg-{MARKER} private-key=\"{push_wg}\"\n"
    );
    let pushed = api
        .call(
            "POST",
            "/api/v1/workflows/config-push",
            Some(&admin),
            Some(json!({ "device_id": d0, "change_id": "canary-push", "script": push_script })),
            &[],
        )
        .await;
    assert_eq!(pushed.status, 201, "{:#}", pushed.body);
    answers.keep("POST /config-push", &pushed.text, None);
    let wf = pushed.body["workflow_id"].as_str().unwrap().to_owned();
    let run = until("the push to finish", Duration::from_secs(180), || async {
        let v = api
            .call(
                "GET",
                &format!("/api/v1/workflows/{wf}"),
                Some(&admin),
                None,
                &[],
            )
            .await
            .body;
        v["run"]["finished_at"].is_string().then_some(v)
    })
    .await;
    assert_eq!(run["run"]["outcome"], "committed", "{run:#}");

    // a rollout whose change set sets another secret
    let rollout_secret = "canary-snmppw-6a0e3f94";
    let rollout = api
        .call(
            "POST",
            "/api/v1/rollouts",
            Some(&admin),
            Some(json!({
                "name": "canary rollout",
                "target": { "kind": "change_set", "script": format!(
                    "/ppp secret\nadd name={MARKER}-2 password={rollout_secret} service=any\n"
                ) },
                "devices": [d0],
            })),
            &[],
        )
        .await;
    assert_eq!(rollout.status, 201, "{:#}", rollout.body);
    answers.keep("POST /rollouts", &rollout.text, None);
    let rollout_id = rollout.body["rollout_id"]
        .as_str()
        .or_else(|| rollout.body["id"].as_str())
        .unwrap_or_else(|| panic!("no rollout id in {:#}", rollout.body))
        .to_owned();
    let finished = until(
        "the rollout to finish",
        Duration::from_secs(180),
        || async {
            let v = api
                .call(
                    "GET",
                    &format!("/api/v1/rollouts/{rollout_id}"),
                    Some(&admin),
                    None,
                    &[],
                )
                .await
                .body;
            v["finished_at"].is_string().then_some(v)
        },
    )
    .await;
    assert_eq!(finished["state"], "completed", "{finished:#}");

    // The secrets did reach the device (so the platform held them for real), which is then
    // backed up into the archive.
    let device_export = p
        .control
        .call("GET", "/devices/0/export", None, None, &[])
        .await;
    for s in [cr_ppp, cr_radius, push_psk, push_wg, rollout_secret] {
        assert!(
            device_export.text.contains(s),
            "the device does not hold {s}: {}",
            device_export.text
        );
    }
    api.ok(
        201,
        "POST",
        "/api/v1/workflows/backup",
        &admin,
        Some(json!({ "device_id": d0 })),
    )
    .await;
    until(
        "a backup holding the change",
        Duration::from_secs(90),
        || async {
            let list = api
                .ok(
                    200,
                    "GET",
                    &format!("/api/v1/devices/{d0}/configs"),
                    &admin,
                    None,
                )
                .await;
            let commit = list["items"][0]["commit"].as_str()?.to_owned();
            let v = api
                .call(
                    "GET",
                    &format!("/api/v1/devices/{d0}/configs/{commit}"),
                    Some(&admin),
                    None,
                    &[],
                )
                .await;
            v.text.contains(&format!("wg-{MARKER}")).then_some(())
        },
    )
    .await;
    // device 1 has failed a poll with each wrong password by now
    tokio::time::sleep(Duration::from_secs(6)).await;

    // --- the secrets, and the tokens of this run ------------------------------------------
    let approver_token = approver.clone();
    let canaries: Vec<(&str, String)> = vec![
        ("the device password", device_password.clone()),
        ("the wrong device password", wrong_password.to_owned()),
        ("the updated device password", updated_password.to_owned()),
        ("the user's password", user_password.to_owned()),
        ("the admin's password", ADMIN_PASSWORD.to_owned()),
        ("the API key", key_secret.clone()),
        ("the admin's access token", admin.clone()),
        ("the approver's access token", approver_token),
        ("the change request's ppp password", cr_ppp.to_owned()),
        ("the change request's radius secret", cr_radius.to_owned()),
        ("the push's ipsec secret", push_psk.to_owned()),
        ("the push's wireguard key", push_wg.to_owned()),
        ("the rollout's ppp password", rollout_secret.to_owned()),
    ];

    // --- answers of every GET operation ---------------------------------------------------
    let doc: Value = serde_json::from_str(include_str!("../../../openapi/openapi.json")).unwrap();
    let config = api
        .ok(
            200,
            "GET",
            &format!("/api/v1/devices/{d0}/configs"),
            &admin,
            None,
        )
        .await;
    let commit = config["items"][0]["commit"]
        .as_str()
        .or_else(|| config["items"][0]["id"].as_str())
        .unwrap_or_default()
        .to_owned();
    let me_user = me["id"].as_str().unwrap_or_default().to_owned();
    let key_id = key.body["key"]["id"]
        .as_str()
        .or_else(|| key.body["id"].as_str())
        .unwrap_or_default()
        .to_owned();
    let fill = |path: &str| -> Option<String> {
        let mut out = path.to_owned();
        for (param, value) in [
            ("{device_id}", d0.as_str()),
            ("{workflow_id}", wf.as_str()),
            ("{change_request_id}", cr.as_str()),
            ("{rollout_id}", rollout_id.as_str()),
            ("{tenant_id}", tenant.as_str()),
            ("{user_id}", me_user.as_str()),
            ("{key_id}", key_id.as_str()),
            ("{commit}", commit.as_str()),
            ("{stream}", &format!("workflow-{wf}")),
            ("{category}", "workflow"),
            ("{kind}", "change-log"),
        ] {
            out = out.replace(param, value);
        }
        (!out.contains('{')).then_some(out)
    };
    let mut swept = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        if ops.get("get").is_none() || path.ends_with("/events/stream") {
            continue;
        }
        let Some(url) = fill(path) else {
            panic!("the canary sweep does not know a parameter of GET {path}");
        };
        let url = match path.as_str() {
            "/api/v1/devices/{device_id}/config"
            | "/api/v1/devices/{device_id}/as-of"
            | "/api/v1/fleet/as-of" => format!("{url}?at={}", now_rfc3339()),
            "/api/v1/devices/{device_id}/configs/diff" => {
                format!("{url}?from={commit}&to={commit}")
            }
            p if p.contains("/timeline") || p.ends_with("/events") || p.contains("/audit/") => {
                format!("{url}?limit=500")
            }
            _ => url,
        };
        for token in [&admin, &approver] {
            let a = api.call("GET", &url, Some(token), None, &[]).await;
            assert!(a.status < 500, "GET {url}: {} {}", a.status, a.text);
            answers.keep(&format!("GET {url}"), &a.text, None);
        }
        swept += 1;
    }
    assert!(swept >= 30, "swept only {swept} GET operations");
    // a config push's detail and steps, and the change request's timeline, were swept
    let texts: Vec<(String, String)> = answers
        .0
        .iter()
        .map(|(w, t, allowed)| {
            let text = match allowed {
                Some(a) => t.replace(a.as_str(), "<the secret this answer hands out>"),
                None => t.clone(),
            };
            (w.clone(), text)
        })
        .collect();
    assert!(
        contains_marker(&texts),
        "the answers never showed the change"
    );
    assert_clean("API answers", &texts, &canaries);

    // --- the live event stream -----------------------------------------------------------
    let _ = sse.kill();
    let _ = sse.wait();
    let sse_text = std::fs::read_to_string(&sse_path).unwrap_or_default();
    let sse_texts = vec![("the live event stream".to_owned(), sse_text)];
    assert!(
        contains_marker(&sse_texts),
        "the live event stream carried no event of the change"
    );
    assert_clean("live events", &sse_texts, &canaries);

    // --- NATS ----------------------------------------------------------------------------
    tokio::time::sleep(Duration::from_secs(2)).await;
    collector.abort();
    let nats_texts = messages.lock().unwrap().clone();
    assert!(
        contains_marker(&nats_texts),
        "no NATS message carried the change ({} messages)",
        nats_texts.len()
    );
    assert_clean("NATS", &nats_texts, &canaries);

    // --- every table of the database ------------------------------------------------------
    let tables = sqlx::query(
        "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) AS t \
         FROM information_schema.tables \
         WHERE table_type = 'BASE TABLE' \
           AND table_schema NOT IN ('pg_catalog', 'information_schema')",
    )
    .fetch_all(&owner)
    .await
    .unwrap();
    let mut rows = Vec::new();
    for t in &tables {
        let name: String = t.get("t");
        let texts: Vec<String> = sqlx::query_scalar(&format!("SELECT x::text FROM {name} x"))
            .fetch_all(&owner)
            .await
            .unwrap();
        for (i, text) in texts.into_iter().enumerate() {
            rows.push((format!("{name} row {i}"), text));
        }
    }
    assert!(
        rows.iter()
            .any(|(t, text)| t.starts_with("public.events ") && text.contains(MARKER)),
        "no event carried the change"
    );
    assert!(
        rows.iter()
            .any(|(t, text)| t.starts_with("public.rm_") && text.contains(MARKER)),
        "no read model row carried the change"
    );
    assert_clean("the database", &rows, &canaries);

    // --- the data directory: git objects and every other file -----------------------------
    let mut repos = Vec::new();
    git_repos(&p.data_dir(), &mut repos);
    assert!(!repos.is_empty(), "no git repository under the data dir");
    let mut git_texts = Vec::new();
    for repo in &repos {
        let out = Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(["cat-file", "--batch-all-objects", "--batch"])
            .output()
            .expect("git must be installed");
        assert!(out.status.success(), "git cat-file in {}", repo.display());
        git_texts.push((
            format!("git objects of {}", repo.display()),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ));
    }
    assert!(
        contains_marker(&git_texts),
        "no archived configuration holds the change"
    );
    assert_clean("the config archive", &git_texts, &canaries);
    let mut files = Vec::new();
    plain_files(&p.data_dir(), &mut files);
    assert_clean("the data directory", &files, &canaries);

    // --- the log --------------------------------------------------------------------------
    let log = std::fs::read_to_string(&log_path).unwrap();
    let log_texts = vec![("the platform's log".to_owned(), log)];
    assert!(
        log_texts[0].1.lines().count() > 50,
        "the platform logged almost nothing at debug: {}",
        log_texts[0].1
    );
    assert_clean("the log", &log_texts, &canaries);
}

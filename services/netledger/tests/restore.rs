//! Issue #16, backup and restore, as docs/operations.md tells an operator to do it: while the
//! platform runs, `pg_dump -Fc` of the database, then a copy of the data folder (git config
//! archive, encrypted backups, and here the generated development keys); then `pg_restore`
//! into a fresh database and the copy into a fresh folder. On the restored pair `netledger
//! audit verify` passes, and `netledger all` resumes: the same administrator logs in, the
//! devices are polled again, the configuration history reads back, a new backup workflow
//! succeeds, and the audit bundle still verifies with the history written after the restore.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// The harness runs real processes (pg_dump, pg_restore, netledger) and reads the clock.
#![allow(clippy::disallowed_methods)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use sqlx::PgPool;

use support::nats::Nats;
use support::platform::{
    ADMIN_EMAIL, ADMIN_PASSWORD, Http, Options, Platform, backup_succeeds, database_url, free_port,
    until, wait_ready,
};

/// A child process killed when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `netledger audit export` of `tenant` from `url`, then `audit verify` with the public key
/// in `data`; the verifier's output (it must succeed).
fn export_and_verify(url: &str, data: &Path, tenant: &str, out: &Path) -> String {
    let bin = env!("CARGO_BIN_EXE_netledger");
    run(Command::new(bin)
        .args(["audit", "export", "--tenant", tenant, "--out"])
        .arg(out)
        .env("DATABASE_URL", url)
        .env("NETLEDGER_DATA_DIR", data)
        .env("NETLEDGER_LOG", "warn"));
    let key = std::fs::read_to_string(data.join("audit-signing.pub")).unwrap();
    run(Command::new(bin)
        .args(["audit", "verify"])
        .arg(out)
        .args(["--public-key", key.trim()])
        .env("NETLEDGER_LOG", "warn"))
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_restored_backup_verifies_and_the_platform_resumes(owner: PgPool) {
    let mut p = Platform::start_with(
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
    backup_succeeds(&p.api, &token, &devices[0], "before-1").await;
    let me = p.api.ok(200, "GET", "/api/v1/auth/me", &token, None).await;
    let tenant = me["tenant_id"].as_str().unwrap().to_owned();
    until("a signed checkpoint", Duration::from_secs(30), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_checkpoints")
            .fetch_one(&owner)
            .await
            .unwrap();
        (n > 0).then_some(())
    })
    .await;

    // The backup, online: the database first, then the data folder (so that every file an
    // event of the dump refers to is in the copy).
    let work = tempfile::tempdir().unwrap();
    let source_url = database_url(&owner);
    let dump = work.path().join("netledger.dump");
    run(Command::new("pg_dump")
        .args(["--format=custom", "--file"])
        .arg(&dump)
        .arg(&source_url));
    let tarball = work.path().join("data.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(p.data_dir())
        .arg("-cf")
        .arg(&tarball)
        .arg("."));
    let events_in_dump: i64 = sqlx::query_scalar("SELECT max(position) FROM events")
        .fetch_one(&owner)
        .await
        .unwrap();

    // The platform is gone (the fleet stays).
    p.kill_platform();

    // The restore: a fresh database and a fresh folder.
    let db = format!("nl_restored_{}", uuid::Uuid::new_v4().simple());
    let (server, _) = source_url.rsplit_once('/').unwrap();
    let restored_url = format!("{server}/{db}");
    run(Command::new("createdb")
        .arg("--maintenance-db")
        .arg(&source_url)
        .arg(&db));
    run(Command::new("pg_restore")
        .args(["--exit-on-error", "--dbname"])
        .arg(&restored_url)
        .arg(&dump));
    let data = work.path().join("restored-data");
    std::fs::create_dir_all(&data).unwrap();
    run(Command::new("tar")
        .arg("-C")
        .arg(&data)
        .arg("-xf")
        .arg(&tarball));
    let restored = PgPool::connect(&restored_url).await.unwrap();
    let head: i64 = sqlx::query_scalar("SELECT max(position) FROM events")
        .fetch_one(&restored)
        .await
        .unwrap();
    assert!(head >= events_in_dump, "{head} < {events_in_dump}");

    // The auditor's check on the restored pair, before anything runs on it.
    let verified = export_and_verify(&restored_url, &data, &tenant, &work.path().join("b1.json"));
    assert!(verified.starts_with("OK: "), "{verified}");

    // The platform resumes on it (a new NATS server: the stream is rebuilt from the record).
    let bin = env!("CARGO_BIN_EXE_netledger");
    let nats = Nats::start();
    let port = free_port();
    let config = work.path().join("netledger.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[devices]\nallowed_networks = [\"127.0.0.0/8\"]\n\
             [audit]\ncheckpoint_interval = \"1s\"\n",
            data.display()
        ),
    )
    .unwrap();
    let mut all = KillOnDrop(
        Command::new(bin)
            .arg("--config")
            .arg(&config)
            .args(["all", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--firmware-listen", &format!("127.0.0.1:{}", free_port())])
            .env("DATABASE_URL", &restored_url)
            .env("NATS_URL", nats.url())
            .env("NETLEDGER_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let api = Http::new(format!("http://127.0.0.1:{port}"));
    wait_ready(&mut all.0, &api, Duration::from_secs(90)).await;
    let restart = time::OffsetDateTime::now_utc();
    let token = api.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    // Polled again: new telemetry after the restart, every device online.
    until(
        "devices polled after the restore",
        Duration::from_secs(60),
        || async {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(DISTINCT device_id) FROM device_samples WHERE at > $1",
            )
            .bind(restart)
            .fetch_one(&restored)
            .await
            .unwrap();
            (n == 2).then_some(())
        },
    )
    .await;
    // The configuration history reads back from the restored archive: the version the
    // backup before the restore recorded, its text from git.
    let history = api
        .ok(
            200,
            "GET",
            &format!("/api/v1/devices/{}/configs", devices[0]),
            &token,
            None,
        )
        .await;
    let commit = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|v| v["commit"].as_str().map(str::to_owned))
        .expect("a recorded configuration version");
    let text = api
        .call(
            "GET",
            &format!("/api/v1/devices/{}/configs/{commit}", devices[0]),
            Some(&token),
            None,
            &[],
        )
        .await;
    assert_eq!(text.status, 200, "{}", text.text);
    assert!(
        text.text.contains("/system identity") || text.text.contains("/interface"),
        "{}",
        text.text
    );
    // New work on the restored installation, and the audit trail still verifies with it.
    backup_succeeds(&api, &token, &devices[1], "after-1").await;
    until(
        "a checkpoint after the restore",
        Duration::from_secs(30),
        || async {
            let newest: i64 =
                sqlx::query_scalar("SELECT coalesce(max(to_position), 0) FROM audit_checkpoints")
                    .fetch_one(&restored)
                    .await
                    .unwrap_or(0);
            (newest > head).then_some(())
        },
    )
    .await;
    let verified = export_and_verify(&restored_url, &data, &tenant, &work.path().join("b2.json"));
    assert!(verified.starts_with("OK: "), "{verified}");
    drop(all);
    restored.close().await;
    sqlx::query(&format!("DROP DATABASE \"{db}\" WITH (FORCE)"))
        .execute(&owner)
        .await
        .unwrap();
}

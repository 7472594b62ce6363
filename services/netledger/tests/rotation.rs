//! Issue #16, credential key rotation as docs/operations.md tells an operator to do it, on
//! the real binary: the platform runs with key `k1`; it is restarted with `k2` current and
//! `k1` still listed; `netledger keys rotate-credentials` runs while it serves (a backup
//! started just before it succeeds); then `k1` is removed and the platform still polls the
//! device and takes backups. The database shows nothing left under `k1`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// The harness runs real processes and passes the test environment on to them.
#![allow(clippy::disallowed_methods)]

mod support;

use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use sqlx::PgPool;

use support::platform::{
    ADMIN_EMAIL, ADMIN_PASSWORD, Options, Platform, backup_succeeds, database_url, start_backup,
    until, workflow_succeeds,
};

/// `[secrets]` with `keys` (id, key byte) and `current`.
fn secrets(keys: &[(&str, u8)], current: &str) -> String {
    let list: Vec<String> = keys
        .iter()
        .map(|(id, b)| {
            format!(
                "\"{id}\" = \"{}\"",
                base64::engine::general_purpose::STANDARD.encode([*b; 32])
            )
        })
        .collect();
    format!(
        "[secrets]\ncredential_keys = {{ {} }}\ncurrent_credential_key = \"{current}\"\n",
        list.join(", ")
    )
}

/// Key ids of the sealed rows: device credentials, and the backup rows rotation wrote.
async fn key_ids(owner: &PgPool) -> (Vec<String>, Vec<String>) {
    let credentials = sqlx::query_scalar("SELECT key_id FROM device_credentials ORDER BY 1")
        .fetch_all(owner)
        .await
        .unwrap();
    let backups = sqlx::query_scalar(
        "SELECT password_key_id || '/' || blob_key_id FROM backup_secrets ORDER BY 1",
    )
    .fetch_all(owner)
    .await
    .unwrap();
    (credentials, backups)
}

fn rotate(p: &Platform, owner: &PgPool) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_netledger"))
        .arg("--config")
        .arg(p.config_file())
        .args(["keys", "rotate-credentials"])
        .env("DATABASE_URL", database_url(owner))
        .env("NETLEDGER_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn credentials_rotate_online_and_the_old_key_can_go(owner: PgPool) {
    let mut p = Platform::start_with(
        &owner,
        1,
        Options {
            extra_toml: Some(secrets(&[("k1", 1)], "k1")),
            ..Options::default()
        },
    )
    .await;
    let token = p.api.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let device = p.register(&token, 0, "edge-0").await;
    backup_succeeds(&p.api, &token, &device, "under-k1").await;
    assert_eq!(key_ids(&owner).await, (vec!["k1".to_owned()], vec![]));

    // Every role gets the new key as current, the old one still listed.
    p.restart_with(&secrets(&[("k1", 1), ("k2", 2)], "k2"))
        .await;
    let token = p.api.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    // a backup in flight (sealed under k2 directly; the rotation may or may not see its
    // journal yet, so only what it re-encrypted is exact)
    let during = start_backup(&p.api, &token, &device, "during").await;
    let (ok, out) = rotate(&p, &owner);
    assert!(ok, "{out}");
    assert!(
        out.contains("device credentials: 1 re-encrypted, 0 failed")
            && out.contains(" 1 re-encrypted (1 superseded files deleted), 0 failed")
            && out.contains("OK: everything is under key `k2`"),
        "{out}"
    );
    workflow_succeeds(&p.api, &token, &during).await;
    assert_eq!(
        key_ids(&owner).await,
        (vec!["k2".to_owned()], vec!["k2/k2".to_owned()])
    );

    // The old key goes.
    p.restart_with(&secrets(&[("k2", 2)], "k2")).await;
    let token = p.api.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let since = time::OffsetDateTime::now_utc();
    until(
        "the device polled with the rotated credentials",
        Duration::from_secs(60),
        || async {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM device_samples WHERE at > $1")
                .bind(since)
                .fetch_one(&owner)
                .await
                .unwrap();
            (n > 0).then_some(())
        },
    )
    .await;
    backup_succeeds(&p.api, &token, &device, "after").await;
    let (ok, out) = rotate(&p, &owner);
    assert!(ok, "{out}");
    assert!(
        out.contains("backups: 3 journaled, 0 re-encrypted") && out.contains("OK:"),
        "{out}"
    );
}
